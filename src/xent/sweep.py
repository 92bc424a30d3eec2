"""What a multirun leaves behind when it ends: summary.csv, summary.md, summary.png and a table.

`SweepSummary` is a Hydra callback (`hydra.callbacks.summary` in `conf/hydra/default.yaml`):
Hydra calls `on_multirun_end` in the launching process once every job has returned, whatever
the launcher. It summarises the job dirs through `xent.report` (the same code `xent-report`
runs), so a summary made at the end and one rebuilt later from the files are the same.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from xent.report import Row, mean_std, reported_metrics, write_summary

log = logging.getLogger("xent")

SUMMARY_PNG = "summary.png"
# Failed jobs the last multirun's summary counted: jobs on other launchers (submitit) fail in
# other processes, so `xent-run` reads this to exit non-zero for them too.
failed_jobs = 0


def headline_metrics(rows: list[Row], wanted: Sequence[str] | None = None) -> tuple[str, ...]:
    """The metrics a summary shows: `wanted` (an experiment's `headline`) where given and
    reported, else every metric the jobs reported."""
    reported = reported_metrics(rows)
    if not wanted:
        return reported
    return tuple(m for m in wanted if any(m in row.values for row in rows)) or reported


def plot_summary(rows: list[Row], metrics: Sequence[str], path: Path, title: str = "") -> Path:
    """One bar chart per metric (at most 4): a bar per row, mean ± std over seeds; rows with
    failed jobs are hatched and say how many failed."""
    from matplotlib.figure import Figure

    metrics = list(metrics)[:4]
    height = max(2.5, 0.35 * len(rows) + 1.2)
    fig = Figure(figsize=(4.2 * len(metrics), height), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    labels = [row.label if len(row.label) <= 40 else row.label[:37] + "..." for row in rows]
    for ax, metric in zip(axes, metrics, strict=True):
        stats = [mean_std(row.values.get(metric, [])) for row in rows]
        means = [0.0 if math.isnan(m) else m for m, _ in stats]
        stds = [0.0 if math.isnan(s) else s for _, s in stats]
        bars = ax.barh(range(len(rows)), means, xerr=stds, capsize=3, color="tab:blue", alpha=0.8)
        for bar, row in zip(bars, rows, strict=True):
            if row.failed or not row.seeds:
                bar.set_hatch("//")
                bar.set_alpha(0.4)
        ax.set_yticks(range(len(rows)), labels if ax is axes[0] else [""] * len(rows), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(metric, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        for i, row in enumerate(rows):  # seeds (and failures) just right of the error bar
            note = f"n={len(row.seeds)}" + (f", {row.failed} failed" if row.failed else "")
            ax.annotate(
                note,
                (means[i] + stds[i], i),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
            )
    if title:
        fig.suptitle(title, fontsize=11)
    fig.savefig(path)
    return path


def summarize(sweep_dir: Path, wanted: Sequence[str] | None = None, title: str = "") -> list[Row]:
    """summary.csv, summary.md and summary.png for a sweep dir; prints the Rich table."""
    from xent.report import collect

    rows = collect(sweep_dir)
    if not rows:
        return rows
    metrics = headline_metrics(rows, wanted)
    write_summary(sweep_dir, metrics)
    try:
        plot_summary(rows, metrics, sweep_dir / SUMMARY_PNG, title=title)
    except ImportError:
        log.warning("matplotlib is not installed: no %s", SUMMARY_PNG)
    print_summary(rows, metrics, title)
    return rows


def print_summary(rows: list[Row], metrics: Sequence[str], title: str = "") -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or "sweep summary", title_style="bold")
    table.add_column("run")
    table.add_column("seeds", justify="right")
    for metric in metrics:
        table.add_column(metric, justify="right")
    for row in rows:
        notes = [f"{n} {w}" for n, w in ((row.failed, "failed"), (row.pending, "pending")) if n]
        seeds = str(len(row.seeds)) + (f" ({', '.join(notes)})" if notes else "")
        cells = []
        for metric in metrics:
            values = row.values.get(metric, [])
            mean, std = mean_std(values)
            cells.append(f"{mean:.4f} ± {std:.4f}" if values else "–")
        table.add_row(row.label, seeds, *cells, style="red" if row.failed else None)
    Console().print(table)


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
