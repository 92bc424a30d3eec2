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
import textwrap
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from xent.errors import ConfigError
from xent.runner import verdicts
from xent.runner.scaling import (
    DEFAULT_METRIC,
    FIT_JSON,
    FIT_PNG,
    Point,
    choose_law,
    fit_points,
    report_fit,
)
from xent.runner.verdicts import Claim, Judgement, Verdict

log = logging.getLogger("xent")

NOT_METRICS = ("seed", "epochs", "status", "error", "bad_input", "summary_keys")
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
    overrides: list[str] = field(default_factory=list)  # its jobs' own, shared ones too; no seed
    results: dict[int, dict[str, float]] = field(default_factory=dict)  # seed -> ok job's numbers


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
        row = rows.setdefault(label, Row(label, overrides=without_seed(overrides)))
        if result is None:
            row.pending += 1
            continue
        if result.get("status") != "ok":
            row.failed += 1
            continue
        row.seeds.append(result.get("seed"))
        row.columns += [k for k in result.get("summary_keys", ()) if k not in row.columns]
        numbers = {
            key: float(value)
            for key, value in result.items()
            if key not in NOT_METRICS and isinstance(value, int | float)
        }
        for key, value in numbers.items():
            row.values[key].append(value)
        if isinstance(result.get("seed"), int):
            row.results[result["seed"]] = numbers
    return list(rows.values())


def without_seed(overrides: list[str]) -> list[str]:
    """A job's overrides but its seed: what the jobs of one row have in common."""
    return [o for o in overrides if o.split("=")[0] not in SEED_KEYS]


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


def saved_setting(sweep_dir: Path, key: str) -> Any:
    """A root key of the config the sweep ran with: the first job's saved config
    (`.hydra/config.yaml`) that sets it, or None."""
    for job in job_dirs(sweep_dir):
        config_path = job / ".hydra" / "config.yaml"
        if config_path.exists():
            value = (yaml.safe_load(config_path.read_text()) or {}).get(key)
            if value:
                return value
    return None


def sweep_headline(sweep_dir: Path) -> list[str] | None:
    """The `headline` the sweep ran with, from its jobs' saved configs."""
    headline = saved_setting(sweep_dir, "headline")
    return [str(m) for m in headline] if headline else None


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


# -- the claim: verdicts.json, the Claim section of summary.md, verdicts.png, a table ----------
VERDICTS_JSON = "verdicts.json"
VERDICTS_PNG = "verdicts.png"
TITLE_WIDTH = 90  # characters per line of verdicts.png's title: the figure is 9 inches wide
# The verdict's colour on the terminal and in verdicts.png; any other verdict is yellow.
VERDICT_STYLES = {verdicts.SUPPORTED: "green", verdicts.CONTRADICTED: "red"}
VERDICT_COLORS = {verdicts.SUPPORTED: "tab:green", verdicts.CONTRADICTED: "tab:red"}
OTHER_STYLE, OTHER_COLOR = "yellow", "goldenrod"


def claim_with_overrides(saved: Any, overrides: Sequence[str]) -> Claim | None:
    """The claim to judge: the sweep's own (`saved`, from its jobs' configs) with `claim.KEY=VALUE`
    overrides set on it, each replacing that key's value (`claim.baseline={loss: gce}` replaces
    the baseline, `claim.baseline.loss=gce` one of its keys), checked for structure."""
    from omegaconf import OmegaConf

    config = OmegaConf.create({"claim": saved or {}})
    for text in overrides:
        key, equals, value = text.partition("=")
        if not equals or not (key == "claim" or key.startswith("claim.")):
            raise ConfigError(
                f"{text}: expected claim.KEY=VALUE (keys: {', '.join(verdicts.CLAIM_KEYS)})"
            )
        OmegaConf.update(config, key, override_value(text, value), merge=False)
    raw = OmegaConf.to_container(config, resolve=True)["claim"]  # type: ignore[index]
    return verdicts.parse_claim(raw or None)


def override_value(text: str, value: str) -> Any:
    """An override's value as Hydra's command line reads it (`1e-3` a number, `{loss: ce}` a
    mapping, `[...]` a list); one line naming the override when it cannot be read."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        parsed = OmegaConf.from_dotlist([f"v={value}"])
        return OmegaConf.to_container(parsed, resolve=True)["v"]  # type: ignore[index]
    except (OmegaConfBaseException, yaml.YAMLError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{text}: cannot read the value ({reason})") from err


def judge_claim(rows: list[Row], claim: Claim) -> Judgement:
    """The claim judged on the sweep's rows; ConfigError when its metric is not reported or
    its baseline or a candidate does not pick exactly one row."""
    if error := unreported_message(rows, [claim.metric], "claim.metric"):
        raise ConfigError(error)
    return verdicts.judge(claim, rows)


def claim_section(judgement: Judgement) -> str:
    """summary.md's "Claim" section: the claim in words, a row per candidate, how to read it."""
    header = list(verdicts.VERDICT_COLUMNS)
    lines = ["## Claim", "", *verdicts.claim_words(judgement), ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(verdicts.verdict_cells(v)) + " |" for v in judgement.verdicts]
    lines += ["", verdicts.method_note(judgement), *unpaired_notes(judgement)]
    return "\n".join(lines) + "\n"


