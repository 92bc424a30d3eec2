"""scripts/plot_tta.py: per-domain online error of each TTA method, from a sweep's job dirs."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_report import fake_job

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "plot_tta.py"


def tta_job(sweep: Path, num: int, method: str, seed: int, errors: list[float]) -> None:
    schedule = [("fog", 5), ("snow", 5)]
    metrics = {"status": "ok", "seed": seed, "test/err": sum(errors) / 2}
    fake_job(sweep, num, [f"tta={method}", f"seed={seed}", "experiment=e"], metrics)
    job = sweep / str(num)
    record = {
        "method": method,
        "setting": "continual",
        "domains": [
            {"domain": c, "corruption": c, "severity": s, "err": e, "n": 10}
            for (c, s), e in zip(schedule, errors, strict=True)
        ],
        "test/err": sum(errors) / 2,
    }
    (job / "tta_errors.json").write_text(json.dumps(record))


@pytest.mark.slow  # seconds: keeps the fast tier under its 2-minute budget
def test_averages_seeds_per_method_and_draws_one_figure_per_setting(tmp_path):
    sweep = tmp_path / "sweep"
    tta_job(sweep, 0, "source", 1, [0.4, 0.6])
    tta_job(sweep, 1, "source", 2, [0.6, 0.8])
    tta_job(sweep, 2, "rmt", 1, [0.1, 0.3])
    proc = subprocess.run([sys.executable, str(SCRIPT), str(sweep)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "×" in line]
    assert rows == ["| Source | 60.0 ± 14.1 (×2) |", "| RMT | 20.0 (×1) |"]  # one seed: no ± 0.0
    assert (sweep / "tta_errors_continual.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_tta_jobs_is_one_line(tmp_path):
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, ["loss=ce", "seed=0"], {"status": "ok", "seed": 0, "test/acc": 0.9})
    proc = subprocess.run([sys.executable, str(SCRIPT), str(sweep)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"plot_tta: no finished TTA jobs (tta_errors.json) in {sweep}"


CORRUPTIONS = ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur"]
CORRUPTIONS += ["motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast"]
CORRUPTIONS += ["elastic_transform", "pixelate", "jpeg_compression"]


def png_size(path: Path) -> tuple[int, int]:
    return struct.unpack(">II", path.read_bytes()[16:24])


def test_a_gradual_stream_is_a_readable_size_with_a_label_per_corruption(tmp_path):
    """135 domains (15 corruptions at severities 1..5..1) were 4925 px wide, a label per
    3 domains at 7 pt; now at most 1600 px, a 9 pt label per corruption."""
    from xent.tta.plots import domain_errors_figure, plot_domain_errors

    domains = [f"{c}@{s}" for c in CORRUPTIONS for s in (1, 2, 3, 4, 5, 4, 3, 2, 1)]
    errors = {"Source (42.0)": [0.4] * 135, "RMT": [0.2] * 135}
    fig = domain_errors_figure(errors, domains, title="online error per domain, gradual")
    (ax,) = fig.axes
    labels = ax.get_xticklabels()
    assert [t.get_text() for t in labels] == CORRUPTIONS
    assert [t.get_fontsize() for t in labels] == [9] * 15
    assert list(ax.get_xticks()) == [4 + 9 * i for i in range(15)]  # the middle of each block
    assert ax.get_xlabel() == "corruption, in stream order (severity within each block)"
    assert ax.get_ylabel() == "online error (%)"
    assert ax.get_title() == "online error per domain, gradual"
    assert [line.get_label() for line in ax.get_lines()[:2]] == [
        "Source (42.0) (40.0)",
        "RMT (20.0)",
    ]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "Source (42.0) (40.0)",
        "RMT (20.0)",
    ]
    assert png_size(plot_domain_errors(errors, domains, tmp_path / "g.png")) == (1550, 480)


def test_a_continual_stream_labels_every_domain(tmp_path):
    from xent.tta.plots import domain_errors_figure

    fig = domain_errors_figure({"BN-1": [0.3] * 15}, CORRUPTIONS)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == CORRUPTIONS
    assert ax.get_xlabel() == "domain, in stream order"
    assert len(ax.get_lines()) == 1
    width, height = fig.get_size_inches() * fig.dpi
    assert (round(width), round(height)) == (950, 480)


def drawn(fig):
    """The figure laid out (constrained layout runs at draw time), for positions in pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    return fig


