"""How every Trainer of xent writes and reads checkpoints: atomically, and as data only.

Lightning 2.6's own `TorchCheckpointIO` writes through an fsspec transaction whose temp file is
made by `tempfile.mkstemp()` in the system temp dir, then `shutil.move`d: where /tmp is another
filesystem that move is a copy, so a kill mid-copy leaves half a last.ckpt, and nothing is
fsynced. Its loads pass `weights_only=None`, which torch turns into True unless the
environment sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD; here it is True whatever the environment.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class CheckpointLoadError(Exception):
    """A checkpoint file that was not loaded. `problem` says why without the path, for callers
    that name the config key which pointed at it (`teacher.ckpt=PATH: <problem>`)."""

    def __init__(self, message: str, problem: str):
        super().__init__(message)
        self.problem = problem


class UnsafeCheckpointError(CheckpointLoadError, pickle.UnpicklingError):
    """A checkpoint holding something other than tensors and plain containers (a pickle that
    would import or call code when loaded): refused, nothing of it is executed."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(
            f"{path} is not a weights-only checkpoint; refused to load it ({reason})",
            f"not a weights-only checkpoint, refused ({reason})",
        )


class CorruptCheckpointError(CheckpointLoadError, ValueError):
    """A checkpoint file that is not whole: cut short by a copy, download or save that stopped,
    or damaged. Not a security refusal: saying "unsafe" would send the user the wrong way."""

    def __init__(self, path: str | os.PathLike, size: int):
        problem = f"corrupt or truncated ({size:,} bytes), not a whole checkpoint"
        super().__init__(
            f"{path} is {problem}; save or copy it again", f"{problem}; save or copy it again"
        )


# The first bytes of a zip archive: torch.save's format since torch 1.6.
_ZIP_MAGIC = b"PK\x03\x04"


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
    """torch.load with weights_only=True; a refused pickle or a damaged file is one line that
    names the file and which of the two it is."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        if _is_damaged(path, err):
            raise CorruptCheckpointError(path, Path(path).stat().st_size) from None
        if isinstance(err, pickle.UnpicklingError):
            raise UnsafeCheckpointError(path, _refusal_reason(err)) from None
        raise


def _is_damaged(path: str | os.PathLike, err: Exception) -> bool:
    """Whether `err` comes from the file not being whole: an empty file, a zip-format checkpoint
    whose archive does not check out (its index sits at the end, so any cut loses it), or a
    legacy pickle stream that fails other than by the weights-only refusal."""
    if isinstance(err, OSError) and err.errno != errno.EINVAL:
        return False  # unreadable (permissions, ...), not damaged; EINVAL is torch's zip reader
    with open(path, "rb") as handle:
        head = handle.read(len(_ZIP_MAGIC))
    if head == _ZIP_MAGIC:
        try:
            with zipfile.ZipFile(path) as archive:
                return archive.testzip() is not None
        except (zipfile.BadZipFile, OSError, EOFError):
            return True
    if _ZIP_MAGIC.startswith(head):
        return True  # empty, or cut within the zip's first bytes
    return not isinstance(err, pickle.UnpicklingError)


def _refusal_reason(err: pickle.UnpicklingError) -> str:
    """What the weights-only unpickler refused, from torch's long message."""
    text = " ".join(str(err).split())
    found = re.search(r"[Uu]nsupported (?:global: )?GLOBAL (\S+)", text)
    detail = re.search(r"WeightsUnpickler error: ([^.]*)", text)
    if found:
        return f"it would import {found.group(1)}"
    return detail.group(1) if detail else text[:120]


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
