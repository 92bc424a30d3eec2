"""Plot metrics against one numeric sweep axis: `python scripts/plot_sweep_axis.py SWEEP_DIR KEY`.

Made for W-CFM's ε sweep (`xent-run -m experiment=wcfm_eps`, KEY = loss.eps): W2 (how close the
samples are to the target: the marginal tilt) and NPE / NFE (how straight the paths are) against ε,
mean ± sample std over seeds, on a log axis. Writes `<KEY>.png` into the sweep dir and prints the
table it plotted. Reads the same job dirs as `xent-report`, so it works on unfinished sweeps too.
An Optuna search (`hparams_search=...`) is a sweep over one numeric key as well: pass its
objective and read-outs with --metric (repeatable).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xent.report import collect, mean_std

METRICS = ("test/w2", "test/npe", "test/nfe")


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

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    xs = [x for x, _ in rows]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    print(f"| {args.key} | seeds | " + " | ".join(metrics) + " |")
    print("|---|---|" + "---|" * len(metrics))
    stats = {m: [mean_std(r.values.get(m, [])) for _, r in rows] for m in metrics}
    for i, (x, row) in enumerate(rows):
        cells = [f"{stats[m][i][0]:.4f} ± {stats[m][i][1]:.4f}" for m in metrics]
        print(f"| {x:.4g} | {len(row.seeds)} | " + " | ".join(cells) + " |")
    for ax, metric in zip(axes[0], metrics, strict=True):
        means = [m for m, _ in stats[metric]]
        stds = [s for _, s in stats[metric]]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3)
        ax.set_xscale("log")
        ax.set_xlabel(args.key)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{args.sweep_dir.name}: mean ± std over seeds")
    fig.tight_layout()
    out = args.sweep_dir / f"{args.key}.png"
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