def unpaired_notes(judgement: Judgement) -> list[str]:
    """A line per candidate with seeds that finished on one side only (left out of its pairs)."""
    return [
        f"{v.label}: seed(s) {', '.join(map(str, v.unpaired_seeds))} finished on one side only "
        "(not paired)"
        for v in judgement.verdicts
        if v.unpaired_seeds
    ]


def report_claim(sweep_dir: Path, judgement: Judgement) -> None:
    """verdicts.json, the Claim section under summary.md's table, verdicts.png and the table
    on the terminal."""
    (sweep_dir / VERDICTS_JSON).write_text(
        json.dumps(judgement.as_dict(), indent=2, ensure_ascii=False) + "\n"
    )
    summary_md = sweep_dir / "summary.md"
    summary_md.write_text(summary_md.read_text() + "\n" + claim_section(judgement))
    try:
        verdicts_figure(judgement).savefig(sweep_dir / VERDICTS_PNG)
    except ImportError:
        log.warning("matplotlib is not installed: no %s", VERDICTS_PNG)
    print_verdicts(judgement)


def print_verdicts(judgement: Judgement) -> None:
    """The Claim section on the terminal, the verdict coloured."""
    from rich.table import Table
    from rich.text import Text

    from xent.runner.console import stdout_console

    table = Table(
        title=f"claim: {judgement.claim.says or judgement.claim.metric}", title_style="bold"
    )
    for index, column in enumerate(verdicts.VERDICT_COLUMNS):
        table.add_column(column, justify="left" if index in (0, 5) else "right")
    for verdict in judgement.verdicts:
        *cells, word, published = verdicts.verdict_cells(verdict)
        style = VERDICT_STYLES.get(verdict.verdict, OTHER_STYLE)
        table.add_row(*cells, Text(word, style=style), published)
    console = stdout_console()
    for line in verdicts.claim_words(judgement):
        console.print(line, soft_wrap=True, highlight=False)
    console.print(table)
    for line in [verdicts.method_note(judgement), *unpaired_notes(judgement)]:
        console.print(line, soft_wrap=True, highlight=False)


def verdicts_figure(judgement: Judgement) -> Any:
    """verdicts.png: a row per candidate with its per-seed differences (dots), their mean and
    95 % interval, the published Δ (a diamond) and the verdict beside it; a line at 0."""
    from matplotlib.figure import Figure

    rows = judgement.verdicts
    fig = Figure(figsize=(9, 1.4 + 0.55 * len(rows)), dpi=100, layout="constrained")
    ax = fig.subplots()
    ax.axvline(0.0, color="black", linewidth=1, gid="zero")
    for index, verdict in enumerate(rows):
        _verdict_row(ax, index, verdict)
    if rows:
        ax.legend(loc="best", fontsize=8)
    ax.set_yticks(range(len(rows)), [short_label(v.label) for v in rows], fontsize=9)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel(f"Δ {judgement.claim.metric} (candidate − baseline), paired by seed")
    title = f"{judgement.claim.says or 'claim'} (baseline {judgement.baseline})"
    ax.set_title(textwrap.fill(title, TITLE_WIDTH), fontsize=11)  # a long claim would be cut
    ax.grid(axis="x", alpha=0.3)
    return fig


def _verdict_row(ax: Any, index: int, verdict: Verdict) -> None:
    """One candidate of verdicts.png: dots a little above its line, mean and interval below."""
    color = VERDICT_COLORS.get(verdict.verdict, OTHER_COLOR)
    if verdict.differences:
        y = [index - 0.15] * verdict.n
        label = _first(ax, "per-seed Δ")
        ax.scatter(verdict.differences, y, s=16, color="tab:blue", alpha=0.7, label=label)
    if verdict.mean is not None:
        interval = None
        if verdict.low is not None and verdict.high is not None:
            interval = [[verdict.mean - verdict.low], [verdict.high - verdict.mean]]
        label = _first(ax, "mean, 95 % interval")
        ax.errorbar(
            [verdict.mean],
            [index + 0.1],
            xerr=interval,
            fmt="o",
            color=color,
            capsize=4,
            label=label,
        )
    if verdict.published_delta is not None:
        label = _first(ax, "published Δ")
        ax.plot([verdict.published_delta], [index], "D", color="tab:orange", label=label)
    ax.annotate(
        verdicts.verdict_cell(verdict),
        (1.0, index),
        xycoords=("axes fraction", "data"),
        xytext=(6, 0),
        textcoords="offset points",
        va="center",
        fontsize=9,
        color=color,
    )


