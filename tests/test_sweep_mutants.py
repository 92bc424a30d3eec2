"""The end-of-sweep callbacks in-process: SweepSummary, JobLines and the W&B summary table, with
small fake configs (the multirun tests run them in a subprocess)."""

from __future__ import annotations

import logging
import sys
from types import ModuleType, SimpleNamespace

import pytest
from hydra.types import RunMode
from omegaconf import OmegaConf

from tests.test_report import fake_job
from xent.runner import sweep
from xent.runner.report import Row
from xent.runner.sweep import JobLines, SweepSummary, job_line, log_summary_to_wandb


class FakeWandb(ModuleType):
    """wandb as far as log_summary_to_wandb uses it, recording what it is given."""

    def __init__(self):
        super().__init__("wandb")
        self.inits, self.logged, self.finished = [], [], 0

    def init(self, **kwargs):
        self.inits.append(kwargs)
        return SimpleNamespace(log=self.logged.append, finish=self._finish)

    def _finish(self):
        self.finished += 1

    class Table:
        def __init__(self, columns, data):
            self.columns, self.data = columns, data


@pytest.fixture
def fake_wandb(monkeypatch):
    module = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module


def rows():
    two = Row("loss=ce", values={"test/acc": [0.8, 0.9], "test/nll": [0.5]}, seeds=[0, 1])
    failed = Row("loss=mae", seeds=[], failed=2)
    return [two, failed]


def test_the_wandb_summary_is_one_table_in_a_run_of_its_own(fake_wandb, tmp_path):
    cfg = {"project": "p", "entity": "e", "group": "g", "other": 1}
    log_summary_to_wandb(rows(), ["test/acc", "test/nll"], cfg, tmp_path)
    assert fake_wandb.inits == [
        {
            "project": "p",
            "entity": "e",
            "group": "g",
            "job_type": "summary",
            "name": "summary",
            "dir": str(tmp_path),
            "config": {"sweep_dir": str(tmp_path), "metrics": ["test/acc", "test/nll"]},
            "reinit": "finish_previous",
        }
    ]
    [logged] = fake_wandb.logged
    table = logged["summary"]
    assert list(logged) == ["summary"]
    assert table.columns == [
        "run",
        "seeds",
        "failed",
        "test/acc mean",
        "test/acc std",
        "test/nll mean",
        "test/nll std",
    ]
    ce, mae = table.data
    assert ce[:3] == ["loss=ce", 2, 0] and ce[3] == pytest.approx(0.85)
    assert ce[4] == pytest.approx(0.0707106781) and ce[5:] == [0.5, 0.0]
    assert mae[:3] == ["loss=mae", 0, 2] and len(mae) == 7
    assert all(v != v for v in mae[3:])  # nan: no values
    assert fake_wandb.finished == 1
    log_summary_to_wandb(rows(), ("test/acc",), {}, tmp_path)  # keys unset: None
    last = fake_wandb.inits[-1]
    assert (last["project"], last["entity"], last["group"]) == (None, None, None)
    assert last["config"]["metrics"] == ["test/acc"]


def ok_metrics(seed, acc):
    return {"status": "ok", "seed": seed, "test/acc": acc, "test/nll": 1 - acc}


def sweep_config(sweep_dir, **extra):
    return OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}}, **extra})


@pytest.fixture
def fresh_globals(monkeypatch):
    monkeypatch.setattr(sweep, "summary_errors", [])
    monkeypatch.setattr(sweep, "failed_jobs", -1)


def test_sweep_summary_writes_the_files_and_counts_failed_jobs(
    tmp_path, fresh_globals, capsys, caplog
):
    directory = tmp_path / "sweep"
    fake_job(directory, 0, ["loss=ce", "seed=0"], ok_metrics(0, 0.8))
    fake_job(directory, 1, ["loss=ce", "seed=1"], ok_metrics(1, 0.9))
    fake_job(directory, 2, ["loss=mae", "seed=0"], {"status": "failed"})
    fake_job(directory, 3, ["loss=mae", "seed=1"], {"status": "failed"})
    config = sweep_config(directory, experiment_name="my title", headline=["test/nll"])
    with caplog.at_level(logging.INFO, logger="xent"):
        SweepSummary().on_multirun_end(config)
    assert sweep.failed_jobs == 2
    assert sweep.summary_errors == []
    assert (directory / "summary.md").read_text().splitlines()[0] == "| run | seeds | test/nll |"
    assert (directory / "summary.png").exists()
    assert "my title" in capsys.readouterr().out
    assert [r.getMessage() for r in caplog.records] == [
        f"sweep summary: {directory / 'summary.csv'} (.md, .png)"
    ]


