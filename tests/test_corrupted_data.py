"""The CIFAR-10-C layout (writer, validating reader), `xent-corrupt`, and the TTA stream module."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

import xent.data.corrupted as corrupted_mod
from tests.conftest import write_cifar
from xent.corrupt.corruptions import CORRUPTIONS, apply, corruption_seed
from xent.corrupt.layout import check_layout, read_corruption, read_meta, write_corrupted
from xent.data.base import Split
from xent.data.corrupted import (
    CorruptedStreamDataModule,
    continual_schedule,
    domain_names,
    gradual_schedule,
)
from xent.data.digits import DigitsDataModule
from xent.errors import ConfigError, DataNotFoundError
from xent.runner.corrupt_cli import main

N_TEST = 24  # digits32 test images in the fast tests (the real split has 360)


def clean_images(n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return images, rng.integers(0, 10, n)


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    root = tmp_path_factory.mktemp("c10c") / "CIFAR-10-C"
    images, labels = clean_images()
    write_corrupted(root, images, labels, seed=7)
    return root, images, labels


@pytest.fixture
def small_digits(monkeypatch):
    """digits32 with a 24-image test split, so generating all 75 blocks takes a second."""
    real = DigitsDataModule.load_splits

    def load_splits(self):
        splits = real(self)
        test = splits["test"]
        splits["test"] = Split(test.images[:N_TEST], test.labels[:N_TEST])
        return splits

    monkeypatch.setattr(DigitsDataModule, "load_splits", load_splits)


# -- layout ---------------------------------------------------------------------------------------
def test_writer_output_passes_the_reader_and_round_trips(layout):
    root, images, labels = layout
    assert check_layout(root) == len(images)
    stored = np.load(root / "labels.npy")
    assert stored.dtype == np.uint8 and np.array_equal(stored, np.tile(labels, 5))
    for name in ("gaussian_noise", "glass_blur", "frost", "jpeg_compression"):
        assert np.load(root / f"{name}.npy").shape == (5 * len(images), 32, 32, 3)
        for severity in (1, 3, 5):
            got, got_labels = read_corruption(root, name, severity)
            want = apply(name, images, severity, seed=corruption_seed(7, name, severity))
            assert got.dtype == np.uint8 and np.array_equal(got, want)
            assert got_labels.dtype == np.int64 and np.array_equal(got_labels, labels)
    first, first_labels = read_corruption(root, "fog", 2, n_per_severity=5)
    assert np.array_equal(first, read_corruption(root, "fog", 2)[0][:5])
    assert np.array_equal(first_labels, labels[:5])
    assert read_meta(root)["seed"] == 7
    assert not list(root.glob(".*tmp*"))  # temp files were renamed into place


def test_a_subset_of_corruptions_writes_the_same_bytes(tmp_path, layout):
    root, images, labels = layout
    write_corrupted(tmp_path, images, labels, ["snow"], seed=7)
    assert np.array_equal(np.load(tmp_path / "snow.npy"), np.load(root / "snow.npy"))
    assert not (tmp_path / "fog.npy").exists()


def test_labels_of_length_n_are_accepted(tmp_path, layout):
    root, _, labels = layout
    (tmp_path / "fog.npy").write_bytes((root / "fog.npy").read_bytes())
    np.save(tmp_path / "labels.npy", labels.astype(np.int64))
    assert np.array_equal(read_corruption(tmp_path, "fog", 4)[1], labels)


def test_reader_rejects_a_wrong_dtype(tmp_path):
    np.save(tmp_path / "fog.npy", np.zeros((10, 32, 32, 3), np.float32))
    np.save(tmp_path / "labels.npy", np.zeros(10, np.uint8))
    with pytest.raises(ConfigError) as err:
        read_corruption(tmp_path, "fog", 1)
    assert str(err.value) == f"{tmp_path / 'fog.npy'}: dtype float32, but the layout needs uint8"


def test_reader_rejects_a_wrong_shape(tmp_path):
    np.save(tmp_path / "fog.npy", np.zeros((10, 3, 32, 32), np.uint8))
    with pytest.raises(ConfigError) as err:
        read_corruption(tmp_path, "fog", 1)
    assert str(err.value) == (
        f"{tmp_path / 'fog.npy'}: shape (10, 3, 32, 32), but the layout needs (5*N, 32, 32, 3)"
    )


def test_reader_rejects_rows_not_a_multiple_of_five(tmp_path):
    np.save(tmp_path / "fog.npy", np.zeros((12, 32, 32, 3), np.uint8))
    with pytest.raises(ConfigError) as err:
        read_corruption(tmp_path, "fog", 1)
    assert str(err.value) == (
        f"{tmp_path / 'fog.npy'}: 12 rows is not a positive multiple of 5 "
        f"(one block of N per severity)"
    )


def test_reader_rejects_missing_or_mismatched_labels(tmp_path):
    root = tmp_path / "CIFAR-10-C"
    root.mkdir()
    np.save(root / "fog.npy", np.zeros((10, 32, 32, 3), np.uint8))
    with pytest.raises(DataNotFoundError) as err:
        read_corruption(root, "fog", 1)
    assert str(err.value) == (
        f"{root / 'labels.npy'} not found; make it with: "
        f"xent-corrupt --source cifar10 --root {tmp_path} --out {root}"
    )
    np.save(root / "labels.npy", np.zeros(7, np.uint8))
    with pytest.raises(ConfigError) as err:
        read_corruption(root, "fog", 1)
    assert str(err.value) == (
        f"{root / 'labels.npy'}: 7 labels, but the images have 10 rows; need 10 (or 2)"
    )


def test_reader_names_the_missing_file_and_the_command(tmp_path):
    root = tmp_path / "CIFAR-100-C"
    with pytest.raises(DataNotFoundError) as err:
        read_corruption(root, "snow", 5)
    assert str(err.value) == (
        f"{root / 'snow.npy'} not found; make it with: "
        f"xent-corrupt --source cifar100 --root {tmp_path} --out {root}"
    )


def test_reader_rejects_an_unknown_corruption_or_severity(layout):
    root = layout[0]
    with pytest.raises(ConfigError) as err:
        read_corruption(root, "speckle", 5)
    assert str(err.value) == (
        f"corruption='speckle' is not a corruption; valid: {', '.join(CORRUPTIONS)}"
    )
    with pytest.raises(ConfigError, match=r"^severity=0 must be an integer severity in 1\.\.5$"):
        read_corruption(root, "fog", 0)
    with pytest.raises(ConfigError, match=r"n_per_severity=13 must be in 1\.\.12"):
        read_corruption(root, "fog", 1, n_per_severity=13)


# -- CLI ------------------------------------------------------------------------------------------
def test_cli_writes_a_valid_digits32_layout(tmp_path, capsys):
    out = tmp_path / "d32"
    assert main(["--source", "digits32", "--out", str(out), "--limit", "20"]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and line.startswith("xent-corrupt: wrote 15 corruptions x 5 severities")
    assert check_layout(out) == 20
    images, labels = read_corruption(out, "motion_blur", 3)
    assert images.shape == (20, 32, 32, 3) and labels.max() <= 9


def test_cli_errors_are_one_line_with_exit_2(tmp_path, capsys):
    args = ["--source", "digits32", "--out", str(tmp_path), "--limit", "4"]
    assert main([*args, "--corruptions", "fog,blur"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err == (
        f"xent-corrupt: error: --corruptions='blur' is not a corruption; "
        f"valid: {', '.join(CORRUPTIONS)}\n"
    )
    assert main(["--source", "svhn", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'svhn'" in err
    assert main(["--source", "cifar10", "--root", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cifar10 test set not found under" in err
    assert not list(tmp_path.iterdir())


# -- schedules ------------------------------------------------------------------------------------
def test_schedules_and_domain_names():
    continual = continual_schedule(CORRUPTIONS, 5)
    assert continual == [(c, 5) for c in CORRUPTIONS]
    assert domain_names(continual) == list(CORRUPTIONS)
    gradual = gradual_schedule(CORRUPTIONS)
    assert len(gradual) == 15 * 9
    assert [s for _, s in gradual[:9]] == [1, 2, 3, 4, 5, 4, 3, 2, 1]  # the first starts at 1
    assert [c for c, _ in gradual[:10]] == ["gaussian_noise"] * 9 + ["shot_noise"]
    assert domain_names(gradual)[:2] == ["gaussian_noise@1", "gaussian_noise@2"]
    with pytest.raises(ConfigError, match="data.corruptions='fogg' is not a corruption"):
        continual_schedule(["fogg"], 5)


# -- the stream data module ----------------------------------------------------------------------
def test_digits32_c_generates_once_and_caches(tmp_path, small_digits, monkeypatch):
    dm = CorruptedStreamDataModule("digits32", str(tmp_path), num_classes=10)
    dm.setup()
    cache = tmp_path / "DIGITS32-C-seed0"
    assert dm.corrupted_root == cache and dm.n_per_severity == N_TEST
    assert sorted(p.stem for p in cache.glob("*.npy")) == sorted([*CORRUPTIONS, "labels"])
    assert [p.name for p in tmp_path.iterdir()] == ["DIGITS32-C-seed0"]  # no temp dir left
    mtimes = {p: p.stat().st_mtime_ns for p in cache.iterdir()}

    def no_regeneration(*args, **kwargs):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(corrupted_mod, "write_corrupted", no_regeneration)
    again = CorruptedStreamDataModule("digits32", str(tmp_path))
    again.setup()
    assert {p: p.stat().st_mtime_ns for p in cache.iterdir()} == mtimes
    assert again.n_per_severity == N_TEST
    # the clean test split is what was corrupted
    test = again.clean_module.splits["test"]
    assert np.array_equal(read_corruption(cache, "fog", 1)[1], test.labels.numpy())


def test_digits32_c_rejects_a_cache_of_another_split(tmp_path, small_digits):
    CorruptedStreamDataModule("digits32", str(tmp_path)).setup()
    other = CorruptedStreamDataModule("digits32", str(tmp_path), clean={"split_seed": 1})
    with pytest.raises(ConfigError, match="generated from a different digits32 test split"):
        other.setup()


def test_a_rival_that_wins_the_race_is_reused(tmp_path, small_digits, monkeypatch):
    real = corrupted_mod.write_corrupted

    def rival_finishes_first(root, *args, **kwargs):
        real(root, *args, **kwargs)
        real(tmp_path / "DIGITS32-C-seed3", *args, **kwargs)  # the rival's finished copy
        return root

    monkeypatch.setattr(corrupted_mod, "write_corrupted", rival_finishes_first)
    dm = CorruptedStreamDataModule("digits32", str(tmp_path), generate_seed=3)
    dm.setup()
    assert [p.name for p in tmp_path.iterdir()] == ["DIGITS32-C-seed3"]
    assert check_layout(dm.corrupted_root) == N_TEST


def collect(dm: CorruptedStreamDataModule):
    return [(x.clone(), y.clone(), d.clone()) for x, y, d in dm.test_dataloader()]


def test_stream_follows_the_schedule_without_crossing_domains(tmp_path, small_digits):
    dm = CorruptedStreamDataModule(
        "digits32", str(tmp_path), corruptions=["fog", "contrast", "snow"], batch_size=10
    )
    dm.stream_seed = 5
    batches = collect(dm)
    assert len(batches) == 3 * 3  # 24 per domain: 10, 10, 4
    domains = [int(d[0]) for _, _, d in batches]
    assert domains == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for x, y, d in batches:
        assert torch.all(d == d[0]) and d.dtype == torch.int64 and y.dtype == torch.int64
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32)
        assert 0.0 <= x.min() and x.max() <= 1.0
    assert [len(y) for _, y, _ in batches[:3]] == [10, 10, 4]
    # within a domain: the indices shuffled by random.Random(stream_seed), re-seeded per domain
    order = list(range(N_TEST))
    random.Random(5).shuffle(order)
    images, labels = read_corruption(dm.corrupted_root, "contrast", 5)
    x = torch.cat([b[0] for b in batches[3:6]])
    y = torch.cat([b[1] for b in batches[3:6]])
    assert torch.equal(y, torch.from_numpy(labels[order]))
    want = torch.from_numpy(images[order]).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(x, want)
    fog_y = torch.cat([b[1] for b in batches[:3]])
    assert torch.equal(fog_y, y)  # same permutation in every domain


def test_stream_order_is_deterministic_per_stream_seed(tmp_path, small_digits):
    dm = CorruptedStreamDataModule("digits32", str(tmp_path), corruptions=["fog"], batch_size=8)
    first = collect(dm)
    second = collect(dm)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, second, strict=True))
    dm.stream_seed = 1
    other = collect(dm)
    assert not torch.equal(first[0][1], other[0][1])
    assert sorted(torch.cat([b[1] for b in first]).tolist()) == sorted(
        torch.cat([b[1] for b in other]).tolist()
    )


def test_gradual_stream_and_domain_cap(tmp_path, small_digits):
    dm = CorruptedStreamDataModule("digits32", str(tmp_path), batch_size=4, n_per_domain=6)
    dm.schedule = gradual_schedule(dm.corruptions)
    batches = collect(dm)
    assert len(batches) == 15 * 9 * 2  # 6 samples per domain: batches of 4 and 2
    assert [int(d[0]) for _, _, d in batches[::2]] == list(range(135))
    assert len(dm.domain_names) == 135 and dm.domain_names[4] == "gaussian_noise@5"
    # severity 5 of gradual's 5th domain equals the continual stream's first domain
    continual = CorruptedStreamDataModule("digits32", str(tmp_path), batch_size=4, n_per_domain=6)
    assert torch.equal(collect(continual)[0][0], batches[8][0])
    dm.schedule = [("fog", 5), ("smoke", 5)]
    with pytest.raises(ConfigError, match="schedule='smoke' is not a corruption"):
        dm.test_dataloader()


def test_source_loader_reshuffles_clean_train_batches(tmp_path, small_digits):
    dm = CorruptedStreamDataModule("digits32", str(tmp_path), source_batch_size=100)
    loader = dm.source_loader(seed=0)
    first = list(loader)
    train = dm.clean_module.splits["train"]
    assert len(first) == len(loader) == -(-len(train.labels) // 100)
    x, y = first[0]
    assert x.shape == (100, 3, 32, 32) and x.dtype == torch.float32 and x.max() <= 1.0
    assert sorted(torch.cat([b[1] for b in first]).tolist()) == sorted(train.labels.tolist())
    again = list(dm.source_loader(seed=0))
    assert torch.equal(again[0][1], y)  # same seed, same first pass
    assert not torch.equal(list(loader)[0][1], y)  # the next pass is reshuffled
    assert not torch.equal(next(iter(dm.source_loader(seed=1)))[1], y)
    assert dm.clean_module.mean.shape == (3,)


def test_constructor_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"^data.variant='svhn' is not one of cifar10, cifar100"):
        CorruptedStreamDataModule("svhn", str(tmp_path))
    with pytest.raises(ConfigError, match=r"^data.num_classes=10 but cifar100 has 100$"):
        CorruptedStreamDataModule("cifar100", str(tmp_path), num_classes=10)
    with pytest.raises(ConfigError, match=r"^data.input_shape=\[1, 32, 32\] must be \[3, 32, 32\]"):
        CorruptedStreamDataModule("cifar10", str(tmp_path), input_shape=[1, 32, 32])
    with pytest.raises(ConfigError, match=r"^data.severity=7 must be"):
        CorruptedStreamDataModule("cifar10", str(tmp_path), severity=7)
    with pytest.raises(ConfigError, match=r"^data.corruptions='haze' is not a corruption"):
        CorruptedStreamDataModule("cifar10", str(tmp_path), corruptions=["fog", "haze"])


def test_cifar10_c_missing_folder_says_how_to_make_it(tmp_path):
    dm = CorruptedStreamDataModule("cifar10", str(tmp_path), clean={"download": False})
    with pytest.raises(DataNotFoundError) as err:
        dm.prepare_data()
    root = tmp_path / "CIFAR-10-C"
    assert str(err.value) == (
        f"{root / 'gaussian_noise.npy'} not found; make it with: "
        f"xent-corrupt --source cifar10 --root {tmp_path} --out {root}"
    )


def test_cifar10_c_from_the_cli_streams(tmp_path, skip_cifar_checksum, capsys):
    write_cifar(tmp_path, "cifar10", n_train=50, n_test=20)
    assert main(["--source", "cifar10", "--root", str(tmp_path), "--corruptions", "fog,snow"]) == 0
    assert "to " + str(tmp_path / "CIFAR-10-C") in capsys.readouterr().out
    dm = CorruptedStreamDataModule(
        "cifar10",
        str(tmp_path),
        corruptions=["snow", "fog"],
        batch_size=8,
        clean={"download": False},
    )
    dm.prepare_data()
    batches = collect(dm)
    assert [int(d[0]) for _, _, d in batches] == [0, 0, 0, 1, 1, 1]
    assert sum(len(y) for _, y, _ in batches) == 40
    assert len(dm.clean_module.splits["train"].labels) == 50


@pytest.mark.slow
def test_full_digits32_c_generates_in_seconds(tmp_path):
    """The real 360-image test split, 15 corruptions x 5 severities (about 6 s on one core)."""
    dm = CorruptedStreamDataModule("digits32", str(tmp_path), batch_size=64)
    dm.setup()
    assert dm.n_per_severity == 360 and dm.generated_seconds < 60
    assert len(dm.test_dataloader()) == 15 * 6  # batches of 64: 5 full and one of 40
