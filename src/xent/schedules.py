"""Learning-rate schedules not expressible directly in torch's configs."""

from __future__ import annotations

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
