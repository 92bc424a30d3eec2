"""Plot metrics against one numeric sweep axis: `python scripts/plot_sweep_axis.py SWEEP_DIR KEY`.

Made for W-CFM's ε sweep (`xent-run -m experiment=wcfm_eps`, KEY = loss.eps): W2 (how close the
samples are to the target: the marginal tilt) and NPE / NFE (how straight the paths are) against ε,
mean ± sample std over seeds (the value alone for one seed), on a log axis. Writes `<KEY>.png`
into the sweep dir and prints the table it plotted. Reads the same job dirs as `xent-report`, so
it works on unfinished sweeps too.
An Optuna search (`hparams_search=...`) is a sweep over one numeric key as well: pass its
objective and read-outs with --metric (repeatable).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from xent.runner.report import Row, collect, format_stat, mean_std, spread_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS = ("test/w2", "test/npe", "test/nfe")
# Up to this many swept values, each gets a labelled tick; more would overlap.
MAX_LABELLED_VALUES = 8


def axis_value(label: str, key: str) -> float | None:
    """The value of `key=<number>` in a row label (the row's distinguishing overrides)."""
    for part in label.split():
        name, _, value = part.partition("=")
        if name == key:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def print_table(key: str, rows: list[tuple[float, Row]], metrics: tuple[str, ...]) -> None:
    """The plotted numbers as a Markdown table: mean ± std, or the value alone for one seed."""
    print(f"| {key} | seeds | " + " | ".join(metrics) + " |")
    print("|---|---|" + "---|" * len(metrics))
    for x, row in rows:
        cells = [format_stat(row.values.get(m, [])) for m in metrics]
        print(f"| {x:.4g} | {len(row.seeds)} | " + " | ".join(cells) + " |")


def axis_figure(
    key: str, rows: list[tuple[float, Row]], metrics: tuple[str, ...], title: str
) -> Figure:
    """A panel per metric against `key` on a log axis, ticks at the swept values (plain
    numbers) when there are few of them; the title says what a point and its bar are."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter

    xs = [x for x, _ in rows]
    repeated = any(len(r.seeds) > 1 for _, r in rows)  # else no error bars: nothing to spread
    fig = Figure(figsize=(4.2 * len(metrics), 3.6), dpi=120, layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        stats = [mean_std(r.values.get(metric, [])) for _, r in rows]
        spread = [s for _, s in stats] if repeated else None
        ax.errorbar(xs, [m for m, _ in stats], yerr=spread, marker="o", capsize=3)
        ax.set_xscale("log")
        if len(set(xs)) <= MAX_LABELLED_VALUES:
            ax.set_xticks(sorted(set(xs)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{key} (log scale)")
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}: {spread_label([r for _, r in rows])}")
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("key", help="the swept override, e.g. loss.eps")
    parser.add_argument(
        "--metric",
        action="append",
        help=f"a metric to plot (repeatable); default: {', '.join(METRICS)}",
    )
    args = parser.parse_args()
    metrics = tuple(args.metric or METRICS)
    rows = [(axis_value(r.label, args.key), r) for r in collect(args.sweep_dir)]
    rows = sorted((x, r) for x, r in rows if x is not None and r.seeds)
    if not rows:
        sys.exit(f"plot_sweep_axis: no finished jobs with {args.key}=<number> in {args.sweep_dir}")
    print_table(args.key, rows, metrics)
    out = args.sweep_dir / f"{args.key}.png"
    axis_figure(args.key, rows, metrics, args.sweep_dir.name).savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
