"""The CIFAR-10-C on-disk layout: written here, validated on every read.

`<root>/<corruption>.npy` is uint8 (5·N, 32, 32, 3), HWC RGB, rows (s−1)·N : s·N for severity s,
and `<root>/labels.npy` holds the N test labels repeated 5 times (the Zenodo release's format),
so a downloaded CIFAR-10-C and a locally generated one read the same way. Files are written
under a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xent.checks import integer, is_integer
from xent.corrupt.corruptions import (
    CORRUPTIONS,
    SEVERITIES,
    apply,
    check_corruption,
    check_severity,
    corruption_seed,
)
from xent.errors import ConfigError, DataNotFoundError

IMAGE_SHAPE = (32, 32, 3)
LABELS = "labels.npy"
META = "meta.json"
DIR_NAMES = {
    "cifar10": "CIFAR-10-C",
    "cifar100": "CIFAR-100-C",
    "digits32": "DIGITS32-C-seed{seed}",
    "fashion_mnist32": "FASHION_MNIST32-C-seed{seed}",
}


def layout_dir(data_dir: str | os.PathLike, source: str, seed: int = 0) -> Path:
    """Where the benchmark for `source` lives under a data dir (digits32: one dir per seed)."""
    if source not in DIR_NAMES:
        raise ConfigError(f"source={source!r} is not one of {', '.join(DIR_NAMES)}")
    return Path(data_dir) / DIR_NAMES[source].format(seed=seed)


def _make_hint(root: Path) -> str:
    """The xent-corrupt command that would create `root`."""
    name = root.name
    if name.startswith("DIGITS32-C-seed") and name[len("DIGITS32-C-seed") :].isdigit():
        return (
            f"xent-corrupt --source digits32 --seed {name[len('DIGITS32-C-seed') :]} --out {root}"
        )
    source = next((s for s, d in DIR_NAMES.items() if d == name), "{cifar10,cifar100,digits32}")
    return f"xent-corrupt --source {source} --root {root.parent} --out {root}"


def images_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """sha256 of the clean images and labels a layout was generated from (for cache checks)."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(np.asarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _save_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
    os.replace(tmp, path)


def write_corrupted(
    root: str | os.PathLike,
    images: np.ndarray,
    labels: np.ndarray,
    corruptions: Sequence[str] = CORRUPTIONS,
    seed: int = 0,
    chunk_size: int = 1000,
) -> Path:
    """Corrupt clean uint8 images (N, 32, 32, 3) at all five severities into `root`.

    All five severities are always written: the layout addresses severity s by row block, so a
    file with fewer blocks would be unreadable. Chunk k of severity s of a corruption uses
    `apply(c, images[k·chunk_size : ...], s, seed=corruption_seed(seed, c, s, k))`, so any
    subset of corruptions reproduces the same bytes. Also writes `labels.npy` and `meta.json`.
    """
    root = Path(root)
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPE or images.ndim != 4:
        raise ConfigError(
            f"write_corrupted: images are {images.dtype} {tuple(images.shape)}; "
            f"need uint8 (N, 32, 32, 3)"
        )
    n = len(images)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer) or n == 0:
        raise ConfigError(
            f"write_corrupted: labels are {labels.dtype} {tuple(labels.shape)}; need {n} ints"
        )
    names = [check_corruption(c, "corruptions") for c in corruptions]
    integer("chunk_size", chunk_size, at_least=1, what="a positive integer")
    root.mkdir(parents=True, exist_ok=True)
    label_dtype = np.uint8 if labels.min() >= 0 and labels.max() <= 255 else np.int64
    _save_atomic(root / LABELS, np.tile(labels.astype(label_dtype), len(SEVERITIES)))
    for name in names:
        final = root / f"{name}.npy"
        tmp = root / f".{name}.npy.tmp-{os.getpid()}"
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(5 * n, *IMAGE_SHAPE))
        for severity in SEVERITIES:
            for k, start in enumerate(range(0, n, chunk_size)):
                block = images[start : start + chunk_size]
                row = (severity - 1) * n + start
                seed_k = corruption_seed(seed, name, severity, k)
                out[row : row + len(block)] = apply(name, block, severity, seed=seed_k)
        out.flush()
        del out
        os.replace(tmp, final)
    meta = {
        "generator": "xent.corrupt",
        "seed": int(seed),
        "n_per_severity": n,
        "chunk_size": chunk_size,
        "corruptions": names,
        "source_sha256": images_digest(images, labels),
    }
    tmp = root / f".{META}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, root / META)
    return root


