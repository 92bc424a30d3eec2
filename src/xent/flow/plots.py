"""PNG figures of flows: 2D samples over the target and trajectories; image grids.

matplotlib's object API (Figure + Agg canvas) is used without pyplot, so no global state or
interactive backend is touched; the import happens only when a plot is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

# Paths drawn as lines in a trajectory plot: more would be a grey smear.
MAX_PATHS = 300


def _figure(title: str | None):
    """A square panel without ticks (2D toy coordinates carry no units), the legend below it."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5.4), dpi=100, layout="constrained")
    ax = fig.subplots()
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=11)
    return fig, ax


def _legend_below(ax) -> None:
    """Below the axes, in one row: over them it would hide points."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=3, markerscale=4, fontsize=10)


def _points(x: torch.Tensor, n: int):
    return x[:n].detach().cpu().float().numpy()


def samples_figure(
    samples: torch.Tensor, target: torch.Tensor, *, title: str | None = None, n: int = 2000
) -> Any:
    """Generated samples (blue) over held-out target samples (grey)."""
    fig, ax = _figure(title)
    tgt, gen = _points(target, n), _points(samples, n)
    ax.scatter(tgt[:, 0], tgt[:, 1], s=3, alpha=0.4, c="grey", label="target")
    ax.scatter(gen[:, 0], gen[:, 1], s=3, alpha=0.6, c="tab:blue", label="samples")
    _legend_below(ax)
    return fig


def trajectories_figure(
    trajectory: torch.Tensor, *, title: str | None = None, n: int = 2000
) -> Any:
    """Trajectories (T, B, 2): start points black, end points blue, the first MAX_PATHS
    paths as olive lines between them."""
    fig, ax = _figure(title)
    traj = trajectory[:, :n].detach().cpu().float().numpy()
    paths = traj[:, :MAX_PATHS]
    ax.plot(paths[:, :, 0], paths[:, :, 1], color="olive", alpha=0.25, lw=0.6)
    ax.plot([], [], color="olive", lw=1.5, label="path")  # one legend entry for all paths
    ax.scatter(traj[0, :, 0], traj[0, :, 1], s=4, alpha=0.8, c="black", label="t = 0")
    ax.scatter(traj[-1, :, 0], traj[-1, :, 1], s=4, alpha=1.0, c="tab:blue", label="t = 1")
    _legend_below(ax)
    return fig


def plot_samples(
    samples: torch.Tensor,
    target: torch.Tensor,
    path: str | Path,
    *,
    title: str | None = None,
    n: int = 2000,
) -> Path:
    """`samples_figure`, written to `path`."""
    path = Path(path)
    samples_figure(samples, target, title=title, n=n).savefig(path)
    return path


def plot_trajectories(
    trajectory: torch.Tensor,
    path: str | Path,
    *,
    title: str | None = None,
    n: int = 2000,
) -> Path:
    """`trajectories_figure`, written to `path`."""
    path = Path(path)
    trajectories_figure(trajectory, title=title, n=n).savefig(path)
    return path


def _image_grid(images: torch.Tensor, nrow: int):
    """(N, C, H, W) in [0, 1] → an (H', W', 3) array tiling the images, 1 px gaps."""
    from torchvision.utils import make_grid

    grid = make_grid(images.detach().cpu().float().clamp(0, 1), nrow=nrow, padding=1, pad_value=1)
    return grid.permute(1, 2, 0).numpy()


def _save_grid(array, path: str | Path, title: str | None, width: float) -> Path:
    from matplotlib.figure import Figure

    height = width * array.shape[0] / array.shape[1]
    fig = Figure(figsize=(width, height + (0.4 if title else 0)), dpi=100)
    ax = fig.add_axes((0, 0, 1, height / (height + (0.4 if title else 0))))
    ax.imshow(array, interpolation="nearest")
    ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    fig.savefig(path)
    return path


def plot_image_samples(
    images: torch.Tensor, path: str | Path, *, title: str | None = None, n: int = 64
) -> Path:
    """The first `n` generated images (N, C, H, W) in [0, 1] as a square grid."""
    nrow = max(1, int(n**0.5))
    return _save_grid(_image_grid(images[:n], nrow), path, title, width=6)


def plot_image_trajectories(
    trajectory: torch.Tensor, path: str | Path, *, title: str | None = None, n: int = 8
) -> Path:
    """`n` samples (rows) along the ODE from noise (left) to image (right); trajectory is
    (T, B, C, H, W) in [0, 1]."""
    steps = trajectory[:, :n].transpose(0, 1)  # (n, T, C, H, W): one row per sample
    rows = steps.reshape(-1, *steps.shape[2:])
    return _save_grid(_image_grid(rows, nrow=steps.shape[1]), path, title, width=8)
