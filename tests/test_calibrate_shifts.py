"""Issue 20, task=calibrate's shifted test sets (docs/methods/calibrate.md §7.3), fast tier: one
tiny run on digits32 end to end, its exact metrics for seed 0, every corruption a shifted set."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.conftest import assert_one_line_error, xent_run
from xent.corrupt.corruptions import CORRUPTIONS
from xent.corrupt.layout import META, layout_dir, write_corrupted
from xent.data.digits import DigitsDataModule

N_SHIFTED = 20  # images per shifted set in the stand-in layout


def write_small_digits32_c(data_dir: Path) -> Path:
    """A small stand-in for DIGITS32-C-seed0: the first 20 test images of digits32, corrupted
    as the generated layout would be, in 0.2 s where generating all 360 takes 4. Without
    meta.json the stream takes it as it takes a downloaded CIFAR-10-C: without the digest check."""
    clean = DigitsDataModule(num_classes=10, in_channels=3, image_size=32, upsample=4)
    clean.setup("test")
    test = clean.splits["test"]
    images = test.images[:N_SHIFTED].permute(0, 2, 3, 1).contiguous().numpy()
    root = layout_dir(data_dir, "digits32", 0)
    write_corrupted(root, images, test.labels[:N_SHIFTED].numpy(), CORRUPTIONS, seed=0)
    (root / META).unlink()
    return root


def tiny_run(tmp_path: Path, *overrides: str):
    """A 1-epoch MLP source trained into the cache, calibrated by temperature scaling."""
    return xent_run(
        "task=calibrate", "data=digits32", "model=mlp", "source.recipe.epochs=1",
        f"paths.teachers={tmp_path / 'teachers'}", f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'run'}", *overrides, cwd=tmp_path,
    )  # fmt: skip


def test_a_tiny_digits32_run_measures_every_corruption_before_and_after(tmp_path):
    write_small_digits32_c(tmp_path / "data")
    proc = tiny_run(tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "run"
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


def test_a_bad_shift_severity_is_refused_before_anything_is_written(tmp_path):
    proc = tiny_run(tmp_path, "task.shift_severity=6")
    assert_one_line_error(
        proc,
        tmp_path / "run",
        "xent-run: error: task.shift_severity=6 must be an integer severity in 1..5",
    )
