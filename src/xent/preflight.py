"""Checks that run before anything is written: bad input fails here, in one line.

`build_parts` is also how a job builds its pieces, so the checks and the run cannot disagree.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from xent.errors import ConfigError, XentError, root_message
from xent.pretrained import adapts_source_model, check_teacher, missing_node, needs_teacher

EVAL_CKPT_CHOICES = ("last", "best")


@dataclass
class Parts:
    """Everything a task is built from, already instantiated."""

    datamodule: Any
    net: torch.nn.Module
    loss: torch.nn.Module
    optimizer: Any
    scheduler: Any


def _choice(cfg: DictConfig, group: str) -> str:
    """`model=resnet20`-style name of a group's choice, for messages."""
    from hydra.core.hydra_config import HydraConfig

    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None)
    if choices is None and HydraConfig.initialized():
        choices = HydraConfig.get().runtime.choices
    choices = choices or {}
    return f"{group}={choices[group]}" if group in choices else group


def instantiate_group(cfg: DictConfig, group: str, **kwargs: Any) -> Any:
    """Instantiate `cfg[group]`; any failure becomes one line that names the group choice."""
    node = cfg.get(group)
    if node is None or OmegaConf.select(node, "_target_", default=None) is None:
        return None
    check_target_imports(group, str(node._target_))
    return call_checked(cfg, group, instantiate, config=node, **kwargs)


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
        raise ConfigError(f"{_choice(cfg, group)}: {root_message(err)}") from err


def check_values(cfg: DictConfig) -> None:
    """Range checks on the keys every run has; types are checked against defaults separately."""
    seed = cfg.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be an integer >= 0")
    epochs = OmegaConf.select(cfg, "trainer.max_epochs")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ConfigError(f"trainer.max_epochs={epochs!r} must be an integer >= 1")
    lr = OmegaConf.select(cfg, "optim.lr")
    if not isinstance(lr, int | float) or isinstance(lr, bool) or lr <= 0:
        raise ConfigError(f"optim.lr={lr!r} must be a number > 0")
    if cfg.get("eval_ckpt") not in EVAL_CKPT_CHOICES:
        raise ConfigError(f"eval_ckpt={cfg.get('eval_ckpt')!r} must be one of {EVAL_CKPT_CHOICES}")


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
            continue  # resume: false | true | auto, checked by xent.rundir.resume_mode
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
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True


def _kind_name(default: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number"}.get(
        type(default), type(default).__name__
    )


def _input_shape(cfg: DictConfig) -> tuple[int, ...]:
    """data.input_shape, checked: every probe below feeds zeros of this shape."""
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


