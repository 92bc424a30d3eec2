"""Tables held in memory as float tensors: scikit-learn's bundled data sets need no download.

Features are standardised with the training split's mean and std. Real-valued targets are
standardised too (the task reports errors back in the target's own units), so the same
optimizer settings suit any target scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from xent.checks import integer, number
from xent.data.base import epoch_loader
from xent.data.split import stratified_split
from xent.errors import ConfigError


@dataclass
class Table:
    """Rows (N, D) float32 and targets (N,): int64 class labels or float32 values."""

    features: torch.Tensor
    targets: torch.Tensor


class TableGather(Dataset):
    """Indexed by (indices, batch_seed): standardised rows, targets and the indices."""

    def __init__(self, table: Table, mean: torch.Tensor, std: torch.Tensor, shift=0.0, scale=1.0):
        self.table, self.mean, self.std = table, mean, std
        self.shift, self.scale = shift, scale

    def __len__(self) -> int:
        return len(self.table.targets)

    def __getitem__(self, item: tuple[torch.Tensor, int]):
        indices, _ = item
        x = (self.table.features[indices] - self.mean) / self.std
        y = self.table.targets[indices]
        if y.dtype.is_floating_point:
            y = (y - self.shift) / self.scale
        return x, y, indices


class TabularDataModule(L.LightningDataModule):
    """Base for in-memory tables: a subclass only says how to load (features, targets).

    `target_kind` is "class" (integer labels, stratified split) or "real" (values, random
    split, standardised targets whose train mean/std are `target_shift` / `target_scale`).
    """

    name = "table"
    target_kind = "class"

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        shuffle_seed: int = 0,
    ):
        super().__init__()
        integer("data.batch_size", batch_size, at_least=1, what="a positive integer")
        integer("data.num_workers", num_workers, at_least=0)
        for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            number(f"data.{key}", value, above=0, below=1)
        if val_fraction + test_fraction >= 1.0:
            raise ConfigError(
                f"data.val_fraction + data.test_fraction = {val_fraction + test_fraction:g} "
                "must leave a training split (< 1)"
            )
        self.num_classes, self.input_shape = num_classes, tuple(input_shape)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or max(batch_size, 256)
        self.num_workers = num_workers
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.split_seed, self.shuffle_seed = split_seed, shuffle_seed
        self.target_shift, self.target_scale = 0.0, 1.0
        self.splits: dict[str, Table] = {}

    def load_table(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (features (N, D), targets (N,)) as numpy arrays."""
        raise NotImplementedError

    @property
    def num_train_samples(self) -> int:
        return len(self.splits["train"].targets)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        features, targets = self.load_table()
        x = torch.as_tensor(features, dtype=torch.float32)
        real = self.target_kind == "real"
        y = torch.as_tensor(targets, dtype=torch.float32 if real else torch.int64)
        self._check_shapes(x, y)
        train_fraction = 1.0 - self.val_fraction - self.test_fraction
        fractions = {"train": train_fraction, "val": self.val_fraction, "test": self.test_fraction}
        parts = stratified_split(y, fractions, self.split_seed, stratify=not real)
        self.splits = {name: Table(x[idx], y[idx]) for name, idx in parts.items()}
        train = self.splits["train"]
        self.mean = train.features.mean(dim=0)
        self.std = train.features.std(dim=0).clamp_min(1e-6)
        if real:
            self.target_shift = float(train.targets.mean())
            self.target_scale = float(train.targets.std().clamp_min(1e-6))

    def _check_shapes(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ConfigError(
                f"data.input_shape={list(self.input_shape)} but {self.name} rows have shape "
                f"{list(x.shape[1:])}; leave it unset"
            )
        if self.target_kind == "class" and int(y.max()) + 1 != self.num_classes:
            raise ConfigError(
                f"data.num_classes={self.num_classes} but {self.name} has "
                f"{int(y.max()) + 1} classes"
            )

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        table = self.splits[split]
        gather = TableGather(table, self.mean, self.std, self.target_shift, self.target_scale)
        return epoch_loader(
            gather, len(table.targets), batch_size, shuffle, self.shuffle_seed, self.num_workers
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)


class BreastCancerDataModule(TabularDataModule):
    """Wisconsin diagnostic breast cancer: 569 rows, 30 features, 212 malignant.

    Relabelled so that **malignant is class 1**, the positive class of F1 and recall: what a
    reader of a binary metric expects. scikit-learn's own coding has benign = 1.
    """

    name = "breast_cancer"

    def load_table(self) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import load_breast_cancer

        data = load_breast_cancer()
        return data.data, 1 - data.target


class DiabetesDataModule(TabularDataModule):
    """Efron et al.'s diabetes progression: 442 rows, 10 features, a target in [25, 346]."""

    name = "diabetes"
    target_kind = "real"

    def load_table(self) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import load_diabetes

        data = load_diabetes()
        return data.data, data.target
