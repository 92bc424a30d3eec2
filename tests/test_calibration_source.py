"""Issue 20: the source run of task=calibrate is a finished classify run on the same data, or one
line says which of those it is not (and nothing is read beyond its config and metrics.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from xent.calibration.source_run import read_source_run
from xent.errors import ConfigError

DATA = {"_target_": "xent.data.digits.DigitsDataModule", "split_seed": 0, "val_size": 300}
WANTED = "pass the run dir of a finished task=classify run"


def fake_run(
    root: Path, *, target: str = "xent.tasks.classify.ClassifyTask", status: str | None = "ok",
    checkpoint: bool = True, data: dict | None = None,
) -> Path:  # fmt: skip
    """A run dir as xent writes it: resolved config, metrics.json, checkpoints/last.ckpt."""
    run = root / "run"
    (run / ".hydra").mkdir(parents=True)
    config = {"task": {"_target_": target}, "data": {**DATA, **(data or {})}}
    (run / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(config))
    if status is not None:
        (run / "metrics.json").write_text(json.dumps({"status": status}))
    if checkpoint:
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    return run


def refusal(run_dir: Path, data: dict | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        read_source_run(run_dir, None if data is None else OmegaConf.create(data))
    return str(err.value)


def test_a_finished_classify_run_on_the_same_data_is_read(tmp_path):
    run = fake_run(tmp_path, data={"num_workers": 0, "shuffle_seed": 1})
    ours = {**DATA, "num_workers": 4, "root": "/x", "shuffle_seed": 0, "batch_size": 8}
    source = read_source_run(run, OmegaConf.create(ours))
    assert source.checkpoint == run / "checkpoints" / "last.ckpt"
    assert source.config.data.val_size == 300


def test_a_missing_dir_and_a_dir_that_is_not_a_run_are_refused(tmp_path):
    assert refusal(tmp_path / "nope") == (
        f"source.run_dir={tmp_path / 'nope'}: no such directory; {WANTED}"
    )
    assert refusal(tmp_path) == (
        f"source.run_dir={tmp_path}: not a run dir (no .hydra/config.yaml); {WANTED}"
    )


def test_a_run_of_another_task_is_refused_naming_its_task(tmp_path):
    run = fake_run(tmp_path, target="xent.tasks.tta.TTATask")
    assert refusal(run) == f"source.run_dir={run} is a task=tta run; {WANTED}"


@pytest.mark.parametrize(
    ("status", "checkpoint", "why"),
    [
        (None, True, "no metrics.json"),
        ("failed", True, "metrics.json says status=failed"),
        ("interrupted", True, "metrics.json says status=interrupted"),
        ("ok", False, "metrics.json says status=ok"),
    ],
)
def test_an_unfinished_run_is_refused(tmp_path, status, checkpoint, why):
    run = fake_run(tmp_path, status=status, checkpoint=checkpoint)
    assert refusal(run) == (
        f"source.run_dir={run}: the run has not finished ({why}); finish it with resume=true, "
        f"or {WANTED}"
    )


def test_a_run_on_other_data_is_refused_naming_the_first_key_that_differs(tmp_path):
    run = fake_run(tmp_path)
    other = {**DATA, "_target_": "xent.data.digits.Digits32DataModule", "val_size": 100}
    assert refusal(run, other) == (
        f"source.run_dir={run} was trained on other data: its "
        "data._target_=xent.data.digits.DigitsDataModule, this run's "
        "data._target_=xent.data.digits.Digits32DataModule; pick the source run's data "
        "(data=...) or a source run on this data"
    )
    assert "its data.val_size=300, this run's data.val_size=100" in refusal(
        run, {**DATA, "val_size": 100}
    )
