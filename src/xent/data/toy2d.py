"""2D source/target point clouds for flow matching (`data=toy2d`), drawn offline per seed.

The protocol of Tong et al. (docs/methods/flow.md §2.2): for each seed, a fixed training set of
10000 source and 10000 target points and held-out val/test sets of 1000 each, from the
samplers of `xent.flow.distributions`. Every (split, side) has its own generator derived from
`data_seed`, so the test target of gaussian→8gaussians and moons→8gaussians is the same set,
and changing `n_train` leaves the held-out sets alone.

A training batch pairs `batch_size` source points with `batch_size` target points drawn by two
*independent* permutations per epoch, which depend only on (shuffle_seed, epoch): the pairing
stays the independent coupling I-CFM assumes (one shared permutation would freeze the pairs),
and a resumed run sees the batches an uninterrupted one would. Val and test are one batch
each (the whole set), because W2 compares whole sample sets.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from xent.checks import integer
from xent.errors import ConfigError
from xent.flow.distributions import check_name, sample

SPLITS = ("train", "val", "test")
SIDES = ("source", "target")


def split_generator(seed: int, split: str, side: str) -> torch.Generator:
    """A generator for one (split, side), independent of the others for the same seed."""
    entropy = [seed, SPLITS.index(split), SIDES.index(side)]
    state = int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator().manual_seed(state)


class PairBatchSampler(Sampler):
    """Yields (source indices, target indices) batches from two permutations per epoch.

    Lightning calls `set_epoch` at every epoch start (also after a resume).
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order0 = torch.randperm(self.n, generator=gen)
        order1 = torch.randperm(self.n, generator=gen)
        for start in range(0, self.n, self.batch_size):
            end = start + self.batch_size
            yield order0[start:end], order1[start:end]


class PairGather(Dataset):
    """Indexed by (source indices, target indices): the batch (x0, x1)."""

    def __init__(self, source: torch.Tensor, target: torch.Tensor):
        self.source, self.target = source, target

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, item: tuple[torch.Tensor, torch.Tensor]):
        i0, i1 = item
        return self.source[i0], self.target[i1]


class Toy2DDataModule(L.LightningDataModule):
    """Source and target samples of two named 2D distributions; batches are (x0, x1).

    `dim`, `num_classes` and `input_shape` describe the points (2-dim) to the model config and
    the preflight; `num_classes` is the velocity net's output width, the key every data
    config shares (the diabetes table uses it the same way).
    """

    name = "toy2d"
    target_kind = "flow"

    def __init__(
        self,
        source: str = "gaussian",
        target: str = "8gaussians",
        n_train: int = 10000,
        n_val: int = 1000,
        n_test: int = 1000,
        batch_size: int = 512,
        num_workers: int = 0,
        data_seed: int = 0,
        shuffle_seed: int = 0,
        dim: int = 2,
        num_classes: int = 2,
        input_shape: Sequence[int] = (2,),
    ):
        super().__init__()
        for key, value in (("source", source), ("target", target)):
            try:
                check_name(value, key=f"data.{key}")
            except ValueError as err:
                raise ConfigError(str(err)) from None
        sizes = {"n_train": n_train, "n_val": n_val, "n_test": n_test, "batch_size": batch_size}
        for key, value in sizes.items():
            integer(f"data.{key}", value, at_least=1, what="a positive integer")
        integer("data.num_workers", num_workers, at_least=0)
        if dim != 2 or num_classes != 2 or list(input_shape) != [2]:
            raise ConfigError(
                f"data.dim={dim!r} (num_classes={num_classes!r}, input_shape="
                f"{list(input_shape)}) must be 2: the toy distributions are 2D"
            )
        self.source, self.target = source, target
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        self.batch_size, self.num_workers = batch_size, num_workers
        self.data_seed, self.shuffle_seed = data_seed, shuffle_seed
        self.dim, self.num_classes, self.input_shape = dim, num_classes, tuple(input_shape)
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        for split, n in self.sizes.items():
            x0 = sample(self.source, n, split_generator(self.data_seed, split, "source"))
            x1 = sample(self.target, n, split_generator(self.data_seed, split, "target"))
            self.splits[split] = (x0, x1)

    def train_dataloader(self) -> DataLoader:
        x0, x1 = self.splits["train"]
        sampler = PairBatchSampler(len(x0), self.batch_size, self.shuffle_seed)
        return DataLoader(
            PairGather(x0, x1),
            sampler=sampler,
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _whole(self, split: str) -> DataLoader:
        """One batch: the whole held-out (x0, x1) set."""
        x0, x1 = self.splits[split]
        return DataLoader([(x0, x1)], batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return self._whole("val")

    def test_dataloader(self) -> DataLoader:
        return self._whole("test")
