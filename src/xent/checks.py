"""Small named checks on a composed config, each failing with its one-line `ConfigError`.

The preflight (`xent.runner.preflight`) and the tasks' own checks (`Task.check`) both build on
these, so a message says the same thing wherever the check runs. Docs: docs/pipeline.md §3.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from xent.errors import ConfigError, XentError, root_message


def choice_name(cfg: DictConfig, group: str) -> str:
    """`model=resnet20`-style name of a group's choice, for messages; the bare group name when
    the choice is unknown (a config composed without Hydra's runtime)."""
    from hydra.core.hydra_config import HydraConfig

    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None)
    if choices is None and HydraConfig.initialized():
        choices = HydraConfig.get().runtime.choices
    choices = choices or {}
    return f"{group}={choices[group]}" if group in choices else group


def check_target_imports(group: str, target: str) -> None:
    """`loss._target_=mypkg.MyLoss` names code that must be importable: say which key named
    what could not be found, and where Python looks, instead of Hydra's "Error locating"."""
    from hydra._internal.utils import _locate  # get_object: the same, but logs to stderr

    try:
        _locate(target)
    except Exception as err:  # noqa: BLE001 - reported to the user, not swallowed
        raise ConfigError(
            f"{group}._target_={target} cannot be imported ({root_message(err)}); its package "
            "must be installed or on PYTHONPATH"
        ) from err


def call_checked(cfg: DictConfig, group: str, fn: Any, **kwargs: Any) -> Any:
    """Call `fn`; a failure becomes one line that names the group choice it came from."""
    try:
        return fn(**kwargs)
    except XentError:
        raise
    except Exception as err:  # noqa: BLE001 - reported to the user, not swallowed
        raise ConfigError(f"{choice_name(cfg, group)}: {root_message(err)}") from err


def instantiate_group(cfg: DictConfig, group: str, **kwargs: Any) -> Any:
    """Instantiate `cfg[group]`; any failure becomes one line that names the group choice."""
    from hydra.utils import instantiate

    node = cfg.get(group)
    if node is None or OmegaConf.select(node, "_target_", default=None) is None:
        return None
    check_target_imports(group, str(node._target_))
    return call_checked(cfg, group, instantiate, config=node, **kwargs)


def task_class(cfg: DictConfig) -> type:
    """The class `task._target_` names (the runner asks it everything about the task)."""
    from hydra.utils import get_class

    return get_class(str(cfg.task._target_))


def task_arguments(cfg: DictConfig, *leave_out: str) -> dict[str, Any]:
    """The `task` node's own arguments (no `_target_`-style keys), for a task's checks."""
    return {
        str(k): v
        for k, v in cfg.task.items()
        if not str(k).startswith("_") and str(k) not in leave_out
    }


def input_shape(cfg: DictConfig) -> tuple[int, ...]:
    """data.input_shape, checked: every probe feeds zeros of this shape."""
    shape = OmegaConf.select(cfg, "data.input_shape", default=None)
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        dims = ()
    if not dims or any(d < 1 for d in dims):
        shown = OmegaConf.to_container(shape) if OmegaConf.is_list(shape) else shape
        shown = "null" if shown is None else shown
        raise ConfigError(
            f"data.input_shape={shown}: expected the shape of one input, a list of positive "
            f"integers (e.g. [in_channels, image_size, image_size])"
        )
    return dims


def shape_words(shape: tuple[int, ...]) -> str:
    """`3x32x32`: a shape as messages write it."""
    return "x".join(map(str, shape))


def zeros_forward(net: torch.nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """The net's output for zeros of `shape`, in eval mode and without gradients; the net's
    train/eval mode is restored afterwards."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            return net(torch.zeros(shape))
    finally:
        net.train(was_training)


def check_scalar_loss(cfg: DictConfig, value: Any) -> None:
    """A loss returns one number per batch; anything else fails before training, not in it."""
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        raise ConfigError(f"{choice_name(cfg, 'loss')}: must return a scalar, got {value!r}")
