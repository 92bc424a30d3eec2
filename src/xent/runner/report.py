"""`xent-report SWEEP_DIR`: one row per combination, mean ± std over seeds, from the job dirs.

Reads whatever jobs have finished (each job dir's `.hydra/overrides.yaml` and `metrics.json`),
so it can be rerun while a sweep is still going or after some jobs failed. `summarize` writes
summary.csv/.md/.png and prints the table; the end-of-sweep callback (`xent.runner.sweep`) calls
it, so this module never imports the sweep's.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("xent")

NOT_METRICS = ("seed", "epochs", "status", "error", "summary_keys")
SEED_KEYS = ("seed",)


@dataclass
class Row:
    """One combination of overrides (seed excluded) and its jobs' results."""

    label: str
    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    seeds: list[int] = field(default_factory=list)
    failed: int = 0  # metrics.json says status failed
    pending: int = 0  # no metrics.json yet: still running, or killed before it could write
    columns: list[str] = field(default_factory=list)  # its jobs' task's `summary_keys`


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(
        (p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")),
        key=lambda p: (len(p.name), p.name),
    )


def collect(sweep_dir: Path) -> list[Row]:
    """Group the sweep's jobs by their overrides other than the seed."""
    jobs = []
    for job in job_dirs(sweep_dir):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        result_path = job / "metrics.json"
        result = json.loads(result_path.read_text()) if result_path.exists() else None
        jobs.append((overrides, result))
    # Overrides every job shares (experiment=..., common settings) do not distinguish rows.
    shared = set.intersection(*(set(o) for o, _ in jobs)) if jobs else set()
    rows: dict[str, Row] = {}
    for overrides, result in jobs:
        kept = [o for o in overrides if o not in shared and o.split("=")[0] not in SEED_KEYS]
        label = " ".join(kept) or "(all)"
        row = rows.setdefault(label, Row(label))
        if result is None:
            row.pending += 1
            continue
        if result.get("status") != "ok":
            row.failed += 1
            continue
        row.seeds.append(result.get("seed"))
        row.columns += [k for k in result.get("summary_keys", ()) if k not in row.columns]
        for key, value in result.items():
            if key not in NOT_METRICS and isinstance(value, int | float):
                row.values[key].append(float(value))
    return list(rows.values())


def reported_metrics(rows: list[Row]) -> tuple[str, ...]:
    """The summary's columns: the metrics the jobs' tasks declare (`Task.summary_keys`, which
    each job writes into its metrics.json) that they reported, in that order, then their other
    test/* keys, sorted.

    test/loss is left out: each loss is on its own scale, so its column would not compare.
    """
    seen = {key for row in rows for key in row.values}
    declared = dict.fromkeys(key for row in rows for key in row.columns)
    known = [key for key in declared if key in seen]
    others = sorted(
        k for k in seen if k.startswith("test/") and k not in declared and k != "test/loss"
    )
    return tuple(known + others)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n − 1); std is 0 for a single seed."""
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def format_stat(values: list[float], digits: int = 4) -> str:
    """`mean ± std` over seeds; the value alone for one seed (a std of one value means nothing);
    `–` when the row did not report the metric."""
    if not values:
        return "–"
    mean, std = mean_std(values)
    return f"{mean:.{digits}f}" if len(values) == 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def spread_label(rows: list[Row]) -> str:
    """What a plotted point and its error bar are, for the rows that finished: a mean and
    sample std over seeds, or one run's value where each row has one seed."""
    counts = sorted({len(row.seeds) for row in rows if row.seeds})
    if not counts or counts == [1]:
        return "one run each (no error bars)"
    seeds = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    return f"mean ± std over {seeds} seeds"


def failed_note(rows: list[Row]) -> str:
    """The line under a summary table when jobs failed: their results are not in the means."""
    failed = sum(row.failed for row in rows)
    if not failed:
        return ""
    total = sum(len(row.seeds) + row.failed + row.pending for row in rows)
    return (
        f"{failed} of {total} jobs failed (left out of the means): see their metrics.json "
        "and error.log"
    )


def all_reported(rows: list[Row]) -> tuple[str, ...]:
    """Every metric a job reported: the summary's default columns first, then the rest
    (best/val_*, test/loss, timings), which a headline may also name."""
    default = reported_metrics(rows)
    rest = sorted({key for row in rows for key in row.values} - set(default))
    return default + tuple(rest)


