"""summary.png: one readable bar chart per headline metric, whatever their number."""

from __future__ import annotations

import struct

from tests.test_report import fake_job
from xent.runner.report import collect, plot_summary, summary_figure

METRICS = ("test/acc", "best/test_acc", "test/acc5", "test/nll", "test/ece", "test/f1")


def png_size(path) -> tuple[int, int]:
    """Width and height in pixels, from the PNG's IHDR chunk."""
    return struct.unpack(">II", path.read_bytes()[16:24])


def six_metric_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    num = 0
    for loss in ("ce", "gce", "sce"):
        for seed in (0, 1):
            metrics = {"status": "ok", "seed": seed, **{m: 0.5 + 0.1 * seed for m in METRICS}}
            fake_job(sweep, num, [f"loss={loss}", f"seed={seed}"], metrics)
            num += 1
    return collect(sweep), sweep


def test_every_metric_gets_a_panel_in_a_grid(tmp_path):
    rows, sweep = six_metric_sweep(tmp_path)
    fig = summary_figure(rows, METRICS, title="noisy labels")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == list(METRICS)  # none dropped
    assert all(len(ax.patches) == 3 for ax in panels)  # a bar per row
    assert all(ax.get_xlabel() == "mean ± std over 2 seeds" for ax in panels)
    first_column = [panels[0], panels[3]]
    for ax in panels:
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert labels == (["loss=ce", "loss=gce", "loss=sce"] if ax in first_column else [""] * 3)
    assert fig._suptitle.get_text() == "noisy labels"
    path = plot_summary(rows, METRICS, sweep / "summary.png")
    assert png_size(path) == (1410, 500)  # 3 panels a row, 2 rows


def test_one_metric_is_one_panel(tmp_path):
    rows, sweep = six_metric_sweep(tmp_path)
    fig = summary_figure(rows, ["test/nll"])
    assert [ax.get_title() for ax in fig.axes] == ["test/nll"]
    assert png_size(plot_summary(rows, ["test/nll"], sweep / "summary.png")) == (570, 250)
