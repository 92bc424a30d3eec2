"""`xent-run`: Hydra's CLI, with bad input caught before any run dir is touched.

Imports stay light at module level so `--help`, `--cfg job` and tab completion are quick;
torch and Lightning load only when a run starts.
"""

from __future__ import annotations

import copy
import os
import re
import sys
from pathlib import Path

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from xent.errors import EXIT_BAD_INPUT, EXIT_RUN_FAILED
from xent.job_relay import STOP_FILE_ENV, JobInterrupted, RelayedFailure, relayed_failures
from xent.runner.command_line import (
    CONF_DIR,
    check_overrides,
    conf_dirs_of,
    group_options,
    with_task_defaults,
)
from xent.runner.quick_help import HELP_FLAGS, share_group_listing_repository

CONFIG_MODULE = "xent.conf"
CONFIG_NAME = "config"


class RunFailed(Exception):
    """A run that started and then failed; its run dir holds metrics.json and error.log."""

    def __init__(self, run_dir: Path | None, message: str):
        # A full disk may leave no error.log: then name the run dir, the path that failed.
        if run_dir is None:
            super().__init__(f"run failed: {message}")
            return
        details = run_dir / "error.log"
        where = f"details: {details}" if details.is_file() else f"run dir: {run_dir}"
        super().__init__(f"run failed: {message} ({where})")


# Failures of the jobs of this process, reported by main() after Hydra returns: a job that
# raised would make Hydra print its own multi-line report and, in a sweep, stop the others.
_job_failures: list[Exception] = []
# HYDRA_FULL_ERROR=1 as the user set it: re-raise instead of reporting one line.
_show_tracebacks = False
# The run dir of a single run, once the preflight passed: named when Hydra cannot write it.
_run_dir: Path | None = None


@hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name=CONFIG_NAME)
def hydra_app(cfg: DictConfig) -> float | None:
    from xent.errors import XentError, root_message
    from xent.runner.run import run

    try:
        check_ddp_in_sweep(cfg)
        metrics = run(cfg)
    except XentError as err:
        return _job_failed(err)
    except Exception as err:
        if _show_tracebacks:
            raise
        return _job_failed(RunFailed(Path(cfg.paths.output_dir), root_message(err)))
    except KeyboardInterrupt as err:
        if in_worker_process():
            from xent.runner.rundir import interrupted_line

            raise JobInterrupted(interrupted_line(err)) from None
        raise
    return sweep_objective(cfg, metrics)


def in_worker_process() -> bool:
    """True in a job that hydra/launcher=cores runs in one of its worker processes."""
    return STOP_FILE_ENV in os.environ


def _job_failed(err: Exception) -> None:
    """Keep a failed job's reason for main() to print; from a worker process, hand it back to
    xent-run's process (its launcher keeps it in `relayed_failures`, which main() reads)."""
    if in_worker_process():
        raise RelayedFailure(failure_line(err), is_bad_input(err))
    _job_failures.append(err)


def failure_line(err: Exception) -> str:
    """The one stderr line of a failed job."""
    if isinstance(err, RelayedFailure):
        return err.line
    return ("xent-run: " if isinstance(err, RunFailed) else "xent-run: error: ") + one_line(err)


def is_bad_input(err: Exception) -> bool:
    if isinstance(err, RelayedFailure):
        return err.bad_input
    return not isinstance(err, RunFailed)


def sweep_objective(cfg: DictConfig, metrics: dict) -> float | None:
    """The value a sweeper (Optuna) optimises: `optimized_metric` (checked against the task's
    metrics before training), or test/acc where unset; None, a failed trial, where absent."""
    value = metrics.get(cfg.get("optimized_metric") or "test/acc")
    return None if value is None else float(value)


def _is_plain_run(argv: list[str]) -> bool:
    """Overrides only: no -m, --help, --cfg, -sc, ... (those are Hydra's own business)."""
    return all(not arg.startswith("-") for arg in argv)


def preflight_single_run(overrides: list[str]) -> None:
    """Compose, check every part, and set an earlier run aside, before Hydra writes anything."""
    global _run_dir
    from hydra import compose, initialize_config_module
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    from xent.runner.rundir import archive_previous_run, check_run_dir_writable, preflight_resume

    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose(CONFIG_NAME, overrides=overrides, return_hydra_config=True)
        # torch loads with xent.runner.preflight: a misspelt option fails in Hydra's compose above,
        # before it, in a fraction of a second
        from xent.runner.preflight import build_parts, check_override_types

        dirs = conf_dirs_of(overrides)
        value_overrides = [o for o in overrides if _is_value_override(o, dirs)]
        group_overrides = [o for o in overrides if o not in value_overrides]
        defaults = compose(CONFIG_NAME, overrides=group_overrides, return_hydra_config=True)
        check_override_types(defaults, value_overrides)
        # The run dir and paths interpolate ${hydra:runtime.*}: fill those in as Hydra would.
        with open_dict(cfg):
            cfg.hydra.runtime.cwd = os.getcwd()
        HydraConfig.instance().set_config(cfg)
        run_dir = Path(cfg.hydra.run.dir)
        with read_write(cfg.hydra), open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(run_dir)
        HydraConfig.instance().set_config(cfg)
        # A resume compares the config as the job will, before a task's checks fill in what
        # the data decides (task=lm: data.vocab_size), which the saved config does not hold.
        as_composed = copy.deepcopy(cfg)
        build_parts(cfg)
    check_run_dir_writable(run_dir)
    _run_dir = run_dir
    starts_fresh = preflight_resume(as_composed, run_dir)  # a finished run exits 0 here, untouched
    if starts_fresh and not cfg.get("ckpt_path") and run_dir.is_dir():
        moved = archive_previous_run(run_dir)
        if moved:
            # stdout: a notice, not an error (stderr carries only the one-line errors)
            print(f"xent-run: {run_dir} held an earlier run; moved it to {moved}")


