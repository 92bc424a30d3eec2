"""Fault injection for tests/test_reliability.py, importable by the CLI as `tests.helpers_faults.X`
(with the repository root on PYTHONPATH): a loss that turns NaN, a callback that signals."""

from __future__ import annotations

import os

import lightning as L
import torch
from torch import nn


class NanAfter(nn.CrossEntropyLoss):
    """Cross-entropy that turns NaN from its `step`-th training call on (0-based, so the NaN
    comes at Lightning's global_step == step); evaluation calls are left finite."""

    def __init__(self, step: int, **kwargs):
        super().__init__(**kwargs)
        self.step, self.calls = step, 0

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = super().forward(logits, target)
        if not self.training:
            return loss
        self.calls += 1
        return loss * float("nan") if self.calls > self.step else loss


class SignalAt(L.Callback):
    """Sends `signal` to its own process after training step `step`: a kill at an exact,
    seeded point, where a kill timed from outside lands wherever the machine's load puts it.
    The signal is real; the run's handler (or the kernel, for SIGKILL) takes it."""

    def __init__(self, step: int, signal: int):
        self.step, self.signal = step, signal

    def on_train_batch_end(self, trainer: L.Trainer, *_args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signal)
