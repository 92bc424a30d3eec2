"""xent-report: mean ± std over seeds per combination, from a sweep dir's job dirs."""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys

import pytest
import yaml

from xent.runner.report import collect, write_summary

# A classify job's summary_keys (ClassifyTask.summary_keys), as the run writes them.
CLASSIFY = ["test/acc", "best/test_acc", "test/acc5", "test/nll", "test/ece", "test/f1"]


def fake_job(sweep, num, overrides, metrics, columns=CLASSIFY):
    """A job dir as a run leaves it: overrides and metrics.json with its task's summary_keys
    (no metrics.json when `metrics` is None: still running)."""
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        metrics = {**metrics, "summary_keys": columns} if metrics.get("status") == "ok" else metrics
        (job / "metrics.json").write_text(json.dumps(metrics))


def make_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    accs = {"ce": [0.80, 0.82, 0.84], "gce": [0.90, 0.91, 0.95]}
    num = 0
    for loss, values in accs.items():
        for seed, acc in enumerate(values):
            ok = {
                "status": "ok",
                "seed": seed,
                "test/acc": acc,
                "test/nll": 1 - acc,
                "test/ece": 0.05,
            }
            fake_job(sweep, num, [f"loss={loss}", f"seed={seed}", "experiment=x"], ok)
            num += 1
    fake_job(sweep, num, ["loss=mae", "seed=0", "experiment=x"], {"status": "failed"})
    fake_job(sweep, num + 1, ["loss=mae", "seed=1", "experiment=x"], None)  # still running
    return sweep, accs


def test_rows_group_by_overrides_without_seed(tmp_path):
    sweep, accs = make_sweep(tmp_path)
    rows = {row.label: row for row in collect(sweep)}
    assert set(rows) == {"loss=ce", "loss=gce", "loss=mae"}  # shared experiment=x dropped
    assert rows["loss=gce"].values["test/acc"] == accs["gce"]
    assert rows["loss=ce"].seeds == [0, 1, 2]
    mae = rows["loss=mae"]
    assert mae.failed == 1 and mae.pending == 1 and not mae.seeds


def test_summary_files_hold_mean_and_sample_std(tmp_path):
    sweep, accs = make_sweep(tmp_path)
    write_summary(sweep)
    table = {r["run"]: r for r in csv.DictReader(open(sweep / "summary.csv"))}
    mean = float(table["loss=gce"]["test/acc_mean"])
    std = float(table["loss=gce"]["test/acc_std"])
    assert abs(mean - statistics.fmean(accs["gce"])) < 1e-12
    assert abs(std - statistics.stdev(accs["gce"])) < 1e-12  # n − 1, as papers report
    markdown = (sweep / "summary.md").read_text()
    assert "| loss=gce | 3 | 0.9200 ± 0.0265 |" in markdown
    assert "| loss=mae | 0 (1 failed, 1 pending) |" in markdown


