"""The run-dir contract, in-process: exact files, exact messages, every resume branch (the CLI
tests run these in a subprocess, which a mutation test cannot see)."""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from xent.errors import ConfigError
from xent.runner import rundir
from xent.runner.rundir import (
    CONTINUE,
    FINISHED,
    FRESH,
    Interrupted,
    archive_entries,
    archive_previous_run,
    check_run_dir_writable,
    config_differences,
    continue_command,
    finished_line,
    finished_run,
    hydra_output_subdir,
    interrupted_line,
    is_interrupt,
    must_match,
    preflight_resume,
    read_metrics,
    register_resolvers,
    resume_checkpoint,
    resume_mode,
    resume_plan,
    write_metrics,
)


class FakeTask:
    """A task class whose resume_keys repeat a key every run keeps and add two of its own."""

    resume_keys = ("seed", "teacher", "method")


class PlainTask:
    """A task with no nodes of its own."""

    resume_keys = ()


FAKE_TASK = f"{__name__}.FakeTask"


# --- metrics.json ----------------------------------------------------------------------------


def test_metrics_json_is_indented_sorted_and_ends_with_a_newline(tmp_path):
    run_dir = tmp_path / "a" / "b"  # made, parents too
    values = {
        "z": 1,
        "status": "ok",
        "acc": np.float32(0.5),
        "t": torch.tensor(2.5),
        "n": np.int64(3),
        "nan": float("nan"),
        "inf": float("inf"),
        "-inf": float("-inf"),
        "text": "x",
        "none": None,
        "big": 1e300,
    }
    path = write_metrics(run_dir, values)
    assert path == run_dir / "metrics.json"
    plain = {
        "z": 1,
        "status": "ok",
        "acc": 0.5,
        "t": 2.5,
        "n": 3,
        "nan": None,
        "inf": None,
        "-inf": None,
        "text": "x",
        "none": None,
        "big": 1e300,
    }
    assert path.read_text() == json.dumps(plain, indent=2, sort_keys=True) + "\n"
    assert type(json.loads(path.read_text())["n"]) is int
    assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.json"]
    assert path.stat().st_mode & 0o777 == 0o644
    assert read_metrics(run_dir) == json.loads(path.read_text())
    assert read_metrics(str(run_dir)) == read_metrics(run_dir)  # a str path too
    assert read_metrics(tmp_path) is None


def test_metrics_json_goes_through_a_hidden_temp_file_beside_it(tmp_path, monkeypatch):
    """The temp file lies in the run dir (the rename is atomic on one file system) and is hidden
    (.metrics.*.json: a glob for */metrics.json or * never picks up a half-written file)."""
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        seen.append((Path(src), Path(dst), Path(src).read_text()))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    write_metrics(tmp_path, {"a": 1})
    [(src, dst, text)] = seen
    assert src.parent == tmp_path and dst == tmp_path / "metrics.json"
    assert src.name.startswith(".metrics.") and src.name.endswith(".json")
    assert text == '{\n  "a": 1\n}\n'


