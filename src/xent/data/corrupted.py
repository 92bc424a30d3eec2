"""CIFAR-10/100-C (and digits32 / Fashion-MNIST analogues) as one online test stream for test-time
adaptation.

The stream is the reference framework's (mariodoebler/test-time-adaptation): domains in
schedule order, each domain's samples shuffled by `random.Random(stream_seed)` re-seeded per
domain, batches that never cross a domain boundary, the last batch of a domain kept even if
short. Images come out as float32 in [0, 1], NCHW, untransformed: normalising for a source model
is the task's job (it reads `clean_module.mean` / `.std`). Source (clean train) batches for
prototypes, warm-up and replay come from `source_loader(seed)`.

There is no train or val split: `train_dataloader` / `val_dataloader` are not implemented,
so Lightning never asks for them unless a task does, and then its own error says so.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from xent.checks import integer
from xent.corrupt.corruptions import CORRUPTIONS, check_corruption, check_severity
from xent.corrupt.layout import (
    check_layout,
    images_digest,
    layout_dir,
    read_corruption,
    read_meta,
    write_corrupted,
)
from xent.data.base import InMemoryImageDataModule, Split
from xent.errors import ConfigError

GRADUAL_SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5, 4, 3, 2, 1)
VARIANT_CLASSES = {"cifar10": 10, "cifar100": 100, "digits32": 10, "fashion_mnist32": 10}
# Variants whose corrupted test split is generated here at first use, from the clean module's
# test split: digits (bundled) and Fashion-MNIST (`make data`); CIFAR-C comes from xent-corrupt.
GENERATED = ("digits32", "fashion_mnist32")

Schedule = list[tuple[str, int]]


def continual_schedule(corruptions: Sequence[str], severity: int) -> Schedule:
    """Each corruption once, in order, at one severity (the `continual` setting)."""
    severity = check_severity(severity, "data.severity")
    return [(check_corruption(c, "data.corruptions"), severity) for c in corruptions]


def gradual_schedule(
    corruptions: Sequence[str], severities: Sequence[int] = GRADUAL_SEVERITIES
) -> Schedule:
    """Each corruption at severities 1,2,3,4,5,4,3,2,1 with no reset (the `gradual` setting).

    As in the reference's test_time.py, every domain, the first included, starts and ends at
    severity 1, so the corruption type changes at the lowest severity: 15 x 9 = 135 entries.
    """
    levels = [check_severity(s, "severities") for s in severities]
    return [(check_corruption(c, "data.corruptions"), s) for c in corruptions for s in levels]


def domain_names(schedule: Sequence[tuple[str, int]]) -> list[str]:
    """One label per schedule entry: the corruption name when the whole schedule is at one
    severity (continual: `gaussian_noise`), else `corruption@severity` (gradual:
    `gaussian_noise@3`, repeated for the down ramp). Group by `schedule[d][0]` for
    per-corruption metrics."""
    one_level = len({s for _, s in schedule}) <= 1
    return [c if one_level else f"{c}@{s}" for c, s in schedule]


class _StreamBatches(Dataset):
    """Batch k of the stream: (x float [0,1] NCHW, y int64, domain int64 per sample).

    Holds only the current domain's images, so a gradual CIFAR stream (75 blocks of 10k
    images) never sits in memory at once.
    """

    def __init__(self, read, schedule: Schedule, batches: list[tuple[int, np.ndarray]]):
        self.read, self.schedule, self.batches = read, schedule, batches
        self._key: tuple[str, int] | None = None
        self._data: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int):
        domain, indices = self.batches[k]
        key = self.schedule[domain]
        if key != self._key:
            self._key, self._data = key, self.read(*key)
        images, labels = self._data
        x = torch.from_numpy(images[indices]).permute(0, 3, 1, 2).float().div_(255.0)
        y = torch.from_numpy(labels[indices])
        return x.contiguous(), y, torch.full((len(indices),), domain, dtype=torch.int64)


class _ReshuffledBatches(Sampler):
    """Index batches of a fresh permutation per pass; pass k uses seed·1_000_003 + k."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed, self.passes = n, batch_size, seed, 0

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.passes)
        self.passes += 1
        order = torch.randperm(self.n, generator=gen)
        yield from order.split(self.batch_size)


class _SourceBatches(Dataset):
    def __init__(self, split: Split):
        self.split = split

    def __len__(self) -> int:
        return len(self.split.labels)

    def __getitem__(self, indices: torch.Tensor):
        return self.split.images[indices].float().div_(255.0), self.split.labels[indices]