def test_a_misspelt_headline_is_an_error_and_the_summary_shows_every_metric(
    tmp_path, fresh_globals, capsys
):
    directory = tmp_path / "sweep"
    fake_job(directory, 0, ["loss=ce", "seed=0"], ok_metrics(0, 0.8))
    config = sweep_config(directory, headline=["test/acc", "test/accc"])
    SweepSummary().on_multirun_end(config)
    assert sweep.summary_errors == [
        "headline metric 'test/accc' is not reported by any job; valid: test/acc, test/nll"
    ]
    header = (directory / "summary.md").read_text().splitlines()[0]
    assert header == "| run | seeds | test/acc | test/nll |"
    assert sweep.failed_jobs == 0
    assert "sweep summary" in capsys.readouterr().out  # the default title


def test_no_headline_and_no_title(tmp_path, fresh_globals, capsys, monkeypatch):
    directory = tmp_path / "sweep"
    fake_job(directory, 0, ["loss=ce", "seed=0"], ok_metrics(0, 0.8))
    seen = []
    monkeypatch.setattr(sweep, "summarize", lambda *a: seen.append(a) or [])
    SweepSummary().on_multirun_end(sweep_config(directory, headline=[], experiment_name=None))
    assert seen == [(directory, None, "")]
    assert sweep.failed_jobs == 0 and sweep.summary_errors == []
    SweepSummary().on_multirun_end(sweep_config(directory))
    assert seen[-1] == (directory, None, "")


def test_an_empty_sweep_dir_writes_nothing_and_logs_nothing(tmp_path, fresh_globals, caplog):
    with caplog.at_level(logging.INFO, logger="xent"):
        SweepSummary().on_multirun_end(sweep_config(tmp_path, headline=["test/acc"]))
    assert caplog.records == [] and list(tmp_path.iterdir()) == []
    assert sweep.failed_jobs == 0 and sweep.summary_errors == []


def test_a_summary_that_fails_is_a_warning_only(tmp_path, fresh_globals, monkeypatch, caplog):
    def broken(*args):
        raise ValueError("bad yaml")

    monkeypatch.setattr(sweep, "summarize", broken)
    with caplog.at_level(logging.INFO, logger="xent"):
        SweepSummary().on_multirun_end(sweep_config(tmp_path))
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "no sweep summary: bad yaml")
    ]
    assert sweep.failed_jobs == -1  # untouched


def test_the_summary_goes_to_wandb_when_the_sweep_logs_there(
    tmp_path, fresh_globals, monkeypatch, caplog, capsys
):
    directory = tmp_path / "sweep"
    fake_job(directory, 0, ["loss=ce", "seed=0"], ok_metrics(0, 0.8))
    fake_job(directory, 1, ["loss=sce", "seed=0"], {"status": "failed"})
    calls = []
    monkeypatch.setattr(sweep, "log_summary_to_wandb", lambda *a: calls.append(a))
    wandb_cfg = {"project": "p"}
    config = sweep_config(directory, headline=["test/nll"], logger={"wandb": wandb_cfg})
    SweepSummary().on_multirun_end(config)
    [(got_rows, metrics, got_cfg, got_dir, judgement)] = calls
    assert [r.label for r in got_rows] == ["loss=ce", "loss=sce"]
    assert metrics == ("test/nll",) and got_cfg == wandb_cfg and got_dir == directory
    assert judgement is None  # no claim
    assert sweep.failed_jobs == 1
    calls.clear()
    SweepSummary().on_multirun_end(sweep_config(directory, logger={"csv": {}}))
    SweepSummary().on_multirun_end(sweep_config(directory, logger=None))
    assert calls == []

    def broken(*args):
        raise RuntimeError("offline")

    monkeypatch.setattr(sweep, "log_summary_to_wandb", broken)
    with caplog.at_level(logging.WARNING, logger="xent"):
        SweepSummary().on_multirun_end(config)
    assert [r.getMessage() for r in caplog.records] == ["summary not logged to W&B: offline"]
    assert sweep.failed_jobs == 1  # counted all the same


