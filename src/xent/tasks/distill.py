"""Knowledge distillation: a frozen teacher's logits feed the loss, next to the labels."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from xent.pretrained import check_pretrained, obtain_pretrained
from xent.tasks.base import Prepared, RunTrainer
from xent.tasks.classify import ClassifyTask


def needs_teacher(loss: nn.Module) -> bool:
    """Distillation losses do; `ce` under task=distill is the no-teacher baseline."""
    return "teacher_logits" in getattr(loss, "requires", ())


class DistillTask(ClassifyTask):
    """ClassifyTask whose loss also gets `teacher_logits` (and `epoch`, 1-indexed, for DKD).

    The teacher is held outside the module tree on purpose: it is not in `state_dict` (so
    never in a checkpoint), not in `parameters()` (so never in the optimizer), and Lightning's
    `.train()` never reaches it; it stays in eval mode and runs under `no_grad`. With a loss
    that does not ask for teacher logits (`ce`: the no-teacher baseline) there is no teacher.
    The teacher's own test accuracy is measured on the same test batches: `teacher/test_acc`.
    """

    reported = ClassifyTask.reported + ("teacher/test_acc",)
    summary_keys = ClassifyTask.summary_keys + ("teacher/test_acc",)
    resume_keys = ("teacher",)

    @classmethod
    def check(
        cls, cfg: DictConfig, net: nn.Module, loss: nn.Module, *, load_pretrained: bool = True
    ) -> None:
        """The classify checks, then (with `load_pretrained`) that the teacher loads."""
        super().check(cfg, net, loss, load_pretrained=load_pretrained)
        if needs_teacher(loss) and load_pretrained:  # a job loads it once, in `prepare`
            check_pretrained(cfg, "teacher")

    @classmethod
    def prepare(
        cls, cfg: DictConfig, net: nn.Module, loss: nn.Module, *, train: RunTrainer
    ) -> Prepared:
        """The frozen teacher, loaded or trained into the cache once; `ce` needs none."""
        if not needs_teacher(loss):
            return Prepared(net)
        teacher, path = obtain_pretrained(cfg, "teacher", train=train)
        return Prepared(net, {"teacher": teacher}, {"teacher": str(path)})

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
