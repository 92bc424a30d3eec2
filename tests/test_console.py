"""Terminal output read from a log file, CI or SLURM: rich would cut it at 80 columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error, run_bad_commands
from xent.runner.console import print_results
from xent.runner.report import Row, print_summary


def test_a_long_value_is_printed_whole_when_stdout_is_not_a_terminal(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    source = "/scratch/project/teachers/resnet20-digits32-f489a2088aed/checkpoints/last.ckpt"
    print_results({"source": source, "test/err": 0.25}, Path("/runs/1"))
    out = capsys.readouterr().out
    assert f"│ source   │ {source} │" in out and "…" not in out
    assert out.splitlines()[-1] == "run dir: /runs/1"


def test_a_wide_summary_table_keeps_every_column(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    metrics = [f"test/metric_{i}" for i in range(8)]
    row = Row("loss=sce loss.alpha=0.1 loss.beta=1.0", values={m: [0.5, 0.7] for m in metrics})
    row.seeds = [0, 1]
    print_summary([row], metrics)
    out = capsys.readouterr().out
    table_row = next(line for line in out.splitlines() if "loss=sce" in line)
    assert table_row.count("0.6000 ± 0.1414") == 8 and "…" not in out
    assert all(m in out for m in metrics)


@pytest.mark.slow  # seconds: keeps the fast tier under its 2-minute budget
def test_task_tta_on_clean_data_is_said_in_the_users_words(tmp_path):
    """Was `source=for_digits is not an option`: an internal config choice the user never
    typed."""
    bad = {"tta on digits": (["task=tta", "data=digits"], "")}
    proc, run_dir = run_bad_commands(tmp_path, bad)["tta on digits"]
    assert_one_line_error(
        proc,
        run_dir,
        "data=digits has no source option of its own; valid: data=cifar100_c, cifar10_c, "
        "digits32_c, fashion_mnist32_c",
    )
    assert "calibrate" not in proc.stderr  # task=calibrate's source is not a per-data option
    assert "for_" not in proc.stderr


def test_a_sweep_jobs_line_says_its_outcome_in_one_line():
    from xent.runner.sweep import job_line

    ok = {"status": "ok", "seed": 1, "test/acc": 0.97222, "test/nll": 0.1, "train_time_s": 3.0}
    assert job_line(3, ["loss=sce", "seed=1"], ok, 41.04) == (
        "#3 loss=sce seed=1: ok, test/acc 0.9722, 41.0 s"
    )
    headline = ["test/nll", "test/acc"]
    assert job_line(3, ["loss=sce"], ok, 2.0, headline) == "#3 loss=sce: ok, test/nll 0.1000, 2.0 s"
    failed = {"status": "failed", "seed": 0, "test/acc": 0.0}
    assert job_line(4, ["loss=anyloss"], failed, 3.04) == (
        "#4 loss=anyloss: failed (see its error.log), 3.0 s"
    )
    assert job_line(5, [], None, 0.5) == "#5 (no overrides): no metrics.json, 0.5 s"
    # a headline metric the job reported as null (non-finite) or not at all is skipped, not a crash
    unvalidated = {"status": "ok", "best/val_w2": None, "test/w2": 0.5}
    assert job_line(6, ["loss.eps=5"], unvalidated, 1.0, ["best/val_w2", "test/w2"]) == (
        "#6 loss.eps=5: ok, test/w2 0.5000, 1.0 s"
    )
    cut = {"status": "interrupted", "seed": 0, "epochs": 1}
    assert job_line(7, ["seed=0"], cut, 9.0) == (
        "#7 seed=0: interrupted (resume=true continues it), 9.0 s"
    )
