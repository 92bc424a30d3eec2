"""Exact behaviour of the data modules, beyond tests/test_data.py: data=toy2d's seeded sets and
pairing sampler, data=synthetic_cifar's images, the in-memory base, the tables and CIFAR's split.

Every test is fast (tiny sets, no training): mutation testing runs this file per mutant.
"""

from __future__ import annotations

import os
import random
import threading

import numpy as np
import pytest
import torch
import torchvision
from torch.utils.data import DataLoader

import xent.data.base as base_mod
import xent.data.cifar as cifar_mod
import xent.data.corrupted as corrupted_mod
from tests.conftest import write_cifar
from xent.corrupt.corruptions import CORRUPTIONS
from xent.corrupt.layout import read_corruption
from xent.data.augment import random_crop_flip
from xent.data.base import (
    BatchGather,
    EpochBatchSampler,
    InMemoryImageDataModule,
    PrefetchLoader,
    Split,
    distributed_rank,
    epoch_loader,
)
from xent.data.cifar import CIFARDataModule
from xent.data.corrupted import (
    CorruptedStreamDataModule,
    _ReshuffledBatches,
    continual_schedule,
    domain_names,
    gradual_schedule,
)
from xent.data.digits import DigitsDataModule
from xent.data.noise import symmetric_label_noise
from xent.data.split import stratified_split
from xent.data.synthetic import SyntheticImageDataModule, random_split
from xent.data.tabular import (
    BreastCancerDataModule,
    DiabetesDataModule,
    Table,
    TableGather,
    TabularDataModule,
)
from xent.data.toy2d import PairBatchSampler, PairGather, Toy2DDataModule, split_generator
from xent.errors import ConfigError, DataNotFoundError
from xent.flow.distributions import sample

# --- data=toy2d ----------------------------------------------------------------------------------


def small_toy(**kwargs) -> Toy2DDataModule:
    sizes = {"n_train": 10, "n_val": 4, "n_test": 3, "batch_size": 4}
    dm = Toy2DDataModule(**{**sizes, **kwargs})
    dm.setup()
    return dm


def test_split_generators_are_seed_sequence_states_one_per_split_and_side():
    states = {}
    for seed in (0, 7):
        for i, split in enumerate(("train", "val", "test")):
            for j, side in enumerate(("source", "target")):
                entropy = np.random.SeedSequence([seed, i, j])
                want = int(entropy.generate_state(1, dtype=np.uint64)[0])
                assert split_generator(seed, split, side).initial_seed() == want
                states[seed, split, side] = want
    assert len(set(states.values())) == 12


def test_pair_batch_sampler_counts_partial_batches_and_draws_two_orders():
    assert [len(PairBatchSampler(n, 3, 0)) for n in (1, 3, 9, 10)] == [1, 1, 3, 4]
    sampler = PairBatchSampler(10, 4, seed=2)
    sampler.set_epoch(3)
    assert sampler.epoch == 3
    batches = list(sampler)
    assert [(len(a), len(b)) for a, b in batches] == [(4, 4), (4, 4), (2, 2)]
    gen = torch.Generator().manual_seed(2 * 1_000_003 + 3)
    order0, order1 = torch.randperm(10, generator=gen), torch.randperm(10, generator=gen)
    assert torch.equal(torch.cat([a for a, _ in batches]), order0)
    assert torch.equal(torch.cat([b for _, b in batches]), order1)
    assert not torch.equal(order0, order1)
    fresh, sampler = PairBatchSampler(10, 4, seed=2), PairBatchSampler(10, 4, seed=2)
    sampler.set_epoch(0)  # a new sampler is at epoch 0
    assert all(torch.equal(a[0], b[0]) for a, b in zip(fresh, sampler, strict=True))


def test_pair_gather_indexes_each_side_with_its_own_indices():
    source, target = torch.arange(5.0)[:, None], 10 + torch.arange(5.0)[:, None]
    gather = PairGather(source, target)
    assert len(gather) == 5
    x0, x1 = gather[torch.tensor([0, 3]), torch.tensor([4, 1])]
    assert torch.equal(x0, torch.tensor([[0.0], [3.0]]))
    assert torch.equal(x1, torch.tensor([[14.0], [11.0]]))


def test_toy2d_defaults_are_the_protocol_of_its_config():
    dm = Toy2DDataModule()
    assert (dm.source, dm.target) == ("gaussian", "8gaussians")
    assert dm.sizes == {"train": 10000, "val": 1000, "test": 1000}
    assert (dm.batch_size, dm.num_workers) == (512, 0)
    assert (dm.dim, dm.num_classes, dm.input_shape) == (2, 2, (2,))
    assert dm.splits == {}


def test_toy2d_keeps_its_arguments():
    dm = Toy2DDataModule(
        source="moons", target="scurve", n_train=1, n_val=1, n_test=1, batch_size=1,
        num_workers=3, data_seed=5, shuffle_seed=6, input_shape=[2],
    )  # fmt: skip
    assert (dm.source, dm.target, dm.data_seed, dm.shuffle_seed) == ("moons", "scurve", 5, 6)
    assert dm.sizes == {"train": 1, "val": 1, "test": 1}
    assert (dm.batch_size, dm.num_workers, dm.input_shape) == (1, 3, (2,))


@pytest.mark.parametrize("key", ["n_train", "n_val", "n_test", "batch_size"])
@pytest.mark.parametrize("value", [0, -2, True, 2.0, "4"])
def test_toy2d_sizes_must_be_positive_integers(key, value):
    with pytest.raises(ConfigError) as info:
        Toy2DDataModule(**{key: value})
    assert str(info.value) == f"data.{key}={value!r} must be a positive integer"


@pytest.mark.parametrize("value", [-1, 1.0, "2"])
def test_toy2d_num_workers_must_be_a_non_negative_integer(value):
    with pytest.raises(ConfigError) as info:
        Toy2DDataModule(num_workers=value)
    assert str(info.value) == f"data.num_workers={value!r} must be an integer >= 0"


def test_toy2d_names_the_bad_target_and_the_non_2d_shape():
    for key in ("source", "target"):
        with pytest.raises(ConfigError) as info:
            Toy2DDataModule(**{key: "ring"})
        assert str(info.value) == (
            f"data.{key}='ring' is not a distribution; valid: 8gaussians, gaussian, moons, scurve"
        )
    for dim, classes, shape in ((3, 2, [2]), (2, 3, [2]), (2, 2, [3]), (2, 2, [2, 2])):
        with pytest.raises(ConfigError) as info:
            Toy2DDataModule(dim=dim, num_classes=classes, input_shape=shape)
        assert str(info.value) == (
            f"data.dim={dim} (num_classes={classes}, input_shape={shape}) must be 2: "
            "the toy distributions are 2D"
        )