def _zeros_forward(net: torch.nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            return net(torch.zeros(shape))
    finally:
        net.train(was_training)


def probe_model(cfg: DictConfig, net: torch.nn.Module, loss: torch.nn.Module) -> None:
    """One forward on zeros of the data's shape: a model/data mismatch fails here, not mid-run."""
    data, shape = cfg.data, _input_shape(cfg)
    model, dataset = _choice(cfg, "model"), _choice(cfg, "data")
    try:
        outputs = _zeros_forward(net, (2, *shape))
    except Exception as err:  # noqa: BLE001
        raise ConfigError(
            f"{model} cannot take {dataset} input of shape {'x'.join(map(str, shape))}: "
            f"{root_message(err)}"
        ) from err
    if tuple(outputs.shape) != (2, data.num_classes):
        wanted = (
            f"has {data.num_classes} classes"
            if getattr(loss, "target_kind", "class") == "class"
            else f"needs {data.num_classes} for {_choice(cfg, 'loss')}"
        )
        raise ConfigError(
            f"{model} returns {tuple(outputs.shape)[1:]} outputs per sample but {dataset} {wanted}"
        )
    value = call_checked(cfg, "loss", lambda: _probe_loss(cfg, net, loss, outputs))
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        raise ConfigError(f"{_choice(cfg, 'loss')}: must return a scalar, got {value!r}")


def probe_velocity(cfg: DictConfig, net: torch.nn.Module, loss: torch.nn.Module) -> None:
    """A velocity call v(t, x) on a few points of the data's shape, then one loss value.

    Four points, so OT-CFM's exact plan costs nothing; the draws use their own generator,
    leaving the run's seeded global RNG untouched. Then the task checks its sampler settings.
    """
    from hydra.utils import get_class

    shape, model, dataset = _input_shape(cfg), _choice(cfg, "model"), _choice(cfg, "data")
    gen = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(4, *shape, generator=gen), torch.randn(4, *shape, generator=gen)
    try:
        with torch.no_grad():
            velocity = net(torch.zeros(4), x0)
    except Exception as err:  # noqa: BLE001
        hint = (
            ""
            if model in ("model=velocity_mlp", "model=velocity_unet")
            else "; task=flow needs a velocity net v(t, x): model=velocity_mlp or velocity_unet"
        )
        raise ConfigError(
            f"{model} cannot take {dataset} points of shape {'x'.join(map(str, shape))} as "
            f"v(t, x): {root_message(err)}{hint}"
        ) from err
    if tuple(velocity.shape) != tuple(x0.shape):
        raise ConfigError(
            f"{model} returns velocities of shape {tuple(velocity.shape)[1:]} but {dataset} "
            f"points have shape {shape}"
        )
    probe = copy.deepcopy(loss)
    with torch.no_grad():
        value = call_checked(cfg, "loss", lambda: probe(net, x0, x1, generator=gen))
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        raise ConfigError(f"{_choice(cfg, 'loss')}: must return a scalar, got {value!r}")
    check_sampler = getattr(get_class(cfg.task._target_), "check_sampler", None)
    if check_sampler is not None:
        check_sampler(**{k: v for k, v in cfg.task.items() if not str(k).startswith("_")})


_KIND_WORDS = {
    "class": "class labels",
    "real": "real-valued targets",
    "flow": "source/target point clouds",
}
# What to pick instead when a data set and a task do not fit, by the data's kind.
_FITTING = {"class": "task=classify", "real": "task=regress", "flow": "task=flow"}


def loss_kind(loss: torch.nn.Module) -> str:
    """What a loss trains on: its `target_kind` ("class" for torch's own losses)."""
    return getattr(loss, "target_kind", "class")


def check_task_fits_data(cfg: DictConfig) -> None:
    """Class labels for classify, real targets for regress, point clouds for flow; images for
    the conv models."""
    from hydra.utils import get_class

    task_kind = getattr(get_class(cfg.task._target_), "target_kind", "class")
    data_kind = getattr(get_class(cfg.data._target_), "target_kind", "class")
    images = "in_channels" in cfg.data
    model_cfg = OmegaConf.to_container(cfg.model, resolve=False)
    if task_kind == "flow" and images:  # flow matching maps noise to images; labels unused
        if "${data.dim}" in model_cfg.values():
            raise ConfigError(
                f"{_choice(cfg, 'model')} takes 2D points, but {_choice(cfg, 'data')} has images "
                f"of shape {'x'.join(map(str, _input_shape(cfg)))}: use model=velocity_unet"
            )
    elif data_kind != task_kind:
        fitting = (
            "data=toy2d, or images: data=digits, cifar10"
            if task_kind == "flow"
            else _FITTING[data_kind]
        )
        words = _KIND_WORDS[task_kind] + (" or images" if task_kind == "flow" else "")
        raise ConfigError(
            f"{_choice(cfg, 'data')} has {_KIND_WORDS[data_kind]} but {_choice(cfg, 'task')} "
            f"trains on {words}: use {fitting}"
        )
    image_keys = ("${data.in_channels}", "${data.image_size}")
    if not images and any(v in image_keys for v in model_cfg.values()):
        shape = list(_input_shape(cfg))
        what, fitting = (
            (f"has points of shape {shape}", "model=velocity_mlp")
            if task_kind == "flow"
            else (f"is a table (rows of shape {shape})", "model=mlp")
        )
        raise ConfigError(
            f"{_choice(cfg, 'model')} takes images, but {_choice(cfg, 'data')} {what}: "
            f"use {fitting}"
        )


def check_loss_inputs(cfg: DictConfig, loss: torch.nn.Module) -> None:
    """A loss that needs a target or input the task cannot give fails now, naming both."""
    from hydra.utils import get_class

    task_cls = get_class(cfg.task._target_)
    loss_name, task_name = _choice(cfg, "loss"), _choice(cfg, "task")
    kind = loss_kind(loss)
    if kind != getattr(task_cls, "target_kind", "class"):
        raise ConfigError(
            f"{loss_name} trains on {_KIND_WORDS[kind]} but {task_name} needs {task_cls.loss_hint}"
        )
    task_args = {k: v for k, v in cfg.task.items() if not str(k).startswith("_")}
    provided = set(task_cls.provided_inputs(**task_args))
    for need in getattr(loss, "requires", ()):
        if need in provided:
            continue
        if need == "binary_target":
            raise ConfigError(
                f"{loss_name} needs a binary target (2 classes), but {_choice(cfg, 'data')} "
                f"has {cfg.data.num_classes} classes"
            )
        raise ConfigError(
            f"{loss_name} needs '{need}', which {task_name} does not "
            f"provide (it gives: {', '.join(sorted(provided)) or 'nothing extra'})"
        )


def _probe_loss(cfg: DictConfig, net: torch.nn.Module, loss: torch.nn.Module, outputs):
    """Call a copy of the loss with every input it declares (a copy: per-sample state stays)."""
    from xent.tasks.features import FeatureMapTap

    probe = copy.deepcopy(loss)
    real = getattr(probe, "target_kind", "class") == "real"
    target = torch.zeros(len(outputs), dtype=torch.float32 if real else torch.long)
    extra: dict[str, Any] = {}
    requires = getattr(probe, "requires", ())
    if "index" in requires:
        if hasattr(probe, "setup_samples"):
            probe.setup_samples(len(outputs))
        extra["index"] = torch.arange(len(outputs))
    if "teacher_logits" in requires:
        extra["teacher_logits"] = torch.zeros_like(outputs)
    if "epoch" in requires:
        extra["epoch"] = 1
    if "features" in requires:
        try:
            tap = FeatureMapTap(net)
        except ValueError as err:
            raise ConfigError(
                f"{_choice(cfg, 'loss')} needs 'features' (a conv feature map), but "
                f"{_choice(cfg, 'model')} {err}"
            ) from err
        try:
            _zeros_forward(net, (len(outputs), *_input_shape(cfg)))
        finally:
            tap.remove()
        extra["features"] = tap.value
    return probe(outputs, target, **extra)


def check_adaptation(cfg: DictConfig, net: torch.nn.Module, load_source: bool = True) -> None:
    """task=tta: the setting is known, the method and its hyperparameters build on a copy of
    the model, and (with `load_source`) the source model is reachable and loads."""
    from hydra.utils import get_class

    task_cls = get_class(cfg.task._target_)
    task_cfg = {k: v for k, v in cfg.task.items() if not str(k).startswith("_") and k != "method"}
    task_cls.check_setting(**task_cfg)
    if cfg.get("tta") is None:
        raise ConfigError("task=tta needs a method: tta=source, norm, tent, cotta or rmt")
    optimizer = instantiate_group(cfg, "optim")
    method = instantiate_group(cfg, "tta")
    call_checked(cfg, "tta", method, model=copy.deepcopy(net), optimizer=optimizer)
    if load_source:
        check_teacher(cfg, "source")


def check_optimized_metric(cfg: DictConfig) -> None:
    """A sweeper's objective must be a metric the task reports: a misspelt key would otherwise
    surface only after every trial had trained, each recorded as a failed trial."""
    from hydra.utils import get_class

    key = cfg.get("optimized_metric")
    task_cls = get_class(cfg.task._target_)
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
    choice = _choice(cfg, "trainer")
    instead = (
        "trainer=cpu, or trainer=default (accelerator=auto: a GPU where there is one)"
        if choice == "trainer=gpu"
        else "trainer.accelerator=auto (a GPU where there is one) or trainer.accelerator=cpu"
    )
    raise ConfigError(
        f"trainer.accelerator={accelerator} ({choice}): no CUDA device is visible here; "
        f"use {instead}"
    )


def build_parts(cfg: DictConfig, load_teacher: bool = True) -> Parts:
    """Instantiate data, model, loss, optimizer and schedule, checking each as it is built
    (and, with `load_teacher`, that the distillation teacher loads)."""
    from hydra.utils import get_class

    check_values(cfg)
    check_accelerator(cfg)
    check_ckpt_path(cfg)
    check_optimized_metric(cfg)
    datamodule = instantiate_group(cfg, "data")
    call_checked(cfg, "data", datamodule.prepare_data)
    check_task_fits_data(cfg)
    net = instantiate_group(cfg, "model")
    loss = instantiate_group(cfg, "loss")
    check_loss_inputs(cfg, loss)
    if loss_kind(loss) == "flow":
        probe_velocity(cfg, net, loss)
    else:
        probe_model(cfg, net, loss)
    if needs_teacher(loss) and load_teacher:  # a job loads it once, in obtain_teacher
        check_teacher(cfg)
    if adapts_source_model(cfg):
        check_adaptation(cfg, net, load_source=load_teacher)
    elif cfg.get("source") is None and not getattr(get_class(cfg.task._target_), "fits", True):
        raise missing_node("source")  # `~source`: the run would adapt an untrained net
    optimizer = instantiate_group(cfg, "optim")
    scheduler = instantiate_group(cfg, "sched")
    # Call the partials once against the real parameters so torch's own checks (lr, momentum,
    # betas, milestones, ...) fire now; the task calls them again in configure_optimizers.
    probe_opt = call_checked(cfg, "optim", optimizer, params=net.parameters())
    if scheduler is not None:
        call_checked(cfg, "sched", scheduler, optimizer=probe_opt)
    return Parts(datamodule, net, loss, optimizer, scheduler)