def test_each_method_is_a_line_of_its_errors_in_percent_with_a_labelled_domain_axis():
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    from xent.tta.plots import domain_errors_figure

    domains = ["fog@5", "snow@5", "frost@5"]
    errors = {"source": [0.5, 0.25, 0.125], "tent": [0.2, 0.1, 0.3]}
    fig = drawn(domain_errors_figure(errors, domains, title="t"))
    (ax,) = fig.axes
    assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
    assert tuple(fig.get_size_inches()) == (7.0, 4.8)  # 3 ticks: the minimum width
    lines = ax.get_lines()
    assert len(lines) == 2  # no block separators when every domain is labelled
    for line, values in zip(lines, errors.values(), strict=True):
        assert list(line.get_xdata()) == [0, 1, 2]
        assert list(line.get_ydata()) == [100 * v for v in values]
        assert (line.get_marker(), line.get_markersize()) == ("o", 3)
    assert [line.get_label() for line in lines] == ["source (29.2)", "tent (20.0)"]
    labels = ax.get_xticklabels()
    assert [t.get_text() for t in labels] == domains
    assert list(ax.get_xticks()) == [0, 1, 2]
    assert {(t.get_rotation(), t.get_horizontalalignment(), t.get_fontsize()) for t in labels} == {
        (45.0, "right", 9)
    }
    assert (ax.xaxis.label.get_fontsize(), ax.yaxis.label.get_fontsize()) == (10, 10)
    assert (ax.title.get_text(), ax.title.get_fontsize()) == ("t", 11)
    assert {t.get_fontsize() for t in ax.get_yticklabels()} == {9}
    # a faint horizontal grid only
    assert all(g.get_visible() for g in ax.yaxis.get_gridlines())
    assert {g.get_alpha() for g in ax.yaxis.get_gridlines()} == {0.3}
    assert not any(g.get_visible() for g in ax.xaxis.get_gridlines())
    # the legend: titled, 9 pt, beside the axes (right of them, tops aligned)
    legend = ax.get_legend()
    assert legend.get_title().get_text() == "method (mean error %)"
    assert legend.get_title().get_fontsize() == 9
    assert {t.get_fontsize() for t in legend.get_texts()} == {9}
    box, axes_box = legend.get_window_extent(), ax.get_window_extent()
    pad = 0.5 * 9 * 100 / 72  # matplotlib's borderaxespad, 0.5 font size, in pixels
    assert abs(box.x0 - (axes_box.x1 + 0.01 * axes_box.width + pad)) < 1
    assert abs(box.y1 - (axes_box.y1 - pad)) < 1


def test_the_figure_ignores_the_users_matplotlib_style():
    """Sizes are the function's own: a matplotlibrc with other defaults changes nothing."""
    import matplotlib

    from xent.tta.plots import domain_errors_figure

    style = {
        "figure.dpi": 72,
        "font.size": 14,
        "axes.labelsize": 20,
        "axes.titlesize": 20,
        "legend.fontsize": 20,
        "legend.title_fontsize": 20,
        "xtick.labelsize": 20,
        "ytick.labelsize": 20,
        "grid.alpha": 1.0,
        "lines.marker": "s",
        "lines.markersize": 9,
        "figure.constrained_layout.use": False,
    }
    for domains in (["fog", "snow"], [f"c{i // 9}@{i % 9}" for i in range(36)]):
        with matplotlib.rc_context(style):
            fig = domain_errors_figure({"m": [0.1] * len(domains)}, domains, title="t")
        (ax,) = fig.axes
        assert fig.dpi == 100
        assert (ax.xaxis.label.get_fontsize(), ax.yaxis.label.get_fontsize()) == (10, 10)
        assert ax.title.get_fontsize() == 11
        assert {t.get_fontsize() for t in ax.get_xticklabels() + ax.get_yticklabels()} == {9}
        assert ax.get_legend().get_title().get_fontsize() == 9
        assert {t.get_fontsize() for t in ax.get_legend().get_texts()} == {9}
        assert {g.get_alpha() for g in ax.yaxis.get_gridlines()} == {0.3}
        assert ax.get_lines()[0].get_marker() == "o"
        assert ax.get_lines()[0].get_markersize() == (3 if len(domains) == 2 else 2)
        if len(domains) > 2:
            assert {sep.get_linewidth() for sep in ax.get_lines()[1:]} == {0.8}


