"""resume=false | true | auto and Ctrl-C, end to end through the CLI: a resume that cannot be
done is refused in one line before anything is written, a finished run is left byte for byte as
it was, Ctrl-C ends a run (or a sweep) as interrupted with the command that continues it, and
that command gives the result of an uninterrupted run."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, assert_one_line_error, run_bad_commands, xent_run

# digits' 1257 training images at batch 64: 20 steps an epoch; a SIGINT after step 30 lands in
# epoch 2, with last.ckpt the end of epoch 1.
ARGS = ["seed=0", "trainer.max_epochs=2", "logger=none", "callbacks.best_checkpoint.mode=min"]
SIGINT_STEP = 30
SAME = ("test/acc", "test/nll", "test/ece", "best/val_acc", "best/test_acc", "epochs")
# One thread everywhere: a sweep's jobs run side by side with cores // jobs threads each, and
# a single run compared with one of them must run on as many.
ENV = {
    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    "OMP_NUM_THREADS": "1",
}


def kill_at(step: int | str) -> list[str]:
    """The overrides that make a run send itself SIGINT after training step `step`."""
    return [
        "+callbacks.kill._target_=tests.helpers_faults.SignalAt",
        f"+callbacks.kill.step={step}",
        f"+callbacks.kill.signal={int(signal.SIGINT)}",
    ]


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def snapshot(run_dir: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `run_dir`: its bytes and its mtime (ns)."""
    return {
        str(path.relative_to(run_dir)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(run_dir.rglob("*"))
        if path.is_file()
    }


def epoch_lines(text: str) -> list[str]:
    """The `epoch k/n` of each EpochLog line in a run's output."""
    return [
        line.split("] - ")[1].split()[0] + " " + line.split("] - ")[1].split()[1]
        for line in text.splitlines()
        if "][xent][INFO] - epoch " in line
    ]


@pytest.fixture(scope="module")
def interrupted_sweep(tmp_path_factory) -> tuple[Path, list[str], object]:
    """A sweep of two jobs alike but for when their SIGINT comes: job 0 never gets one (it
    trains 40 steps) and finishes; job 1 gets it after step 30, which stops the sweep."""
    root = tmp_path_factory.mktemp("sweep")
    sweep = root / "D"
    argv = ["-m", *ARGS, *kill_at(f"1000,{SIGINT_STEP}"), f"hydra.sweep.dir={sweep}"]
    return sweep, argv, xent_run(*argv, cwd=root, env=ENV)


@pytest.mark.slow
def test_ctrl_c_stops_a_sweep_and_a_resume_rerun_skips_finished_jobs_and_continues_the_rest(
    interrupted_sweep,
):
    sweep, argv, proc = interrupted_sweep
    command = shlex.join(["xent-run", *argv[:-1], f"hydra.sweep.dir={sweep}", "resume=auto"])
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == [
        f"xent-run: interrupted after epoch 1; continue with: {command}"
    ]
    finished, cut = sweep / "0", sweep / "1"
    assert metrics(finished)["status"] == "ok" and metrics(finished)["epochs"] == 2
    assert metrics(cut) == {
        "epochs": 1,
        "seed": 0,
        "status": "interrupted",
        "summary_keys": metrics(finished)["summary_keys"],  # the task's columns, known at start
        "train_time_s": metrics(cut)["train_time_s"],
    }
    last = torch.load(cut / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (0, 20)
    # A refused resume (another model) changes nothing; then the sweep rerun with resume=true.
    before = {job: snapshot(job) for job in (finished, cut)}
    cut_log_before = (cut / "xent.log").read_text()
    refused = xent_run(*ARGS, "model.width=16", f"hydra.run.dir={cut}", "resume=true", cwd=sweep)
    assert refused.returncode == 2 and refused.stderr.splitlines() == [
        f"xent-run: error: resume=true: the config differs from the run's {cut}/.hydra/"
        "config.yaml in model.width (32 -> 16); a resume must keep seed, task, data, model, "
        "loss, optim, sched as saved: use the saved values, or drop resume to start afresh "
        "(the earlier run is moved to archive/)"
    ]
    assert snapshot(cut) == before[cut]
    rerun = xent_run(
        "-m",
        *ARGS,
        *kill_at("1000,1001"),
        f"hydra.sweep.dir={sweep}",
        "resume=true",
        cwd=sweep.parent,
        env=ENV,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.stderr == ""
    assert f"xent-run: {finished} already finished (metrics.json status ok); left as it is." in (
        rerun.stdout
    )
    assert snapshot(finished) == before[finished]  # bytes and mtimes: nothing rewritten
    # A sweep job's progress goes to its own xent.log (the terminal shows a line per job).
    assert epoch_lines(rerun.stdout) == []
    cut_log = (cut / "xent.log").read_text()
    added = cut_log.removeprefix(cut_log_before) if cut_log.startswith(cut_log_before) else cut_log
    assert epoch_lines(added) == ["epoch 2/2"]  # job 1 only, from its last.ckpt
    resumed = metrics(cut)
    assert resumed["status"] == "ok"
    assert {k: resumed[k] for k in SAME} == {k: metrics(finished)[k] for k in SAME}
    assert (sweep / "summary.csv").exists()


@pytest.mark.slow
def test_a_finished_run_resumed_is_left_as_it_was(interrupted_sweep, tmp_path):
    sweep, _, _ = interrupted_sweep
    run_dir = tmp_path / "run"
    shutil.copytree(sweep / "0", run_dir)
    before = snapshot(run_dir)
    proc = xent_run(*ARGS, f"hydra.run.dir={run_dir}", "resume=true", cwd=tmp_path)
    assert snapshot(run_dir) == before  # .hydra/config.yaml, metrics.json, logs, checkpoints
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.splitlines() == [
        f"xent-run: {run_dir} already finished (metrics.json status ok); left as it is. Raise "
        "trainer.max_epochs to train it further, or drop resume to start afresh"
    ]


@pytest.mark.slow
def test_resume_continues_from_last_ckpt_not_best_ckpt(interrupted_sweep, tmp_path):
    """best.ckpt (lowest val/acc here: epoch 1) and last.ckpt (epoch 2) both exist: a resume
    that extends the run to 3 epochs trains epoch 3 alone, so it started from last.ckpt."""
    sweep, _, _ = interrupted_sweep
    run_dir = tmp_path / "run"
    shutil.copytree(sweep / "0", run_dir)
    saved = {
        name: torch.load(run_dir / "checkpoints" / name, map_location="cpu", weights_only=True)
        for name in ("best.ckpt", "last.ckpt")
    }
    assert (saved["best.ckpt"]["epoch"], saved["last.ckpt"]["epoch"]) == (0, 1)
    more = [*ARGS, "trainer.max_epochs=3"]
    proc = xent_run(*more, f"hydra.run.dir={run_dir}", "resume=true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming from {run_dir}/checkpoints/last.ckpt" in proc.stdout
    assert epoch_lines(proc.stdout) == ["epoch 3/3"]
    assert metrics(run_dir)["status"] == "ok" and metrics(run_dir)["epochs"] == 3


@pytest.mark.slow
def test_ctrl_c_of_a_run_records_it_and_the_command_it_names_finishes_it(
    interrupted_sweep, tmp_path
):
    sweep, _, _ = interrupted_sweep
    run_dir = tmp_path / "run"
    proc = xent_run(*ARGS, *kill_at(SIGINT_STEP), f"hydra.run.dir={run_dir}", cwd=tmp_path, env=ENV)
    command = shlex.join(
        ["xent-run", *ARGS, *kill_at(SIGINT_STEP), f"hydra.run.dir={run_dir}", "resume=true"]
    )
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == [
        f"xent-run: interrupted after epoch 1; continue with: {command}"
    ]
    result = metrics(run_dir)
    assert (result["status"], result["epochs"], "error" in result) == ("interrupted", 1, False)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (0, 20)
    assert not (run_dir / "error.log").exists()
    # The command named, without the test's own SIGINT (it would come again at step 30).
    resumed = xent_run(*ARGS, f"hydra.run.dir={run_dir}", "resume=true", cwd=tmp_path, env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert epoch_lines(resumed.stdout) == ["epoch 2/2"]
    result = metrics(run_dir)
    assert result["status"] == "ok"
    assert {k: result[k] for k in SAME} == {k: metrics(sweep / "0")[k] for k in SAME}


@pytest.mark.slow  # seconds: keeps the fast tier under its 2-minute budget
def test_resume_that_cannot_be_done_is_refused_before_anything_is_written(tmp_path):
    bad = {
        "nothing": (
            ["resume=true"],
            "resume=true: nothing to resume in {run_dir} (no checkpoints/last.ckpt); drop "
            "resume to start a fresh run, or use resume=auto",
        ),
        "word": (["resume=yes"], "resume=yes: expected false, true or auto (auto: resume if"),
        "number": (["resume=1"], "resume=1: expected false, true or auto"),
    }
    for name, (proc, run_dir) in run_bad_commands(tmp_path, bad).items():
        assert_one_line_error(proc, run_dir, bad[name][1].format(run_dir=run_dir))