def test_toy2d_setup_samples_each_split_once_from_its_generators():
    dm = small_toy(source="moons", target="scurve", data_seed=4)
    for split, n in (("train", 10), ("val", 4), ("test", 3)):
        x0, x1 = dm.splits[split]
        assert torch.equal(x0, sample("moons", n, split_generator(4, split, "source")))
        assert torch.equal(x1, sample("scurve", n, split_generator(4, split, "target")))
    first = dm.splits["train"]
    dm.setup("test")
    assert dm.splits["train"] is first


def test_toy2d_loaders_pair_train_batches_and_give_whole_held_out_sets():
    dm = small_toy(shuffle_seed=9)
    loader = dm.train_dataloader()
    assert (loader.batch_size, loader.num_workers, loader.persistent_workers) == (None, 0, False)
    sampler = loader.sampler
    assert isinstance(sampler, PairBatchSampler)
    assert (sampler.n, sampler.batch_size, sampler.seed) == (10, 4, 9)
    x0, x1 = dm.splits["train"]
    for (b0, b1), (i0, i1) in zip(loader, PairBatchSampler(10, 4, 9), strict=True):
        assert torch.equal(b0, x0[i0]) and torch.equal(b1, x1[i1])
    workers = Toy2DDataModule(n_train=10, batch_size=4, num_workers=1)
    workers.setup()
    threaded = workers.train_dataloader()
    assert (threaded.num_workers, threaded.persistent_workers) == (1, True)
    for split, loader in (("val", dm.val_dataloader()), ("test", dm.test_dataloader())):
        (batch,) = list(loader)
        assert all(torch.equal(a, b) for a, b in zip(batch, dm.splits[split], strict=True))


# --- data=synthetic_cifar ------------------------------------------------------------------------

SHAPE = {"num_classes": 3, "in_channels": 2, "image_size": 4}


def test_random_split_draws_uint8_noise_and_a_shuffled_round_robin_of_labels():
    split = random_split(3000, (1, 2, 2), 4, seed=5)
    assert split.images.shape == (3000, 1, 2, 2) and split.images.dtype == torch.uint8
    assert (int(split.images.min()), int(split.images.max())) == (0, 255)
    assert torch.equal(torch.bincount(split.labels), torch.full((4,), 750))
    assert not torch.equal(split.labels, torch.arange(3000) % 4)  # shuffled
    again = random_split(3000, (1, 2, 2), 4, seed=5)
    assert torch.equal(split.images, again.images) and torch.equal(split.labels, again.labels)
    gen = torch.Generator().manual_seed(5)
    images = torch.randint(0, 256, (3000, 1, 2, 2), dtype=torch.uint8, generator=gen)
    labels = (torch.arange(3000) % 4)[torch.randperm(3000, generator=gen)]
    assert torch.equal(split.images, images) and torch.equal(split.labels, labels)
    small = random_split(5, (1, 1, 1), 4, seed=0)  # every class, when n >= num_classes
    assert sorted(small.labels.tolist()) == [0, 0, 1, 2, 3]


def test_synthetic_splits_have_their_sizes_and_seeds():
    dm = SyntheticImageDataModule(train_size=6, val_size=2, test_size=3, data_seed=2, **SHAPE)
    assert dm.sizes == {"train": 6, "val": 2, "test": 3} and dm.data_seed == 2
    splits = dm.load_splits()
    for i, (name, n) in enumerate((("train", 6), ("val", 2), ("test", 3))):
        want = random_split(n, (2, 4, 4), 3, 2 * 1_000_003 + i)
        assert torch.equal(splits[name].images, want.images)
        assert torch.equal(splits[name].labels, want.labels)
    default = SyntheticImageDataModule(**SHAPE)
    assert default.sizes == {"train": 50_000, "val": 10_000, "test": 10_000}
    assert default.data_seed == 0


@pytest.mark.parametrize("key", ["train_size", "val_size", "test_size"])
@pytest.mark.parametrize("value", [0, -1, 2.0, "3"])
def test_synthetic_sizes_must_be_positive_integers(key, value):
    with pytest.raises(ConfigError) as info:
        SyntheticImageDataModule(**{key: value}, **SHAPE)
    assert str(info.value) == f"data.{key}={value!r} must be a positive integer"


def test_synthetic_train_split_holds_every_class():
    with pytest.raises(ConfigError) as info:
        SyntheticImageDataModule(train_size=2, **SHAPE)
    assert str(info.value) == "data.train_size=2 must be at least data.num_classes=3"
    dm = SyntheticImageDataModule(train_size=3, val_size=1, test_size=1, **SHAPE)
    dm.setup()  # the smallest train split still has labels 0..K-1
    assert sorted(dm.splits["train"].labels.tolist()) == [0, 1, 2]


# --- the in-memory image base (xent.data.base) ---------------------------------------------------


class Tiny(InMemoryImageDataModule):
    """Three classes of 2x4x4 images, given rather than loaded."""

    name = "tiny"

    def __init__(self, splits: dict[str, Split] | None = None, **kwargs):
        args = {"num_classes": 3, "in_channels": 2, "image_size": 4, "batch_size": 4}
        super().__init__(**{**args, **kwargs})
        self.given = splits if splits is not None else tiny_splits()
        self.loads = 0

    def load_splits(self) -> dict[str, Split]:
        self.loads += 1
        return dict(self.given)


def tiny_splits(n: int = 10, shape: tuple[int, ...] = (2, 4, 4)) -> dict[str, Split]:
    gen = torch.Generator().manual_seed(0)
    out = {}
    for name in ("train", "val", "test"):
        images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=gen)
        out[name] = Split(images, torch.arange(n) % 3)
    return out


def test_epoch_batch_sampler_length_with_and_without_the_last_partial_batch():
    def length(n, drop_last):
        return len(EpochBatchSampler(n, 4, shuffle=True, drop_last=drop_last, seed=0))

    assert [length(n, False) for n in (3, 4, 8, 10)] == [1, 1, 2, 3]
    assert [length(n, True) for n in (3, 4, 8, 10)] == [0, 1, 2, 2]
    sampler = EpochBatchSampler(10, 4, shuffle=True, drop_last=True, seed=0)
    assert [len(indices) for indices, _ in sampler] == [4, 4]


@pytest.mark.parametrize("shuffle", [True, False])
def test_epoch_batch_sampler_orders_and_batch_seeds_come_from_seed_and_epoch(shuffle):
    sampler = EpochBatchSampler(10, 4, shuffle=shuffle, drop_last=False, seed=3)
    sampler.set_epoch(2)
    assert sampler.epoch == 2
    gen = torch.Generator().manual_seed(3 * 1_000_003 + 2)
    order = torch.randperm(10, generator=gen) if shuffle else torch.arange(10)
    seeds = torch.randint(0, 2**62, (3,), generator=gen).tolist()
    got = list(sampler)
    assert [s for _, s in got] == seeds
    fresh = EpochBatchSampler(10, 4, shuffle=shuffle, drop_last=False, seed=3)
    sampler.set_epoch(0)  # a new sampler is at epoch 0
    assert [s for _, s in fresh] == [s for _, s in sampler]
    assert torch.equal(torch.cat([i for i, _ in got]), order)
    assert [len(i) for i, _ in got] == [4, 4, 2]


