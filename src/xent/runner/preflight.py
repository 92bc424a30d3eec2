"""Checks that run before anything is written: bad input fails here, in one line.

`build_parts` is also how a job builds its pieces, so the checks and the run cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from omegaconf import DictConfig, OmegaConf

from xent.checks import (
    call_checked,
    choice_name,
    instantiate_group,
    integer,
    is_integer,
    number,
    one_of,
    task_arguments,
    task_class,
)
from xent.errors import ConfigError
from xent.runner.verdicts import claim_from_config
from xent.tasks.probes import DATA_KIND_WORDS

EVAL_CKPT_CHOICES = ("last", "best")


@dataclass
class Parts:
    """Everything a task is built from, already instantiated."""

    datamodule: Any
    net: torch.nn.Module
    loss: torch.nn.Module
    optimizer: Any
    scheduler: Any


def check_values(cfg: DictConfig) -> None:
    """Range checks on the keys every run has; types are checked against defaults separately."""
    integer("seed", cfg.get("seed"), at_least=0)
    integer("trainer.max_epochs", OmegaConf.select(cfg, "trainer.max_epochs"), at_least=1)
    number("optim.lr", OmegaConf.select(cfg, "optim.lr"), above=0, what="a number > 0")
    one_of("eval_ckpt", cfg.get("eval_ckpt"), EVAL_CKPT_CHOICES)
    check_claim(cfg)


def check_claim(cfg: DictConfig) -> None:
    """A sweep's claim block is judged only once every job has run; its structure (known keys,
    a baseline mapping, a number >= 0 for min_effect, numbers in `published`) can be checked
    now, so a typo does not cost the whole sweep's verdict. Whether its metric and baseline
    exist in the results is checked at the end (xent.runner.report.judge_claim)."""
    claim_from_config(cfg.get("claim"))


def check_override_types(defaults: DictConfig, overrides: list[str]) -> None:
    """`key=value` overrides must keep the type of the default they replace.

    Hydra accepts `trainer.max_epochs=abc` as a string and the failure would surface deep in
    training; here it is caught up front, naming the key and the default.
    """
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.type == OverrideType.DEL or override.is_sweep_override():
            continue
        key = override.key_or_group
        if key.startswith("hydra.") or "/" in key or "@" in key:
            continue
        default = OmegaConf.select(
            defaults, key, default=None, throw_on_missing=False, throw_on_resolution_failure=False
        )
        if default is None or isinstance(default, DictConfig) or key == "resume":
            continue  # resume: false | true | auto, checked by xent.runner.rundir.resume_mode
        value = override.value()
        if not _same_kind(default, value):
            raise ConfigError(
                f"{key}={override.get_value_element_as_str()}: expected "
                f"{_kind_name(default)} (default {default!r})"
            )


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return is_integer(value)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True


def _kind_name(default: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number"}.get(
        type(default), type(default).__name__
    )


def check_loss_inputs(cfg: DictConfig, loss: torch.nn.Module) -> None:
    """A loss that needs a target or input the task cannot give fails now, naming both."""
    task_cls = task_class(cfg)
    loss_name, task_name = choice_name(cfg, "loss"), choice_name(cfg, "task")
    kind = task_cls.loss_target_kind(loss)
    if kind != task_cls.target_kind:
        raise ConfigError(
            f"{loss_name} trains on {DATA_KIND_WORDS.get(kind, kind)} but {task_name} needs "
            f"{task_cls.loss_hint}"
        )
    provided = set(task_cls.provided_inputs(**task_arguments(cfg)))
    for need in getattr(loss, "requires", ()):
        if need in provided:
            continue
        if need == "binary_target":
            raise ConfigError(
                f"{loss_name} needs a binary target (2 classes), but {choice_name(cfg, 'data')} "
                f"has {cfg.data.num_classes} classes"
            )
        raise ConfigError(
            f"{loss_name} needs '{need}', which {task_name} does not "
            f"provide (it gives: {', '.join(sorted(provided)) or 'nothing extra'})"
        )


def check_optimized_metric(cfg: DictConfig) -> None:
    """A sweeper's objective must be a metric the task reports: a misspelt key would otherwise
    surface only after every trial had trained, each recorded as a failed trial."""
    key = cfg.get("optimized_metric")
    task_cls = task_class(cfg)
    if key is None or not task_cls.reported:  # a task naming its metrics only at run time
        return
    known = [*task_cls.reported, task_cls.best_key, *task_cls.best_test_keys.values()]
    if key not in known:
        valid = ", ".join(k for k in known if k)
        raise ConfigError(f"optimized_metric={key} is not a metric of this task; valid: {valid}")


def check_ckpt_path(cfg: DictConfig) -> None:
    """`ckpt_path=FILE` exists and is a whole, weights-only checkpoint of this runner: Lightning
    would read it only once training starts, after the run dir is written."""
    from xent.checkpoint_io import CheckpointLoadError, load_weights_only

    given = cfg.get("ckpt_path")
    if not given or "://" in str(given):  # remote files are Lightning's (fsspec) to fetch
        return
    path = Path(str(given)).expanduser()
    if not path.is_file():
        raise ConfigError(f"ckpt_path={given}: no such file")
    try:
        loaded = load_weights_only(path)
    except CheckpointLoadError as err:
        raise ConfigError(f"ckpt_path={given}: {err.problem}") from err
    if not isinstance(loaded, dict) or not isinstance(loaded.get("state_dict"), dict):
        raise ConfigError(
            f"ckpt_path={given}: not a Lightning checkpoint (no state_dict); a run's "
            "checkpoints/last.ckpt continues it"
        )


def check_accelerator(cfg: DictConfig) -> None:
    """trainer=gpu where no CUDA device is visible: Lightning would fail after the run dir is
    written, with "No supported gpu backend found"."""
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    if accelerator not in ("gpu", "cuda") or torch.cuda.is_available():
        return
    if accelerator == "gpu" and torch.backends.mps.is_available():
        return  # Lightning's "gpu" is Apple's MPS there
    choice = choice_name(cfg, "trainer")
    instead = (
        "trainer=cpu, or trainer=default (accelerator=auto: a GPU where there is one)"
        if choice == "trainer=gpu"
        else "trainer.accelerator=auto (a GPU where there is one) or trainer.accelerator=cpu"
    )
    raise ConfigError(
        f"trainer.accelerator={accelerator} ({choice}): no CUDA device is visible here; "
        f"use {instead}"
    )


def build_parts(cfg: DictConfig, load_pretrained: bool = True) -> Parts:
    """Instantiate data, model, loss, optimizer and schedule, checking each as it is built,
    with the task's own checks (`Task.check_data`, `Task.check`; with `load_pretrained`, a
    teacher or source model the task needs must load)."""
    check_values(cfg)
    check_accelerator(cfg)
    check_ckpt_path(cfg)
    check_optimized_metric(cfg)
    task_cls = task_class(cfg)
    datamodule = instantiate_group(cfg, "data")
    call_checked(cfg, "data", datamodule.prepare_data)
    task_cls.check_data(cfg)
    net = instantiate_group(cfg, "model")
    loss = instantiate_group(cfg, "loss")
    check_loss_inputs(cfg, loss)
    task_cls.check(cfg, net, loss, load_pretrained=load_pretrained)
    optimizer = instantiate_group(cfg, "optim")
    scheduler = instantiate_group(cfg, "sched")
    # Call the partials once against the real parameters so torch's own checks (lr, momentum,
    # betas, milestones, ...) fire now; the task calls them again in configure_optimizers.
    probe_opt = call_checked(cfg, "optim", optimizer, params=net.parameters())
    if scheduler is not None:
        call_checked(cfg, "sched", scheduler, optimizer=probe_opt)
    return Parts(datamodule, net, loss, optimizer, scheduler)
