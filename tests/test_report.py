"""xent-report: mean ± std over seeds per combination, from a sweep dir's job dirs."""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys

import yaml

from xent.report import collect, write_summary


def fake_job(sweep, num, overrides, metrics):
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
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


def test_cli_exit_codes(tmp_path):
    sweep, _ = make_sweep(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "xent.report", str(sweep)], capture_output=True, text=True
    )
    assert proc.returncode == 1 and "loss=ce" in proc.stdout  # a failed job is reported
    empty = subprocess.run(
        [sys.executable, "-m", "xent.report", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert empty.returncode == 2 and "is not a directory" in empty.stderr.splitlines()[-1]
    unknown = subprocess.run(
        [sys.executable, "-m", "xent.report", str(sweep), "--metric", "test/nope"],
        capture_output=True,
        text=True,
    )
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (
        "xent-report: error: --metric test/nope is not reported by any job; "
        "valid: test/acc, test/nll, test/ece"
    )


def test_columns_are_the_metrics_the_jobs_reported(tmp_path):
    sweep = tmp_path / "sweep"
    for num, (loss, rmse) in enumerate([("mse", 54.0), ("hlgauss", 50.0)]):
        metrics = {"status": "ok", "seed": 0, "epochs": 100, "train_time_s": 3.0}
        metrics.update({"test/rmse": rmse, "test/mae": rmse - 12, "test/loss": 0.5})
        metrics.update({"best/val_rmse": 65.0, "test/r2": 0.5})
        fake_job(sweep, num, [f"loss={loss}", "seed=0"], metrics)
    write_summary(sweep)
    header = (sweep / "summary.md").read_text().splitlines()[0]
    # known metrics first, in the fixed order; other test/* keys after; never test/loss,
    # whose scale differs per loss, nor the bookkeeping keys
    assert header == "| run | seeds | test/rmse | test/mae | test/r2 |"
    assert (
        "| loss=hlgauss | 1 | 50.0000 ± 0.0000 | 38.0000 ± 0.0000 |"
        in (sweep / "summary.md").read_text()
    )