def _plain(value: Any) -> Any:
    """Hydra hands DictConfig / ListConfig; the modules here want dicts and lists."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        return value
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


class CorruptedStreamDataModule(L.LightningDataModule):
    """The CIFAR-10-C / CIFAR-100-C / digits32-C / fashion_mnist32-C stream and its clean data.

    cifar variants read `<root>/CIFAR-10-C/` or `<root>/CIFAR-100-C/` (the Zenodo layout; make
    it with `xent-corrupt`). `digits32` generates its corrupted test split at the first
    `setup()` (15 corruptions x 5 severities, `generate_seed`) and caches it under
    `<root>/DIGITS32-C-seed<generate_seed>/`, built in a temp dir and renamed into place so
    concurrent runs never see half of it.

    `clean` holds keyword arguments for the clean data module (CIFARDataModule, or
    DigitsDataModule with upsample=4), or is such a module already built. `schedule` lists
    (corruption, severity) domains; a task may replace it (e.g. with `gradual_schedule`) and
    set `stream_seed` before asking for `test_dataloader()`.
    """

    target_kind = "class"

    def __init__(
        self,
        variant: str,
        root: str,
        corruptions: Sequence[str] = CORRUPTIONS,
        severity: int = 5,
        num_classes: int | None = None,
        in_channels: int = 3,
        image_size: int = 32,
        input_shape: Sequence[int] | None = None,
        batch_size: int = 200,
        num_workers: int = 0,
        n_per_domain: int | None = None,
        source_batch_size: int | None = None,
        generate_seed: int = 0,
        clean: Any = None,
        source_train_size: int | None = None,
    ):
        super().__init__()
        # How many clean training images there are: configs of methods that read the source
        # data once (RMT's warm-up and prototypes) interpolate it; checked in setup.
        self.source_train_size = source_train_size
        if variant not in VARIANT_CLASSES:
            raise ConfigError(
                f"data.variant={variant!r} is not one of {', '.join(VARIANT_CLASSES)}"
            )
        want_classes = VARIANT_CLASSES[variant]
        if num_classes is None:
            num_classes = want_classes
        if num_classes != want_classes:
            raise ConfigError(f"data.num_classes={num_classes} but {variant} has {want_classes}")
        if (in_channels, image_size) != (3, 32):
            raise ConfigError(
                f"data.in_channels={in_channels}, data.image_size={image_size}: the corrupted "
                f"layout is 32x32 RGB; use in_channels=3, image_size=32"
            )
        if input_shape is not None and [int(d) for d in input_shape] != [3, 32, 32]:
            raise ConfigError(f"data.input_shape={list(input_shape)} must be [3, 32, 32]")
        for key, value in (("batch_size", batch_size), ("source_batch_size", source_batch_size)):
            integer(f"data.{key}", value, at_least=1, optional=True, what="a positive integer")
        integer("data.num_workers", num_workers, at_least=0)
        integer("data.n_per_domain", n_per_domain, at_least=1, optional=True)
        corruptions = _plain(corruptions)
        if isinstance(corruptions, str):
            raise ConfigError(f"data.corruptions={corruptions!r} must be a list of names")
        corruptions = [str(c) for c in corruptions]
        if not corruptions:
            raise ConfigError(f"data.corruptions is empty; choose from {', '.join(CORRUPTIONS)}")
        self.variant, self.root = variant, Path(root)
        self.name = f"{variant}_c"
        self.num_classes, self.in_channels, self.image_size = num_classes, in_channels, image_size
        self.input_shape = [in_channels, image_size, image_size]
        self.corruptions = corruptions
        self.severity = check_severity(severity, "data.severity")
        self.batch_size, self.num_workers = batch_size, num_workers
        self.n_per_domain, self.source_batch_size = n_per_domain, source_batch_size
        self.generate_seed = int(generate_seed)
        self.schedule: Schedule = continual_schedule(corruptions, self.severity)
        self.stream_seed = 0
        self.clean_module = self._build_clean(_plain(clean))
        self.n_per_severity: int | None = None
        self._ready = False
        self.generated_seconds: float | None = None

    # -- paths and the clean module ---------------------------------------------------------------
    @property
    def corrupted_root(self) -> Path:
        """The folder of the corrupted layout this module reads."""
        return layout_dir(self.root, self.variant, self.generate_seed)

    @property
    def domain_names(self) -> list[str]:
        """Labels of the current schedule's domains (see `domain_names`)."""
        return domain_names(self.schedule)

    def _build_clean(self, clean: Any) -> InMemoryImageDataModule:
        if isinstance(clean, InMemoryImageDataModule):
            return clean
        if clean is not None and not isinstance(clean, Mapping):
            raise ConfigError(f"data.clean={clean!r} must be a mapping of data-module arguments")
        kwargs: dict[str, Any] = {
            "num_classes": self.num_classes,
            "in_channels": 3,
            "image_size": 32,
            "batch_size": self.source_batch_size or self.batch_size,
            **dict(clean or {}),
        }
        try:
            if self.variant == "digits32":
                from xent.data.digits import DigitsDataModule

                return DigitsDataModule(**{"upsample": 4, **kwargs})
            if self.variant == "fashion_mnist32":
                from xent.data.fashion_mnist import FashionMNISTDataModule

                return FashionMNISTDataModule(**{"root": str(self.root), **kwargs})
            from xent.data.cifar import CIFARDataModule

            return CIFARDataModule(**{"variant": self.variant, "root": str(self.root), **kwargs})
        except TypeError as err:
            raise ConfigError(f"data.clean: {err}") from err

    # -- Lightning hooks --------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Fail early, in one line, when a CIFAR-C folder or the clean CIFAR is missing."""
        if self.variant not in GENERATED:
            check_layout(self.corrupted_root, self._scheduled_corruptions())
        self.clean_module.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        self.clean_module.setup(stage)
        n_train = len(self.clean_module.splits["train"].labels)
        if self.source_train_size is not None and self.source_train_size != n_train:
            raise ConfigError(
                f"data.source_train_size={self.source_train_size} but the clean training split "
                f"has {n_train} images"
            )
        if self.variant in GENERATED:
            self._ensure_generated_cache()
        self.n_per_severity = check_layout(self.corrupted_root, self._scheduled_corruptions())
        self._ready = True

    def _scheduled_corruptions(self) -> list[str]:
        return list(dict.fromkeys(c for c, _ in self.schedule))

    def _ensure_generated_cache(self) -> None:
        """Generate the -C layout of a GENERATED variant once; later runs (and rivals in a
        race) reuse it."""
        test = self.clean_module.splits["test"]
        images = test.images.permute(0, 2, 3, 1).contiguous().numpy()
        labels = test.labels.numpy()
        final = self.corrupted_root
        if not final.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
            try:
                start = time.perf_counter()
                write_corrupted(tmp, images, labels, CORRUPTIONS, seed=self.generate_seed)
                self.generated_seconds = time.perf_counter() - start
                try:
                    os.rename(tmp, final)
                except OSError:
                    if not final.exists():  # not a lost race: a real failure
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        meta = read_meta(final)
        if meta is not None and meta.get("source_sha256") != images_digest(images, labels):
            raise ConfigError(
                f"{final} was generated from a different {self.variant} test split than data.clean "
                f"gives; delete it to regenerate, or set data.generate_seed to another value"
            )

    # -- loaders ----------------------------------------------------------------------------------
    def _read(self, corruption: str, severity: int) -> tuple[np.ndarray, np.ndarray]:
        return read_corruption(self.corrupted_root, corruption, severity, self.n_per_severity)

    def stream_batches(self) -> list[tuple[int, np.ndarray]]:
        """(domain index, sample indices) per batch, in stream order; validates the schedule
        (a task may have replaced it) against the files."""
        self.setup()
        for corruption, severity in self.schedule:
            check_corruption(corruption, "schedule")
            check_severity(severity, "schedule")
        self.n_per_severity = check_layout(self.corrupted_root, self._scheduled_corruptions())
        batches = []
        for domain in range(len(self.schedule)):
            order = list(range(self.n_per_severity))
            random.Random(self.stream_seed).shuffle(order)
            if self.n_per_domain is not None:
                order = order[: self.n_per_domain]
            idx = np.asarray(order, dtype=np.int64)
            for start in range(0, len(idx), self.batch_size):
                batches.append((domain, idx[start : start + self.batch_size]))
        return batches

    def test_dataloader(self) -> DataLoader:
        """The whole stream: (x, y, domain) batches in schedule order (see module docstring)."""
        batches = self.stream_batches()
        dataset = _StreamBatches(self._read, list(self.schedule), batches)
        return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=self.num_workers)

    def source_loader(self, seed: int) -> DataLoader:
        """Clean train batches (x float [0,1] NCHW, y), no augmentation, reshuffled each pass."""
        self.setup()
        train = self.clean_module.splits["train"]
        sampler = _ReshuffledBatches(
            len(train.labels), self.source_batch_size or self.batch_size, int(seed)
        )
        return DataLoader(
            _SourceBatches(train), sampler=sampler, batch_size=None, num_workers=self.num_workers
        )
