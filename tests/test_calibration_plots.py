"""Issue 20's figures: the reliability diagram and ECE across test domains, read back from the
figure objects (bars, lines, labels, title), not from a PNG header."""

from __future__ import annotations

import matplotlib
import pytest
import torch

from xent.calibration.metrics import calibration_metrics
from xent.calibration.plots import bin_stats, ece_shift_figure, reliability_figure, save


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
