"""A fresh sweep into a sweep dir that holds an earlier one sets the earlier one aside first.

`ArchiveEarlierSweep` is a Hydra callback (`hydra.callbacks.archive_earlier_sweep` in
`conf/hydra/default.yaml`). Hydra calls `on_multirun_start` in the launching process before the
sweeper or the launcher writes anything (multirun.yaml, the jobs' .hydra/, .submitit/), whatever
the launcher or sweeper: the one moment the earlier sweep's files are still all its own.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from xent.errors import EXIT_BAD_INPUT, EXIT_RUN_FAILED, XentError
from xent.runner.rundir import (
    LAST_CKPT,
    RUN_ARTIFACTS,
    archive_entries,
    check_run_dir_writable,
    finished_run,
    resume_mode,
)

ARCHIVE = "archive"
# What a sweep writes into its sweep dir itself, next to its job dirs.
# (Named one by one: a sweep dir may be a folder of the user's, whose other files stay.)
SWEEP_FILES = (
    "multirun.yaml",
    ".submitit",
    "optimization_results.yaml",
    "summary.csv",
    "summary.md",
    "summary.png",
    "verdicts.json",  # a claim's verdicts (xent.runner.report.report_claim)
    "verdicts.png",
)


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The folders of `sweep_dir` (archive/ aside) where a job left files: one level down, as
    Hydra numbers them and as `xent.runner.report.collect` reads them. Deeper folders are not looked
    at, so a sweep dir such as `.` never takes a project's other run dirs for its jobs."""
    if not sweep_dir.is_dir():
        return []
    return sorted(
        child
        for child in sweep_dir.iterdir()
        if child.is_dir()
        and child.name != ARCHIVE
        and any((child / name).exists() for name in RUN_ARTIFACTS)
    )


def earlier_sweep_entries(sweep_dir: Path) -> list[str]:
    """The names in `sweep_dir` an earlier sweep left: its own files first (multirun.yaml's
    time stamps the archive), then its job dirs. Anything else in the dir stays where it is."""
    names = [name for name in SWEEP_FILES if (sweep_dir / name).exists()]
    return names + [job.name for job in job_dirs(sweep_dir)]


def sweep_starts_fresh(cfg: DictConfig, sweep_dir: Path) -> bool:
    """Whether the jobs start from scratch, as `resume_plan` decides per job: resume=false or a
    ckpt_path does; resume=true continues; resume=auto does where no job dir holds a
    checkpoints/last.ckpt or a finished run (there is nothing to resume or to keep)."""
    mode = resume_mode(cfg.get("resume"))
    if mode == "false" or cfg.get("ckpt_path"):
        return True
    if mode == "true":
        return False
    return not any((job / LAST_CKPT).is_file() or finished_run(job) for job in job_dirs(sweep_dir))


def starts_inside(ckpt_path: Any, sweep_dir: Path) -> bool:
    """A ckpt_path inside the sweep dir: moving the earlier sweep would move it away too."""
    return bool(ckpt_path) and Path(str(ckpt_path)).resolve().is_relative_to(sweep_dir.resolve())


def archive_previous_sweep(sweep_dir: Path) -> Path | None:
    """Move an earlier sweep's files into sweep_dir/archive/<stamp>/; None if there are none."""
    names = earlier_sweep_entries(sweep_dir)
    return archive_entries(sweep_dir, names) if names else None


class ArchiveEarlierSweep(Callback):
    """Before a fresh multirun writes into its sweep dir, move an earlier sweep there to
    archive/<stamp>/ with one notice line on stdout; a resumed sweep finds its dir as it was.
    Listed after `sweep_config`, which makes `${hydra:...}` in the sweep dir resolvable."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra turns an Exception raised by a callback into a warning and sweeps on: a sweep
        # dir that cannot be written, or an archive that fails, ends the command here instead.
        try:
            archive_before_sweep(config)
        except XentError as err:
            stop(f"xent-run: error: {err}", EXIT_BAD_INPUT)
        except OSError as err:
            stop(f"xent-run: run failed: cannot archive the earlier sweep: {err}", EXIT_RUN_FAILED)


def archive_before_sweep(config: DictConfig) -> None:
    """Check the sweep dir takes files (ConfigError, before anything moves), then archive an
    earlier sweep there unless this one resumes it or starts from a checkpoint inside it."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    check_run_dir_writable(sweep_dir, key="hydra.sweep.dir")
    resumes = not sweep_starts_fresh(config, sweep_dir)
    if resumes or starts_inside(config.get("ckpt_path"), sweep_dir):
        return
    moved = archive_previous_sweep(sweep_dir)
    if moved:
        # stdout: a notice, not an error (stderr carries only the one-line errors)
        print(f"xent-run: {sweep_dir} held an earlier sweep; moved it to {moved}", flush=True)


def stop(line: str, code: int) -> NoReturn:
    """End `xent-run` with its one stderr line: SystemExit passes through Hydra's callback
    runner and the CLI's error handling, which catch Exception only."""
    print(line, file=sys.stderr, flush=True)
    raise SystemExit(code)
