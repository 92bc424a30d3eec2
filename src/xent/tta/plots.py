"""Online error per domain, one line per method: the figure a TTA comparison is read from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def plot_domain_errors(
    errors: Mapping[str, Sequence[float]],
    domains: Sequence[str],
    path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """`errors[method][i]` is the online error (0..1) on `domains[i]`, in stream order.

    matplotlib's object API (no pyplot state); the import happens only when a plot is made.
    """
    from matplotlib.figure import Figure

    width = max(6.0, 0.35 * len(domains) + 2)
    fig = Figure(figsize=(width, 4.2), dpi=100, layout="constrained")
    ax = fig.subplots()
    xs = range(len(domains))
    for method, values in errors.items():
        mean = sum(values) / len(values)
        ax.plot(
            xs, [100 * v for v in values], marker="o", ms=3, label=f"{method} ({100 * mean:.1f})"
        )
    step = max(1, len(domains) // 40)  # a gradual stream has 135 domains: label a few
    ax.set_xticks(list(xs)[::step], list(domains)[::step], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("online error (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="method (mean)", title_fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    path = Path(path)
    fig.savefig(path)
    return path
