"""What a person sees in the terminal: the config at start, a result table at the end."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table
from rich.tree import Tree

CONFIG_ORDER = (
    "task",
    "data",
    "model",
    "teacher",
    "loss",
    "optim",
    "sched",
    "trainer",
    "logger",
    "paths",
)


def config_tree(cfg: DictConfig) -> Tree:
    """The resolved config, one branch per group in pipeline order, then the top-level keys."""
    tree = Tree("config", guide_style="dim")
    for group in CONFIG_ORDER:
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
        if k not in CONFIG_ORDER and k != "callbacks"
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
        if key == "error":
            continue
        table.add_row(key, _fmt(metrics[key]))
    return table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def print_config(cfg: DictConfig, console: Console | None = None) -> None:
    (console or Console()).print(config_tree(cfg))


def print_results(
    metrics: Mapping[str, Any], run_dir: Path, console: Console | None = None
) -> None:
    """The table, then the run dir on a line of its own (never wrapped: it gets copy-pasted)."""
    console = console or Console()
    console.print(result_table(metrics))
    console.print(f"run dir: {run_dir}", soft_wrap=True, highlight=False)