class HydraConfigForSweep(Callback):
    """Make the sweep's config Hydra's current one when a multirun starts.

    Hydra sets HydraConfig only when a job starts, but the sweeper and the launchers resolve
    `hydra.sweep.dir` before the first job; the default one interpolates `paths.log_dir`, whose
    root is `${hydra:runtime.cwd}`, which reads HydraConfig. Each job sets its own config over
    this one and Hydra puts this one back after it, so the sweep's own files (multirun.yaml,
    the summary, Optuna's results) land in the same dir as the jobs.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: object) -> None:
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().set_config(config)


def check_ddp_in_sweep(cfg: DictConfig) -> None:
    """Lightning's DDP re-runs the command line in each extra process; in a local multirun that
    command is the whole sweep. SLURM starts one task per device itself, so DDP works there."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from xent.errors import ConfigError

    strategy = str(cfg.trainer.get("strategy", ""))
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if strategy.startswith("ddp") and multirun and "SLURM_JOB_ID" not in os.environ:
        raise ConfigError(
            "trainer=ddp in a local multirun would start the whole sweep again in every DDP "
            "process: run DDP jobs one at a time, or sweep with hydra/launcher=slurm "
            "(hydra.launcher.tasks_per_node = trainer.devices)"
        )


def check_launcher(argv: list[str]) -> None:
    """A SLURM sweep needs `sbatch`: say so before anything is submitted or written."""
    import shutil

    from xent.errors import ConfigError

    if "hydra/launcher=slurm" in argv and shutil.which("sbatch") is None:
        raise ConfigError(
            "hydra/launcher=slurm needs SLURM's sbatch on PATH, and there is none here: run "
            "from a cluster's login node, or use hydra/launcher=local to run the jobs here"
        )


def check_group_values(argv: list[str]) -> None:
    """`teacher=null` picks no option of a group: Hydra rejects it with a ValueError that names
    neither the group nor what would do; say both. (`~teacher` is how a group is dropped.)"""
    from xent.errors import ConfigError

    for arg in argv:
        key, _, value = arg.partition("=")
        if arg.startswith("-") or key.startswith("~") or value != "null":
            continue
        group = key.lstrip("+")
        options = group_options(group, conf_dirs_of(argv))
        if options:
            raise ConfigError(
                f"{group}=null: {group} is a config group; pick an option "
                f"({', '.join(options)}) or drop it with ~{group}"
            )


def route_optuna_logs(argv: list[str]) -> None:
    """Optuna logs to stderr through a handler of its own, in colour; its lines would break the
    rule that stderr holds only the one-line errors. Send them through Hydra's logging instead
    (the console's stdout and the sweep's log). Only for an Optuna sweep: importing optuna
    costs a second that `--help` should not pay."""
    if not any("hparams_search=" in arg or "sweeper=optuna" in arg for arg in argv):
        return
    import optuna

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()


def _is_value_override(override: str, dirs: tuple[Path, ...] = (CONF_DIR,)) -> bool:
    """`a.b=1` or `seed=1` set values; `loss=gce`, `+experiment=x` pick config files (of the
    package's conf or of a user's folder on `hydra.searchpath`, as `dirs` lists them)."""
    key = override.split("=", 1)[0].lstrip("~+")
    if key.startswith("hydra."):
        return False  # hydra.searchpath etc. shape composition itself
    if "." in key:
        return True
    return not any((folder / key).is_dir() for folder in dirs) and key != "hydra"


def one_line(err: BaseException) -> str:
    """Hydra's multi-line composition errors, flattened to the line a user needs."""
    from hydra.errors import MissingConfigException

    if isinstance(err, MissingConfigException) and err.options is not None:
        # hydra/launcher/nope: the group is all but the last part
        group, _, bad = (err.missing_cfg_file or "").rpartition("/")
        if bad.startswith("for_"):  # a group picked per data set: `<group>/for_<data>`
            per_data = (o for o in err.options if o.startswith("for_"))  # not a task's own
            valid = ", ".join(sorted(o.removeprefix("for_") for o in per_data))
            data = bad.removeprefix("for_")
            return f"data={data} has no {group} option of its own; valid: data={valid}"
        valid = ", ".join(sorted(err.options)) or f"none found for group '{group}'"
        return f"{group}={bad} is not an option; valid: {valid}"
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return (
        _unknown_appended_option(" ".join(lines[:3]))
        or _unselected_key(first)
        or (" ".join(lines[:3]) if lines else type(err).__name__)
    )