def _first(ax: Any, label: str) -> str | None:
    """`label` for the first artist of its kind, so the legend names each kind once."""
    return None if label in ax.get_legend_handles_labels()[1] else label


def main() -> None:
    """Entry point of `xent-report SWEEP_DIR [claim.KEY=VALUE ...] [--metric M ...] [--fit]`."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="xent-report",
        description="Summarise a sweep dir made by xent-run -m: summary.csv/.md/.png, mean ± "
        "std over seeds per combination of overrides (also for a sweep still running); with a "
        "claim (the sweep's own, or set here), its verdicts: a Claim section in summary.md, "
        "verdicts.json and verdicts.png (docs/claims.md).",
    )
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument(
        "claim",
        nargs="*",
        metavar="claim.KEY=VALUE",
        help="judge the sweep's claim with this key changed (claim.min_effect=0.01, "
        "claim.baseline.loss=gce), or a claim the sweep never had",
    )
    parser.add_argument(
        "--metric",
        "--metrics",
        action="extend",
        type=lambda text: [m for m in text.split(",") if m],
        default=None,
        help="metrics to show (repeatable, or comma-separated); default: the sweep's `headline` "
        "(saved in its jobs' configs), else every metric the jobs reported",
    )
    parser.add_argument(
        "--fit",
        action="store_true",
        help="fit a scaling law L = E + A/N^α (+ B/D^β when the jobs' train/tokens differ) to "
        "the jobs' model/n_params and loss: fit.json, fit.png (docs/methods/scaling.md)",
    )
    parser.add_argument(
        "--fit-metric",
        default=None,
        metavar="M",
        help="the loss the fit takes (implies --fit); default: best/val_loss",
    )
    args = parser.parse_intermixed_args()
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir} is not a directory (a sweep dir made by xent-run -m)")
    rows = collect(args.sweep_dir)
    if not rows:
        fail(f"no job dirs (*/.hydra/overrides.yaml) in {args.sweep_dir}")
    if args.metric:
        wanted, what = args.metric, "--metric"
    else:
        wanted, what = sweep_headline(args.sweep_dir), "headline metric"
    if wanted and (error := unreported_message(rows, wanted, what)):
        fail(error)
    try:
        claim = claim_with_overrides(saved_setting(args.sweep_dir, "claim"), args.claim)
        judgement = judge_claim(rows, claim) if claim else None
        fit_input = scaling_input(rows, args) if args.fit or args.fit_metric else None
    except ConfigError as err:
        fail(str(err))
    rows = summarize(args.sweep_dir, wanted)
    if judgement is not None:
        report_claim(args.sweep_dir, judgement)
    if fit_input is not None:
        report_fit(args.sweep_dir, *fit_input)
    plotted = " and summary.png" if (args.sweep_dir / "summary.png").exists() else ""
    claimed = ""
    if judgement is not None:
        drawn = (args.sweep_dir / VERDICTS_PNG).exists()
        claimed = f"; {VERDICTS_JSON}" + (f" and {VERDICTS_PNG}" if drawn else "")
    fitted = f"; {FIT_JSON}" + (f" and {FIT_PNG}" if (args.sweep_dir / FIT_PNG).exists() else "")
    fitted = fitted if fit_input is not None else ""
    print(f"wrote {args.sweep_dir / 'summary.csv'}, summary.md{plotted}{claimed}{fitted}")
    sys.exit(1 if any(row.failed for row in rows) else 0)


def scaling_input(rows: list[Row], args: Any) -> tuple[list[Point], str]:
    """`--fit`'s points and metric, checked before anything is written (ConfigError)."""
    metric = args.fit_metric or DEFAULT_METRIC
    if error := unreported_message(rows, [metric], "--fit-metric"):
        raise ConfigError(error)
    points = fit_points(job_dirs(args.sweep_dir), metric)
    choose_law(points)  # enough points and sizes for the law
    return points, metric


def fail(message: str) -> NoReturn:
    """Bad input: one line on stderr, exit 2, nothing written."""
    print(f"xent-report: error: {message}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
