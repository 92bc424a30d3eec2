"""What every task shares: building the optimizer and schedule from their config partials."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import nn


class Task(L.LightningModule):
    """Base of the tasks: the net, the loss, and the optimizer and schedule factories.

    The factories are partials (Hydra `_partial_: true`) that receive the parameters or the
    optimizer here, so the config never needs to know the model. A subclass also declares, for
    the preflight and metrics.json: `target_kind` ("class", "real", "flow"), `loss_hint` (the
    losses that fit), `reported` (the metric keys copied to metrics.json), `best_key` and
    `best_value`, and `best_test_keys` (test metrics also measured on the best checkpoint).
    """

    target_kind = "class"
    loss_hint = ""
    reported: tuple[str, ...] = ()
    best_key = ""
    best_test_keys: dict[str, str] = {}  # test metric -> its key for the best checkpoint

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None,
        monitor: str,
        monitor_mode: str,
    ):
        super().__init__()
        self.net, self.loss = net, loss
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.monitor, self.monitor_mode = monitor, monitor_mode

    @classmethod
    def provided_inputs(cls, **task_cfg) -> tuple[str, ...]:
        """The extra loss inputs (`loss.requires`) this task can give, for its config."""
        return ()

    # The best validation value so far (of `best_key`); set by the subclass, kept in checkpoints.
    best_value: float

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[self.best_key] = self.best_value

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.best_value = checkpoint.get(self.best_key, self.best_value)

    def on_train_epoch_start(self) -> None:
        # Logged here rather than by LearningRateMonitor, which refuses to run without a logger.
        lr = self.optimizers().param_groups[0]["lr"]
        self.log("train/lr", lr, on_epoch=True, sync_dist=True)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }
