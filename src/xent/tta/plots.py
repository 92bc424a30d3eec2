"""Online error per domain, one line per method: the figure a TTA comparison is read from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# Up to this many domains each gets a tick label; a longer stream (gradual: 15 corruptions at
# severities 1..5..1, 135 domains) gets one label per corruption, at the middle of its block.
MAX_DOMAIN_LABELS = 30
# Inches: room for the labels and points, never wider than a screen (1600 px at 100 dpi).
MIN_WIDTH, MAX_WIDTH = 7.0, 16.0


def corruption_blocks(domains: Sequence[str]) -> list[tuple[str, int, int]]:
    """(corruption, first index, last index) of each run of domains of one corruption, in
    stream order; a domain is named `corruption` or `corruption@severity`."""
    blocks: list[tuple[str, int, int]] = []
    for i, domain in enumerate(domains):
        corruption = domain.split("@")[0]
        if blocks and blocks[-1][0] == corruption:
            blocks[-1] = (corruption, blocks[-1][1], i)
        else:
            blocks.append((corruption, i, i))
    return blocks


def domain_errors_figure(
    errors: Mapping[str, Sequence[float]], domains: Sequence[str], title: str | None = None
) -> Any:
    """`errors[method][i]` is the online error (0..1) on `domains[i]`, in stream order.

    matplotlib's object API (no pyplot state); the import happens only when a plot is made.
    """
    from matplotlib.figure import Figure

    labelled = len(domains) <= MAX_DOMAIN_LABELS
    ticks = len(domains) if labelled else len(corruption_blocks(domains))
    width = min(MAX_WIDTH, max(MIN_WIDTH, 0.5 * ticks + 2, 0.1 * len(domains) + 2))
    fig = Figure(figsize=(width, 4.8), dpi=100, layout="constrained")
    ax = fig.subplots()
    xs = range(len(domains))
    for method, values in errors.items():
        mean = sum(values) / len(values)
        ax.plot(
            xs,
            [100 * v for v in values],
            marker="o",
            ms=3 if labelled else 2,
            label=f"{method} ({100 * mean:.1f})",
        )
    if labelled:
        ax.set_xticks(list(xs), list(domains), rotation=45, ha="right", fontsize=9)
        ax.set_xlabel("domain, in stream order", fontsize=10)
    else:
        _label_blocks(ax, domains)
    ax.set_ylabel("online error (%)", fontsize=10)
    ax.tick_params(axis="y", labelsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(  # beside the axes: over them it would hide a curve
        fontsize=9,
        title="method (mean error %)",
        title_fontsize=9,
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
    )
    if title:
        ax.set_title(title, fontsize=11)
    return fig


def _label_blocks(ax: Any, domains: Sequence[str]) -> None:
    """One label per corruption at the middle of its block, a faint line between blocks."""
    blocks = corruption_blocks(domains)
    ax.set_xticks(
        [(first + last) / 2 for _, first, last in blocks],
        [name for name, _, _ in blocks],
        rotation=45,
        ha="right",
        fontsize=9,
    )
    ax.tick_params(axis="x", length=0)
    for _, first, _ in blocks[1:]:
        ax.axvline(first - 0.5, color="grey", alpha=0.3, lw=0.8)
    ax.set_xlabel("corruption, in stream order (severity within each block)", fontsize=10)


def plot_domain_errors(
    errors: Mapping[str, Sequence[float]],
    domains: Sequence[str],
    path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """`domain_errors_figure`, written to `path`."""
    path = Path(path)
    domain_errors_figure(errors, domains, title).savefig(path)
    return path
