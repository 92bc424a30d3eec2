"""Data modules: real digits, CIFAR decoded from tiny files in the real pickle format."""

from __future__ import annotations

import pickle
import threading

import pytest
import torch

from tests.conftest import composed, write_cifar
from xent.data.augment import random_crop_flip
from xent.data.base import EpochBatchSampler, PrefetchLoader
from xent.data.cifar import CIFARDataModule
from xent.data.digits import DigitsDataModule
from xent.data.noise import symmetric_label_noise
from xent.errors import ConfigError, DataNotFoundError


def cifar_module(root, variant: str, **kw) -> CIFARDataModule:
    """A CIFAR module reading `root` only (no download), with the variant's real shape."""
    classes = 10 if variant == "cifar10" else 100
    args = {"num_classes": classes, "in_channels": 3, "image_size": 32, "download": False, **kw}
    return CIFARDataModule(variant=variant, root=str(root), **args)


def digits(**kw) -> DigitsDataModule:
    args = {"num_classes": 10, "in_channels": 1, "image_size": 8, "batch_size": 64, **kw}
    dm = DigitsDataModule(**args)
    dm.setup()
    return dm


def test_digits_split_is_stratified_disjoint_and_fixed():
    a, b = digits(), digits(shuffle_seed=5)
    sizes = {k: len(v.labels) for k, v in a.splits.items()}
    assert sizes == {"train": 1257, "val": 180, "test": 360}
    assert sum(sizes.values()) == 1797
    # every class is present in each split in (nearly) the overall proportion
    for split in a.splits.values():
        counts = split.labels.bincount(minlength=10).float()
        assert (counts / counts.sum() - 0.1).abs().max() < 0.02
    # the run seed does not move the split: only split_seed does
    assert torch.equal(a.splits["test"].images, b.splits["test"].images)
    c = digits(split_seed=1)
    assert not torch.equal(a.splits["test"].images, c.splits["test"].images)
    # no test image also sits in train
    train = {bytes(x.numpy()) for x in a.splits["train"].images}
    overlap = sum(bytes(x.numpy()) in train for x in a.splits["test"].images)
    assert overlap < 5  # sklearn digits holds a handful of exact duplicate images


def test_digits_values_are_the_real_dataset():
    from sklearn.datasets import load_digits

    dm = digits()
    raw = load_digits()
    assert raw.images.shape == (1797, 8, 8)
    train = dm.splits["train"]
    assert train.images.dtype == torch.uint8 and int(train.images.max()) == 255
    # the scaled pixels are the sklearn ones times 255/16, rounded
    first = train.images[0, 0].float() * 16 / 255
    matches = (torch.from_numpy(raw.images).float() - first).abs().amax(dim=(1, 2)) < 0.04
    assert matches.any()


def test_digits32_is_upsampled_to_cifar_shape():
    dm = digits(in_channels=3, image_size=32, upsample=4, crop_padding=4)
    x, y, idx = next(iter(dm.train_dataloader()))
    assert x.shape == (64, 3, 32, 32)
    assert torch.equal(x[:, 0], x[:, 1])  # grey replicated


def test_declared_shape_mismatch_names_the_key():
    with pytest.raises(ConfigError, match=r"data.num_classes=5 but digits has 10 classes"):
        digits(num_classes=5)
    with pytest.raises(ConfigError, match=r"data.image_size=32 but digits has 8"):
        digits(image_size=32)


def test_normalised_train_batches_have_unit_statistics():
    dm = digits(batch_size=2000)
    x, _, _ = next(iter(dm.train_dataloader()))
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-2


