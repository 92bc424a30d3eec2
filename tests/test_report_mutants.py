"""xent-report in-process: grouping, columns, statistics, the files, the figure, the Rich table
and the CLI's exit codes and lines (test_report.py runs the CLI in a subprocess)."""

from __future__ import annotations

import csv
import logging
import math
import statistics

import pytest
import yaml
from matplotlib.colors import to_rgba

from tests.conftest import run_main
from tests.test_report import fake_job
from xent.runner import report
from xent.runner.report import (
    Row,
    all_reported,
    collect,
    failed_note,
    format_stat,
    headline_metrics,
    job_dirs,
    mean_std,
    plot_summary,
    print_summary,
    reported_metrics,
    short_label,
    spread_label,
    summarize,
    summary_figure,
    sweep_headline,
    to_markdown,
    unreported_message,
    write_summary,
)


def ok(seed, **metrics):
    return {"status": "ok", "seed": seed, **metrics}


# --- grouping -----------------------------------------------------------------------------------


def test_job_dirs_are_in_numeric_order_and_need_their_overrides(tmp_path):
    for name in ("10", "2", "1", "0", "b", "a"):
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "overrides.yaml").write_text("[]")
    (tmp_path / "3" / ".hydra").mkdir(parents=True)  # no overrides.yaml: not a job
    (tmp_path / "archive").mkdir()
    assert [p.name for p in job_dirs(tmp_path)] == ["0", "1", "2", "a", "b", "10"]
    assert all(p.parent == tmp_path for p in job_dirs(tmp_path))
    assert job_dirs(tmp_path / "nothing") == []


def test_collect_groups_by_the_overrides_that_differ(tmp_path):
    columns = ["test/b", "test/a"]
    fake_job(tmp_path, 0, ["x=1", "loss=ce", "seed=0"], ok(0, **{"test/a": 1, "e": 2.5}), columns)
    fake_job(tmp_path, 1, ["x=1", "loss=ce", "seed=1"], ok(1, **{"test/a": 3}), ["test/c"])
    fake_job(tmp_path, 2, ["x=1", "loss=sce", "seed=0"], {"status": "failed", "test/a": 9})
    fake_job(tmp_path, 3, ["x=1", "loss=sce", "seed=1"], None)
    fake_job(tmp_path, 5, ["x=1", "loss=sce", "seed=3"], None)
    fake_job(tmp_path, 4, ["x=1", "loss=sce", "seed=2"], {"status": "interrupted"})
    ce, sce = collect(tmp_path)
    assert ce.label == "loss=ce" and sce.label == "loss=sce"
    assert ce.seeds == [0, 1] and ce.failed == 0 and ce.pending == 0
    assert ce.columns == ["test/b", "test/a", "test/c"]
    assert dict(ce.values) == {"test/a": [1.0, 3.0], "e": [2.5]}
    assert all(type(v) is float for v in ce.values["test/a"])
    assert (sce.seeds, sce.failed, sce.pending, dict(sce.values)) == ([], 2, 2, {})
    assert sce.columns == []


def test_collect_keeps_numbers_only_and_leaves_bookkeeping_out(tmp_path):
    metrics = ok(
        7,
        epochs=3,
        error="none",
        name="x",
        flag=True,
        nothing=None,
        listed=[1],
        **{"test/acc": 0.5, "n": 2},
    )
    metrics["summary_keys"] = ["test/acc"]
    fake_job(tmp_path, 0, ["seed=7"], metrics, ["test/acc"])
    [row] = collect(tmp_path)
    assert row.label == "(all)" and row.seeds == [7]
    assert dict(row.values) == {"test/acc": [0.5], "n": [2.0], "flag": [1.0]}


def test_collect_without_summary_keys_or_seed(tmp_path):
    (tmp_path / "0" / ".hydra").mkdir(parents=True)
    (tmp_path / "0" / ".hydra" / "overrides.yaml").write_text("")  # empty: no overrides
    (tmp_path / "0" / "metrics.json").write_text('{"status": "ok", "test/acc": 0.5}')
    fake_job(tmp_path, 1, ["loss=ce", "seed=1"], None)
    first, second = collect(tmp_path)
    assert first.label == "(all)" and first.seeds == [None] and first.columns == []
    assert second.label == "loss=ce" and second.pending == 1
    assert collect(tmp_path / "nothing") == []


