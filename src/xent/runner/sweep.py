"""What a multirun leaves behind when it ends: summary.csv, summary.md, summary.png and a table.

`SweepSummary` is a Hydra callback (`hydra.callbacks.summary` in `conf/hydra/default.yaml`):
Hydra calls `on_multirun_end` in the launching process once every job has returned, whatever
the launcher. It summarises the job dirs through `xent.runner.report` (the same code `xent-report`
runs), so a summary made at the end and one rebuilt later from the files are the same.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from xent.errors import EXIT_BAD_INPUT, ConfigError
from xent.runner.report import (
    Row,
    format_stat,
    headline_metrics,
    job_dirs,
    judge_claim,
    mean_std,
    report_claim,
    reported_metrics,
    summarize,
    unreported_message,
)
from xent.runner.verdicts import VERDICT_COLUMNS, Judgement, claim_from_config, verdict_cells

log = logging.getLogger("xent")

# Failed jobs the last multirun's summary counted: jobs on other launchers (submitit) fail in
# other processes, so `xent-run` reads this to exit non-zero for them too.
failed_jobs = 0
# Why they failed: (the line xent-run prints, bad input?) per failed job, from its metrics.json.
failed_job_lines: list[tuple[str, bool]] = []
# One-line errors the last multirun's summary found (a headline metric no job reported, a claim
# whose metric no job reported or whose baseline picks no row):
# `xent-run` prints them and exits 2 once the sweep is done.
summary_errors: list[str] = []


def log_summary_to_wandb(
    rows: list[Row],
    metrics: Sequence[str],
    wandb_cfg: Any,
    sweep_dir: Path,
    judgement: Judgement | None = None,
) -> None:
    """The summary as a W&B table in a run of its own (job_type "summary") in the jobs' group,
    so the comparison sits next to its runs, with the claim's verdicts as a second table
    ("verdicts") where the sweep has a claim; offline mode writes it under the sweep dir."""
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
    tables = {"summary": wandb.Table(columns=columns, data=data)}
    if judgement is not None:
        cells = [verdict_cells(verdict) for verdict in judgement.verdicts]
        tables["verdicts"] = wandb.Table(columns=list(VERDICT_COLUMNS), data=cells)
    run.log(tables)
    run.finish()


class SweepSummary(Callback):
    """At the end of a multirun: the sweep's summary files and table (see module docstring).
    At its start: a malformed claim block ends the command before any job runs."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra turns an Exception raised by a callback into a warning and sweeps on; SystemExit
        # passes through it and the CLI's error handling, which catch Exception only.
        try:
            claim_from_config(config.get("claim"))
        except ConfigError as err:
            print(f"xent-run: error: {err}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_BAD_INPUT) from err

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
        judgement = judge_sweep_claim(sweep_dir, rows, config.get("claim"))
        if rows:
            log.info("sweep summary: %s (.md, .png)", sweep_dir / "summary.csv")
            wandb_cfg = (config.get("logger") or {}).get("wandb")
            if wandb_cfg is not None:
                try:
                    metrics = headline_metrics(rows, wanted)
                    log_summary_to_wandb(rows, metrics, wandb_cfg, sweep_dir, judgement)
                except Exception as err:  # noqa: BLE001 - the files are written already
                    log.warning("summary not logged to W&B: %s", err)
        global failed_jobs
        failed_jobs = sum(row.failed for row in rows)
        failed_job_lines[:] = failure_lines(sweep_dir)


def failure_lines(sweep_dir: Path) -> list[tuple[str, bool]]:
    """Each failed job's one line, as `xent-run` prints it for a job of its own process, and
    whether it was bad input (metrics.json's `error` and `bad_input`)."""
    lines = []
    for job in job_dirs(sweep_dir):
        try:
            result = json.loads((job / "metrics.json").read_text())
        except (OSError, ValueError):
            continue  # still running, killed before writing, or not a job of ours
        if result.get("status") != "failed" or "error" not in result:
            continue
        if result.get("bad_input"):
            lines.append((f"xent-run: error: {result['error']}", True))
            continue
        details = job / "error.log"
        where = f"details: {details}" if details.is_file() else f"run dir: {job}"
        lines.append((f"xent-run: run failed: {result['error']} ({where})", False))
    return lines


def judge_sweep_claim(sweep_dir: Path, rows: list[Row], claim: Any) -> Judgement | None:
    """The sweep's claim judged and its verdict files written; a bad claim is one of the
    summary's errors (the summary itself stands), no claim or no rows is None. Verdicts that
    cannot be written are a warning: the summary and the jobs' count still stand."""
    if claim is None or not rows:
        return None
    try:
        judgement = judge_claim(rows, claim_from_config(claim))  # type: ignore[arg-type]
        report_claim(sweep_dir, judgement)
    except ConfigError as err:
        summary_errors.append(str(err))
        return None
    except Exception as err:  # noqa: BLE001 - the summary is written already
        log.warning("no verdicts: %s", err)
        return None
    return judgement


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
        sys.stdout.write(line + "\n")  # one write: jobs in parallel processes print whole lines
        sys.stdout.flush()
