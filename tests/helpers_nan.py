"""A loss for the NaN-guard tests, importable by the CLI as `loss._target_=tests.helpers_nan...`
(with the repository root on PYTHONPATH)."""

from __future__ import annotations

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