def unreported_message(rows: list[Row], wanted: Sequence[str], what: str) -> str | None:
    """The one-line error for the first of `wanted` no job reported (a misspelt metric), or
    None. No finished job yet (all pending or failed) is no evidence of a misspelling."""
    reported = all_reported(rows)
    if not reported:
        return None
    missing = [m for m in wanted if m not in reported]
    if not missing:
        return None
    return f"{what} '{missing[0]}' is not reported by any job; valid: {', '.join(reported)}"


def sweep_headline(sweep_dir: Path) -> list[str] | None:
    """The `headline` the sweep ran with, from its jobs' saved configs (`.hydra/config.yaml`)."""
    for job in job_dirs(sweep_dir):
        config_path = job / ".hydra" / "config.yaml"
        if config_path.exists():
            headline = (yaml.safe_load(config_path.read_text()) or {}).get("headline")
            if headline:
                return [str(m) for m in headline]
    return None


def to_markdown(rows: list[Row], metrics: tuple[str, ...]) -> str:
    header = ["run", "seeds"] + list(metrics)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        notes = [
            f"{n} {what}" for n, what in ((row.failed, "failed"), (row.pending, "pending")) if n
        ]
        cells = [row.label, f"{len(row.seeds)}" + (f" ({', '.join(notes)})" if notes else "")]
        cells += [format_stat(row.values.get(key, [])) for key in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    note = failed_note(rows)
    return "\n".join(lines) + "\n" + (f"\n{note}\n" if note else "")


def write_summary(sweep_dir: Path, metrics: tuple[str, ...] | None = None) -> list[Row]:
    """summary.csv and summary.md in the sweep dir (columns: `metrics`, else what the jobs
    reported); returns the rows."""
    rows = collect(sweep_dir)
    metrics = metrics or reported_metrics(rows)
    with open(sweep_dir / "summary.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        stat_names = [f"{k}{s}" for k in metrics for s in ("_mean", "_std")]
        writer.writerow(["run", "seeds", "failed", "pending", *stat_names])
        for row in rows:
            stats = [v for key in metrics for v in mean_std(row.values.get(key, []))]
            writer.writerow([row.label, len(row.seeds), row.failed, row.pending] + stats)
    (sweep_dir / "summary.md").write_text(to_markdown(rows, metrics))
    return rows


SUMMARY_PNG = "summary.png"


def headline_metrics(rows: list[Row], wanted: Sequence[str] | None = None) -> tuple[str, ...]:
    """The metrics a summary shows: `wanted` (an experiment's `headline`), else every metric
    the jobs reported; also when a wanted one was never reported (a misspelling, which the
    caller reports as an error), so the summary still shows the results."""
    if wanted and not unreported_message(rows, wanted, "headline metric"):
        return tuple(wanted)
    return reported_metrics(rows)


# summary.png: panels per row of the grid, and inches per panel.
PANEL_COLUMNS = 3
PANEL_WIDTH = 4.2


def short_label(label: str, limit: int = 40) -> str:
    """A row label that fits beside a bar: long override lists keep their start."""
    return label if len(label) <= limit else label[: limit - 3] + "..."


def plot_summary(rows: list[Row], metrics: Sequence[str], path: Path, title: str = "") -> Path:
    """summary.png: `summary_figure`, written to `path`."""
    summary_figure(rows, metrics, title).savefig(path)
    return path


def summary_figure(rows: list[Row], metrics: Sequence[str], title: str = "") -> Any:
    """One bar chart per metric, every metric, in a grid of PANEL_COLUMNS: a bar per row,
    mean ± std over seeds; rows with failed jobs are hatched and say how many failed."""
    from matplotlib.figure import Figure

    metrics = list(metrics)
    columns = min(len(metrics), PANEL_COLUMNS)
    grid_rows = math.ceil(len(metrics) / columns)
    panel_height = max(2.5, 0.35 * len(rows) + 1.2)
    fig = Figure(
        figsize=(PANEL_WIDTH * columns + 1.5, panel_height * grid_rows + (0.4 if title else 0)),
        dpi=100,
        layout="constrained",
    )
    axes = fig.subplots(grid_rows, columns, squeeze=False)
    labels = [short_label(row.label) for row in rows]
    for index, metric in enumerate(metrics):
        ax = axes[index // columns][index % columns]
        _bar_panel(ax, rows, metric, labels if index % columns == 0 else None)
    for ax in axes.flat[len(metrics) :]:
        ax.set_visible(False)  # the grid's last row may have fewer panels
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


def _bar_panel(ax: Any, rows: list[Row], metric: str, labels: list[str] | None) -> None:
    """One metric: a horizontal bar per row, seeds (and failures) noted right of the bar."""
    stats = [mean_std(row.values.get(metric, [])) for row in rows]
    means = [0.0 if math.isnan(m) else m for m, _ in stats]
    stds = [0.0 if math.isnan(s) else s for _, s in stats]
    bars = ax.barh(range(len(rows)), means, xerr=stds, capsize=3, color="tab:blue", alpha=0.8)
    for bar, row in zip(bars, rows, strict=True):
        if row.failed or not row.seeds:
            bar.set_hatch("//")
            bar.set_alpha(0.4)
    ax.set_yticks(range(len(rows)), labels or [""] * len(rows), fontsize=9)
    ax.invert_yaxis()
    ax.set_title(metric, fontsize=11)
    ax.set_xlabel(spread_label(rows), fontsize=9)
    ax.tick_params(axis="x", labelsize=9)
    ax.grid(axis="x", alpha=0.3)
    ax.margins(x=0.25)  # room for the notes right of the longest bar
    for i, row in enumerate(rows):
        note = f"n={len(row.seeds)}" + (f", {row.failed} failed" if row.failed else "")
        ax.annotate(
            note,
            (means[i] + stds[i], i),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )


def summarize(sweep_dir: Path, wanted: Sequence[str] | None = None, title: str = "") -> list[Row]:
    """summary.csv, summary.md and summary.png for a sweep dir; prints the Rich table."""
    rows = collect(sweep_dir)
    if not rows:
        return rows
    metrics = headline_metrics(rows, wanted)
    write_summary(sweep_dir, metrics)
    if not metrics:  # every job failed or is still running: nothing to draw
        print(f"no {SUMMARY_PNG}: no job has reported a metric (failed or still running)")
    else:
        try:
            plot_summary(rows, metrics, sweep_dir / SUMMARY_PNG, title=title)
        except ImportError:
            log.warning("matplotlib is not installed: no %s", SUMMARY_PNG)
    print_summary(rows, metrics, title)
    return rows


def print_summary(rows: list[Row], metrics: Sequence[str], title: str = "") -> None:
    from rich.table import Table

    from xent.runner.console import stdout_console

    table = Table(title=title or "sweep summary", title_style="bold")
    table.add_column("run")
    table.add_column("seeds", justify="right")
    for metric in metrics:
        table.add_column(metric, justify="right")
    for row in rows:
        notes = [f"{n} {w}" for n, w in ((row.failed, "failed"), (row.pending, "pending")) if n]
        seeds = str(len(row.seeds)) + (f" ({', '.join(notes)})" if notes else "")
        cells = [format_stat(row.values.get(metric, [])) for metric in metrics]
        table.add_row(row.label, seeds, *cells, style="red" if row.failed else None)
    console = stdout_console()
    console.print(table)
    if note := failed_note(rows):
        console.print(note, style="red", soft_wrap=True, highlight=False)


def main() -> None:
    """Entry point of `xent-report SWEEP_DIR [--metric M ...] [--metrics M1,M2]`."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="xent-report",
        description="Summarise a sweep dir made by xent-run -m: summary.csv/.md/.png, mean ± "
        "std over seeds per combination of overrides (also for a sweep still running).",
    )
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument(
        "--metric",
        "--metrics",
        action="extend",
        type=lambda text: [m for m in text.split(",") if m],
        default=None,
        help="metrics to show (repeatable, or comma-separated); default: the sweep's `headline` "
        "(saved in its jobs' configs), else every metric the jobs reported",
    )
    args = parser.parse_args()
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir} is not a directory (a sweep dir made by xent-run -m)")
    rows = collect(args.sweep_dir)
    if not rows:
        print(
            f"xent-report: error: no job dirs (*/.hydra/overrides.yaml) in {args.sweep_dir}",
            file=sys.stderr,
        )
        sys.exit(2)
    if args.metric:
        wanted, what = args.metric, "--metric"
    else:
        wanted, what = sweep_headline(args.sweep_dir), "headline metric"
    if wanted and (error := unreported_message(rows, wanted, what)):
        print(f"xent-report: error: {error}", file=sys.stderr)
        sys.exit(2)
    rows = summarize(args.sweep_dir, wanted)
    plotted = " and summary.png" if (args.sweep_dir / "summary.png").exists() else ""
    print(f"wrote {args.sweep_dir / 'summary.csv'}, summary.md{plotted}")
    sys.exit(1 if any(row.failed for row in rows) else 0)


if __name__ == "__main__":
    main()
