"""Run-dir contract pieces and the checks that run before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from xent.errors import ConfigError
from xent.runner.cli import _is_value_override, one_line
from xent.runner.preflight import check_override_types, check_values
from xent.runner.rundir import (
    CONTINUE,
    FINISHED,
    FRESH,
    archive_previous_run,
    resume_checkpoint,
    resume_mode,
    resume_plan,
    write_metrics,
)


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


# --- resume=false | true | auto ----------------------------------------------------------------


def _saved_run(tmp_path, *overrides: str, status: str | None = None, checkpoint: bool = True):
    """A run dir as a run of `overrides` leaves it: its resolved .hydra/config.yaml, a
    checkpoints/last.ckpt, and a metrics.json with `status` (none when None)."""
    from tests.conftest import composed

    cfg = composed(tmp_path, *overrides)
    run_dir = Path(cfg.paths.output_dir)
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    if checkpoint:
        (run_dir / "checkpoints").mkdir()
        (run_dir / "checkpoints" / "last.ckpt").write_text("weights")
    if status is not None:
        write_metrics(run_dir, {"status": status, "epochs": cfg.trainer.max_epochs})
    return run_dir


@pytest.mark.parametrize("value", ["yes", 1, "True", "last"])
def test_resume_takes_false_true_or_auto_only(value):
    with pytest.raises(ConfigError) as info:
        resume_mode(value)
    assert str(info.value) == (
        f"resume={value}: expected false, true or auto (auto: resume if the run dir holds "
        "checkpoints/last.ckpt, else start fresh)"
    )
    assert [resume_mode(v) for v in (False, True, "auto")] == ["false", "true", "auto"]


def test_resume_true_with_nothing_to_resume_is_refused_and_auto_starts_fresh(tmp_path):
    from tests.conftest import composed

    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError) as info:
        resume_plan(composed(tmp_path, "resume=true"), run_dir)
    assert str(info.value) == (
        f"resume=true: nothing to resume in {run_dir} (no checkpoints/last.ckpt); drop resume "
        "to start a fresh run, or use resume=auto (resume where there is a checkpoint, else "
        "start fresh)"
    )
    assert resume_plan(composed(tmp_path, "resume=auto"), run_dir) == FRESH
    assert resume_plan(composed(tmp_path, "resume=false"), run_dir) == FRESH
    _saved_run(tmp_path, status="failed", checkpoint=False)  # a run that died in epoch 1
    with pytest.raises(ConfigError, match="^resume=true: nothing to resume in "):
        resume_plan(composed(tmp_path, "resume=true"), run_dir)
    assert resume_plan(composed(tmp_path, "resume=auto"), run_dir) == FRESH


def test_resume_continues_with_harmless_changes_and_skips_a_finished_run(tmp_path):
    from tests.conftest import composed

    run_dir = _saved_run(tmp_path, "trainer.max_epochs=4", status="failed")
    harmless = [
        "trainer.max_epochs=4",
        "resume=true",
        "logger=none",  # logger, callbacks, paths and what derives from them may differ
        "~callbacks.epoch_log",
        f"paths.data_dir={tmp_path / 'elsewhere'}",
        "eval_ckpt=best",
    ]
    assert resume_plan(composed(tmp_path, *harmless), run_dir) == CONTINUE
    assert resume_plan(composed(tmp_path, *harmless[:2], "resume=auto"), run_dir) == CONTINUE
    write_metrics(run_dir, {"status": "ok"})
    assert resume_plan(composed(tmp_path, *harmless), run_dir) == FINISHED
    # more epochs than the run was trained towards: it trains on from last.ckpt
    more = composed(tmp_path, "trainer.max_epochs=6", "resume=true")
    assert resume_plan(more, run_dir) == CONTINUE  # sched.T_max follows max_epochs: not compared
    (run_dir / "checkpoints" / "last.ckpt").unlink()
    assert resume_plan(more, run_dir) == FINISHED  # nothing to train on from


def test_resume_with_another_model_data_or_loss_is_refused_naming_the_keys(tmp_path):
    from tests.conftest import composed

    run_dir = _saved_run(tmp_path, status="failed")
    changed = composed(
        tmp_path, "resume=true", "model.width=16", "data.batch_size=32", "loss.label_smoothing=0.1"
    )
    with pytest.raises(ConfigError) as info:
        resume_plan(changed, run_dir)
    assert str(info.value) == (
        f"resume=true: the config differs from the run's {run_dir}/.hydra/config.yaml in "
        "data.batch_size (64 -> 32), loss.label_smoothing (0.0 -> 0.1), model.width (32 -> 16);"
        " a resume must keep seed, task, data, model, loss, optim, sched as saved: use the saved"
        " values, or drop resume to start afresh (the earlier run is moved to archive/)"
    )
    with pytest.raises(ConfigError) as info:  # another loss and seed: 8 keys, 6 named
        resume_plan(composed(tmp_path, "resume=true", "loss=gce", "seed=3"), run_dir)
    assert " in data.shuffle_seed (0 -> 3), loss._target_ (torch.nn.CrossEntropyLoss -> " in str(
        info.value
    )
    assert ", loss.q ((none) -> 0.7) and 2 more; a resume must keep" in str(info.value)
    write_metrics(run_dir, {"status": "ok"})  # a finished run is refused the same way
    with pytest.raises(ConfigError, match=r"^resume=true: the config differs .* model.width "):
        resume_plan(changed, run_dir)
    (run_dir / ".hydra" / "config.yaml").unlink()
    with pytest.raises(ConfigError) as info:
        resume_plan(composed(tmp_path, "resume=auto"), run_dir)
    assert str(info.value) == (
        f"resume=auto: {run_dir}/.hydra/config.yaml is missing or unreadable, so the config "
        f"cannot be checked against the run's; continue without the check with "
        f"ckpt_path={run_dir}/checkpoints/last.ckpt, or drop resume to start afresh"
    )


def test_a_task_adds_the_nodes_a_resume_must_keep(tmp_path):
    """task=distill declares `resume_keys = ("teacher",)`: another teacher is refused, and the
    message lists it; the same teacher change means nothing to a task without one."""
    from tests.conftest import composed

    run_dir = _saved_run(tmp_path, "loss=kd", status="failed")
    other = composed(tmp_path, "loss=kd", "resume=true", "teacher.seed=5")
    with pytest.raises(ConfigError) as info:
        resume_plan(other, run_dir)
    assert (
        "in teacher.seed (0 -> 5); a resume must keep seed, task, data, model, loss, optim, "
        "sched, teacher as saved" in str(info.value)
    )
    assert resume_plan(composed(tmp_path, "loss=kd", "resume=true"), run_dir) == "continue"


@pytest.mark.parametrize("resume,subdir", [("false", ".hydra"), ("true", None), ("auto", None)])
def test_hydra_writes_no_run_files_under_resume(resume, subdir):
    """Hydra saves .hydra/ into the run dir before a job starts; under resume it must not (a
    finished or refused run stays byte for byte as it was); the job writes them once it starts."""
    from hydra import compose, initialize_config_module

    with initialize_config_module("xent.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"resume={resume}"], return_hydra_config=True)
    assert cfg.hydra.output_subdir == subdir


@pytest.mark.slow
def test_metrics_json_is_written_once_at_the_end_with_every_reported_key(tmp_path, monkeypatch):
    """A run writes metrics.json once, after training and testing, complete: a run that wrote
    it early (a reader would take a half-done run for a result) or twice fails here."""
    import xent.runner.run
    from tests.conftest import composed

    cfg = composed(tmp_path, "trainer.max_epochs=1", "logger=none")
    run_dir = Path(cfg.paths.output_dir)
    writes = []

    def recording(folder: Path, values: dict) -> Path:
        writes.append({**values, "last.ckpt there": (folder / "checkpoints/last.ckpt").exists()})
        return write_metrics(folder, values)

    monkeypatch.setattr(xent.runner.run, "write_metrics", recording)
    returned = xent.runner.run.run(cfg)
    assert len(writes) == 1
    written = writes[0]
    assert written.pop("last.ckpt there")
    assert written == returned == json.loads((run_dir / "metrics.json").read_text())
    assert sorted(written) == [
        "best/test_acc",
        "best/val_acc",
        "epochs",
        "model/n_params",
        "seed",
        "status",
        "summary_keys",
        "test/acc",
        "test/acc5",
        "test/ece",
        "test/loss",
        "test/nll",
        "test_time_s",
        "train_time_s",
    ]
    assert (written["status"], written["epochs"], written["seed"]) == ("ok", 1, 0)
    assert written["summary_keys"] == [  # ClassifyTask.summary_keys, for xent-report's columns
        "test/acc",
        "best/test_acc",
        "test/acc5",
        "test/nll",
        "test/ece",
        "test/f1",
        "test/bal_acc",
    ]
