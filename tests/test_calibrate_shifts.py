"""Issue 20, task=calibrate's shifted test sets (docs/methods/calibrate.md §7.3), fast tier: one
tiny run on digits32 end to end, its exact metrics for seed 0, every corruption a shifted set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import assert_one_line_error, run_bad_commands
from xent.calibration.logits_cache import logits_cache_file
from xent.calibration.shifts import ShiftSpec, check_shift_stream, shift_spec, stream_variant
from xent.corrupt.corruptions import CORRUPTIONS
from xent.corrupt.layout import META, layout_dir, write_corrupted
from xent.data.digits import DigitsDataModule
from xent.errors import ConfigError, DataNotFoundError

N_SHIFTED = 20  # images per shifted set in the stand-in layout


def write_small_digits32_c(data_dir: Path, keep_meta: bool = False) -> Path:
    """A small stand-in for DIGITS32-C-seed0: the first 20 test images of digits32, corrupted
    as the generated layout would be, in 0.2 s where generating all 360 takes 4. Without
    meta.json the stream takes it as it takes a downloaded CIFAR-10-C: without the digest check;
    with it, it is a cache made from another test split."""
    clean = DigitsDataModule(num_classes=10, in_channels=3, image_size=32, upsample=4)
    clean.setup("test")
    test = clean.splits["test"]
    images = test.images[:N_SHIFTED].permute(0, 2, 3, 1).contiguous().numpy()
    root = layout_dir(data_dir, "digits32", 0)
    write_corrupted(root, images, test.labels[:N_SHIFTED].numpy(), CORRUPTIONS, seed=0)
    if not keep_meta:
        (root / META).unlink()
    return root


def tiny_run_overrides(tmp_path: Path) -> list[str]:
    """A 1-epoch MLP source trained into the cache, calibrated by temperature scaling."""
    return [
        "task=calibrate", "data=digits32", "model=mlp", "source.recipe.epochs=1",
        f"paths.teachers={tmp_path / 'teachers'}", f"paths.data_dir={tmp_path / 'data'}",
    ]  # fmt: skip


def test_a_tiny_digits32_run_measures_every_corruption_before_and_after(e2e_runs):
    """tests/e2e_runs.py's calibrate run: a 1-epoch MLP source, TS, 20 images a corruption."""
    proc, folder = e2e_runs["calibrate"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = folder / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["shifts"] == list(CORRUPTIONS)
    assert metrics["calib/n"] == 180 and round(metrics["calib/T"], 4) == 1.1124
    exact = {
        "test/ece": 0.0907,
        "test/ece_uncal": 0.1088,
        "test/acc": 0.6528,
        "test/ece/fog": 0.3615,
        "test/ece_uncal/fog": 0.3323,
        "test/acc/fog": 0.35,  # 7 of the 20
        "test/ece/shift_mean": 0.2419,
        "test/ece_uncal/shift_mean": 0.2405,
    }
    assert {key: round(metrics[key], 4) for key in exact} == exact
    for shift in CORRUPTIONS:  # temperature scaling keeps every argmax
        assert metrics[f"test/acc/{shift}"] == metrics[f"test/acc_uncal/{shift}"]
    logits = torch.load(run / "logits.pt", weights_only=True)
    assert list(logits["shifts"]) == list(CORRUPTIONS)
    assert logits["shifts"]["fog"]["logits"].shape == (N_SHIFTED, 10)


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("shift_severity", 6, "task.shift_severity=6 must be an integer severity in 1..5"),
        ("shift_samples", 0, "task.shift_samples=0 must be null or an integer >= 1"),
        ("shifts", "yes", "task.shifts='yes' must be true or false"),
    ],
)
def test_bad_shift_settings_are_refused_in_one_line(key, value, message):
    """The preflight reads them through shift_spec, before anything is written."""
    task = OmegaConf.create({"shifts": True, key: value})
    data = OmegaConf.create({"_target_": "xent.data.digits.DigitsDataModule", "in_channels": 3})
    with pytest.raises(ConfigError) as err:
        shift_spec(task, OmegaConf.merge(data, {"image_size": 32}), "/data")
    assert str(err.value) == message


