"""Learning-rate schedules not expressible directly in torch's configs."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def multistep_at_fractions(
    optimizer: torch.optim.Optimizer,
    fractions: Sequence[float],
    gamma: float,
    max_epochs: int,
) -> torch.optim.lr_scheduler.MultiStepLR:
    """MultiStepLR with milestones given as fractions of the run, so they follow max_epochs."""
    milestones = sorted({max(1, round(f * max_epochs)) for f in fractions})
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=gamma)


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    max_steps: int,
    min_lr_ratio: float = 0.1,
) -> torch.optim.lr_scheduler.LambdaLR:
    """nanoGPT's schedule, stepped once per optimizer step: linear warm-up over
    `warmup_steps`, cosine decay to `min_lr_ratio` × lr at `max_steps`, flat after."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if step >= max_steps:
            return min_lr_ratio
        progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
        return min_lr_ratio + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1.0 - min_lr_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
