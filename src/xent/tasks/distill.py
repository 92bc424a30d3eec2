"""Knowledge distillation: a frozen teacher's logits feed the loss, next to the labels."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from xent.tasks.classify import ClassifyTask


class DistillTask(ClassifyTask):
    """ClassifyTask whose loss also gets `teacher_logits` (and `epoch`, 1-indexed, for DKD).

    The teacher is held outside the module tree on purpose: it is not in `state_dict` (so
    never in a checkpoint), not in `parameters()` (so never in the optimizer), and Lightning's
    `.train()` never reaches it; it stays in eval mode and runs under `no_grad`. With a loss
    that does not ask for teacher logits (`ce`: the no-teacher baseline) there is no teacher.
    The teacher's own test accuracy is measured on the same test batches: `teacher/test_acc`.
    """

    reported = ClassifyTask.reported + ("teacher/test_acc",)

    @classmethod
    def provided_inputs(cls, num_classes: int, **_: Any) -> tuple[str, ...]:
        return ClassifyTask.provided_inputs(num_classes) + ("teacher_logits", "epoch")

    def __init__(self, *args: Any, teacher: nn.Module | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "teacher", teacher)
        self.teacher_test_acc = MulticlassAccuracy(num_classes=self.num_classes, average="micro")

    def _ready_teacher(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device).eval()

    def on_fit_start(self) -> None:
        self._ready_teacher()

    def on_test_start(self) -> None:
        self._ready_teacher()

    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.teacher(x).detach()

    def compute_loss(
        self, x: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor
    ) -> torch.Tensor:
        extra = self.loss_extras(x, index)
        if "epoch" in self.loss_inputs:
            extra["epoch"] = self.current_epoch + 1
        if "teacher_logits" in self.loss_inputs:
            extra["teacher_logits"] = self.teacher_logits(x)
        return self.loss(logits, y, **extra)

    def test_step(self, batch, batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        if self.teacher is not None:
            x, y, _ = batch
            self.teacher_test_acc.update(self.teacher_logits(x), y)

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        if self.teacher is not None:
            self.log("teacher/test_acc", self.teacher_test_acc.compute())
            self.teacher_test_acc.reset()