def test_sampler_depends_only_on_seed_and_epoch():
    def batches(seed, epoch):
        sampler = EpochBatchSampler(100, 32, shuffle=True, drop_last=False, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    a, b = batches(0, 3), batches(0, 3)
    assert len(a) == 4 and [len(i) for i, _ in a] == [32, 32, 32, 4]
    assert all(torch.equal(i, j) and s == t for (i, s), (j, t) in zip(a, b, strict=True))
    assert not torch.equal(a[0][0], batches(0, 4)[0][0])
    assert not torch.equal(a[0][0], batches(1, 3)[0][0])
    assert sorted(torch.cat([i for i, _ in a]).tolist()) == list(range(100))


def test_prefetch_threads_give_the_single_process_batches_in_order():
    def epoch(loader, n):
        loader.sampler.set_epoch(n)
        return list(loader)

    serial = digits(num_workers=0, crop_padding=2, hflip=True)
    threaded = digits(num_workers=2, crop_padding=2, hflip=True)
    loader = threaded.train_dataloader()
    assert isinstance(loader, PrefetchLoader) and loader.threads == 2
    for n in (0, 1):
        a, b = epoch(serial.train_dataloader(), n), epoch(loader, n)
        assert len(a) == len(b) == len(loader) > 2
        for (xa, ya, ia), (xb, yb, ib) in zip(a, b, strict=True):
            assert torch.equal(ia, ib) and torch.equal(ya, yb) and torch.equal(xa, xb)
    # Leaving an epoch early shuts its threads down (none left behind).
    for i, _ in enumerate(loader):
        if i == 1:
            break
    assert not [t for t in threading.enumerate() if t.name.startswith("xent-batches")]


@pytest.mark.slow
def test_a_run_with_prefetch_threads_matches_one_without(tmp_path, monkeypatch):
    """Lightning drives PrefetchLoader like any DataLoader (set_epoch, len, early stops), and
    its hint to add worker processes, given on machines of more than 2 cores, stays quiet."""
    import warnings

    import lightning.fabric.utilities.data as lightning_data

    from xent.runner.run import run

    monkeypatch.setattr(lightning_data, "_num_cpus_available", lambda: 16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = [
            run(composed(tmp_path / str(w), f"data.num_workers={w}", "trainer.max_epochs=2"))
            for w in (0, 2)
        ]
    assert not [w for w in caught if "many workers" in str(w.message)]
    keys = ("test/acc", "test/nll", "best/val_acc", "epochs")
    assert [{k: r[k] for k in keys} for r in results] == [{k: results[0][k] for k in keys}] * 2
    assert results[0]["status"] == "ok" and results[0]["test/acc"] > 0.8


def test_crop_flip_matches_torchvision_semantics():
    gen = torch.Generator().manual_seed(0)
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.uint8).view(2, 3, 6, 6) + 1
    out = random_crop_flip(images, padding=2, hflip=True, generator=gen)
    assert out.shape == images.shape and out.dtype == torch.uint8
    for src, dst in zip(images, out, strict=True):
        # every output is some 6x6 window of the zero-padded (maybe mirrored) source
        padded = torch.nn.functional.pad(src, (2, 2, 2, 2))
        windows = [
            padded[:, r : r + 6, c : c + 6].flip(-1) if flip else padded[:, r : r + 6, c : c + 6]
            for r in range(5)
            for c in range(5)
            for flip in (False, True)
        ]
        assert any(torch.equal(dst, w) for w in windows)
    # without padding or flip it is the identity
    assert torch.equal(random_crop_flip(images, 0, False, gen), images)


def test_symmetric_noise_flips_exactly_the_rate_to_other_classes():
    labels = torch.arange(1000) % 10
    noisy = symmetric_label_noise(labels, 0.4, 10, seed=0)
    flipped = noisy != labels
    assert int(flipped.sum()) == 400
    assert noisy.min() >= 0 and noisy.max() <= 9
    # flips land on every other class, roughly uniformly
    shifts = ((noisy - labels) % 10)[flipped].bincount(minlength=10)
    assert shifts[0] == 0 and shifts[1:].min() > 20
    assert torch.equal(noisy, symmetric_label_noise(labels, 0.4, 10, seed=0))
    with pytest.raises(ValueError, match=r"data.label_noise=1.0"):
        symmetric_label_noise(labels, 1.0, 10, seed=0)


@pytest.mark.parametrize("variant,classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_decodes_real_pickle_format(tmp_path, skip_cifar_checksum, variant, classes):
    folder = write_cifar(tmp_path, variant, n_train=150, n_test=40)
    dm = cifar_module(tmp_path, variant, batch_size=16, crop_padding=4, hflip=True)
    name = "test_batch" if variant == "cifar10" else "test"
    with open(folder / name, "rb") as handle:
        raw = pickle.load(handle, encoding="latin1")
    dm.setup()
    assert dm.splits["train"].images.shape == (150, 3, 32, 32)
    # val_size=0: validation is the test split, as in the CRD literature
    assert dm.splits["val"] is dm.splits["test"]
    # pixel layout: the pickle's row of 3072 = 3 planes of 32x32 (channel-first)
    first = torch.as_tensor(raw["data"][0]).view(3, 32, 32)
    assert torch.equal(dm.splits["test"].images[0], first)
    x, y, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 3, 32, 32) and y.dtype == torch.long


def test_cifar_held_out_validation(tmp_path, skip_cifar_checksum):
    write_cifar(tmp_path, "cifar10", n_train=200, n_test=40)
    dm = cifar_module(tmp_path, "cifar10", val_size=50)
    dm.setup()
    assert len(dm.splits["val"].labels) == 50 and len(dm.splits["train"].labels) == 150


def test_cifar_missing_without_download_says_where(tmp_path):
    dm = cifar_module(tmp_path, "cifar100")
    with pytest.raises(DataNotFoundError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert str(tmp_path / "cifar-100-python") in message
    assert "cifar-100-python.tar.gz" in message and "data.download=true" in message
    assert "\n" not in message


def test_cifar_real_checksum_rejects_wrong_files(tmp_path):
    write_cifar(tmp_path, "cifar10")
    dm = cifar_module(tmp_path, "cifar10")
    with pytest.raises(DataNotFoundError, match=r"failed torchvision's checksum"):
        dm.setup()
