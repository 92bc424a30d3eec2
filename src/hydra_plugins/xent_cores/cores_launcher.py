"""`hydra/launcher=cores`, xent's default sweep layout: a batch's jobs side by side, one
process per CPU core, each with `cores // workers` torch threads (joblib's loky workers cap
them; OMP_NUM_THREADS where the user set it).

On a 2-core machine two single-threaded jobs train 1.95-2.40x the images/s of one, where one
job on both cores gets 1.70-1.79x (benchmarks/sweep_threads.json). What a sweep does otherwise
is the basic launcher's:

- a batch of one job (an Optuna trial, a one-job sweep), or `n_jobs=1`, runs in this process
  with every thread, exactly as `hydra/launcher=basic`;
- Ctrl-C (or SIGINT to xent-run) stops every running job at its next step, recorded as
  interrupted (metrics.json, last.ckpt), starts no other, and ends xent-run with the line that
  continues the sweep (exit 130); a second Ctrl-C stops at once;
- a job that fails reports its own one line through xent-run, as it would in this process.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher

log = logging.getLogger(__name__)

STOP_FILE = ".stop"  # in the sweep dir while xent-run stops its jobs


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_job(workers: int) -> int:
    """What joblib gives each worker: OMP_NUM_THREADS where the user set it, else
    cores // workers."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return max(1, usable_cores() // workers)


class CoresLauncher(Launcher):
    """Hydra launcher: see the module docstring."""

    def __init__(self, n_jobs: int = -1, **joblib_kwargs: Any) -> None:
        self.n_jobs = n_jobs
        self.joblib_kwargs = joblib_kwargs
        self.config: Any = None
        self.task_function: Any = None
        self.hydra_context: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context

    def workers(self, jobs: int) -> int:
        """Jobs at once: n_jobs (-1: every core), never more than the batch has."""
        wanted = usable_cores() if self.n_jobs in (-1, None) else int(self.n_jobs)
        return max(1, min(wanted, jobs))

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        if self.workers(len(job_overrides)) == 1:
            return self._in_this_process(job_overrides, initial_job_idx)
        return self._side_by_side(job_overrides, initial_job_idx)

    def _in_this_process(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from hydra._internal.core_plugins.basic_launcher import BasicLauncher

        basic = BasicLauncher()
        basic.setup(
            hydra_context=self.hydra_context,
            task_function=self.task_function,
            config=self.config,
        )
        return basic.launch(job_overrides, initial_job_idx)

    def _side_by_side(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from hydra.core.singleton import Singleton
        from joblib import Parallel, delayed

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        stop = sweep_dir / STOP_FILE
        stop.unlink(missing_ok=True)  # an earlier interrupted sweep's, now continued
        workers = self.workers(len(job_overrides))
        log.info(
            "Launching %d jobs, %d at a time, %d torch thread(s) each",
            len(job_overrides),
            workers,
            threads_per_job(workers),
        )
        state = Singleton.get_state()
        try:
            with _ctrl_c_writes(stop) as ctrl_c:
                runs = Parallel(n_jobs=workers, backend="loky", **self.joblib_kwargs)(
                    delayed(_run_job)(
                        initial_job_idx + idx,
                        overrides,
                        self.hydra_context,
                        self.config,
                        self.task_function,
                        state,
                        list(sys.argv),
                        str(stop),
                    )
                    for idx, overrides in enumerate(job_overrides)
                )
        finally:
            _shut_down_workers()
        stop.unlink(missing_ok=True)
        return _relay(runs, interrupted_by_user=ctrl_c["seen"])


def _shut_down_workers() -> None:
    """The workers and their temporary folder go with the batch, not at the interpreter's exit:
    a process that ends without it (`os._exit`, as a forking test harness does) would leave
    loky's resource tracker warning on stderr about a leaked folder. joblib keeps its reusable
    executor in loky's `reusable_executor._executor` (joblib 1.6, the lock's)."""
    from joblib.externals.loky import reusable_executor

    executor = getattr(reusable_executor, "_executor", None)
    if executor is not None and hasattr(executor, "terminate"):
        executor.terminate(kill_workers=False)


@contextmanager
def _ctrl_c_writes(stop: Path) -> Iterator[dict[str, bool]]:
    """While the jobs run, a first SIGINT writes the stop file (each job stops at its next
    step and records itself); a second one stops at once. Without this, joblib's answer to a
    KeyboardInterrupt would kill the workers before they could record anything."""
    seen = {"seen": False}

    def on_sigint(signum: int, frame: Any) -> None:
        if seen["seen"]:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        seen["seen"] = True
        stop.touch()
        # stdout: a notice (stderr carries the one line that ends the sweep)
        print("xent-run: stopping the running jobs at their next step (Ctrl-C again: at once)")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_job(
    idx: int,
    overrides: Sequence[str],
    hydra_context: Any,
    config: Any,
    task_function: Any,
    singleton_state: dict[Any, Any],
    argv: list[str],
    stop: str,
) -> JobReturn:
    """One job in a worker process, as Hydra's own launchers run it; not started where the
    sweep was already stopped."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals
    from omegaconf import open_dict

    from xent.job_relay import STOP_FILE_ENV

    if Path(stop).exists():
        return JobReturn(overrides=list(overrides), status=JobStatus.UNKNOWN, _return_value=None)
    os.environ[STOP_FILE_ENV] = stop  # the job's trainer stops when this file appears
    sys.argv[:] = argv  # the command an interrupted job names is xent-run's
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C reaches the job
    try:
        setup_globals()
        Singleton.set_state(singleton_state)
        sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
            sweep_config.hydra.job.num = idx
        HydraConfig.instance().set_config(sweep_config)
        return run_job(
            hydra_context=hydra_context,
            config=sweep_config,
            task_function=task_function,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
    finally:
        # An idle worker ignores Ctrl-C: dying of it would make joblib kill the others
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _relay(runs: Sequence[JobReturn], interrupted_by_user: bool) -> Sequence[JobReturn]:
    """What the jobs of other processes could not say themselves: their one-line failures go
    to `relayed_failures` (xent-run prints them once the sweep is done, as for jobs of its own
    process); an interrupted job, or a Ctrl-C, ends the sweep as the basic launcher's would."""
    from xent.job_relay import JobInterrupted, RelayedFailure, relayed_failures
    from xent.runner.rundir import Interrupted

    interrupted = None
    for run in runs:
        value = run._return_value
        if isinstance(value, RelayedFailure):
            relayed_failures.append(value)
            run.status, run._return_value = JobStatus.COMPLETED, None
        elif isinstance(value, JobInterrupted) and interrupted is None:
            interrupted = value
    if interrupted is not None:
        raise Interrupted(str(interrupted))
    if interrupted_by_user:
        raise KeyboardInterrupt
    return runs
