"""How every Trainer of xent writes and reads checkpoints: atomically, and as data only.

Lightning 2.6's own `TorchCheckpointIO` writes through an fsspec transaction whose temp file is
made by `tempfile.mkstemp()` in the system temp dir, then `shutil.move`d: where /tmp is another
filesystem that move is a copy, so a kill mid-copy leaves half a last.ckpt, and nothing is
fsynced. Its loads pass `weights_only=None`, which torch turns into True unless the
environment sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD; here it is True whatever the environment.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holding something other than tensors and plain containers (a pickle that
    would import or call code when loaded): refused, nothing of it is executed."""


def _is_remote(path: str | os.PathLike) -> bool:
    return "://" in str(path)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable; some filesystems cannot open a directory."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to a temp file next to `path`, fsync, rename: `path` is always either the
    previous complete file or the new complete one, whatever kills the process when."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide checkpoints from a group's readers
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def load_weights_only(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """torch.load with weights_only=True; a refused pickle is one line naming what it held."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        text = " ".join(str(err).split())
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        detail = re.search(r"WeightsUnpickler error: ([^.]*)", text)
        reason = (
            f"it would import {found.group(1)}"
            if found
            else (detail.group(1) if detail else text[:120])
        )
        raise UnsafeCheckpointError(
            f"{path} is not a weights-only checkpoint; refused to load it ({reason})"
        ) from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's CheckpointIO with atomic local saves and weights-only loads (resume,
    `ckpt_path=`, the best-checkpoint test)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or _is_remote(path):
            super().save_checkpoint(checkpoint, path, storage_options)  # fsspec's transaction
            return
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(
        self,
        path: Any,
        map_location: Callable | Any = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """Always weights_only=True: a caller's False (or the environment's) is not honoured."""
        if _is_remote(path):
            return super().load_checkpoint(path, map_location, weights_only=True)
        if not Path(path).is_file():
            raise FileNotFoundError(f"Checkpoint file not found: {path}")
        return load_weights_only(path, map_location)
