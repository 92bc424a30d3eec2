"""Supervised classification with any `loss(logits, target) -> scalar`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    BinaryF1Score,
    MulticlassAccuracy,
    MulticlassCalibrationError,
)

from xent.tasks.base import Task
from xent.tasks.features import FeatureMapTap

# Metrics fed class-1 probabilities or all probabilities rather than logits.
_TAKES_POSITIVE_PROB = ("f1",)
_TAKES_PROBS = ("ece",)


def classification_metrics(num_classes: int) -> MetricCollection:
    """Top-1, 15-bin L1 ECE on probabilities; top-5 from 5 classes on; F1 of class 1 and
    balanced accuracy (mean per-class recall) for binary tasks, where accuracy hides a
    classifier that ignores the rare class."""
    metrics: dict[str, Any] = {
        "acc": MulticlassAccuracy(num_classes=num_classes, top_k=1, average="micro"),
        "ece": MulticlassCalibrationError(num_classes=num_classes, n_bins=15, norm="l1"),
    }
    if num_classes >= 5:
        metrics["acc5"] = MulticlassAccuracy(num_classes=num_classes, top_k=5, average="micro")
    if num_classes == 2:
        metrics["f1"] = BinaryF1Score(threshold=0.5)
        metrics["bal_acc"] = MulticlassAccuracy(num_classes=2, average="macro")
    return MetricCollection(metrics)


class ClassifyTask(Task):
    """Trains `net` with `loss`; logs loss, acc, acc5, NLL and ECE for train/val/test.

    A loss declares the extra inputs it needs in `loss.requires`; this task can give each
    sample's dataset `index`, the net's last conv feature map as `features`, and, with two
    classes, a `binary_target`.
    """

    target_kind = "class"
    loss_hint = "a classification loss (ce, focal, gce, ...)"
    reported = (
        "test/acc",
        "test/acc5",
        "test/nll",
        "test/ece",
        "test/f1",
        "test/bal_acc",
        "test/loss",
    )
    best_key = "best/val_acc"
    best_test_keys = {"test/acc": "best/test_acc"}
    summary_keys = (
        "test/acc",
        "best/test_acc",
        "test/acc5",
        "test/nll",
        "test/ece",
        "test/f1",
        "test/bal_acc",
    )

    @classmethod
    def provided_inputs(cls, num_classes: int, **_: Any) -> tuple[str, ...]:
        return ("index", "features") + (("binary_target",) if num_classes == 2 else ())

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
        super().__init__(net, loss, optimizer, scheduler, monitor, monitor_mode)
        self.num_classes = num_classes
        self.train_metrics = MetricCollection(
            {"acc": MulticlassAccuracy(num_classes=num_classes, average="micro")}
        )
        self.val_metrics = classification_metrics(num_classes)
        self.test_metrics = classification_metrics(num_classes)
        self.val_nll, self.test_nll = MeanMetric(), MeanMetric()
        self.best_value = 0.0
        self.loss_inputs = tuple(getattr(loss, "requires", ()))
        self.feature_tap = FeatureMapTap(net) if "features" in self.loss_inputs else None

    def setup(self, stage: str) -> None:
        # Per-sample loss state (truncated GCE weights, ALDR-KL's λ) is sized by the training
        # set; setup runs before a resumed checkpoint is loaded, so the restored state fits.
        if stage == "fit" and hasattr(self.loss, "setup_samples"):
            self.loss.setup_samples(self.trainer.datamodule.num_train_samples)

    def loss_extras(self, x: torch.Tensor, index: torch.Tensor) -> dict[str, Any]:
        """The keyword inputs the loss declared in `requires`, for this batch."""
        extra: dict[str, Any] = {}
        if "index" in self.loss_inputs:
            extra["index"] = index
        if self.feature_tap is not None:
            extra["features"] = self.feature_tap.value
        return extra

    def compute_loss(
        self, x: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor
    ) -> torch.Tensor:
        return self.loss(logits, y, **self.loss_extras(x, index))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y, index = batch
        logits = self.net(x)
        loss = self.compute_loss(x, logits, y, index)
        self.train_metrics.update(logits, y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train/acc", self.train_metrics["acc"], on_step=False, on_epoch=True)
        return loss

    def _evaluate(self, batch, stage: str, metrics: MetricCollection, nll: MeanMetric) -> None:
        x, y, index = batch
        logits = self.net(x)
        # Per-sample state is keyed by *training* indices: no eval loss for such losses.
        if "index" not in self.loss_inputs:
            self.log(
                f"{stage}/loss",
                self.compute_loss(x, logits, y, index),
                on_epoch=True,
                batch_size=len(y),
                sync_dist=True,  # under DDP: the mean over every process's batches
            )
        nll.update(F.cross_entropy(logits, y, reduction="none"))
        probs = logits.softmax(dim=-1)
        for name, metric in metrics.items():
            if name in _TAKES_PROBS:
                metric.update(probs, y)
            elif name in _TAKES_POSITIVE_PROB:
                metric.update(probs[:, 1], y)
            else:
                metric.update(logits, y)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics, self.val_nll)

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metrics, self.test_nll)

    def _log_epoch(self, stage: str, metrics: MetricCollection, nll: MeanMetric) -> dict:
        values = {f"{stage}/{k}": v for k, v in metrics.compute().items()}
        values[f"{stage}/nll"] = nll.compute()
        # torchmetrics' compute() already gathered every process's samples: equal on all ranks.
        self.log_dict(values, prog_bar=stage == "val", sync_dist=True)
        metrics.reset()
        nll.reset()
        return values

    def on_validation_epoch_end(self) -> None:
        values = self._log_epoch("val", self.val_metrics, self.val_nll)
        if not self.trainer.sanity_checking:
            self.best_value = max(self.best_value, float(values["val/acc"]))
        self.log(self.best_key, self.best_value, sync_dist=True)

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test", self.test_metrics, self.test_nll)