def read_meta(root: str | os.PathLike) -> dict | None:
    """`meta.json` of a generated layout, or None (a downloaded CIFAR-10-C has none)."""
    path = Path(root) / META
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: unreadable ({err}); delete it or the whole folder") from err


def _load(path: Path, hint_root: Path) -> np.ndarray:
    if not path.is_file():
        raise DataNotFoundError(f"{path} not found; make it with: {_make_hint(hint_root)}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: not a readable .npy file ({err})") from err


def _check_images(path: Path, images: np.ndarray) -> int:
    """Rows per severity N of a validated corruption file."""
    if images.dtype != np.uint8:
        raise ConfigError(f"{path}: dtype {images.dtype}, but the layout needs uint8")
    if images.ndim != 4 or tuple(images.shape[1:]) != IMAGE_SHAPE:
        raise ConfigError(
            f"{path}: shape {tuple(images.shape)}, but the layout needs (5*N, 32, 32, 3)"
        )
    rows = images.shape[0]
    if rows == 0 or rows % len(SEVERITIES):
        raise ConfigError(
            f"{path}: {rows} rows is not a positive multiple of 5 (one block of N per severity)"
        )
    return rows // len(SEVERITIES)


def _check_labels(path: Path, labels: np.ndarray, rows: int) -> None:
    if not np.issubdtype(labels.dtype, np.integer) or labels.ndim != 1:
        raise ConfigError(
            f"{path}: dtype {labels.dtype} shape {tuple(labels.shape)}, but labels are 1-D ints"
        )
    if len(labels) not in (rows, rows // len(SEVERITIES)):
        raise ConfigError(
            f"{path}: {len(labels)} labels, but the images have {rows} rows; "
            f"need {rows} (or {rows // len(SEVERITIES)})"
        )


def check_layout(root: str | os.PathLike, corruptions: Sequence[str] = CORRUPTIONS) -> int:
    """Validate the files of `corruptions` and the labels; return N (images per severity)."""
    root = Path(root)
    sizes = {}
    for name in corruptions:
        path = root / f"{check_corruption(name, 'corruptions')}.npy"
        sizes[path] = _check_images(path, _load(path, root))
    if len(set(sizes.values())) > 1:
        found = ", ".join(f"{p.name}: {n}" for p, n in sizes.items())
        raise ConfigError(f"{root}: corruption files differ in images per severity ({found})")
    n = next(iter(sizes.values()), None)
    labels_path = root / LABELS
    labels = _load(labels_path, root)
    if n is None:
        n = len(labels) // len(SEVERITIES)
    _check_labels(labels_path, labels, len(SEVERITIES) * n)
    return n


def read_corruption(
    root: str | os.PathLike, corruption: str, severity: int, n_per_severity: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 32, 32, 3) and labels int64 (N,) of one corruption at one severity.

    `n_per_severity` keeps the first n of that severity's block (the reference's `n_examples`).
    """
    root = Path(root)
    name = check_corruption(corruption)
    severity = check_severity(severity)
    path = root / f"{name}.npy"
    images = _load(path, root)
    n = _check_images(path, images)
    labels_path = root / LABELS
    labels = _load(labels_path, root)
    _check_labels(labels_path, labels, len(images))
    if n_per_severity is not None:
        if not is_integer(n_per_severity):
            raise ConfigError(f"n_per_severity={n_per_severity!r} must be an integer in 1..{n}")
        if not 1 <= n_per_severity <= n:
            raise ConfigError(f"n_per_severity={n_per_severity} must be in 1..{n} for {path}")
        take = int(n_per_severity)
    else:
        take = n
    start = (severity - 1) * n
    block = np.array(images[start : start + take])
    label_block = labels[start : start + take] if len(labels) == len(images) else labels[:take]
    return block, np.array(label_block, dtype=np.int64)