def _unknown_appended_option(line: str) -> str | None:
    """`dco_loss=nope` for a group the root defaults list leaves out (dco_loss, lm_loss, base):
    Hydra suggests `+dco_loss=nope`, which would fail next; list the group's options instead.
    A valid option keeps Hydra's own line (append it with +)."""
    from xent.runner.command_line import config_groups, group_options

    pattern = r"Could not override '([^']+)'\. No match in the defaults list.*\+\1=(\S+)"
    match = re.match(pattern, line)
    if not match or match.group(1) not in config_groups():
        return None
    group, bad = match.groups()
    options = group_options(group)
    if bad in options:
        return None
    return f"{group}={bad} is not an option; valid: {', '.join(options)}"


def _unselected_key(line: str) -> str | None:
    """Hydra's `Could not override 'lm.head'` for a key under a node that only some options add
    (task=lm adds `lm`): say which, instead of suggesting `+lm.head`, which would run the
    default task with a stray key."""
    from xent.runner.command_line import config_groups, global_key_sources, root_keys

    match = re.match(r"Could not override '(([^'.]+)[^']*)'", line)
    if not match or match.group(2) in config_groups() | root_keys():
        return None  # `optim.lrr`: a typo under a node every config has; Hydra's line says it
    sources = global_key_sources(match.group(2))
    if not sources:
        return None
    groups: dict[str, list[str]] = {}
    for source in sources:
        group, _, option = source.partition("=")
        groups.setdefault(group, []).append(option)
    where = " or ".join(
        f"{group}={options[0]}" if len(options) == 1 else f"a {group} option ({', '.join(options)})"
        for group, options in groups.items()
    )
    return (
        f"{match.group(1)} is not a key of this config ('{match.group(2)}' comes with {where}): "
        "check its spelling, or select that option"
    )


def main() -> None:
    """Entry point of `xent-run`; exit 2 for bad input, 1 for a run that failed."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from xent.errors import XentError

    global _show_tracebacks
    user_wants_traceback = _show_tracebacks = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let exceptions reach us instead of Hydra's printer
    argv = sys.argv[1:] = with_task_defaults(sys.argv[1:])
    try:
        check_overrides(argv)
        check_launcher(argv)
        check_group_values(argv)
        route_optuna_logs(argv)
        if HELP_FLAGS & set(argv):
            share_group_listing_repository()
        # A DDP child process (Lightning re-runs this command with LOCAL_RANK >= 1) must not
        # preflight again: that would set rank 0's fresh run dir aside as an "earlier run".
        if _is_plain_run(argv) and os.environ.get("LOCAL_RANK", "0") == "0":
            preflight_single_run(argv)
        hydra_app()
    except (XentError, HydraException, OmegaConfBaseException) as err:
        if user_wants_traceback:
            raise
        _job_failures.append(err)
    except OSError as err:
        # Hydra's own writes (the run dir, .hydra/, its log) failing: a full or unwritable disk.
        if user_wants_traceback:
            raise
        _job_failures.append(RunFailed(_run_dir, f"{type(err).__name__}: {err}"))
    except KeyboardInterrupt as err:  # Ctrl-C: one line with the way on, exit 130
        from xent.runner.rundir import EXIT_INTERRUPTED, interrupted_line

        print(interrupted_line(err), file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception:
        # A sweeper that gives up because its jobs failed (Optuna with no completed trial):
        # the jobs' own one-line reasons below say why; anything else is a bug, shown whole.
        if user_wants_traceback or not _job_failures:
            raise
    from xent.runner import sweep

    _job_failures.extend(relayed_failures)  # jobs of hydra/launcher=cores's worker processes
    _job_failures.extend(XentError(error) for error in sweep.summary_errors)  # a bad headline
    if sweep.failed_job_lines and not _job_failures:  # jobs that failed in other processes
        for line in dict.fromkeys(line for line, _ in sweep.failed_job_lines):
            print(line, file=sys.stderr)
        bad_input = all(bad for _, bad in sweep.failed_job_lines)
        sys.exit(EXIT_BAD_INPUT if bad_input else EXIT_RUN_FAILED)
    if sweep.failed_jobs and not _job_failures:  # failed without saying why (killed, ...)
        print(
            f"xent-run: {sweep.failed_jobs} job(s) of the sweep failed; see summary.md and "
            "their metrics.json / error.log",
            file=sys.stderr,
        )
        sys.exit(EXIT_RUN_FAILED)
    if _job_failures:
        lines = [failure_line(err) for err in _job_failures]
        for line in dict.fromkeys(lines):  # one line per distinct reason
            print(line, file=sys.stderr)
        bad_input = all(is_bad_input(err) for err in _job_failures)
        sys.exit(EXIT_BAD_INPUT if bad_input else EXIT_RUN_FAILED)


if __name__ == "__main__":
    main()