def test_each_ddp_rank_takes_every_world_th_sample_of_the_global_batch(monkeypatch):
    assert distributed_rank() == (0, 1)
    whole = list(EpochBatchSampler(10, 4, shuffle=True, drop_last=False, seed=1))
    monkeypatch.setattr(base_mod, "distributed_rank", lambda: (1, 2))
    part = list(EpochBatchSampler(10, 4, shuffle=True, drop_last=False, seed=1))
    for (indices, seed), (mine, my_seed) in zip(whole, part, strict=True):
        assert torch.equal(mine, indices[1::2]) and my_seed == seed


def test_batch_gather_normalises_and_augments_only_when_asked():
    split = tiny_splits()["train"]
    mean, std = torch.tensor([0.25, 0.5]), torch.tensor([0.5, 0.125])
    indices = torch.tensor([7, 2, 5])
    want = split.images[indices].double() / 255.0
    want = (want - mean.double().view(1, 2, 1, 1)) / std.double().view(1, 2, 1, 1)
    plain = BatchGather(split, mean, std)
    assert len(plain) == 10
    x, y, idx = plain[indices, 11]
    assert x.dtype == torch.float32
    torch.testing.assert_close(x.double(), want, rtol=0, atol=1e-5)
    assert torch.equal(y, split.labels[indices]) and torch.equal(idx, indices)
    for padding, hflip in ((1, False), (0, True), (2, True)):
        gather = BatchGather(split, mean, std, crop_padding=padding, hflip=hflip)
        gen = torch.Generator().manual_seed(11)
        images = random_crop_flip(split.images[indices], padding, hflip, gen).double() / 255.0
        images = (images - mean.double().view(1, 2, 1, 1)) / std.double().view(1, 2, 1, 1)
        torch.testing.assert_close(gather[indices, 11][0].double(), images, rtol=0, atol=1e-5)
        assert not torch.equal(gather[indices, 11][0], x)


def test_epoch_loader_uses_threads_only_when_asked():
    gather = BatchGather(tiny_splits()["train"], torch.zeros(2), torch.ones(2))
    plain = epoch_loader(gather, 10, 4, shuffle=False, seed=5, num_workers=0)
    assert type(plain) is DataLoader and plain.batch_size is None
    sampler = plain.sampler
    assert (sampler.n, sampler.batch_size, sampler.shuffle, sampler.drop_last) == (
        10,
        4,
        False,
        False,
    )
    assert sampler.seed == 5
    threaded = epoch_loader(gather, 10, 1, shuffle=True, seed=5, num_workers=1)
    assert isinstance(threaded, PrefetchLoader) and threaded.threads == 1
    serial = list(epoch_loader(gather, 10, 1, shuffle=True, seed=5, num_workers=0))
    assert threaded.batch_size is None
    got, workers = [], set()
    for batch in threaded:  # ten batches through a queue two deep, built in named threads
        got.append(batch)
        workers |= {t.name for t in threading.enumerate() if t.name.startswith("xent-batches")}
    assert len(workers) == 1
    assert len(got) == len(serial) == 10
    for a, b in zip(got, serial, strict=True):
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_image_module_constructor_errors_are_one_line():
    cases = [
        ({"input_shape": [2, 4, 5]}, "data.input_shape=[2, 4, 5] must be [in_channels, "
         "image_size, image_size] = [2, 4, 4]"),
        ({"batch_size": 0}, "data.batch_size=0 must be a positive integer"),
        ({"batch_size": "8"}, "data.batch_size='8' must be a positive integer"),
        ({"num_workers": -1}, "data.num_workers=-1 must be an integer >= 0"),
        ({"num_workers": 1.0}, "data.num_workers=1.0 must be an integer >= 0"),
        ({"label_noise": 1.0}, "data.label_noise=1.0 must be in [0, 1)"),
        ({"label_noise": -0.1}, "data.label_noise=-0.1 must be in [0, 1)"),
    ]  # fmt: skip
    for kwargs, message in cases:
        with pytest.raises(ConfigError) as info:
            Tiny(**kwargs)
        assert str(info.value) == message
    Tiny(input_shape=(2, 4, 4), batch_size=1, label_noise=0.0)  # the edges are accepted


def test_image_module_keeps_its_arguments_and_sizes_eval_batches():
    dm = Tiny(batch_size=3, num_workers=2, crop_padding=1, hflip=True, noise_seed=4, shuffle_seed=5)
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (3, 2, 4)
    assert (dm.batch_size, dm.eval_batch_size, dm.num_workers) == (3, 256, 2)
    assert (dm.crop_padding, dm.hflip, dm.noise_seed, dm.shuffle_seed) == (1, True, 4, 5)
    assert Tiny(batch_size=300).eval_batch_size == 300
    assert Tiny(batch_size=3, eval_batch_size=7).eval_batch_size == 7
    default = InMemoryImageDataModule(num_classes=3, in_channels=2, image_size=4)
    assert (default.batch_size, default.num_workers, default.crop_padding) == (128, 0, 0)
    assert (default.hflip, default.label_noise) == (False, 0.0)
    with pytest.raises(NotImplementedError):
        default.setup()
    assert (default.name, default.target_kind) == ("images", "class")


def test_data_modules_declare_their_name_and_target_kind():
    kinds = {
        Toy2DDataModule: ("toy2d", "flow"),
        SyntheticImageDataModule: ("synthetic", "class"),
        DigitsDataModule: ("digits", "class"),
        CorruptedStreamDataModule: (None, "class"),
    }
    for cls, (name, kind) in kinds.items():
        assert (getattr(cls, "name", None), cls.target_kind) == (name, kind)


def test_setup_loads_once_flips_train_labels_and_keeps_the_clean_ones():
    dm = Tiny(label_noise=0.5, noise_seed=3)
    dm.setup()
    dm.setup("test")
    assert dm.loads == 1 and dm.num_train_samples == 10
    clean = dm.given["train"].labels
    assert torch.equal(dm.clean_train_labels, clean)
    assert torch.equal(dm.splits["train"].labels, symmetric_label_noise(clean, 0.5, 3, 3))
    assert torch.equal(dm.splits["train"].images, dm.given["train"].images)
    assert dm.splits["val"] is dm.given["val"] and dm.splits["test"] is dm.given["test"]
    clean_dm = Tiny()
    clean_dm.setup()
    assert clean_dm.splits["train"] is clean_dm.given["train"]