def test_a_seed_like_override_that_is_not_the_seed_stays(tmp_path):
    fake_job(tmp_path, 0, ["teacher.seed=1", "seed=0", "a=b=c"], ok(0, **{"test/a": 1}))
    fake_job(tmp_path, 1, ["teacher.seed=2", "seed=0", "a=b=c"], ok(0, **{"test/a": 2}))
    assert [row.label for row in collect(tmp_path)] == ["teacher.seed=1", "teacher.seed=2"]
    fake_job(tmp_path, 2, ["teacher.seed=2", "seed=1", "a=b=d"], ok(1, **{"test/a": 3}))
    labels = [row.label for row in collect(tmp_path)]
    assert labels == ["teacher.seed=1 a=b=c", "teacher.seed=2 a=b=c", "teacher.seed=2 a=b=d"]


# --- columns ------------------------------------------------------------------------------------


def test_reported_metrics_declared_first_then_other_test_keys_sorted():
    first = Row("a", values={"test/z": [1], "test/acc": [1], "best/x": [1], "test/loss": [1]})
    first.columns = ["test/f1", "test/acc"]
    second = Row("b", values={"test/b": [1], "test/f1": [2], "test/y": [1], "timing": [1]})
    second.columns = ["test/y", "test/acc"]
    assert reported_metrics([first, second]) == (
        "test/f1",
        "test/acc",
        "test/y",
        "test/b",
        "test/z",
    )
    assert reported_metrics([]) == ()
    only_loss = Row("c", values={"test/loss": [1]})
    assert reported_metrics([only_loss]) == ()
    only_loss.columns = ["test/loss"]  # declared: shown
    assert reported_metrics([only_loss]) == ("test/loss",)
    assert all_reported([first, second]) == (
        "test/f1",
        "test/acc",
        "test/y",
        "test/b",
        "test/z",
        "best/x",
        "test/loss",
        "timing",
    )
    assert all_reported([]) == ()


def test_unreported_and_headline_metrics():
    row = Row("a", values={"test/acc": [1.0], "test/nll": [0.1], "t": [3.0]})
    row.columns = ["test/acc"]
    assert unreported_message([row], ["test/acc", "t"], "--metric") is None
    assert unreported_message([row], [], "--metric") is None
    assert unreported_message([row], ["test/acc", "x", "y"], "--metric") == (
        "--metric 'x' is not reported by any job; valid: test/acc, test/nll, t"
    )
    pending = Row("b", pending=1)
    assert unreported_message([pending], ["x"], "headline metric") is None
    assert headline_metrics([row], ["t", "test/acc"]) == ("t", "test/acc")
    assert headline_metrics([row], ["t", "nope"]) == ("test/acc", "test/nll")
    assert headline_metrics([row], None) == ("test/acc", "test/nll")
    assert headline_metrics([row], []) == ("test/acc", "test/nll")
    assert headline_metrics([row]) == ("test/acc", "test/nll")
    assert headline_metrics([pending], ["x"]) == ("x",)  # nothing reported yet: no evidence


# --- statistics ---------------------------------------------------------------------------------


def test_mean_std_and_format_stat():
    mean, std = mean_std([])
    assert math.isnan(mean) and math.isnan(std)
    assert mean_std([2.0]) == (2.0, 0.0)
    assert mean_std([1.0, 2.0, 6.0]) == (3.0, statistics.stdev([1.0, 2.0, 6.0]))
    assert mean_std([1.0, 3.0]) == (2.0, math.sqrt(2.0))
    assert format_stat([]) == "–"
    assert format_stat([0.123456]) == "0.1235"
    assert format_stat([0.123456], digits=2) == "0.12"
    assert format_stat([1.0, 3.0]) == "2.0000 ± 1.4142"
    assert format_stat([1.0, 3.0], 1) == "2.0 ± 1.4"


def test_spread_label():
    def row(n, failed=0):
        return Row("r", seeds=list(range(n)), failed=failed)

    assert spread_label([]) == "one run each (no error bars)"
    assert spread_label([row(0, failed=2)]) == "one run each (no error bars)"
    assert spread_label([row(1), row(1), row(0)]) == "one run each (no error bars)"
    assert spread_label([row(3), row(3), row(0)]) == "mean ± std over 3 seeds"
    assert spread_label([row(1), row(3), row(2)]) == "mean ± std over 1–3 seeds"
    assert spread_label([row(2)]) == "mean ± std over 2 seeds"


def test_failed_note():
    assert failed_note([Row("a", seeds=[0, 1], pending=3)]) == ""
    assert failed_note([]) == ""
    rows = [Row("a", seeds=[0, 1], failed=1, pending=2), Row("b", failed=2)]
    assert failed_note(rows) == (
        "3 of 7 jobs failed (left out of the means): see their metrics.json and error.log"
    )


