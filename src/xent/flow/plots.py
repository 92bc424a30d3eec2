"""PNG figures of flows: 2D samples over the target and trajectories; image grids.

matplotlib's object API (Figure + Agg canvas) is used without pyplot, so no global state or
interactive backend is touched; the import happens only when a plot is made.
"""

from __future__ import annotations

from pathlib import Path

import torch


def _figure(title: str | None):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5), dpi=100)
    ax = fig.subplots()
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return fig, ax


def _points(x: torch.Tensor, n: int):
    return x[:n].detach().cpu().float().numpy()


def plot_samples(
    samples: torch.Tensor,
    target: torch.Tensor,
    path: str | Path,
    *,
    title: str | None = None,
    n: int = 2000,
) -> Path:
    """Generated samples (blue) over held-out target samples (grey), written to `path`."""
    fig, ax = _figure(title)
    tgt, gen = _points(target, n), _points(samples, n)
    ax.scatter(tgt[:, 0], tgt[:, 1], s=3, alpha=0.4, c="grey", label="target")
    ax.scatter(gen[:, 0], gen[:, 1], s=3, alpha=0.6, c="tab:blue", label="samples")
    ax.legend(loc="upper right", markerscale=4)
    path = Path(path)
    fig.savefig(path)
    return path


def plot_trajectories(
    trajectory: torch.Tensor,
    path: str | Path,
    *,
    title: str | None = None,
    n: int = 2000,
) -> Path:
    """Trajectories (T, B, 2): start points black, paths olive, end points blue."""
    fig, ax = _figure(title)
    traj = trajectory[:, :n].detach().cpu().float().numpy()
    ax.scatter(traj[:, :, 0], traj[:, :, 1], s=0.2, alpha=0.2, c="olive")
    ax.scatter(traj[0, :, 0], traj[0, :, 1], s=4, alpha=0.8, c="black", label="t = 0")
    ax.scatter(traj[-1, :, 0], traj[-1, :, 1], s=4, alpha=1.0, c="tab:blue", label="t = 1")
    ax.legend(loc="upper right", markerscale=3)
    path = Path(path)
    fig.savefig(path)
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
