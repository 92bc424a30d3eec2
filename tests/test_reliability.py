"""Issue 9, reliability: a non-finite loss stops the run at its step, SIGTERM and SIGKILL at
random points lose nothing that resume=true cannot redo, checkpoints and metrics.json are never
half-written, and parallel jobs of one sweep share a sweep dir and a teacher cache safely."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.cli_batch import Command, run_commands
from tests.conftest import REPO, xent_run
from xent import run_guards as guards
from xent.checkpoint_io import AtomicCheckpointIO, atomic_torch_save
from xent.runner.rundir import write_metrics

# The number: the random kill points below are drawn from it, so every run of the
# tests kills at the same (epoch, delay) points and a failure can be reproduced.
KILL_SEED = 9
SAME = ("test/acc", "test/nll", "test/ece", "best/val_acc", "best/test_acc", "epochs")


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def load_ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# --- NaN/Inf guard ---------------------------------------------------------------------------


def _fake_trainer(**kwargs) -> SimpleNamespace:
    defaults = {"world_size": 1, "global_step": 3, "current_epoch": 0, "checkpoint_callbacks": []}
    return SimpleNamespace(**{**defaults, **kwargs})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_guard_names_the_step_and_says_when_there_is_no_checkpoint_yet(value):
    with pytest.raises(guards.NonFiniteLossError) as caught:
        guards.check_finite_loss(_fake_trainer(), torch.tensor(value))
    message = str(caught.value)
    assert message.startswith(f"train/loss is {value} at step 3 (epoch 1);"), message
    assert "last good checkpoint: none yet" in message and "lower optim.lr" in message
    guards.check_finite_loss(_fake_trainer(), torch.tensor(2.5))  # finite: nothing happens


def test_guard_prefers_last_ckpt_and_reads_its_epoch_and_step(tmp_path):
    best, last = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    torch.save({"epoch": 4, "global_step": 50}, last)
    torch.save({"epoch": 2, "global_step": 30}, best)  # newer file, but not the resume point
    callbacks = [
        SimpleNamespace(best_model_path=str(best), last_model_path="", best_k_models={}),
        SimpleNamespace(best_model_path=str(last), last_model_path="", best_k_models={}),
    ]
    trainer = _fake_trainer(checkpoint_callbacks=callbacks, global_step=57, current_epoch=5)
    with pytest.raises(guards.NonFiniteLossError, match=r"at step 57 \(epoch 6\); last good "):
        guards.check_finite_loss(trainer, torch.tensor(float("nan")), hint="h")
    assert guards.last_good_checkpoint(trainer) == last
    with pytest.raises(FloatingPointError, match=rf"{last} \(epoch 5, step 50\); h$"):
        guards.check_finite_loss(trainer, torch.tensor(float("nan")), hint="h")


@pytest.mark.slow
def test_nan_loss_stops_the_run_at_its_step_and_keeps_the_last_good_checkpoint(tmp_path):
    """A loss that turns NaN at step 50 (batches of 64: 20 steps an epoch, so in epoch 3):
    exit 1, one line naming the step and last.ckpt, metrics.json failed, and last.ckpt is
    still the end of epoch 2 (no NaN state was saved over it)."""
    run_dir = tmp_path / "nan"
    proc = xent_run(
        f"hydra.run.dir={run_dir}",
        "loss._target_=tests.helpers_faults.NanAfter",
        "+loss.step=50",
        "data.batch_size=64",
        "trainer.max_epochs=4",
        "logger=none",
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO)},
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("xent-run: run failed: "), proc.stderr
    last = run_dir / "checkpoints" / "last.ckpt"
    saved = load_ckpt(last)
    steps_per_epoch = saved["global_step"] // (saved["epoch"] + 1)
    assert steps_per_epoch == 20 and saved["epoch"] == 1 and saved["global_step"] == 40
    expected = (
        f"NonFiniteLossError: train/loss is nan at step 50 (epoch 3); last good checkpoint: "
        f"{last} (epoch 2, step 40); training diverged"
    )
    assert expected in lines[0], lines[0]
    result = metrics(run_dir)
    assert result["status"] == "failed" and expected in result["error"]
    assert result["epochs"] == 2
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())
    assert load_ckpt(run_dir / "checkpoints" / "best.ckpt")["global_step"] <= 40
    assert "NonFiniteLossError" in (run_dir / "error.log").read_text()


# --- atomic writes ---------------------------------------------------------------------------


def test_an_interrupted_checkpoint_save_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1, "w": torch.ones(1000)}, str(path))
    real_save = torch.save

    def half_then_fail(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a zip")  # what a killed writer leaves behind
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"epoch": 2, "w": torch.zeros(1000)}, str(path))
    monkeypatch.setattr(torch, "save", real_save)
    assert load_ckpt(path)["epoch"] == 1 and torch.equal(load_ckpt(path)["w"], torch.ones(1000))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temp file left
    assert io.load_checkpoint(str(path))["epoch"] == 1


def test_an_interrupted_metrics_write_keeps_the_previous_file(tmp_path, monkeypatch):
    write_metrics(tmp_path, {"status": "ok", "test/acc": 0.9})
    real_dump = json.dump

    def half_then_fail(obj, handle, **kwargs):
        handle.write('{"status": "fa')
        raise KeyboardInterrupt

    monkeypatch.setattr(json, "dump", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        write_metrics(tmp_path, {"status": "failed"})
    monkeypatch.setattr(json, "dump", real_dump)
    assert metrics(tmp_path) == {"status": "ok", "test/acc": 0.9}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temp file left


_WRITER = textwrap.dedent(
    """
    import sys, torch
    from pathlib import Path
    from xent.checkpoint_io import atomic_torch_save
    from xent.runner.rundir import write_metrics
    folder = Path(sys.argv[1])
    version = 0
    while True:
        version += 1
        atomic_torch_save({"version": version, "w": torch.full((1_000_000,), float(version))},
                          folder / "last.ckpt")
        write_metrics(folder, {"status": "running", "version": version, "pad": "x" * 100_000})
        print(version, flush=True)
    """
)


@pytest.mark.slow
def test_sigkill_at_random_points_never_leaves_a_half_written_file(tmp_path):
    """A writer rewrites a 4 MB checkpoint and a 100 kB metrics.json in a loop and is killed
    with SIGKILL at seeded random moments: both files are always whole, of one version."""
    rng = random.Random(KILL_SEED)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    for attempt in range(3):
        folder = tmp_path / f"w{attempt}"
        folder.mkdir()
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(folder)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline().strip() == "1", proc.stderr.read()  # one full round done
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        saved = load_ckpt(folder / "last.ckpt")
        assert torch.equal(saved["w"], torch.full((1_000_000,), float(saved["version"])))
        assert metrics(folder)["pad"] == "x" * 100_000


def test_every_trainer_gets_the_atomic_checkpoint_io(tmp_path):
    import lightning as L
    from lightning.pytorch.plugins.io import TorchCheckpointIO
    from omegaconf import OmegaConf

    from xent.runner.run import _plugins

    plugins = _plugins(OmegaConf.create({"max_epochs": 1}))
    trainer = L.Trainer(plugins=plugins, logger=False, default_root_dir=tmp_path)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    own = OmegaConf.create(
        {"plugins": [{"_target_": "lightning.pytorch.plugins.io.TorchCheckpointIO"}]}
    )
    kept = _plugins(own)
    assert len(kept) == 1 and type(kept[0]) is TorchCheckpointIO  # a config's own is respected
    atomic_torch_save({"a": 1}, tmp_path / "x" / "y.pt")
    assert oct((tmp_path / "x" / "y.pt").stat().st_mode & 0o777) == "0o644"


# --- SIGTERM / SIGKILL and resume ------------------------------------------------------------


def _temp_files(run_dir: Path) -> list[str]:
    """Temp files of atomic writes (.last.ckpt.*.tmp, .metrics.*.json) left in `run_dir`."""
    return [p.name for p in run_dir.rglob(".*") if p.is_file() and p.parent.name != ".hydra"]


@pytest.mark.slow
def test_sigterm_and_sigkill_at_random_points_then_resume_match_an_uninterrupted_run(tmp_path):
    """Each signal lands after a seeded random training step of epochs 2-3 of 4 (40 steps an
    epoch), sent by the run to itself (tests.helpers_faults.SignalAt), so where it lands does not
    depend on the machine's load. SIGTERM ends the run as failed (one line, metrics.json says
    why); SIGKILL leaves no metrics.json; both leave whole checkpoints."""
    epochs, steps_per_epoch = 4, 40  # digits' 1257 training images at batch 32
    args = ["seed=1", f"trainer.max_epochs={epochs}", "data.batch_size=32", "logger=none"]
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    straight = tmp_path / "straight"
    rng = random.Random(KILL_SEED)
    kills = {}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        step = rng.randint(steps_per_epoch + 1, (epochs - 1) * steps_per_epoch - 1)
        killer = [
            "+callbacks.kill._target_=tests.helpers_faults.SignalAt",
            f"+callbacks.kill.step={step}",
            f"+callbacks.kill.signal={int(sig)}",
        ]
        kills[sig] = (step, [*args, *killer, f"hydra.run.dir={tmp_path / sig.name}"])
    # The uninterrupted run and both killed ones side by side, each a process of its own.
    commands = [Command([*args, f"hydra.run.dir={straight}"], cwd=tmp_path, env=env)]
    commands += [Command(argv, cwd=tmp_path, env=env) for _, argv in kills.values()]
    uninterrupted, *killed = run_commands(commands, parallel=3)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-2000:]
    for (sig, (step, _)), proc in zip(kills.items(), killed, strict=True):
        where = f"{sig.name} after step {step}"
        run_dir = tmp_path / sig.name
        stderr = proc.stderr
        last = load_ckpt(run_dir / "checkpoints" / "last.ckpt")  # whole, whatever the moment
        assert last["global_step"] == (step - 1) // steps_per_epoch * steps_per_epoch, where
        for ckpt in (run_dir / "checkpoints").glob("*.ckpt"):
            load_ckpt(ckpt)
        if sig == signal.SIGKILL:
            assert proc.returncode == -signal.SIGKILL, where
            assert not (run_dir / "metrics.json").exists(), where
        else:
            lines = stderr.strip().splitlines()
            assert proc.returncode == 1, (where, stderr[-2000:])
            assert len(lines) == 1, (where, stderr)
            assert lines[0].startswith("xent-run: run failed: Terminated: SIGTERM received")
            result = metrics(run_dir)
            assert result["status"] == "failed" and "SIGTERM" in result["error"], where
            assert not _temp_files(run_dir), (where, _temp_files(run_dir))
    resume = [
        Command([*args, f"hydra.run.dir={tmp_path / name}", "resume=true"], cwd=tmp_path, env=env)
        for name in ("SIGTERM", "SIGKILL")
    ]
    for proc in run_commands(resume):
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "resuming from" in proc.stdout + proc.stderr
    expected = metrics(straight)
    for name in ("SIGTERM", "SIGKILL"):
        got = metrics(tmp_path / name)
        assert got["status"] == "ok"
        assert {k: got[k] for k in SAME} == {k: expected[k] for k in SAME}, name


def test_a_sigterm_handler_is_installed_only_where_sigterm_is_free(monkeypatch):
    monkeypatch.setattr(guards, "_sigterm_received", False)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        restore = guards.stop_on_sigterm()
        assert signal.getsignal(signal.SIGTERM) is guards._raise_terminated
        assert guards.stop_on_sigterm()() is None  # nested: the outer handler stays
        assert signal.getsignal(signal.SIGTERM) is guards._raise_terminated
        with pytest.raises(guards.Terminated, match="SIGTERM received; resume=true"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs between bytecodes
        restore()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        with pytest.raises(guards.Terminated, match="before this run started"):
            guards.stop_on_sigterm()  # the next job of a sequential multirun does not start
        monkeypatch.setattr(guards, "_sigterm_received", False)
        bypass = lambda signum, frame: None  # noqa: E731 - as submitit's jobs have
        signal.signal(signal.SIGTERM, bypass)
        guards.stop_on_sigterm()()
        assert signal.getsignal(signal.SIGTERM) is bypass
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- concurrency -----------------------------------------------------------------------------


@pytest.mark.slow
def test_four_parallel_jobs_share_one_sweep_dir_and_train_the_teacher_once(tmp_path):
    """hydra/launcher=local runs the 4 jobs as 4 processes at once; all 4 are started before
    the missing teacher is cached (so they raced for it), one trains it, all use it."""
    sweep, teachers = tmp_path / "sweep", tmp_path / "teachers"
    proc = xent_run(
        "-m",
        "hydra/launcher=local",
        "loss=kd",
        "seed=0,1,2,3",
        f"paths.teachers={teachers}",
        "teacher.recipe.epochs=1",
        "trainer.max_epochs=1",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    entries = [p for p in teachers.iterdir() if p.is_dir()]
    assert len(entries) == 1, entries
    cached = entries[0] / "teacher.pt"
    assert sorted(p.name for p in entries[0].iterdir()) == [
        ".hydra",
        "checkpoints",
        "metrics.json",
        "teacher.pt",
    ]
    assert metrics(entries[0])["status"] == "ok" and load_ckpt(cached)
    jobs = sorted(p for p in sweep.iterdir() if p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    started = [(job / ".hydra" / "config.yaml").stat().st_mtime for job in jobs]
    assert max(started) < cached.stat().st_mtime, "the jobs did not run at the same time"
    trained = [job for job in jobs if "training teacher model" in (job / "xent.log").read_text()]
    assert len(trained) == 1, trained
    results = [metrics(job) for job in jobs]
    assert [r["seed"] for r in results] == [0, 1, 2, 3]
    assert all(r["status"] == "ok" and r["teacher"] == str(cached) for r in results)
    assert len({r["teacher/test_acc"] for r in results}) == 1
    for job in jobs:
        assert not _temp_files(job)
        for ckpt in (job / "checkpoints").glob("*.ckpt"):
            load_ckpt(ckpt)
    with open(sweep / "summary.csv") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["seeds"] == "4" and row["failed"] == "0"
    accs = [r["test/acc"] for r in results]
    assert float(row["test/acc_mean"]) == pytest.approx(statistics.fmean(accs))
    assert float(row["test/acc_std"]) == pytest.approx(statistics.stdev(accs))
