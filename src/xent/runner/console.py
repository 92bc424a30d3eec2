"""What a person sees in the terminal: the config at start, a result table at the end.

In a sweep (`xent-run -m`) a job's config, progress and table go to its own xent.log instead:
the terminal shows one line per job (`xent.runner.sweep.JobLines`) and the sweep's summary.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.tree import Tree

log = logging.getLogger("xent")

# Columns of the console when stdout is not a terminal (a log file, CI, SLURM's output): rich
# would take 80 and cut wide tables with an ellipsis; tables take only the width they need.
UNBOUNDED_WIDTH = 10_000

# The config tree's branches in pipeline order; a task's own nodes (a teacher, a source model, a
# method) go between the model and the loss, in the config's order.
CONFIG_HEAD = ("task", "data", "model")
CONFIG_TAIL = ("loss", "optim", "sched", "trainer", "logger", "paths")
NOT_SHOWN = ("callbacks", "hydra")


def stdout_console() -> Console:
    """The console for stdout: the terminal's width, or no limit when stdout is not a terminal
    (then COLUMNS, where set, still wins)."""
    console = Console()
    if console.is_terminal or "COLUMNS" in os.environ:
        return console
    return Console(width=UNBOUNDED_WIDTH)


def in_sweep() -> bool:
    """Whether this process runs a job of a multirun (Hydra's mode), not a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


class SingleRunOnly(logging.Filter):
    """On the console's log handler (`hydra.job_logging`): in a sweep, a job's info lines go to
    its xent.log only, so the terminal keeps one line per job; warnings and errors still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not in_sweep()


class DropJobStartLines(logging.Filter):
    """On Hydra's console handler: the basic launcher's `#N : overrides` line as each job
    starts; `xent.runner.sweep.JobLines` prints the job's one line, with its outcome, as it ends.
    Launchers that run jobs elsewhere (submitit, SLURM) keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        from_basic_launcher = record.name.endswith("core_plugins.basic_launcher")
        return not (from_basic_launcher and record.getMessage().startswith("\t#"))


def plain_text(renderable: RenderableType) -> str:
    """What rich would print, without colour and at full width: for a log file."""
    buffer = io.StringIO()
    Console(file=buffer, width=UNBOUNDED_WIDTH, color_system=None).print(renderable)
    return buffer.getvalue().rstrip()


def show(renderable: RenderableType, console: Console | None = None) -> None:
    """Print to the terminal; in a sweep's job, into its xent.log (through the log)."""
    if console is None and in_sweep():
        log.info("\n%s", plain_text(renderable))
    else:
        is_text = isinstance(renderable, str)  # a path: never wrapped, never coloured
        (console or stdout_console()).print(renderable, soft_wrap=is_text, highlight=not is_text)


def config_tree(cfg: DictConfig) -> Tree:
    """The resolved config, one branch per group in pipeline order, then the top-level keys."""
    tree = Tree("config", guide_style="dim")
    listed = (*CONFIG_HEAD, *CONFIG_TAIL, *NOT_SHOWN)
    own = tuple(k for k in cfg if k not in listed and isinstance(cfg.get(k), DictConfig))
    order = (*CONFIG_HEAD, *own, *CONFIG_TAIL)
    for group in order:
        if group in cfg:
            node = cfg[group]
            text = (
                OmegaConf.to_yaml(node, resolve=True) if isinstance(node, DictConfig) else str(node)
            )
            tree.add(group).add(Syntax(text.rstrip() or "null", "yaml", theme="ansi_dark"))
    # Resolved against the whole config: a sub-dict alone would lose its interpolations' root.
    rest = {
        k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
        for k in cfg
        if k not in order and k not in NOT_SHOWN
    }
    if rest:
        text = OmegaConf.to_yaml(OmegaConf.create(rest)).rstrip()
        tree.add("run").add(Syntax(text, "yaml", theme="ansi_dark"))
    return tree


def result_table(metrics: Mapping[str, Any], title: str = "xent-run") -> Table:
    table = Table(title=title, show_lines=False)
    table.add_column("metric", style="cyan")
    table.add_column("value", justify="right")
    for key in sorted(metrics):
        if key == "error" or isinstance(metrics[key], list | tuple | dict):
            continue  # the error has its own line; summary_keys names columns, not a value
        table.add_row(key, _fmt(metrics[key]))
    return table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def print_config(cfg: DictConfig, console: Console | None = None) -> None:
    show(config_tree(cfg), console)


def print_results(
    metrics: Mapping[str, Any], run_dir: Path, console: Console | None = None
) -> None:
    """The table, then the run dir on a line of its own (never wrapped: it gets copy-pasted)."""
    show(result_table(metrics), console)
    show(f"run dir: {run_dir}", console)
