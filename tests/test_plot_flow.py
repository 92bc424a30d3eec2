"""Flow figures of a 2D pair: samples over the target, and the paths between the two."""

from __future__ import annotations

import struct

import torch

from xent.flow import sample
from xent.flow.plots import MAX_PATHS, plot_trajectories, samples_figure, trajectories_figure


def straight_paths(n: int = 500, steps: int = 5) -> torch.Tensor:
    x0 = sample("gaussian", n, torch.Generator().manual_seed(0))
    x1 = sample("8gaussians", n, torch.Generator().manual_seed(1))
    t = torch.linspace(0, 1, steps)[:, None, None]
    return (1 - t) * x0 + t * x1


def test_trajectories_draw_paths_a_person_can_see_and_a_legend_for_them(tmp_path):
    fig = trajectories_figure(straight_paths(), title="W-CFM gaussian → 8gaussians")
    (ax,) = fig.axes
    assert ax.get_title() == "W-CFM gaussian → 8gaussians"
    paths = [line for line in ax.get_lines() if line.get_label().startswith("_")]
    assert len(paths) == MAX_PATHS  # 500 paths: the first 300 as lines, each of 5 points
    assert all(len(line.get_xdata()) == 5 for line in paths)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["path", "t = 0", "t = 1"]
    fig.canvas.draw()
    below = ax.get_legend().get_window_extent().y1 <= ax.get_window_extent().y0 + 1
    assert below, "the legend must not cover the points"
    path = plot_trajectories(straight_paths(), tmp_path / "trajectories.png")
    assert struct.unpack(">II", path.read_bytes()[16:24]) == (500, 540)


def test_samples_over_the_target_with_the_legend_below():
    target = sample("8gaussians", 300, torch.Generator().manual_seed(2))
    fig = samples_figure(target + 0.1, target, title="W2 0.1")
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["target", "samples"]
    assert [len(c.get_offsets()) for c in ax.collections] == [300, 300]
    fig.canvas.draw()
    assert ax.get_legend().get_window_extent().y1 <= ax.get_window_extent().y0 + 1
