"""scikit-learn's bundled handwritten digits: real data that needs no download."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xent.data.base import InMemoryImageDataModule, Split
from xent.data.split import stratified_split


class DigitsDataModule(InMemoryImageDataModule):
    """1,797 8x8 grey digits (UCI), split train/val/test stratified by `split_seed`.

    The split is the same for every run seed, so seeds vary the init and batch order only.
    `upsample` > 1 resizes bilinearly and repeats the grey channel to `in_channels`, so that
    the 32x32x3 CIFAR models and corruptions apply (`data=digits32`).
    """

    name = "digits"

    def __init__(
        self,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        upsample: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.split_seed, self.upsample = split_seed, upsample

    def load_splits(self) -> dict[str, Split]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(digits.images).float().mul(255.0 / 16.0)[:, None]
        if self.upsample > 1:
            size = 8 * self.upsample
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
            images = images.expand(-1, self.in_channels, -1, -1)
        images = images.round().clamp(0, 255).to(torch.uint8).contiguous()
        labels = torch.from_numpy(digits.target).long()
        train_fraction = 1.0 - self.val_fraction - self.test_fraction
        parts = stratified_split(
            labels,
            {"train": train_fraction, "val": self.val_fraction, "test": self.test_fraction},
            self.split_seed,
        )
        return {name: Split(images[idx], labels[idx]) for name, idx in parts.items()}