def test_job_lines_outcomes():
    ok = {"status": "ok", "seed": 1, "epochs": 3, "test/acc": 0.5, "test/nll": 0.25}
    assert job_line(0, ["a=1", "b=2"], ok, 1.25) == "#0 a=1 b=2: ok, test/acc 0.5000, 1.2 s"
    assert job_line(1, ["a"], ok, 0.06, ["test/nll"]) == "#1 a: ok, test/nll 0.2500, 0.1 s"
    assert job_line(1, ["a"], ok, 0.0, ["nope", "test/nll"]) == "#1 a: ok, test/nll 0.2500, 0.0 s"
    assert job_line(1, ["a"], ok, 0.0, ["nope"]) == "#1 a: ok, test/acc 0.5000, 0.0 s"
    assert job_line(1, ["a"], ok, 0.0, ["epochs"]) == "#1 a: ok, epochs 3.0000, 0.0 s"
    bare = {"status": "ok", "seed": 0, "name": "x", "flag": "y"}
    assert job_line(2, [], bare, 10.0) == "#2 (no overrides): ok, 10.0 s"
    assert job_line(2, [], {"status": "killed"}, 1.0) == (
        "#2 (no overrides): failed (see its error.log), 1.0 s"
    )
    assert job_line(2, [], {}, 1.0) == "#2 (no overrides): failed (see its error.log), 1.0 s"


def hydra_config(output_dir, mode=RunMode.MULTIRUN, num=4, headline=None):
    return OmegaConf.create(
        {
            "headline": headline,
            "hydra": {
                "mode": mode,
                "runtime": {"output_dir": str(output_dir)},
                "overrides": {"task": ["loss=ce", "hydra.job.chdir=false", "seed=1"]},
                "job": {"num": num},
            },
        }
    )


def test_job_lines_print_one_line_per_multirun_job(tmp_path, monkeypatch, capsys):
    clock = iter([10.0, 20.0, 23.5, 40.0])
    monkeypatch.setattr(sweep, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    lines = JobLines()
    assert lines.started == 10.0
    lines.on_job_start(hydra_config(tmp_path))
    assert lines.started == 20.0
    (tmp_path / "metrics.json").write_text('{"status": "ok", "test/acc": 0.5, "test/nll": 0.1}')
    lines.on_job_end(hydra_config(tmp_path, headline=["test/nll"]), job_return=None)
    assert capsys.readouterr().out == "#4 loss=ce seed=1: ok, test/nll 0.1000, 3.5 s\n"
    (tmp_path / "metrics.json").unlink()
    lines.on_job_end(hydra_config(tmp_path, num=5), job_return=None)
    assert capsys.readouterr().out == "#5 loss=ce seed=1: no metrics.json, 20.0 s\n"


def test_a_job_line_is_flushed_as_the_job_ends(tmp_path, monkeypatch):
    """In order with the jobs' other output, and at once (not when the sweep ends)."""
    from tests.test_rundir_mutants import RecordingStdout

    stdout = RecordingStdout()
    monkeypatch.setattr("sys.stdout", stdout)
    JobLines().on_job_end(hydra_config(tmp_path), job_return=None)
    assert stdout.events[-1] == ("flush", None)
    written = "".join(t for e, t in stdout.events if e == "write")
    assert written.startswith("#4 loss=ce seed=1: no metrics.json, ")


def test_job_lines_say_nothing_in_a_single_run(tmp_path, monkeypatch, capsys):
    (tmp_path / "metrics.json").write_text('{"status": "ok"}')
    lines = JobLines()
    lines.on_job_start(hydra_config(tmp_path, mode=RunMode.RUN))
    lines.on_job_end(hydra_config(tmp_path, mode=RunMode.RUN), job_return=None)
    assert capsys.readouterr().out == ""
