"""Stratified splits shared by the data modules."""

from __future__ import annotations

import torch


def stratified_split(
    labels: torch.Tensor, fractions: dict[str, float], seed: int
) -> dict[str, torch.Tensor]:
    """Indices per named split, each class divided in the same proportions, fixed by `seed`."""
    from sklearn.model_selection import train_test_split

    remaining = torch.arange(len(labels)).numpy()
    out: dict[str, torch.Tensor] = {}
    left = 1.0
    names = list(fractions)
    for name in names[:-1]:
        share = fractions[name] / left
        taken, remaining = train_test_split(
            remaining, train_size=share, stratify=labels[remaining].numpy(), random_state=seed
        )
        out[name] = torch.as_tensor(taken)
        left -= fractions[name]
    out[names[-1]] = torch.as_tensor(remaining)
    return out
