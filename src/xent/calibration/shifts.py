"""The shifted test sets of task=calibrate: the run's clean test split corrupted like
CIFAR-10-C (docs/methods/calibrate.md §7.3), read through the corruption stream task=tta uses.

Only 32x32 RGB data has a stream: digits32 -> digits32_c, fashion_mnist32 -> fashion_mnist32_c
(generated from the run's own test split at first use and cached under `paths.data_dir`, shared
with task=tta), cifar10 / cifar100 -> CIFAR-10-C / CIFAR-100-C (made by `xent-corrupt`). Every
corruption is one shifted set, at one severity (5 by default: the strongest shift, task=tta's
continual setting).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from xent.checks import flag, integer
from xent.corrupt.corruptions import CORRUPTIONS, check_severity
from xent.data.base import InMemoryImageDataModule
from xent.data.corrupted import (
    GENERATED,
    CorruptedStreamDataModule,
    continual_schedule,
    domain_names,
)
from xent.errors import XentError

# The clean data modules whose 32x32 RGB test split has a generated corruption stream.
GENERATED_VARIANTS = {
    "xent.data.digits.DigitsDataModule": "digits32",
    "xent.data.fashion_mnist.FashionMNISTDataModule": "fashion_mnist32",
}
CIFAR_TARGET = "xent.data.cifar.CIFARDataModule"
SHIFT_BATCH = 256


@dataclass(frozen=True)
class ShiftSpec:
    """Which corruption stream a run is tested on: its variant, where it is cached, its
    severity, and how many samples of each shifted set (None: all)."""

    variant: str
    root: str
    severity: int
    samples: int | None = None

    @property
    def names(self) -> list[str]:
        """The shifted sets' names, in stream order: one per corruption."""
        return domain_names(continual_schedule(CORRUPTIONS, self.severity))


def stream_variant(data: DictConfig) -> str | None:
    """The corruption stream of the run's data, or None where it has none (not 32x32 RGB, or
    not digits, Fashion-MNIST or CIFAR)."""
    if (data.get("in_channels"), data.get("image_size")) != (3, 32):
        return None
    target = str(data.get("_target_", ""))
    if target == CIFAR_TARGET:
        return str(data.get("variant"))
    return GENERATED_VARIANTS.get(target)


def shift_spec(task: DictConfig, data: DictConfig, root: str) -> ShiftSpec | None:
    """The run's shifted sets: None with task.shifts=false or on data without a stream."""
    if not flag("task.shifts", task.get("shifts", True)):
        return None
    severity = check_severity(task.get("shift_severity", 5), "task.shift_severity")
    samples = integer("task.shift_samples", task.get("shift_samples"), at_least=1, optional=True)
    variant = stream_variant(data)
    return None if variant is None else ShiftSpec(variant, root, severity, samples)


def _stream(spec: ShiftSpec, clean: InMemoryImageDataModule) -> CorruptedStreamDataModule:
    return CorruptedStreamDataModule(
        spec.variant,
        spec.root,
        severity=spec.severity,
        batch_size=SHIFT_BATCH,
        n_per_domain=spec.samples,
        clean=clean,
    )


def _set_up(stream: CorruptedStreamDataModule) -> CorruptedStreamDataModule:
    """The stream set up (a generated one made from the clean test split, once, cached), or one
    line that names task.shifts=false as the way out: its files are missing or were made from
    another test split."""
    try:
        stream.prepare_data()
        stream.setup("test")
    except XentError as err:  # a ConfigError, or a DataNotFoundError naming the way to make it
        raise type(err)(f"{err} (the shifted test sets; task.shifts=false skips them)") from err
    return stream


def check_shift_stream(spec: ShiftSpec, clean: InMemoryImageDataModule) -> None:
    """The preflight's part: refuse missing CIFAR-C files, or a cached stream made from another
    test split, before anything is written. A generated stream not cached yet is made at the
    end of the test loop instead (seconds to minutes), so that a preflight stays cheap."""
    stream = _stream(spec, clean)
    if spec.variant in GENERATED and not stream.corrupted_root.exists():
        return
    _set_up(stream)


def shift_stream(spec: ShiftSpec, clean: InMemoryImageDataModule) -> CorruptedStreamDataModule:
    """The stream of `spec` over the run's own clean data module, set up."""
    return _set_up(_stream(spec, clean))


def shifted_batches(
    stream: CorruptedStreamDataModule,
) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """(shift name, images normalised as the clean split's, labels), batch by batch."""
    mean = stream.clean_module.mean.view(1, -1, 1, 1)
    std = stream.clean_module.std.view(1, -1, 1, 1)
    names = stream.domain_names
    for x, y, domain in stream.test_dataloader():
        yield names[int(domain[0])], (x - mean) / std, y


def collect_by_shift(
    stream: CorruptedStreamDataModule, per_batch: Callable[[torch.Tensor, torch.Tensor], tuple]
) -> dict[str, list[tuple]]:
    """`per_batch(x, y)` of every batch, grouped by shift, in stream order."""
    parts: dict[str, list[tuple]] = {name: [] for name in stream.domain_names}
    for name, x, y in shifted_batches(stream):
        parts[name].append(per_batch(x, y))
    return parts
