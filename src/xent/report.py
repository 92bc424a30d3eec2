"""`xent-report SWEEP_DIR`: one row per combination, mean ± std over seeds, from the job dirs.

Reads whatever jobs have finished (each job dir's `.hydra/overrides.yaml` and `metrics.json`),
so it can be rerun while a sweep is still going or after some jobs failed.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# Summary columns, in this order, for whichever of them the jobs reported (classification,
# binary, regression, distillation, flow, test-time adaptation); any other test/* key follows them.
METRICS = (
    "test/acc",
    "best/test_acc",
    "test/acc5",
    "test/nll",
    "test/ece",
    "test/f1",
    "test/bal_acc",
    "test/rmse",
    "test/mae",
    "teacher/test_acc",
    "test/w2",
    "best/test_w2",
    "test/npe",
    "test/nfe",
    "test/w2_euler",
    "test/err",
    "test/err_at5",
)
NOT_METRICS = ("seed", "epochs", "status", "error")
SEED_KEYS = ("seed",)


@dataclass
class Row:
    """One combination of overrides (seed excluded) and its jobs' results."""

    label: str
    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    seeds: list[int] = field(default_factory=list)
    failed: int = 0  # metrics.json says status failed
    pending: int = 0  # no metrics.json yet: still running, or killed before it could write


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
        for key, value in result.items():
            if key not in NOT_METRICS and isinstance(value, int | float):
                row.values[key].append(float(value))
    return list(rows.values())


def reported_metrics(rows: list[Row]) -> tuple[str, ...]:
    """The summary's columns: the known metrics the jobs reported, then other test/* keys.

    test/loss is left out: each loss is on its own scale, so its column would not compare.
    """
    seen = {key for row in rows for key in row.values}
    known = [key for key in METRICS if key in seen]
    others = sorted(
        k for k in seen if k.startswith("test/") and k not in METRICS and k != "test/loss"
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


def main() -> None:
    """Entry point of `xent-report SWEEP_DIR [--metric M ...] [--metrics M1,M2]`."""
    import argparse

    from xent.sweep import summarize

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