def test_normalisation_is_configured_or_measured_per_channel_on_train():
    dm = Tiny(mean=[0.1, 0.2], std=[0.3, 0.4])
    dm.setup()
    assert torch.equal(dm.mean, torch.tensor([0.1, 0.2])) and torch.equal(
        dm.std, torch.tensor([0.3, 0.4])
    )
    for kwargs in ({}, {"mean": [0.1, 0.2]}, {"std": [0.3, 0.4]}):
        dm = Tiny(**kwargs)
        dm.setup()
        pixels = dm.given["train"].images.double() / 255.0
        want_mean = pixels.mean(dim=(0, 2, 3))
        want_std = pixels.transpose(0, 1).reshape(2, -1).std(dim=1)
        torch.testing.assert_close(dm.mean.double(), want_mean, rtol=1e-6, atol=0)
        torch.testing.assert_close(dm.std.double(), want_std, rtol=1e-5, atol=0)
    flat = tiny_splits()
    flat["train"] = Split(torch.full((10, 2, 4, 4), 51, dtype=torch.uint8), flat["train"].labels)
    dm = Tiny(splits=flat)
    dm.setup()
    torch.testing.assert_close(dm.mean, torch.tensor([0.2, 0.2]))
    assert torch.equal(dm.std, torch.tensor([1e-6, 1e-6]))  # a constant channel's floor


def test_loaders_augment_and_shuffle_train_only():
    dm = Tiny(batch_size=3, eval_batch_size=4, crop_padding=1, hflip=True, shuffle_seed=6)
    dm.setup()
    for loader, split, batch, shuffle, padding, hflip in (
        (dm.train_dataloader(), "train", 3, True, 1, True),
        (dm.val_dataloader(), "val", 4, False, 0, False),
        (dm.test_dataloader(), "test", 4, False, 0, False),
    ):
        gather, sampler = loader.dataset, loader.sampler
        assert gather.split is dm.splits[split]
        assert (gather.crop_padding, gather.hflip) == (padding, hflip)
        assert (sampler.n, sampler.batch_size, sampler.shuffle, sampler.seed) == (
            10,
            batch,
            shuffle,
            6,
        )
        assert torch.equal(gather.mean.flatten(), dm.mean) and torch.equal(
            gather.std.flatten(), dm.std
        )
    threaded = Tiny(num_workers=2)
    threaded.setup()
    assert isinstance(threaded.val_dataloader(), PrefetchLoader)


def test_loaded_shapes_are_checked_against_the_config():
    cases = [
        (tiny_splits(shape=(3, 4, 4)), "data.in_channels=2 but tiny has 3; leave it unset"),
        (tiny_splits(shape=(2, 5, 5)), "data.image_size=4 but tiny has 5; leave it unset"),
        (tiny_splits(shape=(2, 4, 5)), "tiny: non-square images (4x5) unsupported"),
    ]
    two = tiny_splits()
    two["train"] = Split(two["train"].images, two["train"].labels % 2)
    cases.append((two, "data.num_classes=3 but tiny has 2 classes"))
    for splits, message in cases:
        with pytest.raises(ConfigError) as info:
            Tiny(splits=splits).setup()
        assert str(info.value) == message


# --- tables (xent.data.tabular) ------------------------------------------------------------------


class TinyTable(TabularDataModule):
    """40 rows of 3 features; class labels 0..3 or, with `real`, values."""

    name = "tinytab"

    def __init__(self, real: bool = False, features=None, **kwargs):
        args = {"num_classes": 1 if real else 4, "input_shape": [3], "batch_size": 5}
        super().__init__(**{**args, **kwargs})
        if real:
            self.target_kind = "real"
        rng = np.random.default_rng(0)
        self.features = rng.normal(2.0, 3.0, (40, 3)) if features is None else features
        self.targets = rng.normal(50.0, 10.0, 40) if real else np.arange(40) % 4
        self.loads = 0

    def load_table(self):
        self.loads += 1
        return self.features, self.targets


