"""Exact behaviour of the data modules, beyond tests/test_data.py: data=toy2d's seeded sets and
pairing sampler, data=synthetic_cifar's images, the in-memory base, the tables and CIFAR's split.

Every test is fast (tiny sets, no training): mutation testing runs this file per mutant.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xent.data.synthetic import SyntheticImageDataModule, random_split
from xent.data.toy2d import PairBatchSampler, PairGather, Toy2DDataModule, split_generator
from xent.errors import ConfigError
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
    with pytest.raises(ConfigError) as info:
        Toy2DDataModule(target="ring")
    assert str(info.value) == (
        "data.target='ring' is not a distribution; valid: 8gaussians, gaussian, moons, scurve"
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
    workers = Toy2DDataModule(n_train=10, batch_size=4, num_workers=2)
    workers.setup()
    threaded = workers.train_dataloader()
    assert (threaded.num_workers, threaded.persistent_workers) == (2, True)
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
