"""A real multirun (xent's default launcher, `cores`, digits): the summary its end-of-sweep
callback writes holds what the job files say; a failing job does not stop the others and is
marked; Ctrl-C records the running jobs and names the command that continues the sweep."""

from __future__ import annotations

import csv
import json
import shlex
import statistics
from pathlib import Path

import pytest
import yaml

from tests.conftest import assert_one_line_error, xent_run


@pytest.mark.slow
def test_multirun_writes_a_summary_recomputable_from_the_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    proc = xent_run(
        "-m",
        "loss=ce,sce,anyloss",  # anyloss on 10 classes fails in its job: a bad combination
        "seed=0,1",
        "trainer.max_epochs=1",
        "logger=none",
        "headline=[test/acc,test/nll]",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr  # the failed jobs make the multirun exit non-zero
    assert "loss=anyloss needs a binary target" in proc.stderr
    jobs = {}
    for job in sweep.glob("*/metrics.json"):
        overrides = yaml.safe_load((job.parent / ".hydra" / "overrides.yaml").read_text())
        loss = next(o.split("=")[1] for o in overrides if o.startswith("loss="))
        jobs.setdefault(loss, []).append(json.loads(job.read_text()))
    assert sorted((k, len(v)) for k, v in jobs.items()) == [("anyloss", 2), ("ce", 2), ("sce", 2)]
    assert all(r["status"] == "failed" for r in jobs["anyloss"])
    with open(sweep / "summary.csv") as handle:
        rows = {row["run"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"loss=ce", "loss=sce", "loss=anyloss"}
    for loss in ("ce", "sce"):
        accs = [r["test/acc"] for r in jobs[loss]]
        assert float(rows[f"loss={loss}"]["test/acc_mean"]) == pytest.approx(statistics.fmean(accs))
        assert float(rows[f"loss={loss}"]["test/acc_std"]) == pytest.approx(statistics.stdev(accs))
        assert rows[f"loss={loss}"]["seeds"] == "2"
    assert rows["loss=anyloss"]["failed"] == "2" and rows["loss=anyloss"]["seeds"] == "0"
    header = (sweep / "summary.md").read_text().splitlines()[0]
    assert header == "| run | seeds | test/acc | test/nll |"  # the headline metrics only
    assert (sweep / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "sweep summary" in proc.stdout and "loss=sce" in proc.stdout  # the Rich table


@pytest.mark.slow
def test_the_same_sweep_through_submitit_local_subprocesses(tmp_path):
    """hydra/launcher=local: each job its own process (submitit); a job that fails there on bad
    input makes the multirun print the job's own one line and exit 2, as a job of the sweep's own
    process does, and the summary marks it."""
    sweep = tmp_path / "sweep"
    proc = xent_run(
        "-m",
        "hydra/launcher=local",
        "loss=ce,anyloss",
        "seed=0",
        "trainer.max_epochs=1",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "xent-run: error: loss=anyloss needs a binary target (2 classes), but data=digits has 10 "
        "classes"
    )
    assert list((sweep / ".submitit").glob("*/*_submission.sh")) or list(
        (sweep / ".submitit").glob("*/*.pkl")
    ), "submitit did not launch the jobs"
    with open(sweep / "summary.csv") as handle:
        rows = {row["run"]: row for row in csv.DictReader(handle)}
    assert rows["loss=ce"]["seeds"] == "1" and float(rows["loss=ce"]["test/acc_mean"]) > 0.2
    assert rows["loss=anyloss"]["failed"] == "1"


BAD = {
    "no sbatch": (
        ["-m", "hydra/launcher=slurm", "loss=ce,sce"],
        "hydra/launcher=slurm needs SLURM's sbatch on PATH, and there is none here",
    ),
    "unknown experiment": (
        ["-m", "experiment=nope"],
        "experiment=nope is not an option; valid: anyloss_breast_cancer, calibration_digits32, "
        "calibration_fashion, dco_arith, distill_fashion, hlgauss_diabetes,",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BAD))
def test_bad_sweeps_fail_in_one_line_before_anything_is_written(tmp_path, name):
    overrides, message = BAD[name]
    sweep = tmp_path / "sweep"
    env = {"PATH": str(tmp_path / "empty-bin")}  # no sbatch, even where SLURM is installed
    proc = xent_run(*overrides, f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=env)
    assert_one_line_error(proc, sweep, message)


@pytest.mark.slow
def test_resume_reruns_only_the_jobs_that_did_not_end_ok(tmp_path):
    """A sweep cut off after job 0 finished and while job 1 ran: rerun into the same sweep dir
    with resume=true, job 0 is kept as it is and job 1 continues from its last.ckpt."""
    sweep = tmp_path / "sweep"
    args = ["-m", "loss=ce,sce", "trainer.max_epochs=2", "logger=none", f"hydra.sweep.dir={sweep}"]
    assert xent_run(*args, cwd=tmp_path).returncode == 0
    done = (sweep / "0" / "metrics.json").read_bytes()
    done_log = (sweep / "0" / "xent.log").read_bytes()
    cut = json.loads((sweep / "1" / "metrics.json").read_text())
    cut.update(status="failed", error="killed")  # as a job killed mid-run leaves it
    (sweep / "1" / "metrics.json").write_text(json.dumps(cut))
    proc = xent_run(*args, "resume=true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (sweep / "0" / "metrics.json").read_bytes() == done  # not run again
    again = json.loads((sweep / "1" / "metrics.json").read_text())
    assert again["status"] == "ok" and again["epochs"] == 2
    log1 = (sweep / "1" / "xent.log").read_text()
    assert "resuming from" in log1 and "last.ckpt" in log1
    # a finished job is left byte for byte as it was, its log too; the terminal says so
    assert (sweep / "0" / "xent.log").read_bytes() == done_log
    assert f"xent-run: {sweep / '0'} already finished (metrics.json status ok)" in proc.stdout


@pytest.mark.slow
def test_wandb_offline_sweep_one_run_per_job_in_the_group_plus_the_summary(tmp_path):
    pytest.importorskip("wandb")
    sweep = tmp_path / "sweep"
    proc = xent_run(
        "-m",
        "loss=ce,sce",
        "trainer.max_epochs=1",
        "logger=wandb",
        "experiment_name=ce_vs_sce",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env={"WANDB_MODE": "offline"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for job in ("0", "1"):
        runs = list((sweep / job / "wandb").glob("offline-run-*/*.wandb"))
        assert len(runs) == 1, job
        assert b"ce_vs_sce" in runs[0].read_bytes()  # the group, in the run record
    summary = list((sweep / "wandb").glob("offline-run-*/*.wandb"))
    assert len(summary) == 1 and b"ce_vs_sce" in summary[0].read_bytes()
    assert list((sweep / "wandb").glob("offline-run-*/files/media/table/summary_*.table.json"))


@pytest.mark.slow
def test_a_sweeps_terminal_shows_a_line_per_job_and_its_log_the_rest(tmp_path):
    """One line per job and the summary on stdout; each job's config tree, progress and result
    table in its own xent.log. A misspelt headline metric: the summary shows what the jobs
    reported, then one error line and exit 2."""
    sweep = tmp_path / "sweep"
    overrides = ["trainer.max_epochs=1", "logger=none", "headline=[test/acc,test/accc]"]
    proc = xent_run("-m", "seed=0,1", *overrides, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "xent-run: error: headline metric 'test/accc' is not reported by any job; valid: "
        "test/acc, best/test_acc, test/acc5, test/nll, test/ece, best/val_acc, model/n_params, "
        "test/loss, test_time_s, train_time_s"
    )
    lines = proc.stdout.splitlines()
    # side by side (hydra/launcher=cores), each job's line comes as it ends: in any order
    job_lines = sorted(line for line in lines if line.startswith("#"))
    assert len(job_lines) == 2
    for seed, line in enumerate(job_lines):
        acc = json.loads((sweep / str(seed) / "metrics.json").read_text())["test/acc"]
        start = f"#{seed} seed={seed} {' '.join(overrides)}: ok, test/acc {acc:.4f}, "
        assert line.startswith(start) and line.endswith(" s"), line
    assert "sweep summary" in proc.stdout and "test/acc5" in proc.stdout  # all reported metrics
    assert "├── task" not in proc.stdout and "[INFO]" not in proc.stdout.replace("[HYDRA]", "")
    assert "run dir:" not in proc.stdout
    assert len(lines) < 20, proc.stdout
    log0 = (sweep / "0" / "xent.log").read_text()
    assert "├── task" in log0 and "│ test/acc " in log0 and f"run dir: {sweep / '0'}" in log0
    header = (sweep / "summary.md").read_text().splitlines()[0]
    assert header == "| run | seeds | test/acc | best/test_acc | test/acc5 | test/nll | test/ece |"


def _numbers(job: Path) -> dict:
    """A job's metrics.json without its wall times."""
    result = json.loads((job / "metrics.json").read_text())
    return {key: value for key, value in result.items() if not key.endswith("_time_s")}


@pytest.mark.slow
def test_the_cores_launcher_runs_a_job_per_core_each_with_one_thread(tmp_path):
    """The default launcher, cores: joblib's processes, one job per core, each with one thread
    (2 cores; set for any machine), so every job gives exactly the numbers of the same job run
    alone on one thread."""
    args = ["-m", "loss=ce,sce", "seed=0", "data=digits32", "model=cnn", "trainer.max_epochs=1"]
    cores, alone = tmp_path / "cores", tmp_path / "alone"
    one_thread = {"OMP_NUM_THREADS": "1"}  # what 2 jobs on 2 cores get, on any machine
    proc = xent_run(*args, "logger=none", f"hydra.sweep.dir={cores}", cwd=tmp_path, env=one_thread)
    assert proc.returncode == 0, proc.stderr
    assert "Launching 2 jobs, 2 at a time, 1 torch thread(s) each" in proc.stdout
    proc = xent_run(
        *args,
        "logger=none",
        "hydra/launcher=basic",
        f"hydra.sweep.dir={alone}",
        cwd=tmp_path,
        env=one_thread,
    )
    assert proc.returncode == 0, proc.stderr
    hydra = yaml.safe_load((cores / "0" / ".hydra" / "hydra.yaml").read_text())["hydra"]
    assert hydra["launcher"]["_target_"].endswith("cores_launcher.CoresLauncher")
    assert hydra["launcher"]["n_jobs"] == -1
    for job in ("0", "1"):
        assert _numbers(cores / job) == _numbers(alone / job)


@pytest.mark.slow
def test_a_one_job_sweep_runs_in_xent_runs_own_process(tmp_path):
    """A batch of one job gains nothing from a worker: it runs as the basic launcher runs it."""
    proc = xent_run(
        "-m",
        "seed=0",
        "trainer.max_epochs=1",
        "logger=none",
        f"hydra.sweep.dir={tmp_path / 'S'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Launching 1 jobs locally" in proc.stdout and "at a time" not in proc.stdout


@pytest.mark.slow
def test_ctrl_c_to_xent_run_records_every_running_job_and_names_the_way_on(tmp_path):
    """SIGINT to xent-run (not to its workers: `kill -INT`, where a terminal's Ctrl-C reaches
    them all): both jobs stop at their next step, interrupted with their last.ckpt, exit 130
    with the line that continues the sweep; that command finishes both."""
    import signal
    import subprocess
    import sys
    import time

    from tests.cli_batch import base_env
    from tests.conftest import default_sigint

    sweep = tmp_path / "S"
    argv = ["-m", "loss=ce,sce", "trainer.max_epochs=40", "logger=none", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "xent.runner.cli", *argv],
        cwd=tmp_path,
        env=base_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 240
    while not all((sweep / job / "checkpoints" / "last.ckpt").exists() for job in "01"):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=240)
    command = shlex.join(["xent-run", *argv, "resume=auto"])
    assert proc.returncode == 130, stderr
    (line,) = stderr.splitlines()
    assert line.startswith("xent-run: interrupted after epoch ") and line.endswith(
        f"; continue with: {command}"
    )
    assert "xent-run: stopping the running jobs at their next step" in stdout
    for job in "01":
        result = json.loads((sweep / job / "metrics.json").read_text())
        assert result["status"] == "interrupted" and 1 <= result["epochs"] < 40
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
    assert not (sweep / ".stop").exists()
    rerun = xent_run(*argv, "resume=auto", cwd=tmp_path, timeout=400)
    assert rerun.returncode == 0 and rerun.stderr == "", rerun.stderr
    for job in "01":
        result = json.loads((sweep / job / "metrics.json").read_text())
        assert (result["status"], result["epochs"]) == ("ok", 40)
