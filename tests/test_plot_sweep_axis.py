"""scripts/plot_sweep_axis.py: metrics against a numeric sweep axis, from a sweep's job dirs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from tests.test_report import fake_job
from xent.runner.report import collect

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "plot_sweep_axis.py"


def test_plots_and_tabulates_by_numeric_axis(tmp_path):
    sweep = tmp_path / "sweep"
    num = 0
    for eps, w2 in ((20, 0.5), (0.5, 0.9), (2, 0.6)):
        for seed in (42, 43):
            metrics = {"status": "ok", "seed": seed, "test/w2": w2 + seed - 42}
            metrics.update({"test/npe": 0.1, "test/nfe": 30})
            fake_job(sweep, num, [f"loss.eps={eps}", f"seed={seed}", "experiment=e"], metrics)
            num += 1
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(sweep), "loss.eps"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "±" in line]
    # sorted by the axis value, mean ± sample std over the two seeds
    assert [r.split(" | ")[0] for r in rows] == ["| 0.5", "| 2", "| 20"]
    assert "| 0.5 | 2 | 1.4000 ± 0.7071 |" in rows[0]
    png = sweep / "loss.eps.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_matching_jobs_is_one_line(tmp_path):
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, ["loss=ce", "seed=0"], {"status": "ok", "seed": 0, "test/acc": 0.9})
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(sweep), "loss.eps"], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        == f"plot_sweep_axis: no finished jobs with loss.eps=<number> in {sweep}"
    )


def test_chosen_metrics_of_a_search_one_trial_each(tmp_path):
    """An Optuna search: one job per proposed value, plotted against the objective."""
    sweep = tmp_path / "sweep"
    for num, (tau, acc) in enumerate(((3.14159, 0.91), (0.7, 0.88))):
        metrics = {"status": "ok", "seed": 0, "best/val_acc": acc, "test/acc": acc - 0.01}
        fake_job(sweep, num, [f"loss.tau={tau}", "hparams_search=pld_tau"], metrics)
    args = [str(SCRIPT), str(sweep), "loss.tau", "--metric", "best/val_acc"]
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "| loss.tau | seeds | best/val_acc |"
    assert lines[2:4] == ["| 0.7 | 1 | 0.8800 |", "| 3.142 | 1 | 0.9100 |"]  # no "± 0.0000"


def load_script():
    spec = importlib.util.spec_from_file_location("plot_sweep_axis", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def figure_of(sweep, key, metrics):
    script = load_script()
    rows = sorted((script.axis_value(r.label, key), r) for r in collect(sweep))
    return script.axis_figure(key, rows, metrics, "the sweep")


def test_the_title_says_what_is_drawn(tmp_path):
    """Mean ± std where seeds were repeated; one run each (an Optuna search) otherwise."""
    sweep = tmp_path / "sweep"
    for num, (eps, seed) in enumerate(((0.5, 0), (0.5, 1), (2, 0), (2, 1))):
        metrics = {"status": "ok", "seed": seed, "test/w2": eps + seed}
        fake_job(sweep, num, [f"loss.eps={eps}", f"seed={seed}"], metrics)
    fig = figure_of(sweep, "loss.eps", ("test/w2",))
    assert fig._suptitle.get_text() == "the sweep: mean ± std over 2 seeds"
    (ax,) = fig.axes
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == (
        "test/w2",
        "loss.eps (log scale)",
        "test/w2",
    )
    fig.canvas.draw()  # tick labels are made when drawn: plain numbers, not 2×10⁰
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.5", "2"]
    search = tmp_path / "search"
    for num, tau in enumerate((0.7, 1.5, 3.14159)):
        metrics = {"status": "ok", "seed": 0, "best/val_acc": tau / 10}
        fake_job(search, num, [f"loss.tau={tau}", "hparams_search=pld_tau"], metrics)
    fig = figure_of(search, "loss.tau", ("best/val_acc",))
    assert fig._suptitle.get_text() == "the sweep: one run each (no error bars)"
    assert len(fig.axes[0].lines) == 1  # one curve
    width, height = fig.get_size_inches() * fig.dpi
    assert (round(width), round(height)) == (504, 432)
