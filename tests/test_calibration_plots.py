"""Issue 20's figures: the reliability diagram and ECE across test domains, read back from the
figure objects (bars, lines, labels, title), not from a PNG header."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest
import torch
from omegaconf import OmegaConf

from xent.calibration.metrics import calibration_metrics
from xent.calibration.plots import (
    ECEShiftSweepPlot,
    bin_stats,
    ece_shift_figure,
    reliability_figure,
    save,
    sweep_ece_by_calibrator,
    write_sweep_ece_figure,
)


def toy() -> tuple[torch.Tensor, torch.Tensor]:
    """Four samples with known top-1 confidences: 0.9 right, 0.9 wrong, 0.6 right, 1.0 right."""
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [1.0, 0.0]], dtype=torch.float64)
    return probs.log(), torch.tensor([0, 1, 0, 0])


def test_bin_stats_put_each_confidence_in_its_bar():
    stats = bin_stats(*toy())
    assert torch.nonzero(stats["filled"]).flatten().tolist() == [9, 13, 14]
    assert stats["count"][[9, 13, 14]].tolist() == [1, 2, 1]
    assert stats["accuracy"][[9, 13, 14]].tolist() == [1.0, 0.5, 1.0]
    assert stats["confidence"][[9, 13, 14]].tolist() == pytest.approx([0.6, 0.9, 1.0])


def test_the_reliability_diagram_shows_accuracy_bars_the_diagonal_the_counts_and_ece():
    logits, labels = toy()
    fig = reliability_figure(logits, labels, "ts")
    top, bottom = fig.axes
    ece = calibration_metrics(logits, labels)["ece"]
    assert top.get_title() == f"ts: ECE {ece:.4f}"
    heights = [round(bar.get_height(), 6) for bar in top.patches]
    assert heights == [1.0, 0.5, 1.0]
    assert [round(bar.get_x() + bar.get_width() / 2, 4) for bar in top.patches] == [
        round((i + 0.5) / 15, 4) for i in (9, 13, 14)
    ]
    dots, diagonal = top.get_lines()
    assert list(dots.get_ydata()) == pytest.approx([0.6, 0.9, 1.0])
    assert list(diagonal.get_xdata()) == [0, 1] and list(diagonal.get_ydata()) == [0, 1]
    legend = [t.get_text() for t in top.get_legend().get_texts()]
    assert legend == ["mean confidence", "perfect calibration", "accuracy"]
    assert top.get_ylabel() == "accuracy"
    assert bottom.get_xlabel() == "top-1 confidence (15 equal-width bins)"
    assert bottom.get_ylabel() == "samples"
    assert sum(bar.get_height() for bar in bottom.patches) == 4 and len(bottom.patches) == 15


def test_ece_across_domains_is_one_line_per_calibrator_over_the_domains_in_order():
    ece = {"none": {"clean": 0.2, "noise": 0.3}, "ts": {"noise": 0.1, "clean": 0.02}}
    fig = ece_shift_figure(ece, ["clean", "noise"])
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert len(lines) == 2
    assert [list(line.get_ydata()) for line in lines] == [[0.2, 0.3], [0.02, 0.1]]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["clean", "noise"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["none", "ts"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("test domain", "ECE (15 bins)")


def test_the_figures_ignore_the_users_matplotlib_style(tmp_path):
    style = {"figure.dpi": 72, "axes.labelsize": 20, "axes.titlesize": 20, "font.size": 14}
    with matplotlib.rc_context(style):
        figures = [reliability_figure(*toy(), "none"), ece_shift_figure({"a": {"x": 0.1}}, ["x"])]
    for fig in figures:
        assert fig.dpi == 100
        ax = fig.axes[-1]
        assert (ax.xaxis.label.get_fontsize(), ax.yaxis.label.get_fontsize()) == (10, 10)
        assert fig.axes[0].title.get_fontsize() == 11
    path = save(figures[0], tmp_path / "reliability_none.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def write_job(sweep: Path, job: int, calibrator: str, ece: dict[str, float], status="ok") -> None:
    metrics = {"status": status, "calibrator": calibrator, "shifts": ["fog", "snow"]}
    metrics.update({"test/ece": ece["clean"], "test/ece/fog": ece["fog"]})
    metrics["test/ece/snow"] = ece["snow"]
    (sweep / str(job)).mkdir(parents=True)
    (sweep / str(job) / "metrics.json").write_text(json.dumps(metrics))


def test_a_sweeps_ece_figure_is_one_line_per_calibrator_the_mean_over_its_seeds(tmp_path):
    sweep = tmp_path / "sweep"
    write_job(sweep, 0, "none", {"clean": 0.2, "fog": 0.4, "snow": 0.3})
    write_job(sweep, 1, "ts", {"clean": 0.02, "fog": 0.1, "snow": 0.25})
    write_job(sweep, 2, "none", {"clean": 0.1, "fog": 0.2, "snow": 0.5})
    write_job(sweep, 3, "ts", {"clean": 0.04, "fog": 0.3, "snow": 0.75})
    write_job(sweep, 10, "ts", {"clean": 9.0, "fog": 9.0, "snow": 9.0}, status="failed")
    ece, domains = sweep_ece_by_calibrator(sweep)
    assert domains == ["clean", "fog", "snow"]
    assert ece == {
        "none": {"clean": 0.15000000000000002, "fog": 0.30000000000000004, "snow": 0.4},
        "ts": {"clean": 0.03, "fog": 0.2, "snow": 0.5},
    }
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    ECEShiftSweepPlot().on_multirun_end(config)  # as Hydra calls it at the end of a multirun
    assert (sweep / "ece_shifts.png").is_file()
    (ax,) = ece_shift_figure(ece, domains).axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["none", "ts"]
    assert [list(line.get_ydata()) for line in ax.get_lines()] == [
        [0.15000000000000002, 0.30000000000000004, 0.4],
        [0.03, 0.2, 0.5],
    ]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["clean", "fog", "snow"]
    assert ax.get_title() == "ECE across test domains (mean over seeds)"


def test_a_sweep_without_a_finished_calibration_gets_no_figure(tmp_path):
    write_job(tmp_path, 0, "ts", {"clean": 0.1, "fog": 0.1, "snow": 0.1}, status="failed")
    assert write_sweep_ece_figure(tmp_path) is None
    assert not (tmp_path / "ece_shifts.png").exists()