@pytest.mark.slow  # xent-report in subprocesses
def test_cli_exit_codes(tmp_path):
    sweep, _ = make_sweep(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "xent.runner.report", str(sweep)], capture_output=True, text=True
    )
    assert proc.returncode == 1 and "loss=ce" in proc.stdout  # a failed job is reported
    empty = subprocess.run(
        [sys.executable, "-m", "xent.runner.report", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert empty.returncode == 2 and "is not a directory" in empty.stderr.splitlines()[-1]
    unknown = subprocess.run(
        [sys.executable, "-m", "xent.runner.report", str(sweep), "--metric", "test/nope"],
        capture_output=True,
        text=True,
    )
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (
        "xent-report: error: --metric 'test/nope' is not reported by any job; "
        "valid: test/acc, test/nll, test/ece"
    )


def test_columns_are_the_metrics_the_jobs_reported(tmp_path):
    sweep = tmp_path / "sweep"
    for num, (loss, rmse) in enumerate([("mse", 54.0), ("hlgauss", 50.0)]):
        metrics = {"status": "ok", "seed": 0, "epochs": 100, "train_time_s": 3.0}
        metrics.update({"test/rmse": rmse, "test/mae": rmse - 12, "test/loss": 0.5})
        metrics.update({"best/val_rmse": 65.0, "test/r2": 0.5})
        fake_job(sweep, num, [f"loss={loss}", "seed=0"], metrics, ["test/rmse", "test/mae"])
    write_summary(sweep)
    header = (sweep / "summary.md").read_text().splitlines()[0]
    # the task's summary_keys first, in its order; other test/* keys after; never test/loss,
    # whose scale differs per loss, nor the bookkeeping keys
    assert header == "| run | seeds | test/rmse | test/mae | test/r2 |"
    assert "| loss=hlgauss | 1 | 50.0000 | 38.0000 |" in (sweep / "summary.md").read_text()


def run_report(*args):
    return subprocess.run(
        [sys.executable, "-m", "xent.runner.report", *map(str, args)],
        capture_output=True,
        text=True,
    )


def headline_sweep(tmp_path, headline):
    """Two ok jobs that ran with `headline` (saved in .hydra/config.yaml, as Hydra does)."""
    sweep = tmp_path / "sweep"
    for num, (loss, acc) in enumerate([("ce", 0.8), ("sce", 0.9)]):
        metrics = {"status": "ok", "seed": 0, "test/acc": acc, "test/nll": 1 - acc}
        fake_job(sweep, num, [f"loss={loss}", "seed=0"], metrics)
        config = {"seed": 0, "headline": headline}
        (sweep / str(num) / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    return sweep


@pytest.mark.slow  # xent-report in subprocesses
def test_report_keeps_the_headline_the_sweep_ran_with(tmp_path):
    sweep = headline_sweep(tmp_path, ["test/nll"])
    assert run_report(sweep).returncode == 0
    assert (sweep / "summary.md").read_text().splitlines()[0] == "| run | seeds | test/nll |"
    assert run_report(sweep, "--metric", "test/acc").returncode == 0  # told otherwise
    assert (sweep / "summary.md").read_text().splitlines()[0] == "| run | seeds | test/acc |"
    assert run_report(sweep, "--metrics", "test/acc,test/nll").returncode == 0
    header = (sweep / "summary.md").read_text().splitlines()[0]
    assert header == "| run | seeds | test/acc | test/nll |"


def test_a_misspelt_headline_metric_is_one_line_and_writes_nothing(tmp_path):
    sweep = headline_sweep(tmp_path, ["test/acc", "test/accc"])
    proc = run_report(sweep)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "xent-report: error: headline metric 'test/accc' is not reported by any job; "
        "valid: test/acc, test/nll"
    )
    assert not list(sweep.glob("summary.*"))


def test_one_seed_shows_the_value_alone(tmp_path):
    sweep = headline_sweep(tmp_path, None)
    write_summary(sweep)
    lines = (sweep / "summary.md").read_text().splitlines()
    assert lines[2:] == ["| loss=ce | 1 | 0.8000 | 0.2000 |", "| loss=sce | 1 | 0.9000 | 0.1000 |"]


def test_failed_jobs_are_left_out_of_the_means_and_counted_under_the_table(tmp_path):
    sweep = tmp_path / "sweep"
    for seed, (status, acc) in enumerate([("ok", 0.8), ("ok", 0.9), ("ok", 1.0), ("failed", 0.0)]):
        metrics = {"status": status, "seed": seed, "test/acc": acc}
        fake_job(sweep, seed, ["loss=ce", f"seed={seed}"], metrics)
    write_summary(sweep)
    lines = (sweep / "summary.md").read_text().splitlines()
    assert lines[2] == "| (all) | 3 (1 failed) | 0.9000 ± 0.1000 |"  # the 0.0 is not averaged
    assert lines[-1] == (
        "1 of 4 jobs failed (left out of the means): see their metrics.json and error.log"
    )
    table = next(csv.DictReader(open(sweep / "summary.csv")))
    assert (table["seeds"], table["failed"], table["test/acc_mean"]) == ("3", "1", "0.9")


def test_a_sweep_whose_jobs_all_failed_gets_its_table_in_words(tmp_path):
    """No metric to draw: no summary.png, said in words (was matplotlib's "Number of columns
    must be a positive integer, not 0"), and the table still shows the failures."""
    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        fake_job(sweep, seed, ["loss=anyloss", f"seed={seed}"], {"status": "failed", "seed": seed})
    proc = run_report(sweep)
    assert proc.returncode == 1 and proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0] == "no summary.png: no job has reported a metric (failed or still running)"
    assert "│ (all) │ 0 (2 failed) │" in proc.stdout
    assert (
        "2 of 2 jobs failed (left out of the means): see their metrics.json and error.log" in lines
    )
    assert lines[-1] == f"wrote {sweep / 'summary.csv'}, summary.md"
    assert not (sweep / "summary.png").exists()