def test_a_long_stream_has_a_separator_between_corruption_blocks_and_no_x_ticks():
    from matplotlib.colors import to_rgba

    from xent.tta.plots import domain_errors_figure

    corruptions = ["fog", "snow", "frost", "glass_blur", "pixelate", "contrast"]
    domains = [f"{c}@{s}" for c in corruptions for s in (1, 2, 3, 4, 5, 4, 3, 2, 1)]
    errors = {"a": [0.1] * 54, "b": [0.2] * 54}
    fig = domain_errors_figure(errors, domains)
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert len(lines) == 2 + 5  # two methods, five separators (between 6 blocks)
    for line in lines[:2]:
        assert list(line.get_xdata()) == list(range(54))
        assert line.get_markersize() == 2
    separators = lines[2:]
    assert [list(sep.get_xdata()) for sep in separators] == [[x - 0.5] * 2 for x in range(9, 54, 9)]
    for sep in separators:
        assert to_rgba(sep.get_color()) == to_rgba("grey")
        assert (sep.get_alpha(), sep.get_linewidth()) == (0.3, 0.8)
    labels = ax.get_xticklabels()
    assert [t.get_text() for t in labels] == corruptions
    assert list(ax.get_xticks()) == [4 + 9 * i for i in range(6)]
    assert {(t.get_rotation(), t.get_horizontalalignment()) for t in labels} == {(45.0, "right")}
    assert {tick.tick1line.get_markersize() for tick in ax.xaxis.get_major_ticks()} == {0}
    assert all(tick.tick1line.get_markersize() > 0 for tick in ax.yaxis.get_major_ticks())
    assert ax.get_title() == ""
    # 6 labels would fit in 7 inches; 54 domains need 0.1 in each (+ 2)
    assert fig.get_size_inches()[0] == 0.1 * 54 + 2


def test_up_to_30_domains_each_get_a_label_and_the_width_follows_the_labels():
    from xent.tta.plots import MAX_DOMAIN_LABELS, domain_errors_figure

    domains = [f"fog@{i}" for i in range(MAX_DOMAIN_LABELS)]  # one corruption, 30 labels
    fig = domain_errors_figure({"m": [0.1] * 30}, domains)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == domains
    assert fig.get_size_inches()[0] == 16.0  # 0.5 in per label + 2, capped at 16
    domains = [f"fog@{i}" for i in range(20)]
    fig = domain_errors_figure({"m": [0.1] * 20}, domains)
    assert fig.get_size_inches()[0] == 12.0  # 20 labels, though a single corruption block


def test_plot_domain_errors_writes_the_titled_figure(tmp_path):
    from xent.tta.plots import domain_errors_figure, plot_domain_errors

    errors, domains = {"m": [0.1, 0.2]}, ["fog", "snow"]
    path = plot_domain_errors(errors, domains, tmp_path / "a.png", title="a title")
    assert path == tmp_path / "a.png"
    domain_errors_figure(errors, domains, "a title").savefig(tmp_path / "b.png")
    domain_errors_figure(errors, domains).savefig(tmp_path / "c.png")
    assert path.read_bytes() == (tmp_path / "b.png").read_bytes()
    assert path.read_bytes() != (tmp_path / "c.png").read_bytes()