def test_short_label():
    assert short_label("x" * 40) == "x" * 40
    assert short_label("x" * 41) == "x" * 37 + "..."
    assert short_label("abcdef", limit=5) == "ab..."
    assert short_label("abcde", limit=5) == "abcde"


# --- sweep_headline -----------------------------------------------------------------------------


def test_sweep_headline_is_the_first_job_config_that_names_one(tmp_path):
    assert sweep_headline(tmp_path) is None
    fake_job(tmp_path, 0, ["seed=0"], None)  # no config.yaml
    fake_job(tmp_path, 1, ["seed=1"], None)
    (tmp_path / "1" / ".hydra" / "config.yaml").write_text("")  # empty
    fake_job(tmp_path, 2, ["seed=2"], None)
    (tmp_path / "2" / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"headline": None}))
    assert sweep_headline(tmp_path) is None
    fake_job(tmp_path, 3, ["seed=3"], None)
    config = {"headline": ["test/acc", 5]}
    (tmp_path / "3" / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    fake_job(tmp_path, 4, ["seed=4"], None)
    (tmp_path / "4" / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"headline": ["x"]}))
    assert sweep_headline(tmp_path) == ["test/acc", "5"]


# --- summary.md and summary.csv -------------------------------------------------------------------


def test_markdown_table_exactly():
    rows = [
        Row("loss=ce", values={"a": [1.0, 3.0], "b": [0.5]}, seeds=[0, 1]),
        Row("loss=sce", values={"a": [2.0]}, seeds=[0], failed=1, pending=2),
        Row("loss=mae", pending=1),
    ]
    assert to_markdown(rows, ("a", "b")) == (
        "| run | seeds | a | b |\n"
        "|---|---|---|---|\n"
        "| loss=ce | 2 | 2.0000 ± 1.4142 | 0.5000 |\n"
        "| loss=sce | 1 (1 failed, 2 pending) | 2.0000 | – |\n"
        "| loss=mae | 0 (1 pending) | – | – |\n"
        "\n1 of 7 jobs failed (left out of the means): see their metrics.json and error.log\n"
    )
    assert to_markdown(rows[:1], ()) == "| run | seeds |\n|---|---|\n| loss=ce | 2 |\n"


def test_summary_csv_exactly(tmp_path):
    fake_job(tmp_path, 0, ["loss=ce", "seed=0"], ok(0, **{"test/acc": 1.0, "test/nll": 0.5}))
    fake_job(tmp_path, 1, ["loss=ce", "seed=1"], ok(1, **{"test/acc": 3.0, "test/nll": 0.5}))
    fake_job(tmp_path, 2, ["loss=sce", "seed=0"], {"status": "failed"})
    fake_job(tmp_path, 3, ["loss=sce", "seed=1"], None)
    rows = write_summary(tmp_path)
    assert [row.label for row in rows] == ["loss=ce", "loss=sce"]
    lines = (tmp_path / "summary.csv").read_bytes().decode().split("\r\n")
    assert (
        lines[0] == "run,seeds,failed,pending,test/acc_mean,test/acc_std,test/nll_mean,test/nll_std"
    )
    assert lines[1] == f"loss=ce,2,0,0,2.0,{math.sqrt(2.0)},0.5,0.0"
    assert lines[2] == "loss=sce,0,1,1,nan,nan,nan,nan"
    assert lines[3:] == [""]
    assert (tmp_path / "summary.md").read_text() == to_markdown(rows, ("test/acc", "test/nll"))
    write_summary(tmp_path, ("test/nll",))
    first = (tmp_path / "summary.csv").read_text().splitlines()[0]
    assert first == "run,seeds,failed,pending,test/nll_mean,test/nll_std"
    assert (tmp_path / "summary.md").read_text().splitlines()[0] == "| run | seeds | test/nll |"
    write_summary(tmp_path, ())  # empty: what the jobs reported
    assert "test/acc_mean" in (tmp_path / "summary.csv").read_text()
    table = list(csv.reader(open(tmp_path / "summary.csv")))
    assert len(table) == 3


# --- summary.png ----------------------------------------------------------------------------------


def figure_rows():
    return [
        Row("loss=ce " + "x" * 40, values={"m0": [1.0, 3.0], "m1": [2.0, 2.0]}, seeds=[0, 1]),
        Row("loss=sce", values={"m0": [4.0], "m1": [5.0]}, seeds=[0], failed=2),
        Row("loss=mae", pending=1),
    ]


