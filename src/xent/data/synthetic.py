"""Seeded random uint8 images of any shape, in memory: CIFAR's sizes without a download.

The benchmarks (scripts/bench_*.py) time the real data and training path on it; the pixels are
noise, so nothing can be learnt from them.
"""

from __future__ import annotations

import torch

from xent.checks import integer
from xent.data.base import InMemoryImageDataModule, Split
from xent.errors import ConfigError


def random_split(n: int, shape: tuple[int, ...], num_classes: int, seed: int) -> Split:
    """`n` uniform uint8 images of `shape` (C, H, W) and labels in which every class occurs
    (when n >= num_classes), all from `seed` alone."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=gen)
    # A shuffled round-robin rather than independent draws: the data module checks that the
    # highest label is num_classes - 1, which a small split drawn at random could miss.
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=gen)]
    return Split(images, labels)


class SyntheticImageDataModule(InMemoryImageDataModule):
    """`train_size`/`val_size`/`test_size` random images, decided by `data_seed` only.

    Each split has its own seed (derived from `data_seed`), so resizing one split leaves the
    others' images unchanged; the run seed varies only init, batch order and augmentation.
    """

    name = "synthetic"

    def __init__(
        self,
        train_size: int = 50_000,
        val_size: int = 10_000,
        test_size: int = 10_000,
        data_seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        sizes = {"train_size": train_size, "val_size": val_size, "test_size": test_size}
        for key, n in sizes.items():
            integer(f"data.{key}", n, at_least=1, what="a positive integer")
        if train_size < self.num_classes:
            raise ConfigError(
                f"data.train_size={train_size} must be at least data.num_classes={self.num_classes}"
            )
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.data_seed = data_seed

    def load_splits(self) -> dict[str, Split]:
        shape = (self.in_channels, self.image_size, self.image_size)
        return {
            name: random_split(n, shape, self.num_classes, self.data_seed * 1_000_003 + i)
            for i, (name, n) in enumerate(self.sizes.items())
        }
