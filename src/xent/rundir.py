"""The run directory contract: metrics.json, checkpoints, and never losing an earlier run."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"
LAST_CKPT = Path("checkpoints") / "last.ckpt"
# What a finished or interrupted run leaves behind; their presence means "a run lived here".
RUN_ARTIFACTS = (METRICS_FILE, "checkpoints", ".hydra", "csv", "tensorboard", "wandb")


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> Path:
    """Write metrics.json atomically (temp file + rename): a reader never sees half a file."""
    run_dir.mkdir(parents=True, exist_ok=True)
    clean = {k: _plain(v) for k, v in metrics.items()}
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".metrics.", suffix=".json")
    target = run_dir / METRICS_FILE
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(clean, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:  # a full disk, a signal: the earlier metrics.json stays, no debris
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _plain(value: Any) -> Any:
    """Tensors and numpy scalars to floats; NaN/inf to null so the file stays valid JSON."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / METRICS_FILE
    return json.loads(path.read_text()) if path.exists() else None


def check_run_dir_writable(run_dir: Path) -> None:
    """The run dir (or the folder it will be made in) must take files: checked before an
    earlier run is set aside, so a path under a file or on a read-only disk fails in one line
    and leaves everything as it was. (os.access, not a test write: nothing is written.)"""
    from xent.errors import ConfigError

    existing = Path(run_dir)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    what = f"hydra.run.dir={run_dir}"
    if not existing.is_dir():
        raise ConfigError(f"{what}: cannot make it, {existing} is a file, not a directory")
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise ConfigError(f"{what}: {existing} is on a read-only file system")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{what}: {existing} is not writable (permission denied)")


def archive_previous_run(run_dir: Path) -> Path | None:
    """Move an earlier run's files into run_dir/archive/<stamp>/ before a fresh run reuses it."""
    present = [name for name in RUN_ARTIFACTS if (run_dir / name).exists()]
    present += [p.name for p in run_dir.glob("*.log")]
    if not present:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime((run_dir / present[0]).stat().st_mtime))
    target = run_dir / "archive" / stamp
    suffix = 1
    while target.exists():
        target = run_dir / "archive" / f"{stamp}-{suffix}"
        suffix += 1
    target.mkdir(parents=True)
    for name in present:
        shutil.move(str(run_dir / name), str(target / name))
    return target


def finished_run(run_dir: Path) -> dict[str, Any] | None:
    """The metrics of a run that already ended ok in `run_dir`, else None: what resume=true
    skips, so rerunning a cut-off sweep into its sweep dir only redoes the unfinished jobs."""
    import json

    path = run_dir / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) and metrics.get("status") == "ok" else None


def resume_checkpoint(run_dir: Path, resume: bool, ckpt_path: str | None) -> str | None:
    """The checkpoint to continue from: an explicit ckpt_path wins, else last.ckpt on resume."""
    if ckpt_path:
        return str(ckpt_path)
    last = run_dir / LAST_CKPT
    if resume and last.exists():
        return str(last)
    return None
