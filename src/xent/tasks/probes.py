"""The default checks of a task (`Task.check_data`, `Task.check`): the data holds what the task
trains on, and the built model and loss run together on zeros of the data's shape."""

from __future__ import annotations

import copy
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from xent.checks import (
    call_checked,
    check_scalar_loss,
    choice_name,
    input_shape,
    shape_words,
    zeros_forward,
)
from xent.errors import ConfigError, root_message
from xent.tasks.features import FeatureMapTap

# How messages name what a data module (its `target_kind`) holds, and the task that trains on it.
DATA_KIND_WORDS = {
    "class": "class labels",
    "real": "real-valued targets",
    "flow": "source/target point clouds",
}
TASK_FOR_KIND = {"class": "task=classify", "real": "task=regress", "flow": "task=flow"}


def data_kind(cfg: DictConfig) -> str:
    """What the data module holds: its class's `target_kind` ("class" when it says nothing)."""
    return getattr(get_class(str(cfg.data._target_)), "target_kind", "class")


def loss_kind(loss: torch.nn.Module) -> str:
    """What a loss trains on: its `target_kind` ("class" for torch's own losses)."""
    return getattr(loss, "target_kind", "class")


def takes_images(model_cfg: dict[str, Any]) -> bool:
    """A model config that reads the data's image keys (channels, size) is an image model."""
    return any(v in ("${data.in_channels}", "${data.image_size}") for v in model_cfg.values())


def check_data_fits(
    cfg: DictConfig,
    task_cls: Any,
    *,
    instead: str | None = None,
    not_images: tuple[str, str] | None = None,
) -> None:
    """The data's kind is the task's (`instead`: what to pick otherwise, by default the task
    for the data's kind); an image model gets images (`not_images`: what the data is and the
    model to pick instead, by default a table and model=mlp)."""
    kind = data_kind(cfg)
    if kind != task_cls.target_kind:
        raise ConfigError(
            f"{choice_name(cfg, 'data')} has {DATA_KIND_WORDS.get(kind, kind)} but "
            f"{choice_name(cfg, 'task')} trains on {task_cls.trains_on}: use "
            f"{instead or TASK_FOR_KIND.get(kind, f'a task for {kind} data')}"
        )
    if "in_channels" in cfg.data:
        return
    if takes_images(OmegaConf.to_container(cfg.model, resolve=False)):
        shape = list(input_shape(cfg))
        what, fitting = not_images or (f"is a table (rows of shape {shape})", "model=mlp")
        raise ConfigError(
            f"{choice_name(cfg, 'model')} takes images, but {choice_name(cfg, 'data')} {what}: "
            f"use {fitting}"
        )


def probe_model(cfg: DictConfig, net: torch.nn.Module, loss: torch.nn.Module) -> None:
    """One forward on zeros of the data's shape: a model/data mismatch fails here, not mid-run;
    then one loss value on those outputs."""
    data, shape = cfg.data, input_shape(cfg)
    model, dataset = choice_name(cfg, "model"), choice_name(cfg, "data")
    try:
        outputs = zeros_forward(net, (2, *shape))
    except Exception as err:  # noqa: BLE001
        raise ConfigError(
            f"{model} cannot take {dataset} input of shape {shape_words(shape)}: "
            f"{root_message(err)}"
        ) from err
    if tuple(outputs.shape) != (2, data.num_classes):
        wanted = (
            f"has {data.num_classes} classes"
            if loss_kind(loss) == "class"
            else f"needs {data.num_classes} for {choice_name(cfg, 'loss')}"
        )
        raise ConfigError(
            f"{model} returns {tuple(outputs.shape)[1:]} outputs per sample but {dataset} {wanted}"
        )
    value = call_checked(cfg, "loss", lambda: _probe_loss(cfg, net, loss, outputs))
    check_scalar_loss(cfg, value)


def _probe_loss(cfg: DictConfig, net: torch.nn.Module, loss: torch.nn.Module, outputs):
    """Call a copy of the loss with every input it declares (a copy: per-sample state stays)."""
    probe = copy.deepcopy(loss)
    real = loss_kind(probe) == "real"
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
                f"{choice_name(cfg, 'loss')} needs 'features' (a conv feature map), but "
                f"{choice_name(cfg, 'model')} {err}"
            ) from err
        try:
            zeros_forward(net, (len(outputs), *input_shape(cfg)))
        finally:
            tap.remove()
        extra["features"] = tap.value
    return probe(outputs, target, **extra)