def test_the_figure_grid_size_and_title():
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    rows = figure_rows()
    metrics = ["m0", "m1", "m0", "m1"]
    fig = summary_figure(rows, metrics, title="the title")
    assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
    assert fig.dpi == 100
    assert tuple(fig.get_size_inches()) == pytest.approx((4.2 * 3 + 1.5, 2.5 * 2 + 0.4))
    assert len(fig.axes) == 6
    assert [ax.get_visible() for ax in fig.axes] == [True] * 4 + [False] * 2
    assert fig._suptitle.get_text() == "the title" and fig._suptitle.get_fontsize() == 12
    labels = [[t.get_text() for t in ax.get_yticklabels()] for ax in fig.axes[:4]]
    first = ["loss=ce " + "x" * 29 + "...", "loss=sce", "loss=mae"]
    assert labels == [first, [""] * 3, [""] * 3, first]
    fig = summary_figure(rows, ["m0", "m1"])
    assert fig._suptitle is None
    assert tuple(fig.get_size_inches()) == pytest.approx((4.2 * 2 + 1.5, 2.5))
    assert len(fig.axes) == 2 and all(ax.get_visible() for ax in fig.axes)
    many = [Row(f"r{i}", values={"m": [1.0]}, seeds=[0]) for i in range(10)]
    fig = summary_figure(many, ["m"], title="t")
    assert tuple(fig.get_size_inches()) == pytest.approx((4.2 + 1.5, 0.35 * 10 + 1.2 + 0.4))


def test_a_panel_draws_bars_errors_hatches_and_notes():
    rows = figure_rows()
    fig = summary_figure(rows, ["m0"])
    [ax] = fig.axes
    assert ax.get_title() == "m0" and ax.title.get_fontsize() == 11
    assert ax.get_xlabel() == "mean ± std over 1–2 seeds" and ax.xaxis.label.get_fontsize() == 9
    assert ax.yaxis_inverted()
    assert ax.margins()[0] == 0.25
    assert all(t.get_fontsize() == 9 for t in ax.get_yticklabels())
    assert all(t.get_fontsize() == 9 for t in ax.get_xticklabels())
    assert list(ax.get_yticks()) == [0, 1, 2]
    bars = ax.patches
    assert [b.get_width() for b in bars] == [2.0, 4.0, 0.0]
    assert [b.get_y() + b.get_height() / 2 for b in bars] == [0, 1, 2]
    assert [b.get_hatch() for b in bars] == [None, "//", "//"]
    assert [b.get_alpha() for b in bars] == [0.8, 0.4, 0.4]
    assert bars[0].get_facecolor() == to_rgba("tab:blue", 0.8)
    from matplotlib.container import ErrorbarContainer

    [errors] = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    _, caps, (segments,) = errors.lines
    spans = [tuple(map(tuple, s)) for s in segments.get_segments()]
    root2 = math.sqrt(2.0)
    assert spans == [((2 - root2, 0), (2 + root2, 0)), ((4.0, 1), (4.0, 1)), ((0.0, 2), (0.0, 2))]
    assert caps and all(cap.get_markersize() == 6 for cap in caps)  # capsize 3
    grid = ax.xaxis.get_gridlines()
    assert grid[0].get_visible() and grid[0].get_alpha() == 0.3
    assert not ax.yaxis.get_gridlines()[0].get_visible()
    notes = ax.texts
    assert [t.get_text() for t in notes] == ["n=2", "n=1, 2 failed", "n=0"]
    assert [t.xy for t in notes] == [(2 + root2, 0), (4.0, 1), (0.0, 2)]
    assert all(t.xyann == (4, 0) for t in notes)
    assert all(t.anncoords == "offset points" for t in notes)
    assert all(t.get_va() == "center" and t.get_fontsize() == 8 for t in notes)


def test_plot_summary_writes_the_png_with_its_title(tmp_path):
    from tests.test_plot_summary import png_size

    path = plot_summary(figure_rows(), ["m0"], tmp_path / "s.png", title="x")
    assert path == tmp_path / "s.png" and path.read_bytes()[:4] == b"\x89PNG"
    assert png_size(path) == (570, 290)  # the title's 0.4 inches
    assert png_size(plot_summary(figure_rows(), ["m0"], tmp_path / "t.png")) == (570, 250)


