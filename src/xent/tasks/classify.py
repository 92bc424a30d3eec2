"""Supervised classification with any `loss(logits, target) -> scalar`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError

from xent.tasks.features import FeatureMapTap


def classification_metrics(num_classes: int) -> MetricCollection:
    """Top-1, top-5 (when there are at least 5 classes) and 15-bin L1 ECE on probabilities."""
    metrics: dict[str, Any] = {
        "acc": MulticlassAccuracy(num_classes=num_classes, top_k=1, average="micro"),
        "ece": MulticlassCalibrationError(num_classes=num_classes, n_bins=15, norm="l1"),
    }
    if num_classes >= 5:
        metrics["acc5"] = MulticlassAccuracy(num_classes=num_classes, top_k=5, average="micro")
    return MetricCollection(metrics)


class ClassifyTask(L.LightningModule):
    """Trains `net` with `loss`; logs loss, acc, acc5, NLL and ECE for train/val/test.

    `optimizer` and `scheduler` are partials (Hydra `_partial_: true`) that receive the
    parameters / optimizer here, so the config never needs to know the model.

    A loss declares the extra inputs it needs in `loss.requires`; this task can give each
    sample's dataset `index` and the net's last conv feature map as `features`.
    """

    provides: tuple[str, ...] = ("index", "features")

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        num_classes: int,
        scheduler: Callable[..., Any] | None = None,
        monitor: str = "val/acc",
        monitor_mode: str = "max",
    ):
        super().__init__()
        self.net, self.loss = net, loss
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.num_classes = num_classes
        self.monitor, self.monitor_mode = monitor, monitor_mode
        self.train_metrics = MetricCollection(
            {"acc": MulticlassAccuracy(num_classes=num_classes, average="micro")}
        )
        self.val_metrics = classification_metrics(num_classes)
        self.test_metrics = classification_metrics(num_classes)
        self.val_nll, self.test_nll = MeanMetric(), MeanMetric()
        self.best_val_acc = 0.0
        self.loss_inputs = tuple(getattr(loss, "requires", ()))
        self.feature_tap = FeatureMapTap(net) if "features" in self.loss_inputs else None

    def setup(self, stage: str) -> None:
        # Per-sample loss state (truncated GCE weights, ALDR-KL's λ) is sized by the training
        # set; setup runs before a resumed checkpoint is loaded, so the restored state fits.
        if stage == "fit" and hasattr(self.loss, "setup_samples"):
            self.loss.setup_samples(len(self.trainer.datamodule.splits["train"].labels))

    def compute_loss(self, logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        extra: dict[str, torch.Tensor] = {}
        if "index" in self.loss_inputs:
            extra["index"] = index
        if self.feature_tap is not None:
            extra["features"] = self.feature_tap.value
        return self.loss(logits, y, **extra)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def on_train_epoch_start(self) -> None:
        # Logged here rather than by LearningRateMonitor, which refuses to run without a logger.
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_epoch=True)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y, index = batch
        logits = self.net(x)
        loss = self.compute_loss(logits, y, index)
        self.train_metrics.update(logits, y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_metrics["acc"], on_step=False, on_epoch=True)
        return loss

    def _evaluate(self, batch, stage: str, metrics: MetricCollection, nll: MeanMetric) -> None:
        x, y, index = batch
        logits = self.net(x)
        # Per-sample state is keyed by *training* indices: no eval loss for such losses.
        if "index" not in self.loss_inputs:
            self.log(
                f"{stage}/loss",
                self.compute_loss(logits, y, index),
                on_epoch=True,
                batch_size=len(y),
            )
        nll.update(F.cross_entropy(logits, y, reduction="none"))
        metrics["ece"].update(logits.softmax(dim=-1), y)
        for name, metric in metrics.items():
            if name != "ece":
                metric.update(logits, y)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics, self.val_nll)

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metrics, self.test_nll)

    def _log_epoch(self, stage: str, metrics: MetricCollection, nll: MeanMetric) -> dict:
        values = {f"{stage}/{k}": v for k, v in metrics.compute().items()}
        values[f"{stage}/nll"] = nll.compute()
        self.log_dict(values, prog_bar=stage == "val")
        metrics.reset()
        nll.reset()
        return values

    def on_validation_epoch_end(self) -> None:
        values = self._log_epoch("val", self.val_metrics, self.val_nll)
        if not self.trainer.sanity_checking:
            self.best_val_acc = max(self.best_val_acc, float(values["val/acc"]))
        self.log("best/val_acc", self.best_val_acc)

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test", self.test_metrics, self.test_nll)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["best_val_acc"] = self.best_val_acc

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.best_val_acc = checkpoint.get("best_val_acc", 0.0)