def test_a_failed_metrics_write_leaves_no_debris_and_raises(tmp_path, monkeypatch):
    write_metrics(tmp_path, {"status": "ok"})

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_metrics(tmp_path, {"status": "failed"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"status": "ok"}


def test_ctrl_c_right_after_the_rename_is_still_ctrl_c(tmp_path, monkeypatch):
    """The temp file is gone once renamed: the clean-up must not turn the KeyboardInterrupt
    into a FileNotFoundError."""
    real_replace = os.replace

    def replace_then_interrupt(src, dst):
        real_replace(src, dst)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_metrics(tmp_path, {"status": "ok"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


# --- the run dir must take files ---------------------------------------------------------------


def test_a_run_dir_under_a_file_is_refused_naming_the_file(tmp_path):
    (tmp_path / "file").write_text("x")
    run_dir = tmp_path / "file" / "a" / "b"
    with pytest.raises(ConfigError) as info:
        check_run_dir_writable(run_dir)
    assert str(info.value) == (
        f"hydra.run.dir={run_dir}: cannot make it, {tmp_path / 'file'} is a file, not a directory"
    )
    with pytest.raises(ConfigError) as info:
        check_run_dir_writable(run_dir, "hydra.sweep.dir")
    assert str(info.value).startswith(f"hydra.sweep.dir={run_dir}: cannot make it, ")


def test_a_read_only_or_unwritable_run_dir_is_refused_naming_the_folder(tmp_path, monkeypatch):
    run_dir = tmp_path / "new" / "run"  # walks up to tmp_path, which exists
    check_run_dir_writable(run_dir)  # writable: passes
    check_run_dir_writable(tmp_path)
    statvfs_of, access_of = [], []
    real_statvfs = os.statvfs

    def read_only(path):
        statvfs_of.append(Path(path))
        return SimpleNamespace(f_flag=real_statvfs(path).f_flag | os.ST_RDONLY)

    monkeypatch.setattr(os, "statvfs", read_only)
    with pytest.raises(ConfigError) as info:
        check_run_dir_writable(run_dir, "hydra.sweep.dir")
    assert str(info.value) == (
        f"hydra.sweep.dir={run_dir}: {tmp_path} is on a read-only file system"
    )
    assert statvfs_of == [tmp_path]
    monkeypatch.setattr(os, "statvfs", lambda path: SimpleNamespace(f_flag=0))

    def no_access(path, mode):
        access_of.append((Path(path), mode))
        return False

    monkeypatch.setattr(os, "access", no_access)
    with pytest.raises(ConfigError) as info:
        check_run_dir_writable(run_dir)
    assert str(info.value) == (
        f"hydra.run.dir={run_dir}: {tmp_path} is not writable (permission denied)"
    )
    assert access_of == [(tmp_path, os.W_OK | os.X_OK)]
    monkeypatch.setattr(os, "access", lambda path, mode: mode == os.W_OK | os.X_OK)
    check_run_dir_writable(run_dir)


def test_a_relative_run_dir_walks_up_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_run_dir_writable(Path("outputs") / "run")  # the loop stops at Path(".")
    (tmp_path / "outputs").write_text("x")
    with pytest.raises(ConfigError, match=r"^hydra.run.dir=outputs/run: cannot make it, outputs "):
        check_run_dir_writable(Path("outputs") / "run")


# --- archive/ ------------------------------------------------------------------------------------


def test_every_run_artifact_and_log_is_archived_and_nothing_else(tmp_path):
    for name in ("checkpoints", ".hydra", "csv", "tensorboard", "wandb"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text(name)
    (tmp_path / "metrics.json").write_text("{}")
    for name in ("xent.log", "error.log", "notes.txt", "data.logs"):
        (tmp_path / name).write_text(name)
    stamp_time = time.mktime((2024, 3, 5, 7, 8, 9, 0, 0, -1))
    os.utime(tmp_path / "metrics.json", (stamp_time, stamp_time))
    target = archive_previous_run(tmp_path)
    assert target == tmp_path / "archive" / "20240305-070809"  # metrics.json's mtime
    moved = sorted(p.name for p in target.iterdir())
    assert moved == sorted(
        ["checkpoints", ".hydra", "csv", "tensorboard", "wandb", "metrics.json", "xent.log"]
        + ["error.log"]
    )
    assert (target / "wandb" / "f").read_text() == "wandb"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archive", "data.logs", "notes.txt"]


def test_a_log_alone_is_an_earlier_run(tmp_path):
    (tmp_path / "xent.log").write_text("log")
    target = archive_previous_run(tmp_path)
    assert target is not None and (target / "xent.log").read_text() == "log"
    assert archive_previous_run(tmp_path) is None


def test_archive_stamps_take_the_first_entrys_time_then_a_counter(tmp_path):
    stamp_time = time.mktime((2023, 11, 30, 23, 59, 58, 0, 0, -1))
    targets = []
    for _ in range(4):
        (tmp_path / "b").write_text("b")
        (tmp_path / "a").write_text("a")
        os.utime(tmp_path / "b", (stamp_time, stamp_time))
        os.utime(tmp_path / "a", (stamp_time + 3600, stamp_time + 3600))
        targets.append(archive_entries(tmp_path, ["b", "a"]))
    assert [t.name for t in targets] == [
        "20231130-235958",
        "20231130-235958-1",
        "20231130-235958-2",
        "20231130-235958-3",
    ]
    assert all(t.parent == tmp_path / "archive" for t in targets)
    assert all(sorted(p.name for p in t.iterdir()) == ["a", "b"] for t in targets)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archive"]


# --- finished runs and checkpoints ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text,finished",
    [
        ('{"status": "ok", "x": 1}', True),
        ('{"status": "failed"}', False),
        ('{"x": 1}', False),
        ('["status", "ok"]', False),  # valid JSON, not a dict
        ("[]", False),
        ('"ok"', False),
        ("{not json", False),
        ("", False),
    ],
)
def test_finished_run_is_a_dict_with_status_ok(tmp_path, text, finished):
    (tmp_path / "metrics.json").write_text(text)
    assert finished_run(tmp_path) == (json.loads(text) if finished else None)
    assert finished_run(str(tmp_path)) == finished_run(tmp_path)


def test_no_metrics_json_or_a_folder_in_its_place_is_not_finished(tmp_path):
    assert finished_run(tmp_path) is None
    (tmp_path / "metrics.json").mkdir()
    assert finished_run(tmp_path) is None


def test_resume_checkpoint_is_the_explicit_one_else_last_ckpt(tmp_path):
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert resume_checkpoint(tmp_path, True, None) is None
    assert resume_checkpoint(tmp_path, True, "") is None
    last.parent.mkdir()
    last.write_text("w")
    (tmp_path / "checkpoints" / "best.ckpt").write_text("w")
    assert resume_checkpoint(tmp_path, True, None) == str(last)
    assert resume_checkpoint(tmp_path, False, None) is None
    assert resume_checkpoint(tmp_path, True, Path("/x/y.ckpt")) == "/x/y.ckpt"
    assert resume_checkpoint(tmp_path, False, "/x/y.ckpt") == "/x/y.ckpt"


# --- resume modes ------------------------------------------------------------------------------


def test_resume_values_and_hydra_output_subdir():
    assert [resume_mode(v) for v in (False, None, True, "auto")] == [
        "false",
        "false",
        "true",
        "auto",
    ]
    with pytest.raises(ConfigError, match=r"^resume=false: expected false, true or auto "):
        resume_mode("false")  # the string: Hydra gives a bool for false
    assert hydra_output_subdir(True) is None
    assert hydra_output_subdir("auto") is None
    assert hydra_output_subdir(False) == ".hydra"
    assert hydra_output_subdir(None) == ".hydra"
    assert hydra_output_subdir("true") == ".hydra"  # not a resume value Hydra passes
    assert hydra_output_subdir(1) == ".hydra"


def test_register_resolvers_registers_once(monkeypatch):
    from omegaconf import OmegaConf

    name = "xent.hydra_output_subdir"
    OmegaConf.clear_resolver(name)
    try:
        assert not OmegaConf.has_resolver(name)
        register_resolvers()
        register_resolvers()  # a second call is harmless
        assert OmegaConf.has_resolver(name)
        cfg = OmegaConf.create(
            {"a": "${xent.hydra_output_subdir:true}", "b": "${xent.hydra_output_subdir:false}"}
        )
        assert cfg.a is None and cfg.b == ".hydra"
        cfg = OmegaConf.create({"c": "${xent.hydra_output_subdir:auto}"})
        assert cfg.c is None
    finally:
        OmegaConf.clear_resolver(name)
        register_resolvers()


# --- resume_plan on small configs -----------------------------------------------------------------


def small_cfg(**changes) -> OmegaConf:
    base = {
        "resume": True,
        "ckpt_path": None,
        "seed": 0,
        "task": {"_target_": f"{__name__}.PlainTask"},
        "model": {"width": 8, "depth": 2},
        "trainer": {"max_epochs": 4},
        "paths": {"data_dir": "/data"},
    }
    base.update(changes)
    return OmegaConf.create(base)


def saved_run(tmp_path, cfg, *, status=None, checkpoint=True, config=True):
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    if config:
        (run_dir / ".hydra").mkdir(exist_ok=True)
        (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    if checkpoint:
        (run_dir / "checkpoints").mkdir(exist_ok=True)
        (run_dir / "checkpoints" / "last.ckpt").write_text("w")
    if status is not None:
        write_metrics(run_dir, {"status": status})
    return run_dir


def test_resume_false_or_an_explicit_checkpoint_starts_fresh_without_looking(tmp_path):
    run_dir = tmp_path / "nothing"
    assert resume_plan(small_cfg(resume=False), run_dir) == FRESH
    assert resume_plan(small_cfg(resume=None), run_dir) == FRESH
    assert resume_plan(small_cfg(ckpt_path="/x.ckpt"), run_dir) == FRESH
    assert resume_plan(small_cfg(resume="auto", ckpt_path="/x.ckpt"), run_dir) == FRESH
    assert resume_plan(OmegaConf.create({"seed": 0}), run_dir) == FRESH  # no resume key
    with pytest.raises(ConfigError, match="^resume=yes: expected"):
        resume_plan(small_cfg(resume="yes"), run_dir)


def test_nothing_to_resume(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError) as info:
        resume_plan(small_cfg(), str(run_dir))  # a str run dir too
    assert str(info.value) == (
        f"resume=true: nothing to resume in {run_dir} (no checkpoints/last.ckpt); drop resume "
        "to start a fresh run, or use resume=auto (resume where there is a checkpoint, else "
        "start fresh)"
    )
    assert resume_plan(small_cfg(resume="auto"), run_dir) == FRESH
    (run_dir / "checkpoints" / "last.ckpt").mkdir(parents=True)  # a folder, not a checkpoint
    assert resume_plan(small_cfg(resume="auto"), run_dir) == FRESH
    with pytest.raises(ConfigError, match="^resume=true: nothing to resume in "):
        resume_plan(small_cfg(), run_dir)


def test_a_run_with_a_checkpoint_and_the_same_config_continues(tmp_path):
    cfg = small_cfg()
    run_dir = saved_run(tmp_path, cfg)
    assert resume_plan(cfg, run_dir) == CONTINUE
    assert resume_plan(small_cfg(resume="auto"), run_dir) == CONTINUE
    write_metrics(run_dir, {"status": "failed"})
    assert resume_plan(cfg, run_dir) == CONTINUE
    # trainer and paths may change
    changed = small_cfg(trainer={"max_epochs": 2}, paths={"data_dir": "/else"})
    assert resume_plan(changed, run_dir) == CONTINUE


def test_a_finished_run_is_left_unless_it_is_extended_and_has_its_checkpoint(tmp_path):
    cfg = small_cfg()
    run_dir = saved_run(tmp_path, cfg, status="ok")
    assert resume_plan(cfg, run_dir) == FINISHED
    assert resume_plan(small_cfg(resume="auto"), run_dir) == FINISHED
    assert resume_plan(small_cfg(trainer={"max_epochs": 3}), run_dir) == FINISHED  # fewer
    assert resume_plan(small_cfg(trainer={"max_epochs": 5}), run_dir) == CONTINUE  # more
    assert resume_plan(small_cfg(trainer={"max_epochs": 5.0}), run_dir) == FINISHED  # not int
    assert resume_plan(small_cfg(trainer={}), run_dir) == FINISHED  # none asked
    (run_dir / "checkpoints" / "last.ckpt").unlink()
    assert resume_plan(small_cfg(trainer={"max_epochs": 5}), run_dir) == FINISHED
    # a finished run without a checkpoint is still checked against its config
    assert resume_plan(cfg, run_dir) == FINISHED
    with pytest.raises(ConfigError, match=r" in model.width \(8 -> 9\); "):
        resume_plan(small_cfg(model={"width": 9, "depth": 2}), run_dir)


def test_a_saved_run_without_max_epochs_is_not_extended(tmp_path):
    saved = small_cfg(trainer={})
    run_dir = saved_run(tmp_path, saved, status="ok")
    assert resume_plan(small_cfg(trainer={"max_epochs": 50}), run_dir) == FINISHED
    saved = small_cfg(trainer={"max_epochs": "???"})
    run_dir = saved_run(tmp_path, saved, status="ok")
    assert resume_plan(small_cfg(trainer={"max_epochs": 50}), run_dir) == FINISHED
    assert resume_plan(small_cfg(trainer={"max_epochs": "???"}), run_dir) == FINISHED


@pytest.mark.parametrize("content", [None, "- a\n- seed\n", "a: [\n"])
def test_a_missing_or_unreadable_saved_config_is_refused(tmp_path, content):
    run_dir = saved_run(tmp_path, small_cfg(), config=False)
    if content is not None:
        (run_dir / ".hydra").mkdir()
        (run_dir / ".hydra" / "config.yaml").write_text(content)
    with pytest.raises(ConfigError) as info:
        resume_plan(small_cfg(resume="auto"), run_dir)
    assert str(info.value) == (
        f"resume=auto: {run_dir}/.hydra/config.yaml is missing or unreadable, so the config "
        f"cannot be checked against the run's; continue without the check with "
        f"ckpt_path={run_dir}/checkpoints/last.ckpt, or drop resume to start afresh"
    )


def test_a_finished_run_without_a_checkpoint_still_needs_its_config(tmp_path):
    run_dir = saved_run(tmp_path, small_cfg(), status="ok", checkpoint=False, config=False)
    with pytest.raises(ConfigError, match=r"^resume=true: .*config.yaml is missing or unread"):
        resume_plan(small_cfg(), run_dir)


def test_the_message_names_six_differences_then_counts_the_rest(tmp_path):
    model = {f"k{i}": i for i in range(7)}
    run_dir = saved_run(tmp_path, small_cfg(model=model))
    six = small_cfg(model={**{f"k{i}": i + 10 for i in range(6)}, "k6": 6})
    with pytest.raises(ConfigError) as info:
        resume_plan(six, run_dir)
    shown = ", ".join(f"model.k{i} ({i} -> {i + 10})" for i in range(6))
    assert str(info.value) == (
        f"resume=true: the config differs from the run's {run_dir}/.hydra/config.yaml in "
        f"{shown}; a resume must keep seed, task, data, model, loss, optim, sched as saved: use "
        "the saved values, or drop resume to start afresh (the earlier run is moved to archive/)"
    )
    seven = small_cfg(model={f"k{i}": i + 10 for i in range(7)})
    with pytest.raises(ConfigError) as info:
        resume_plan(seven, run_dir)
    assert f" in {shown} and 1 more; a resume must keep " in str(info.value)
    eight = small_cfg(model={f"k{i}": i + 10 for i in range(8)}, seed=1)
    with pytest.raises(ConfigError) as info:
        resume_plan(eight, run_dir)
    assert " in model.k0 (0 -> 10), " in str(info.value)
    assert ", model.k5 (5 -> 15) and 3 more; " in str(info.value)  # k6, k7 and seed


def test_the_task_adds_its_resume_keys_to_the_message(tmp_path):
    cfg = small_cfg(task={"_target_": FAKE_TASK}, teacher={"seed": 0}, method={"lr": 0.1})
    assert must_match(cfg) == (
        "seed",
        "task",
        "data",
        "model",
        "loss",
        "optim",
        "sched",
        "teacher",
        "method",
    )
    assert must_match(small_cfg()) == rundir.RESUME_MUST_MATCH
    no_task = small_cfg(task={"_target_": "no_such_module.Task"})
    assert must_match(no_task) == rundir.RESUME_MUST_MATCH  # the task cannot be imported
    run_dir = saved_run(tmp_path, cfg)
    assert resume_plan(cfg, run_dir) == CONTINUE
    other = small_cfg(task={"_target_": FAKE_TASK}, teacher={"seed": 1}, method={"lr": 0.1})
    with pytest.raises(ConfigError) as info:
        resume_plan(other, run_dir)
    assert str(info.value).endswith(
        " in teacher.seed (0 -> 1); a resume must keep seed, task, data, model, loss, optim, "
        "sched, teacher, method as saved: use the saved values, or drop resume to start afresh "
        "(the earlier run is moved to archive/)"
    )


# --- config_differences ------------------------------------------------------------------------


def test_differences_name_new_gone_and_changed_keys_sorted():
    saved = OmegaConf.create(
        {
            "seed": 0,
            "model": {"width": 8, "gone": None, "old": 3, "betas": [0.9, 0.99], "empty": {}},
            "loss": {"name": "ce"},
            "trainer": {"max_epochs": 3},
        }
    )
    now = OmegaConf.create(
        {
            "seed": 0,
            "model": {"width": 8, "betas": [0.9, 0.98], "new": None, "empty": {}},
            "data": {"batch": 4},
            "trainer": {"max_epochs": 9},
        }
    )
    assert config_differences(now, saved) == [
        "data.batch ((none) -> 4)",
        "loss.name (ce -> (none))",
        "model.betas.1 (0.99 -> 0.98)",
        "model.gone (None -> (none))",
        "model.new ((none) -> None)",
        "model.old (3 -> (none))",
    ]
    assert config_differences(saved, saved) == []


def test_empty_nodes_and_lists_compare_as_values():
    saved = OmegaConf.create({"model": {"a": {}, "b": [], "c": [1]}})
    now = OmegaConf.create({"model": {"a": {"x": 1}, "b": [2], "c": []}})
    assert config_differences(now, saved) == [
        "model.a ({} -> (none))",
        "model.a.x ((none) -> 1)",
        "model.b ([] -> (none))",
        "model.b.0 ((none) -> 2)",
        "model.c ((none) -> [])",
        "model.c.0 (1 -> (none))",
    ]


def test_values_derived_from_outside_the_kept_nodes_are_skipped(monkeypatch):
    monkeypatch.setenv("XENT_TEST_DIR", "/elsewhere")
    now = OmegaConf.create(
        {
            "paths": {"data_dir": "/new"},
            "trainer": {"max_epochs": 9},
            "model": {"width": 8, "half": "${model.width}"},
            "sched": {"T_max": "${trainer.max_epochs}", "mixed": "${trainer.max_epochs}${seed}"},
            "data": {
                "root": "${paths.data_dir}/x",
                "env": "${oc.env:XENT_TEST_DIR}",
                "plain": "text",
                "not_ref": "$paths",
            },
            "seed": 1,
        }
    )
    saved = OmegaConf.create(
        {
            "model": {"width": 8, "half": 16},
            "sched": {"T_max": 3, "mixed": "30"},
            "data": {"root": "/old/x", "env": "/before", "plain": "text", "not_ref": "$paths"},
            "seed": 1,
        }
    )
    # the model's own reference is compared (its value changed); the rest derive from outside,
    # but `mixed` also names seed, a kept key
    assert config_differences(now, saved) == ["model.half (16 -> 8)", "sched.mixed (30 -> 91)"]


def test_flat_names_nested_leaves():
    flat = rundir._flat({"a": {"b": [1, {"c": 2}], "d": {}}, "e": []}, "root")
    assert flat == {"root.a.b.0": 1, "root.a.b.1.c": 2, "root.a.d": {}, "root.e": []}
    assert rundir._flat(5, "x") == {"x": 5}
    assert rundir._flat({}, "x") == {"x": {}}


@pytest.mark.parametrize(
    "raw,derived",
    [
        (None, False),
        (3, False),
        ("text", False),
        ("${paths.x}", True),
        ("${trainer.max_epochs}", True),
        ("${oc.env:HOME}", True),
        ("${model.width}", False),
        ("${seed}", False),
        ("${model}", False),
        ("a${paths.x}/${oc.env:X}", True),
        ("${paths.x}/${model.w}", False),
        ("${modelx.w}", True),
        ("${hydra:runtime.cwd}/${seed}", False),
        ("${seed:x}", True),  # a resolver, whatever it is named
        ("${model.w:x}", True),
    ],
)
def test_derived_elsewhere(raw, derived):
    assert rundir._derived_elsewhere(raw, rundir.RESUME_MUST_MATCH) is derived


def test_derived_elsewhere_uses_the_roots_it_is_given():
    assert rundir._derived_elsewhere("${teacher.seed}", rundir.RESUME_MUST_MATCH) is True
    assert rundir._derived_elsewhere("${teacher.seed}", ("teacher",)) is False


# --- a finished run under resume ----------------------------------------------------------------


def test_finished_line_and_preflight(tmp_path, capsys):
    assert finished_line(Path("/runs/1")) == (
        "xent-run: /runs/1 already finished (metrics.json status ok); left as it is. "
        "Raise trainer.max_epochs to train it further, or drop resume to start afresh"
    )
    cfg = small_cfg()
    run_dir = saved_run(tmp_path, cfg)
    assert preflight_resume(cfg, run_dir) is False  # continues: nothing set aside
    assert preflight_resume(small_cfg(resume=False), run_dir) is True
    assert preflight_resume(small_cfg(resume="auto"), tmp_path / "new") is True
    assert capsys.readouterr().out == ""
    write_metrics(run_dir, {"status": "ok"})
    with pytest.raises(SystemExit) as info:
        preflight_resume(cfg, run_dir)
    assert info.value.code == 0
    assert capsys.readouterr().out == finished_line(run_dir) + "\n"


class RecordingStdout:
    """sys.stdout that records what is written and when it is flushed."""

    def __init__(self):
        self.events = []

    def write(self, text):
        self.events.append(("write", text))
        return len(text)

    def flush(self):
        self.events.append(("flush", None))


def test_the_finished_line_is_flushed_before_the_command_ends(tmp_path, monkeypatch):
    """The line must be on the terminal before the exit (or the sweep's next job's output)."""
    cfg = small_cfg()
    run_dir = saved_run(tmp_path, cfg, status="ok")
    stdout = RecordingStdout()
    monkeypatch.setattr("sys.stdout", stdout)
    with pytest.raises(SystemExit):
        preflight_resume(cfg, run_dir)
    assert stdout.events[-1] == ("flush", None)
    assert "".join(t for e, t in stdout.events if e == "write") == finished_line(run_dir) + "\n"


# --- Ctrl-C --------------------------------------------------------------------------------------


def test_is_interrupt():
    assert is_interrupt(KeyboardInterrupt())
    assert is_interrupt(Interrupted("x"))
    assert not is_interrupt(ValueError())
    assert not is_interrupt(SystemExit(1))
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise SystemExit(1)  # noqa: B904 - as Lightning raises it
    except SystemExit as err:
        assert is_interrupt(err)
    try:
        try:
            raise ValueError
        except ValueError:
            raise SystemExit(1)  # noqa: B904
    except SystemExit as err:
        assert not is_interrupt(err)


def test_continue_command_restates_the_dir_and_resume(tmp_path):
    argv = [
        "loss=ce",
        "hydra.run.dir=/old",
        "hydra.sweep.dir=/old2",
        "resume=false",
        "+resume=true",
        "ckpt_path=/x.ckpt",
        "experiment_name=a b",
        "seed=1",
    ]
    run_dir = tmp_path / "run dir"
    expected = ["xent-run", "loss=ce", "experiment_name=a b", "seed=1"]
    assert continue_command(argv, run_dir, None) == shlex.join(
        [*expected, f"hydra.run.dir={run_dir}", "resume=auto"]
    )
    (run_dir / "checkpoints").mkdir(parents=True)
    assert continue_command(argv, run_dir, None).endswith("resume=auto")  # no last.ckpt yet
    (run_dir / "checkpoints" / "last.ckpt").write_text("w")
    assert continue_command(argv, str(run_dir), None) == shlex.join(
        [*expected, f"hydra.run.dir={run_dir}", "resume=true"]
    )
    sweep = tmp_path / "sweep"
    assert continue_command(["-m", "seed=0,1"], run_dir, sweep) == (
        f"xent-run -m seed=0,1 hydra.sweep.dir={sweep} resume=auto"
    )
    assert continue_command([], run_dir, sweep) == f"xent-run hydra.sweep.dir={sweep} resume=auto"


def test_interrupted_line():
    assert interrupted_line(Interrupted("xent-run: interrupted; continue with: x")) == (
        "xent-run: interrupted; continue with: x"
    )
    assert interrupted_line(Interrupted()) == "xent-run: interrupted"
    assert interrupted_line(KeyboardInterrupt("not ours")) == "xent-run: interrupted"
    assert interrupted_line(SystemExit(1)) == "xent-run: interrupted"
    assert issubclass(Interrupted, KeyboardInterrupt)
    assert rundir.EXIT_INTERRUPTED == 130