def test_the_figure_looks_the_same_whatever_the_users_matplotlibrc():
    import matplotlib
    from cycler import cycler

    style = {"figure.dpi": 72, "figure.titlesize": 20, "axes.prop_cycle": cycler(color=["red"])}
    with matplotlib.rc_context(style):
        fig = summary_figure(figure_rows(), ["m0"], title="t")
    assert fig.dpi == 100 and fig._suptitle.get_fontsize() == 12
    assert fig.axes[0].patches[0].get_facecolor() == to_rgba("tab:blue", 0.8)


# --- summarize, the table and the CLI ------------------------------------------------------------


class FakeConsole:
    def __init__(self):
        self.printed = []

    def print(self, *args, **kwargs):
        self.printed.append((args, kwargs))


@pytest.fixture
def console(monkeypatch):
    fake = FakeConsole()
    monkeypatch.setattr("xent.runner.console.stdout_console", lambda: fake)
    return fake


def cells(column):
    return list(column._cells)


def test_print_summary_builds_the_table(console):
    rows = [
        Row("loss=ce", values={"a": [1.0, 3.0]}, seeds=[0, 1]),
        Row("loss=sce", values={"a": [2.0]}, seeds=[0], failed=1, pending=2),
    ]
    print_summary(rows, ["a", "b"], "title")
    (args, kwargs), (note_args, note_kwargs) = console.printed
    [table] = args
    assert kwargs == {}
    assert table.title == "title" and table.title_style == "bold"
    assert [c.header for c in table.columns] == ["run", "seeds", "a", "b"]
    assert [c.justify for c in table.columns] == ["left", "right", "right", "right"]
    assert [cells(c) for c in table.columns] == [
        ["loss=ce", "loss=sce"],
        ["2", "1 (1 failed, 2 pending)"],
        ["2.0000 ± 1.4142", "2.0000"],
        ["–", "–"],
    ]
    assert [r.style for r in table.rows] == [None, "red"]
    assert note_args == (
        "1 of 6 jobs failed (left out of the means): see their metrics.json and error.log",
    )
    assert note_kwargs == {"style": "red", "soft_wrap": True, "highlight": False}
    console.printed.clear()
    print_summary(rows[:1], ["a"])
    [(args, kwargs)] = console.printed
    assert args[0].title == "sweep summary"
    assert cells(args[0].columns[1]) == ["2"]
    console.printed.clear()
    print_summary([Row("p", pending=1)], [])
    assert cells(console.printed[0][0][0].columns[1]) == ["0 (1 pending)"]


def test_summarize_writes_everything_and_says_when_nothing_can_be_drawn(
    tmp_path, console, capsys, monkeypatch, caplog
):
    assert summarize(tmp_path) == []
    assert list(tmp_path.iterdir()) == [] and console.printed == []
    fake_job(tmp_path, 0, ["loss=ce", "seed=0"], {"status": "failed"})
    rows = summarize(tmp_path, None, "t")
    assert [r.label for r in rows] == ["(all)"]
    assert capsys.readouterr().out == (
        "no summary.png: no job has reported a metric (failed or still running)\n"
    )
    assert not (tmp_path / "summary.png").exists() and (tmp_path / "summary.md").exists()
    assert [c.header for c in console.printed[0][0][0].columns] == ["run", "seeds"]
    console.printed.clear()
    # nothing reported: a wanted headline is no error yet, and is the table's column
    summarize(tmp_path, ["test/acc"])
    assert [c.header for c in console.printed[0][0][0].columns] == ["run", "seeds", "test/acc"]
    assert (tmp_path / "summary.png").exists()
    (tmp_path / "summary.png").unlink()
    fake_job(tmp_path, 1, ["loss=sce", "seed=0"], ok(0, **{"test/acc": 0.5, "test/nll": 0.1}))
    console.printed.clear()
    drawn = []
    monkeypatch.setattr(
        report, "plot_summary", lambda *a, **k: drawn.append((a, k)) or a[2].write_text("png")
    )
    rows = summarize(tmp_path, ["test/nll"], "my title")
    [((got_rows, metrics, path), kwargs)] = drawn
    assert got_rows == rows and metrics == ("test/nll",) and path == tmp_path / "summary.png"
    assert kwargs == {"title": "my title"}
    assert console.printed[0][0][0].title == "my title"
    assert (tmp_path / "summary.md").read_text().splitlines()[0] == "| run | seeds | test/nll |"
    assert capsys.readouterr().out == ""

    def no_matplotlib(*args, **kwargs):
        raise ImportError("no matplotlib")

    monkeypatch.setattr(report, "plot_summary", no_matplotlib)
    console.printed.clear()
    with caplog.at_level(logging.WARNING, logger="xent"):
        summarize(tmp_path)
    assert [r.getMessage() for r in caplog.records] == [
        "matplotlib is not installed: no summary.png"
    ]
    assert console.printed[0][0][0].title == "sweep summary"  # no title given