def test_only_32x32_rgb_digits_fashion_and_cifar_have_shifted_sets():
    def variant(**data):
        return stream_variant(OmegaConf.create(data))

    rgb = {"in_channels": 3, "image_size": 32}
    assert variant(_target_="xent.data.digits.DigitsDataModule", **rgb) == "digits32"
    assert variant(_target_="xent.data.fashion_mnist.FashionMNISTDataModule", **rgb) == (
        "fashion_mnist32"
    )
    assert variant(_target_="xent.data.cifar.CIFARDataModule", variant="cifar100", **rgb) == (
        "cifar100"
    )
    assert (
        variant(_target_="xent.data.digits.DigitsDataModule", in_channels=1, image_size=8) is None
    )
    assert variant(_target_="xent.data.synthetic.SyntheticImageDataModule", **rgb) is None


def stale_stream_message(root: Path) -> str:
    return (
        f"{root} was generated from a different digits32 test split than data.clean gives; "
        "delete it to regenerate, or set data.generate_seed to another value (the shifted test "
        "sets; task.shifts=false skips them)"
    )


def test_the_preflight_check_refuses_a_cached_stream_of_another_test_split(tmp_path):
    root = write_small_digits32_c(tmp_path, keep_meta=True)
    clean = DigitsDataModule(num_classes=10, in_channels=3, image_size=32, upsample=4)
    with pytest.raises(ConfigError) as err:
        check_shift_stream(ShiftSpec("digits32", str(tmp_path), 5), clean)
    assert str(err.value) == stale_stream_message(root)


@pytest.mark.slow  # seconds: the in-process check above covers the message in the fast tier
def test_a_cached_stream_of_another_test_split_is_refused_before_anything_is_written(tmp_path):
    root = write_small_digits32_c(tmp_path / "data", keep_meta=True)
    bad = {"stale stream": (tiny_run_overrides(tmp_path), "")}
    proc, run_dir = run_bad_commands(tmp_path, bad)["stale stream"]  # forked: no torch import
    assert_one_line_error(proc, run_dir, f"xent-run: error: {stale_stream_message(root)}")
    assert not (tmp_path / "teachers").exists()  # refused before the source was trained


def test_missing_cifar_c_files_are_refused_in_one_line_naming_task_shifts(tmp_path):
    clean = DigitsDataModule(num_classes=10, in_channels=3, image_size=32, upsample=4)
    with pytest.raises(DataNotFoundError) as err:
        check_shift_stream(ShiftSpec("cifar10", str(tmp_path), 5), clean)
    assert str(err.value) == (
        f"{tmp_path}/CIFAR-10-C/gaussian_noise.npy not found; make it with: xent-corrupt "
        f"--source cifar10 --root {tmp_path} --out {tmp_path}/CIFAR-10-C (the shifted test "
        "sets; task.shifts=false skips them)"
    )


def test_the_logits_cache_key_is_the_source_the_data_the_shifts_and_the_views(tmp_path):
    """Two calibrators of one source share the cached logits; anything the logits depend on
    gives another file, where files live and loader settings do not."""
    weights = tmp_path / "teacher.pt"
    weights.write_bytes(b"weights")
    data = OmegaConf.create({"_target_": "x.Digits", "val_fraction": 0.1, "root": "/a"})
    spec = ShiftSpec("digits32", "/data", 5)

    def key(data=data, spec=spec, views=False):
        return logits_cache_file(tmp_path, weights, data, spec, views)

    base = key()
    assert base.parent == tmp_path / "calibrate_logits"
    assert key(OmegaConf.merge(data, {"root": "/b", "num_workers": 4})) == base
    assert key(spec=ShiftSpec("digits32", "/elsewhere", 5)) == base
    assert key(OmegaConf.merge(data, {"val_fraction": 0.2})) != base
    assert key(spec=ShiftSpec("digits32", "/data", 3)) != base
    assert key(spec=None) != base and key(views=True) != base
    weights.write_bytes(b"other weights")
    assert key() != base
