"""What a multirun leaves behind when it ends: summary.csv, summary.md, summary.png and a table.

`SweepSummary` is a Hydra callback (`hydra.callbacks.summary` in `conf/hydra/default.yaml`):
Hydra calls `on_multirun_end` in the launching process once every job has returned, whatever
the launcher. It summarises the job dirs through `xent.report` (the same code `xent-report`
runs), so a summary made at the end and one rebuilt later from the files are the same.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from xent.report import (
    Row,
    collect,
    failed_note,
    format_stat,
    mean_std,
    reported_metrics,
    spread_label,
    unreported_message,
    write_summary,
)

log = logging.getLogger("xent")

SUMMARY_PNG = "summary.png"
# Failed jobs the last multirun's summary counted: jobs on other launchers (submitit) fail in
# other processes, so `xent-run` reads this to exit non-zero for them too.
failed_jobs = 0
# One-line errors the last multirun's summary found (a headline metric no job reported):
# `xent-run` prints them and exits 2 once the sweep is done.
summary_errors: list[str] = []


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

    from xent.console import stdout_console

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


def log_summary_to_wandb(
    rows: list[Row], metrics: Sequence[str], wandb_cfg: Any, sweep_dir: Path
) -> None:
    """The summary as a W&B table in a run of its own (job_type "summary") in the jobs' group,
    so the comparison sits next to its runs; offline mode writes it under the sweep dir."""
    import wandb

    columns = ["run", "seeds", "failed"] + [f"{m} {s}" for m in metrics for s in ("mean", "std")]
    data = []
    for row in rows:
        stats = [v for m in metrics for v in mean_std(row.values.get(m, []))]
        data.append([row.label, len(row.seeds), row.failed, *stats])
    run = wandb.init(
        project=wandb_cfg.get("project"),
        entity=wandb_cfg.get("entity"),
        group=wandb_cfg.get("group"),
        job_type="summary",
        name="summary",
        dir=str(sweep_dir),
        config={"sweep_dir": str(sweep_dir), "metrics": list(metrics)},
        reinit="finish_previous",
    )
    run.log({"summary": wandb.Table(columns=columns, data=data)})
    run.finish()


class SweepSummary(Callback):
    """At the end of a multirun: the sweep's summary files and table (see module docstring)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        wanted = config.get("headline") or None
        title = config.get("experiment_name") or ""
        try:
            rows = summarize(sweep_dir, wanted, title)
            if wanted and (error := unreported_message(rows, wanted, "headline metric")):
                summary_errors.append(error)
        except Exception as err:  # noqa: BLE001 - a summary must never hide the jobs' results
            log.warning("no sweep summary: %s", err)
            return
        if rows:
            log.info("sweep summary: %s (.md, .png)", sweep_dir / "summary.csv")
            wandb_cfg = (config.get("logger") or {}).get("wandb")
            if wandb_cfg is not None:
                try:
                    log_summary_to_wandb(rows, headline_metrics(rows, wanted), wandb_cfg, sweep_dir)
                except Exception as err:  # noqa: BLE001 - the files are written already
                    log.warning("summary not logged to W&B: %s", err)
        global failed_jobs
        failed_jobs = sum(row.failed for row in rows)


def job_line(
    num: int,
    overrides: Sequence[str],
    result: dict | None,
    seconds: float,
    headline: Sequence[str] | None = None,
) -> str:
    """A sweep job's one line on the terminal: number, overrides, status, headline metric,
    time. The job's config, progress and result table are in its own xent.log."""
    if result is None:
        outcome = "no metrics.json"
    elif result.get("status") == "interrupted":
        outcome = "interrupted (resume=true continues it)"
    elif result.get("status") != "ok":
        outcome = "failed (see its error.log)"
    else:
        row = Row("job", values={k: [v] for k, v in result.items() if isinstance(v, int | float)})
        # A headline metric the job did not report, or reported as null (non-finite), is skipped.
        shown = [m for m in (headline or ()) if m in row.values] or list(reported_metrics([row]))
        outcome = "ok" + "".join(f", {m} {format_stat(row.values[m])}" for m in shown[:1])
    label = " ".join(overrides) or "(no overrides)"
    return f"#{num} {label}: {outcome}, {seconds:.1f} s"


class JobLines(Callback):
    """In a multirun, one line per job on the terminal as each job ends (see `job_line`)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.perf_counter()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import filter_overrides
        from hydra.types import RunMode

        if config.hydra.mode != RunMode.MULTIRUN:
            return
        result_path = Path(config.hydra.runtime.output_dir) / "metrics.json"
        result = json.loads(result_path.read_text()) if result_path.exists() else None
        overrides = filter_overrides(list(config.hydra.overrides.task))
        seconds = time.perf_counter() - self.started
        line = job_line(config.hydra.job.num, overrides, result, seconds, config.get("headline"))
        print(line, flush=True)
