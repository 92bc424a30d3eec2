"""Small named checks on config values and on a composed config, each failing with one line.

The value checks (`integer`, `number`, `one_of`, `flag`, built on `bad_value`) are the one place
a config value is checked, wherever it is read: the preflight, a task's checks, a loss, a TTA
method, a data module or a network. Each fails with `"{key}={value!r} must be {what}"`, raised
as `error` (default `ConfigError`; the losses and networks pass `ValueError`, which the preflight's
`call_checked` prefixes with the group choice, e.g. "loss=gce: loss.q=2 must be in (0, 1]").
The config checks (`call_checked`, `instantiate_group`, `input_shape`, ...) build on them, so a
message says the same thing wherever the check runs. Docs: docs/pipeline.md §3.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from xent.errors import ConfigError, XentError, root_message

if TYPE_CHECKING:  # torch is imported where a check needs it: xent-corrupt never loads it
    import torch

T = TypeVar("T")
Show = Callable[[Any], str]


# -- value checks -------------------------------------------------------------------------------
def plain(value: Any) -> str:
    """A value as a message writes it without quotes: floats with `:g` (0.001, 1), else str."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def bad_value(
    key: str, value: Any, what: str, *, error: type[Exception] = ConfigError, show: Show = repr
) -> Exception:
    """The one-line error of every check: `key=value must be what` (the value as `show` writes
    it), of class `error`. Returned, for the caller to raise."""
    return error(f"{key}={show(value)} must be {what}")


def is_integer(value: Any) -> bool:
    """An int (numpy's too), and not a bool: `True` is no count."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite real number (ints included), not a bool: nan and inf are no setting."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return real and math.isfinite(value)


def range_words(
    above: Any = None, at_least: Any = None, at_most: Any = None, below: Any = None
) -> str:
    """`> 0`, `>= 1`, `< 1`, `in (0, 1]`: the bounds as messages write them ("" for none)."""
    low, low_sign, low_bracket = (above, ">", "(") if above is not None else (at_least, ">=", "[")
    high, high_sign, high_bracket = (below, "<", ")") if below is not None else (at_most, "<=", "]")
    if low is None and high is None:
        return ""
    if high is None:
        return f"{low_sign} {plain(low)}"
    if low is None:
        return f"{high_sign} {plain(high)}"
    return f"in {low_bracket}{plain(low)}, {plain(high)}{high_bracket}"


def _in_range(value: Any, above: Any, at_least: Any, at_most: Any, below: Any) -> bool:
    return (
        (above is None or value > above)
        and (at_least is None or value >= at_least)
        and (at_most is None or value <= at_most)
        and (below is None or value < below)
    )


def integer(
    key: str,
    value: Any,
    *,
    at_least: int | None = None,
    at_most: int | None = None,
    optional: bool = False,
    what: str | None = None,
    error: type[Exception] = ConfigError,
    show: Show = repr,
) -> Any:
    """`value` as an int if it is an integer (not a bool) within the bounds, or None when
    `optional`; else `key=value must be an integer >= 1` (or `null or an integer >= 1`, or
    `what` where the caller words it)."""
    if optional and value is None:
        return None
    if not is_integer(value) or not _in_range(value, None, at_least, at_most, None):
        if what is None:
            what = " ".join(filter(None, ("an integer", range_words(None, at_least, at_most))))
            what = f"null or {what}" if optional else what
        raise bad_value(key, value, what, error=error, show=show)
    return int(value)


def number(
    key: str,
    value: Any,
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
    optional: bool = False,
    what: str | None = None,
    error: type[Exception] = ConfigError,
    show: Show = repr,
) -> Any:
    """`value` as a float if it is a finite real number (not a bool) within the bounds, or None
    when `optional`; else `key=value must be > 0` (`in (0, 1]`, `a finite number` without
    bounds, `null or ...` when optional, or `what` where the caller words it)."""
    if optional and value is None:
        return None
    if not is_number(value) or not _in_range(value, above, at_least, at_most, below):
        if what is None:
            what = range_words(above, at_least, at_most, below) or "a finite number"
            what = f"null or {what}" if optional else what
        raise bad_value(key, value, what, error=error, show=show)
    return float(value)


def one_of(
    key: str,
    value: T,
    choices: Collection[Any],
    *,
    what: str | None = None,
    error: type[Exception] = ConfigError,
    show: Show = repr,
) -> T:
    """`value` if it is one of `choices`, else `key=value must be one of a, b, c`."""
    try:
        known = value in choices
    except TypeError:  # an unhashable value and a set of choices
        known = False
    if not known:
        what = what or "one of " + ", ".join(map(plain, choices))
        raise bad_value(key, value, what, error=error, show=show)
    return value


def flag(key: str, value: Any, *, error: type[Exception] = ConfigError, show: Show = repr) -> bool:
    """`value` if it is a bool, else `key=value must be true or false` (1 and "yes" are not)."""
    if not isinstance(value, bool):
        raise bad_value(key, value, "true or false", error=error, show=show)
    return value


# -- config checks ------------------------------------------------------------------------------


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
    import torch

    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            return net(torch.zeros(shape))
    finally:
        net.train(was_training)


def check_scalar_loss(cfg: DictConfig, value: Any) -> None:
    """A loss returns one number per batch; anything else fails before training, not in it."""
    import torch

    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        raise ConfigError(f"{choice_name(cfg, 'loss')}: must return a scalar, got {value!r}")