def test_table_gather_standardises_rows_and_real_targets_only():
    table = Table(torch.tensor([[1.0, 2.0], [3.0, 6.0]]), torch.tensor([10.0, 20.0]))
    mean, std = torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0])
    x, y, idx = TableGather(table, mean, std, shift=10.0, scale=5.0)[torch.tensor([1, 0]), 0]
    assert torch.equal(x, torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    assert torch.equal(y, torch.tensor([2.0, 0.0])) and torch.equal(idx, torch.tensor([1, 0]))
    plain = TableGather(table, mean, std)
    assert len(plain) == 2 and torch.equal(plain[torch.tensor([1]), 0][1], torch.tensor([20.0]))
    labels = Table(table.features, torch.tensor([3, 1]))
    _, y, _ = TableGather(labels, mean, std, shift=10.0, scale=5.0)[torch.tensor([0, 1]), 0]
    assert torch.equal(y, torch.tensor([3, 1]))


def test_table_constructor_errors_are_one_line():
    cases = [
        ({"batch_size": 0}, "data.batch_size=0 must be a positive integer"),
        ({"batch_size": True}, "data.batch_size=True must be a positive integer"),
        ({"batch_size": 2.0}, "data.batch_size=2.0 must be a positive integer"),
        ({"num_workers": -1}, "data.num_workers=-1 must be an integer >= 0"),
        ({"num_workers": "1"}, "data.num_workers='1' must be an integer >= 0"),
        ({"val_fraction": 0.0}, "data.val_fraction=0.0 must be in (0, 1)"),
        ({"val_fraction": 1.0}, "data.val_fraction=1.0 must be in (0, 1)"),
        ({"test_fraction": 0}, "data.test_fraction=0 must be in (0, 1)"),
        ({"test_fraction": 1.5}, "data.test_fraction=1.5 must be in (0, 1)"),
        ({"val_fraction": 0.5, "test_fraction": 0.5},
         "data.val_fraction + data.test_fraction = 1 must leave a training split (< 1)"),
        ({"val_fraction": 0.75, "test_fraction": 0.5},
         "data.val_fraction + data.test_fraction = 1.25 must leave a training split (< 1)"),
    ]  # fmt: skip
    for kwargs, message in cases:
        with pytest.raises(ConfigError) as info:
            TinyTable(**kwargs)
        assert str(info.value) == message
    TinyTable(batch_size=1, val_fraction=0.45, test_fraction=0.5)  # the edges are accepted


def test_table_module_keeps_its_arguments():
    dm = TinyTable(batch_size=7, num_workers=2, val_fraction=0.25, test_fraction=0.3,
                   split_seed=4, shuffle_seed=5)  # fmt: skip
    assert (dm.num_classes, dm.input_shape, dm.batch_size, dm.eval_batch_size) == (4, (3,), 7, 256)
    assert (dm.num_workers, dm.val_fraction, dm.test_fraction) == (2, 0.25, 0.3)
    assert (dm.split_seed, dm.shuffle_seed, dm.target_shift, dm.target_scale) == (4, 5, 0.0, 1.0)
    assert TinyTable(batch_size=300).eval_batch_size == 300 and dm.splits == {}
    assert TinyTable(eval_batch_size=9).eval_batch_size == 9
    default = TabularDataModule(num_classes=2, input_shape=(3,))
    assert (default.batch_size, default.num_workers, default.split_seed) == (64, 0, 0)
    assert (default.val_fraction, default.test_fraction, default.shuffle_seed) == (0.1, 0.2, 0)
    with pytest.raises(NotImplementedError):
        default.setup()
    assert (default.name, default.target_kind) == ("table", "class")
    with pytest.raises(
        ConfigError, match=r"^data.input_shape=\[3\] but table rows have shape \[4\]"
    ):
        default._check_shapes(torch.zeros(2, 4), torch.zeros(2))


def test_class_table_is_split_stratified_and_standardised_on_train():
    dm = TinyTable(val_fraction=0.2, test_fraction=0.3, split_seed=2)
    dm.setup()
    dm.setup("test")
    assert dm.loads == 1
    labels = torch.as_tensor(dm.targets, dtype=torch.int64)
    fractions = {"train": 0.5, "val": 0.2, "test": 0.3}
    parts = stratified_split(labels, fractions, 2, stratify=True)
    features = torch.as_tensor(dm.features, dtype=torch.float32)
    for name, idx in parts.items():
        assert torch.equal(dm.splits[name].features, features[idx])
        assert torch.equal(dm.splits[name].targets, labels[idx])
        assert dm.splits[name].targets.dtype == torch.int64
    assert dm.num_train_samples == 20
    assert torch.equal(torch.bincount(dm.splits["train"].targets), torch.full((4,), 5))
    train = dm.splits["train"].features.double()
    torch.testing.assert_close(dm.mean.double(), train.mean(0), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(dm.std.double(), train.std(0), rtol=1e-5, atol=0)
    assert (dm.target_shift, dm.target_scale) == (0.0, 1.0)


def test_real_table_is_a_random_split_with_standardised_targets():
    dm = TinyTable(real=True, split_seed=1)
    dm.setup()
    values = torch.as_tensor(dm.targets, dtype=torch.float32)
    parts = stratified_split(values, {"train": 0.7, "val": 0.1, "test": 0.2}, 1, stratify=False)
    for name, idx in parts.items():
        assert torch.equal(dm.splits[name].targets, values[idx])
    train = dm.splits["train"].targets.double()
    assert dm.target_shift == pytest.approx(float(train.mean()), rel=1e-6)
    assert dm.target_scale == pytest.approx(float(train.std()), rel=1e-6)
    _, y, idx = next(iter(dm.test_dataloader()))
    want = (values[parts["test"]][idx].double() - train.mean()) / train.std()
    torch.testing.assert_close(y.double(), want, rtol=0, atol=1e-5)


def test_a_constant_feature_or_target_has_the_std_floor():
    features = np.ones((40, 3))
    dm = TinyTable(features=features)
    dm.setup()
    assert torch.equal(dm.std, torch.full((3,), 1e-6))
    flat = TinyTable(real=True, features=features)
    flat.targets = np.full(40, 7.0)
    flat.setup()
    assert (flat.target_shift, flat.target_scale) == (7.0, pytest.approx(1e-6))


def test_table_shapes_are_checked_against_the_config():
    with pytest.raises(ConfigError) as info:
        TinyTable(input_shape=[4]).setup()
    assert str(info.value) == "data.input_shape=[4] but tinytab rows have shape [3]; leave it unset"
    with pytest.raises(ConfigError) as info:
        TinyTable(num_classes=5).setup()
    assert str(info.value) == "data.num_classes=5 but tinytab has 4 classes"
    TinyTable(real=True, num_classes=7).setup()  # real targets have no classes to count


def test_table_loaders_shuffle_train_only():
    dm = TinyTable(batch_size=6, eval_batch_size=3, shuffle_seed=8)
    dm.setup()
    for loader, split, batch, shuffle in (
        (dm.train_dataloader(), "train", 6, True),
        (dm.val_dataloader(), "val", 3, False),
        (dm.test_dataloader(), "test", 3, False),
    ):
        gather, sampler = loader.dataset, loader.sampler
        assert gather.table is dm.splits[split] and gather.mean is dm.mean and gather.std is dm.std
        n = len(dm.splits[split].targets)
        assert (sampler.n, sampler.batch_size, sampler.shuffle, sampler.seed) == (
            n,
            batch,
            shuffle,
            8,
        )
    threaded = TinyTable(num_workers=1)
    threaded.setup()
    assert isinstance(threaded.train_dataloader(), PrefetchLoader)


def test_breast_cancer_has_malignant_as_class_one_and_diabetes_its_raw_target():
    features, labels = BreastCancerDataModule(num_classes=2, input_shape=[30]).load_table()
    assert features.shape == (569, 30) and int(labels.sum()) == 212
    dm = BreastCancerDataModule(num_classes=2, input_shape=[30])
    dm.setup()
    assert dm.target_kind == "class" and dm.splits["train"].targets.dtype == torch.int64
    features, target = DiabetesDataModule(num_classes=1, input_shape=[10]).load_table()
    assert features.shape == (442, 10) and (target.min(), target.max()) == (25.0, 346.0)
    assert DiabetesDataModule.target_kind == "real" and DiabetesDataModule.name == "diabetes"
    assert BreastCancerDataModule.name == "breast_cancer"


# --- CIFAR (xent.data.cifar) and label noise -----------------------------------------------------


def cifar10(root, **kwargs) -> CIFARDataModule:
    args = {"num_classes": 10, "in_channels": 3, "image_size": 32, **kwargs}
    return CIFARDataModule(variant="cifar10", root=str(root), **args)


class FakeCIFAR(torchvision.datasets.CIFAR100):
    """Records how it was built; fails like a download that cannot reach the network."""

    calls: list = []

    def __init__(self, root, train=True, download=False):
        self.calls.append((root, train, download))
        raise OSError("network is unreachable")


def test_cifar_defaults_are_its_config_and_a_bad_variant_is_named(tmp_path):
    dm = cifar10(tmp_path)
    assert (dm.download, dm.val_size, dm.split_seed, dm.name) == (True, 0, 0, "cifar10")
    assert dm.folder == tmp_path / "cifar-10-batches-py"
    with pytest.raises(DataNotFoundError) as info:
        CIFARDataModule(variant="svhn", root=str(tmp_path), num_classes=10, in_channels=3,
                        image_size=32)  # fmt: skip
    assert str(info.value) == "data.variant='svhn' is not one of ['cifar10', 'cifar100']"


def test_cifar_missing_files_are_downloaded_or_named_in_one_line(tmp_path, monkeypatch):
    folder = tmp_path / "cifar-100-python"
    hint = (
        f"cifar100: train, test, meta not found under {folder}. Put the extracted "
        f"cifar-100-python.tar.gz in {tmp_path} (or set data.root / XENT_DATA)"
    )
    args = {"num_classes": 100, "in_channels": 3, "image_size": 32}
    offline = CIFARDataModule(variant="cifar100", root=str(tmp_path), download=False, **args)
    with pytest.raises(DataNotFoundError) as info:
        offline.prepare_data()
    assert str(info.value) == hint + ", or allow data.download=true."
    dm = CIFARDataModule(variant="cifar100", root=str(tmp_path), **args)
    monkeypatch.setattr(FakeCIFAR, "calls", [])
    dm.dataset_cls = FakeCIFAR  # CIFAR-100's files, fetched through this class
    with pytest.raises(DataNotFoundError) as info:
        dm.prepare_data()
    assert FakeCIFAR.calls == [(str(tmp_path), True, True)]
    assert str(info.value) == f"{hint}; download failed (OSError: network is unreachable)."


def test_cifar_checks_each_file_once_per_size_and_mtime(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    folder = write_cifar(tmp_path, "cifar10")
    checked = []

    def check_integrity(path, md5=None):
        checked.append((path, md5))
        return True

    monkeypatch.setattr(tv_cifar, "check_integrity", check_integrity)
    monkeypatch.setattr(cifar_mod, "_VERIFIED", set())
    dm = cifar10(tmp_path)
    cls = torchvision.datasets.CIFAR10
    want = [(str(folder / name), md5) for name, md5 in cls.train_list + cls.test_list]
    want.append((str(folder / cls.meta["filename"]), cls.meta["md5"]))
    for path in folder.iterdir():  # as a tar extracts them: the batches share size and mtime
        os.utime(path, ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    dm.prepare_data()
    assert checked == want
    dm.check_files()
    assert checked == want  # verified files are not read again
    (folder / "test_batch").write_bytes((folder / "test_batch").read_bytes() + b"x")
    dm.check_files()
    assert checked == [*want, (str(folder / "test_batch"), cls.test_list[0][1])]


def test_cifar_decode_reads_local_files_only_and_names_a_bad_checksum(tmp_path, monkeypatch):
    calls = []

    class Decoded:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            self.data = np.zeros((2, 32, 32, 3), dtype=np.uint8)
            self.data[1, 0, 1, 2] = 9
            self.targets = [3, 1]

    dm = cifar10(tmp_path)
    dm.dataset_cls = Decoded
    split = dm._decode(train=False)
    assert calls == [(str(tmp_path), False, False)]
    assert split.images.shape == (2, 3, 32, 32) and int(split.images[1, 2, 0, 1]) == 9
    assert torch.equal(split.labels, torch.tensor([3, 1]))

    class Corrupt:
        def __init__(self, root, train, download):
            raise RuntimeError("Dataset metadata file not found or corrupted.")

    dm.dataset_cls, dm.dataset_cls.base_folder = Corrupt, "cifar-10-batches-py"
    with pytest.raises(DataNotFoundError) as info:
        dm._decode(train=True)
    assert str(info.value) == (
        f"cifar10: files under {tmp_path / 'cifar-10-batches-py'} failed torchvision's checksum "
        "(Dataset metadata file not found or corrupted.); delete them and re-run with "
        "data.download=true"
    )


def test_cifar_held_out_validation_is_a_stratified_part_of_train(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    write_cifar(tmp_path, "cifar10", n_train=200, n_test=40)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: True)
    calls = []

    def split(labels, fractions, seed):
        calls.append((labels.clone(), fractions, seed))
        return {"val": torch.tensor([5]), "train": torch.tensor([0, 2, 7])}

    monkeypatch.setattr(cifar_mod, "stratified_split", split)
    dm = cifar10(tmp_path, val_size=1, split_seed=3)
    splits = dm.load_splits()
    train, test = dm._decode(train=True), dm._decode(train=False)
    ((labels, fractions, seed),) = calls
    assert torch.equal(labels, train.labels) and seed == 3
    assert fractions == {"val": 1 / 200, "train": 1 - 1 / 200}
    assert torch.equal(splits["val"].images, train.images[[5]])
    assert torch.equal(splits["val"].labels, train.labels[[5]])
    assert torch.equal(splits["train"].images, train.images[[0, 2, 7]])
    assert torch.equal(splits["train"].labels, train.labels[[0, 2, 7]])
    assert set(splits) == {"train", "val", "test"}
    assert torch.equal(splits["test"].images, test.images)


def test_label_noise_flips_nothing_at_zero_and_one_label_at_one_in_n():
    labels = torch.arange(10) % 3
    same = symmetric_label_noise(labels, 0.0, 3, seed=0)
    assert torch.equal(same, labels) and same is not labels
    one = symmetric_label_noise(labels, 0.1, 3, seed=0)
    assert int((one != labels).sum()) == 1
    assert torch.equal(symmetric_label_noise(labels, 0.14, 3, seed=0), one)  # round(1.4) = 1


# --- the corrupted test stream (xent.data.corrupted) ---------------------------------------------

VALID = ", ".join(CORRUPTIONS)
N_C = 6  # images per severity in the hand-written CIFAR-10-C layouts below


class Clean32(InMemoryImageDataModule):
    """20 clean 3x32x32 training images of the ten classes, standing in for CIFAR-10."""

    name = "clean32"

    def __init__(self, **kwargs):
        super().__init__(**{"num_classes": 10, "in_channels": 3, "image_size": 32, **kwargs})
        self.prepared = 0

    def prepare_data(self):
        self.prepared += 1

    def load_splits(self):
        gen = torch.Generator().manual_seed(1)
        images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8, generator=gen)
        split = Split(images, torch.arange(20) % 10)
        return {"train": split, "val": split, "test": split}


def c10c(root, corruptions=("fog", "snow")):
    """A CIFAR-10-C layout of N_C images per severity, written directly (no corrupting)."""
    folder = root / "CIFAR-10-C"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in corruptions:
        np.save(folder / f"{name}.npy", rng.integers(0, 256, (5 * N_C, 32, 32, 3), dtype=np.uint8))
    np.save(folder / "labels.npy", np.tile(np.arange(N_C) % 10, 5))
    return folder


def stream(root, **kwargs) -> CorruptedStreamDataModule:
    args = {"corruptions": ["fog", "snow"], "clean": Clean32(), "batch_size": 4}
    return CorruptedStreamDataModule("cifar10", str(root), **{**args, **kwargs})


def test_gradual_schedule_and_domain_names_name_what_is_wrong():
    with pytest.raises(ConfigError) as info:
        continual_schedule(["fog"], 6)
    assert str(info.value) == "data.severity=6 must be an integer severity in 1..5"
    with pytest.raises(ConfigError) as info:
        gradual_schedule(["fog"], severities=[1, 6])
    assert str(info.value) == "severities=6 must be an integer severity in 1..5"
    with pytest.raises(ConfigError) as info:
        gradual_schedule(["fog", "haze"])
    assert str(info.value) == (f"data.corruptions='haze' is not a corruption; valid: {VALID}")
    assert gradual_schedule(["fog", "snow"], severities=[2, 3]) == [
        ("fog", 2), ("fog", 3), ("snow", 2), ("snow", 3)
    ]  # fmt: skip
    assert domain_names([("fog", 1), ("snow", 2)]) == ["fog@1", "snow@2"]
    assert domain_names([("fog", 1), ("fog", 2), ("fog", 3)]) == ["fog@1", "fog@2", "fog@3"]
    assert domain_names([("fog", 4), ("snow", 4)]) == ["fog", "snow"]
    assert domain_names([]) == []


def test_reshuffled_batches_draw_pass_k_from_seed_times_1_000_003_plus_k():
    sampler = _ReshuffledBatches(10, 4, seed=2)
    assert len(sampler) == 3 and len(_ReshuffledBatches(8, 4, 0)) == 2
    for k in range(3):
        want = torch.randperm(10, generator=torch.Generator().manual_seed(2 * 1_000_003 + k))
        got = list(sampler)
        assert [len(b) for b in got] == [4, 4, 2] and torch.equal(torch.cat(got), want)
    assert sampler.passes == 3


def test_stream_constructor_errors_are_one_line(tmp_path):
    cases = [
        (
            {"variant": "svhn"},
            "data.variant='svhn' is not one of cifar10, cifar100, digits32, fashion_mnist32",
        ),
        ({"num_classes": 100}, "data.num_classes=100 but cifar10 has 10"),
        ({"in_channels": 1}, "data.in_channels=1, data.image_size=32: the corrupted layout is "
         "32x32 RGB; use in_channels=3, image_size=32"),
        ({"image_size": 28}, "data.in_channels=3, data.image_size=28: the corrupted layout is "
         "32x32 RGB; use in_channels=3, image_size=32"),
        ({"input_shape": [3, 32, 31]}, "data.input_shape=[3, 32, 31] must be [3, 32, 32]"),
        ({"batch_size": 0}, "data.batch_size=0 must be a positive integer"),
        ({"batch_size": True}, "data.batch_size=True must be a positive integer"),
        ({"batch_size": 2.0}, "data.batch_size=2.0 must be a positive integer"),
        ({"source_batch_size": 0}, "data.source_batch_size=0 must be a positive integer"),
        ({"source_batch_size": "8"}, "data.source_batch_size='8' must be a positive integer"),
        ({"num_workers": -1}, "data.num_workers=-1 must be an integer >= 0"),
        ({"num_workers": 1.0}, "data.num_workers=1.0 must be an integer >= 0"),
        ({"n_per_domain": 0}, "data.n_per_domain=0 must be null or an integer >= 1"),
        ({"n_per_domain": 2.0}, "data.n_per_domain=2.0 must be null or an integer >= 1"),
        ({"corruptions": "fog"}, "data.corruptions='fog' must be a list of names"),
        ({"corruptions": []}, f"data.corruptions is empty; choose from {VALID}"),
        ({"severity": 0}, "data.severity=0 must be an integer severity in 1..5"),
        ({"clean": 3}, "data.clean=3 must be a mapping of data-module arguments"),
    ]  # fmt: skip
    for kwargs, message in cases:
        args = {"variant": "cifar10", "root": str(tmp_path), **kwargs}
        with pytest.raises(ConfigError) as info:
            CorruptedStreamDataModule(**args)
        assert str(info.value) == message
    with pytest.raises(ConfigError) as info:
        CorruptedStreamDataModule("cifar10", str(tmp_path), clean={"colour": True})
    assert str(info.value).startswith("data.clean: ") and "colour" in str(info.value)


def test_stream_keeps_its_arguments(tmp_path):
    from omegaconf import OmegaConf

    names = OmegaConf.create({"a": "snow", "c": ["${a}", "fog"]}).c  # resolved, as Hydra's
    dm = CorruptedStreamDataModule(
        "cifar100", str(tmp_path), corruptions=names, severity=3,
        input_shape=OmegaConf.create([3, 32, 32]), batch_size=7, num_workers=2, n_per_domain=5,
        generate_seed=4, source_train_size=9,
    )  # fmt: skip
    assert (dm.variant, dm.root, dm.name, dm.num_classes) == (
        "cifar100",
        tmp_path,
        "cifar100_c",
        100,
    )
    assert (dm.in_channels, dm.image_size, dm.input_shape) == (3, 32, [3, 32, 32])
    assert (dm.corruptions, dm.severity, dm.schedule) == (
        ["snow", "fog"],
        3,
        [("snow", 3), ("fog", 3)],
    )
    assert (dm.batch_size, dm.num_workers, dm.n_per_domain, dm.source_batch_size) == (7, 2, 5, None)
    assert (dm.generate_seed, dm.source_train_size, dm.stream_seed) == (4, 9, 0)
    assert (dm.n_per_severity, dm.generated_seconds) == (None, None)
    assert dm.corrupted_root == tmp_path / "CIFAR-100-C"
    assert dm.domain_names == ["snow", "fog"]
    default = CorruptedStreamDataModule("digits32", str(tmp_path))
    assert (default.corruptions, default.severity, default.batch_size) == (
        list(CORRUPTIONS),
        5,
        200,
    )
    assert default.corrupted_root == tmp_path / "DIGITS32-C-seed0" and default.num_workers == 0
    ones = CorruptedStreamDataModule(
        "cifar10", str(tmp_path), batch_size=1, source_batch_size=1, n_per_domain=1
    )  # the smallest sizes are accepted
    assert (ones.batch_size, ones.source_batch_size, ones.n_per_domain) == (1, 1, 1)


def test_the_clean_module_is_built_from_the_stream_arguments(tmp_path):
    dm = CorruptedStreamDataModule("cifar100", str(tmp_path), batch_size=7)
    clean = dm.clean_module
    assert isinstance(clean, CIFARDataModule) and clean.name == "cifar100"
    assert (clean.root, clean.num_classes, clean.in_channels, clean.image_size) == (
        tmp_path, 100, 3, 32
    )  # fmt: skip
    assert clean.batch_size == 7
    sized = CorruptedStreamDataModule("cifar10", str(tmp_path), batch_size=7, source_batch_size=5)
    assert sized.clean_module.batch_size == 5
    given = CorruptedStreamDataModule(
        "cifar10", str(tmp_path), source_batch_size=5, clean={"batch_size": 9, "download": False}
    )
    assert (given.clean_module.batch_size, given.clean_module.download) == (9, False)
    digits = CorruptedStreamDataModule("digits32", str(tmp_path), batch_size=6).clean_module
    assert isinstance(digits, DigitsDataModule) and digits.upsample == 4
    assert (digits.num_classes, digits.in_channels, digits.image_size) == (10, 3, 32)
    assert digits.batch_size == 6
    other = CorruptedStreamDataModule("digits32", str(tmp_path), clean={"upsample": 2})
    assert other.clean_module.upsample == 2
    built = Clean32()
    assert stream(tmp_path, clean=built).clean_module is built


def test_prepare_checks_the_cifar_layout_but_not_the_digits_cache(tmp_path):
    clean = Clean32()
    CorruptedStreamDataModule("digits32", str(tmp_path), clean=clean).prepare_data()
    assert clean.prepared == 1 and not list(tmp_path.iterdir())
    dm = stream(tmp_path)
    with pytest.raises(DataNotFoundError):
        dm.prepare_data()
    c10c(tmp_path)
    dm.prepare_data()
    assert dm.clean_module.prepared == 1


def test_setup_checks_the_source_size_and_reads_the_layout_once(tmp_path, monkeypatch):
    c10c(tmp_path, corruptions=("fog", "snow", "frost"))
    with pytest.raises(ConfigError) as info:
        stream(tmp_path, source_train_size=21).setup()
    assert str(info.value) == (
        "data.source_train_size=21 but the clean training split has 20 images"
    )
    dm = stream(tmp_path, source_train_size=20)
    dm.schedule = [("snow", 1), ("fog", 2), ("snow", 3)]
    assert dm._scheduled_corruptions() == ["snow", "fog"]
    dm.setup()
    assert dm.n_per_severity == N_C and dm._ready
    monkeypatch.setattr(corrupted_mod, "check_layout", None)  # a second setup reads nothing
    dm.setup()


def test_stream_batches_cap_each_domain_and_check_the_schedule(tmp_path):
    folder = c10c(tmp_path)
    dm = stream(tmp_path, n_per_domain=5, num_workers=0)
    dm.stream_seed = 3
    order = list(range(N_C))
    random.Random(3).shuffle(order)
    batches = dm.stream_batches()
    assert [(d, idx.tolist()) for d, idx in batches] == [
        (0, order[:4]), (0, order[4:5]), (1, order[:4]), (1, order[4:5])
    ]  # fmt: skip
    dm.num_workers = 2
    assert dm.test_dataloader().num_workers == 2
    dm.num_workers = 0
    loader = dm.test_dataloader()
    assert loader.num_workers == 0 and len(loader) == 4
    x, y, domain = list(loader)[2]
    images, labels = read_corruption(folder, "snow", 5)
    assert torch.equal(x, torch.from_numpy(images[order[:4]]).permute(0, 3, 1, 2).float() / 255)
    assert torch.equal(y, torch.from_numpy(labels[order[:4]]))
    assert torch.equal(domain, torch.ones(4, dtype=torch.int64))
    dm.schedule = [("fog", 6)]
    with pytest.raises(ConfigError) as info:
        dm.stream_batches()
    assert str(info.value) == "schedule=6 must be an integer severity in 1..5"
    dm.schedule = [("frost", 1)]
    with pytest.raises(DataNotFoundError):  # validated against the files, not setup's
        dm.stream_batches()


def test_source_loader_gives_clean_train_pixels_in_unit_range(tmp_path):
    c10c(tmp_path)
    dm = stream(tmp_path, source_batch_size=8, num_workers=2)
    loader = dm.source_loader(seed=4)
    assert loader.num_workers == 2 and loader.sampler.seed == 4 and loader.sampler.batch_size == 8
    dm.num_workers = 0
    loader = dm.source_loader(seed=4)
    train = dm.clean_module.splits["train"]
    order = torch.randperm(20, generator=torch.Generator().manual_seed(4 * 1_000_003))
    for (x, y), idx in zip(loader, order.split(8), strict=True):
        assert torch.equal(x, train.images[idx].float() / 255) and torch.equal(y, train.labels[idx])
    assert len(loader) == 3
    assert stream(tmp_path, batch_size=6).source_loader(0).sampler.batch_size == 6


# --- digits (xent.data.digits) -------------------------------------------------------------------


@pytest.mark.parametrize("upsample,channels", [(1, 1), (2, 3), (4, 3)])
def test_digits_pixels_are_the_scaled_and_resized_sklearn_images(upsample, channels):
    from sklearn.datasets import load_digits

    size = 8 * upsample
    fractions = {"val_fraction": 0.25, "test_fraction": 0.15}
    shape = {"num_classes": 10, "in_channels": channels, "image_size": size}
    dm = DigitsDataModule(upsample=upsample, split_seed=2, **fractions, **shape)
    splits = dm.load_splits()
    raw = load_digits()
    images = torch.from_numpy(raw.images).float()[:, None] * (255.0 / 16.0)
    if upsample > 1:
        images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear")
    images = images.round().clamp(0, 255).to(torch.uint8).expand(-1, channels, -1, -1)
    labels = torch.from_numpy(raw.target).long()
    parts = stratified_split(labels, {"train": 0.6, "val": 0.25, "test": 0.15}, 2)
    for name, idx in parts.items():
        assert torch.equal(splits[name].labels, labels[idx])
        assert splits[name].images.shape == (len(idx), channels, size, size)
        assert torch.equal(splits[name].images, images[idx])


def test_the_digits32_cache_is_built_in_a_hidden_temp_dir_beside_it(tmp_path, monkeypatch):
    calls = []

    def write_corrupted(root, images, labels, corruptions, seed):
        calls.append((root, images.shape, labels.tolist(), list(corruptions), seed))
        root.mkdir(exist_ok=True)
        np.save(root / "fog.npy", np.tile(images, (5, 1, 1, 1)))
        np.save(root / "labels.npy", np.tile(labels, 5))

    monkeypatch.setattr(corrupted_mod, "write_corrupted", write_corrupted)
    root = tmp_path / "not" / "yet"
    dm = CorruptedStreamDataModule(
        "digits32", str(root), corruptions=["fog"], clean=Clean32(), generate_seed=7
    )
    dm.setup()
    ((tmp, shape, labels, corruptions, seed),) = calls
    assert tmp.parent == root and tmp.name.startswith(".DIGITS32-C-seed7.tmp-")
    assert (shape, labels, corruptions, seed) == ((20, 32, 32, 3), [i % 10 for i in range(20)],
                                                  list(CORRUPTIONS), 7)  # fmt: skip
    assert [p.name for p in root.iterdir()] == ["DIGITS32-C-seed7"] and dm.n_per_severity == 20
    assert 0.0 <= dm.generated_seconds < 60.0
