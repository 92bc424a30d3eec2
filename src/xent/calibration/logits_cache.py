"""The source's logits on the calibration split and the shifted test sets, cached so that every
calibrator of one source computes them once (docs/methods/calibrate.md §7.4).

The file is `paths.teachers/calibrate_logits/<hash>.pt`, the hash of everything the logits
depend on: the source weights' bytes, the data (less where files live and loader settings), the
shifted sets' spec, and whether the views' logits are in (calibrator=ca). The test split's
logits are not cached: the test loop collects them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from xent.calibration.evaluate import Logits
from xent.calibration.shifts import ShiftSpec
from xent.calibration.source_run import DATA_KEYS_IGNORED
from xent.checkpoint_io import atomic_torch_save

CACHE_DIR = "calibrate_logits"
VERSION = 1  # bump when what the logits are computed from changes (views, normalisation)


def logits_cache_file(
    teachers: str | Path, source: Path, data: DictConfig, spec: ShiftSpec | None, views: bool
) -> Path:
    """Where the logits of this source on this data (and these shifted sets) are cached."""
    plain = OmegaConf.to_container(data, resolve=True)
    identity = {
        "version": VERSION,
        "source": hashlib.sha256(Path(source).read_bytes()).hexdigest(),
        "data": {k: v for k, v in plain.items() if k not in DATA_KEYS_IGNORED},
        "shifts": None if spec is None else {**asdict(spec), "root": None},
        "views": views,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    return Path(teachers) / CACHE_DIR / f"{digest.hexdigest()[:16]}.pt"


def load_logits(path: Path) -> tuple[Logits, dict[str, Logits]] | None:
    """The cached calibration split and shifted sets, or None when there is no cache yet."""
    if not path.is_file():
        return None
    record: dict[str, Any] = torch.load(path, weights_only=True)
    shifted = {name: Logits(**split) for name, split in record["shifts"].items()}
    return Logits(**record["calib"]), shifted


def save_logits(path: Path, calib: Logits, shifted: dict[str, Logits]) -> None:
    """Write the cache atomically: a run that dies midway leaves none or a whole one."""
    record = {"calib": calib.__dict__, "shifts": {n: s.__dict__ for n, s in shifted.items()}}
    atomic_torch_save(record, path)
