"""Run-dir contract pieces and the checks that run before anything is written."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from xent.cli import _is_value_override, one_line
from xent.errors import ConfigError
from xent.preflight import check_override_types, check_values
from xent.rundir import archive_previous_run, resume_checkpoint, write_metrics


def test_metrics_json_is_flat_valid_json_even_with_nan(tmp_path):
    import torch

    path = write_metrics(
        tmp_path, {"status": "ok", "test/acc": torch.tensor(0.5), "x": float("nan")}
    )
    data = json.loads(path.read_text())
    assert data == {"status": "ok", "test/acc": 0.5, "x": None}
    assert not list(tmp_path.glob(".metrics.*"))  # no temp file left behind
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_archive_moves_every_artifact_and_keeps_older_archives(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_text("weights")
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "xent.log").write_text("log")
    first = archive_previous_run(tmp_path)
    assert (first / "checkpoints" / "last.ckpt").read_text() == "weights"
    assert not (tmp_path / "metrics.json").exists()
    (tmp_path / "metrics.json").write_text("{}")
    second = archive_previous_run(tmp_path)
    assert second != first and first.exists() and (second / "metrics.json").exists()
    assert archive_previous_run(tmp_path) is None  # nothing left to move


def test_resume_checkpoint_choice(tmp_path):
    assert resume_checkpoint(tmp_path, resume=True, ckpt_path=None) is None
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_text("x")
    assert resume_checkpoint(tmp_path, resume=False, ckpt_path=None) is None
    assert resume_checkpoint(tmp_path, resume=True, ckpt_path=None).endswith("last.ckpt")
    assert resume_checkpoint(tmp_path, resume=False, ckpt_path="/a/b.ckpt") == "/a/b.ckpt"


DEFAULTS = OmegaConf.create(
    {
        "seed": 0,
        "trainer": {"max_epochs": 20, "deterministic": False},
        "optim": {"lr": 0.05, "betas": [0.9, 0.999]},
        "eval_ckpt": "last",
        "ckpt_path": None,
    }
)


@pytest.mark.parametrize(
    "override,ok",
    [
        ("trainer.max_epochs=3", True),
        ("trainer.max_epochs=3.5", False),
        ("trainer.max_epochs=abc", False),
        ("optim.lr=1", True),  # an int where a float was is fine
        ("optim.lr=fast", False),
        ("trainer.deterministic=true", True),
        ("trainer.deterministic=1", False),
        ("ckpt_path=/x.ckpt", True),  # null defaults accept anything
        ("+new.key=abc", True),
        ("seed=1,2,3", True),  # sweeps are checked per job
    ],
)
def test_override_keeps_the_default_type(override, ok):
    if ok:
        check_override_types(DEFAULTS, [override])
    else:
        key = override.split("=")[0]
        with pytest.raises(ConfigError, match=rf"^{key}=.*: expected .* \(default "):
            check_override_types(DEFAULTS, [override])


def test_value_checks_name_the_key():
    good = OmegaConf.merge(DEFAULTS, {})
    check_values(good)
    for key, value, message in [
        ("seed", -1, "seed=-1 must be an integer >= 0"),
        ("trainer.max_epochs", 0, "trainer.max_epochs=0 must be an integer >= 1"),
        ("optim.lr", 0.0, "optim.lr=0.0 must be a number > 0"),
    ]:
        bad = OmegaConf.merge(DEFAULTS, {})
        OmegaConf.update(bad, key, value)
        with pytest.raises(ConfigError) as info:
            check_values(bad)
        assert str(info.value) == message


def test_group_choices_are_not_value_overrides():
    assert not _is_value_override("loss=ce")
    assert not _is_value_override("+experiment=x")
    assert not _is_value_override("hydra.run.dir=/x")
    assert _is_value_override("seed=3")
    assert _is_value_override("optim.lr=0.1")


def test_missing_option_message_lists_the_valid_ones():
    from hydra.errors import MissingConfigException

    err = MissingConfigException("long\nmessage", "loss/nope", options=["gce", "ce"])
    assert one_line(err) == "loss=nope is not an option; valid: ce, gce"