def small_sweep(tmp_path, headline=None, failed=False):
    sweep = tmp_path / "sweep"
    for num, (loss, acc) in enumerate([("ce", 0.8), ("sce", 0.9)]):
        fake_job(sweep, num, [f"loss={loss}", "seed=0"], ok(0, **{"test/acc": acc, "test/nll": 1}))
        if headline is not None:
            config = yaml.safe_dump({"headline": headline})
            (sweep / str(num) / ".hydra" / "config.yaml").write_text(config)
    if failed:
        fake_job(sweep, 2, ["loss=mae", "seed=0"], {"status": "failed"})
    return sweep


def test_main_writes_the_summary_and_exits_0(tmp_path, monkeypatch, capsys, console):
    sweep = small_sweep(tmp_path)
    code, out, err = run_main(monkeypatch, capsys, sweep)
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == f"wrote {sweep / 'summary.csv'}, summary.md and summary.png"
    header = (sweep / "summary.md").read_text().splitlines()[0]
    assert header == "| run | seeds | test/acc | test/nll |"


def test_main_metrics_options(tmp_path, monkeypatch, capsys, console):
    sweep = small_sweep(tmp_path, headline=["test/nll"])
    monkeypatch.setattr(report, "plot_summary", lambda *a, **k: None)  # no png: said so
    code, out, _ = run_main(monkeypatch, capsys, sweep)
    assert code == 0 and out == f"wrote {sweep / 'summary.csv'}, summary.md\n"
    assert (sweep / "summary.md").read_text().splitlines()[0] == "| run | seeds | test/nll |"
    args = ["--metric", "test/acc", "--metrics", "test/nll,,test/acc", "--metric", ","]
    assert run_main(monkeypatch, capsys, sweep, *args)[0] == 0
    header = (sweep / "summary.md").read_text().splitlines()[0]
    assert header == "| run | seeds | test/acc | test/nll | test/acc |"
    code, out, err = run_main(monkeypatch, capsys, sweep, "--metric", "test/nll,test/x")
    assert (code, out) == (2, "")
    assert err == (
        "xent-report: error: --metric 'test/x' is not reported by any job; valid: test/acc, "
        "test/nll\n"
    )


def test_main_refuses_a_misspelt_headline(tmp_path, monkeypatch, capsys, console):
    sweep = small_sweep(tmp_path, headline=["test/acc", "test/acx"])
    code, out, err = run_main(monkeypatch, capsys, sweep)
    assert (code, out) == (2, "")
    assert err == (
        "xent-report: error: headline metric 'test/acx' is not reported by any job; valid: "
        "test/acc, test/nll\n"
    )
    assert not list(sweep.glob("summary.*"))


def test_main_exits_1_when_a_job_failed(tmp_path, monkeypatch, capsys, console):
    sweep = small_sweep(tmp_path, failed=True)
    code, out, err = run_main(monkeypatch, capsys, sweep)
    assert (code, err) == (1, "")
    assert out.splitlines()[-1].startswith(f"wrote {sweep / 'summary.csv'}, summary.md")


def test_main_refuses_what_is_not_a_sweep_dir(tmp_path, monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, tmp_path / "nope")
    assert (code, out) == (2, "")
    assert err.splitlines()[-1] == (
        f"xent-report: error: {tmp_path / 'nope'} is not a directory (a sweep dir made by "
        "xent-run -m)"
    )
    assert err.splitlines()[0].startswith("usage: xent-report [-h] [--metric METRIC]")
    code, out, err = run_main(monkeypatch, capsys, tmp_path)
    assert (code, out) == (2, "")
    assert err == f"xent-report: error: no job dirs (*/.hydra/overrides.yaml) in {tmp_path}\n"
    code, out, err = run_main(monkeypatch, capsys, "--help")
    assert code == 0
    out = " ".join(out.split())  # argparse wraps at the terminal's width
    assert "Summarise a sweep dir made by xent-run -m: summary.csv/.md/.png, mean ± std" in out
    assert (
        "metrics to show (repeatable, or comma-separated); default: the sweep's `headline` "
        "(saved in its jobs' configs), else every metric the jobs reported" in out
    )
    assert "--metric METRIC, --metrics METRIC" in out
