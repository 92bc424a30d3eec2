"""The source run task=calibrate calibrates: a finished task=classify run dir on the run's data.

Refused in one line, before anything is written (docs/methods/calibrate.md §7): a dir that is not
there or is not a run dir, a run of another task, a run that did not finish, a run trained on
other data than the calibration run's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from xent.errors import ConfigError

CLASSIFY_TARGET = "xent.tasks.classify.ClassifyTask"
# Data keys that change where files live, how fast batches come or their order (a seed's
# shuffle_seed), not the samples of the splits: a source of any seed calibrates on the same data.
DATA_KEYS_IGNORED = (
    "root", "download", "num_workers", "eval_batch_size", "batch_size", "shuffle_seed",
)  # fmt: skip
WANTED = "pass the run dir of a finished task=classify run"


@dataclass(frozen=True)
class SourceRun:
    """A finished classify run: its dir, its resolved config and its last checkpoint."""

    run_dir: Path
    config: DictConfig
    checkpoint: Path


def read_source_run(run_dir: str | Path, data: DictConfig | None = None) -> SourceRun:
    """The run at `run_dir`, checked: a classify run that finished, on `data` when given."""
    path = Path(run_dir).expanduser()
    config_file = path / ".hydra" / "config.yaml"
    if not path.is_dir():
        raise ConfigError(f"source.run_dir={path}: no such directory; {WANTED}")
    if not config_file.is_file():
        raise ConfigError(f"source.run_dir={path}: not a run dir (no .hydra/config.yaml); {WANTED}")
    config = OmegaConf.load(config_file)
    target = str(OmegaConf.select(config, "task._target_", default=""))
    if target != CLASSIFY_TARGET:
        task = target.split(".")[2] if target.count(".") >= 3 else target or "unknown"
        raise ConfigError(f"source.run_dir={path} is a task={task} run; {WANTED}")
    checkpoint = path / "checkpoints" / "last.ckpt"
    status = _status(path)
    if status != "ok" or not checkpoint.is_file():
        why = f"metrics.json says status={status}" if status else "no metrics.json"
        raise ConfigError(
            f"source.run_dir={path}: the run has not finished ({why}); finish it with "
            f"resume=true, or {WANTED}"
        )
    if data is not None:
        _check_same_data(path, config.get("data"), data)
    return SourceRun(path, config, checkpoint)


def _status(path: Path) -> str | None:
    """metrics.json's status, or None when there is no readable metrics.json."""
    try:
        return json.loads((path / "metrics.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def _data_identity(data: Any) -> dict[str, Any]:
    plain = OmegaConf.to_container(data, resolve=True) if isinstance(data, DictConfig) else {}
    return {k: v for k, v in (plain or {}).items() if k not in DATA_KEYS_IGNORED}


def _check_same_data(path: Path, theirs: Any, ours: DictConfig) -> None:
    """The source learned from the data this run calibrates and tests on, or one line naming
    the first key that differs."""
    mine, its = _data_identity(ours), _data_identity(theirs)
    if mine == its:
        return
    key = next(k for k in sorted(set(mine) | set(its)) if mine.get(k) != its.get(k))
    raise ConfigError(
        f"source.run_dir={path} was trained on other data: its data.{key}={its.get(key)}, this "
        f"run's data.{key}={mine.get(key)}; pick the source run's data (data=...) or a source "
        f"run on this data"
    )
