"""Regression with any loss that maps net outputs to a scalar prediction.

A regression loss is called as `loss(outputs, target) -> scalar` on standardised targets and
says how outputs become a prediction with `loss.predict(outputs)`: MSE reads one output,
HL-Gauss takes the expectation of a histogram over bins. Errors are reported in the target's
own units (the data module's `target_scale`), so RMSEs compare across losses and papers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection

from xent.tasks.base import Task


def regression_metrics() -> MetricCollection:
    return MetricCollection({"mse": MeanSquaredError(), "mae": MeanAbsoluteError()})


class RegressTask(Task):
    """Trains `net` with a regression `loss`; logs loss, RMSE and MAE for train/val/test."""

    target_kind = "real"
    trains_on = "real-valued targets"
    loss_hint = "a regression loss (mse, hlgauss)"
    reported = ("test/rmse", "test/mae", "test/loss")
    best_key = "best/val_rmse"
    best_test_keys = {"test/rmse": "best/test_rmse"}
    summary_keys = ("test/rmse", "test/mae")

    @classmethod
    def provided_inputs(cls, **_: Any) -> tuple[str, ...]:
        return ()

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        monitor: str = "val/rmse",
        monitor_mode: str = "min",
    ):
        super().__init__(net, loss, optimizer, scheduler, monitor, monitor_mode)
        self.val_metrics, self.test_metrics = regression_metrics(), regression_metrics()
        self.target_scale = 1.0
        self.best_value = math.inf

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        self.target_scale = float(getattr(datamodule, "target_scale", 1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.loss.predict(self.net(x)) * self.target_scale

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y, _ = batch
        loss = self.loss(self.net(x), y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def _evaluate(self, batch, stage: str, metrics: MetricCollection) -> None:
        x, y, _ = batch
        outputs = self.net(x)
        self.log(
            f"{stage}/loss", self.loss(outputs, y), on_epoch=True, batch_size=len(y), sync_dist=True
        )
        # Standardised units times the scale: the target's own units (the shift cancels).
        metrics.update(self.loss.predict(outputs) * self.target_scale, y * self.target_scale)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metrics)

    def _log_epoch(self, stage: str, metrics: MetricCollection) -> dict:
        values = metrics.compute()
        logged = {f"{stage}/rmse": values["mse"].sqrt(), f"{stage}/mae": values["mae"]}
        self.log_dict(logged, prog_bar=stage == "val", sync_dist=True)
        metrics.reset()
        return logged

    def on_validation_epoch_end(self) -> None:
        values = self._log_epoch("val", self.val_metrics)
        if not self.trainer.sanity_checking:
            self.best_value = min(self.best_value, float(values["val/rmse"]))
        self.log(self.best_key, self.best_value, sync_dist=True)

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test", self.test_metrics)
