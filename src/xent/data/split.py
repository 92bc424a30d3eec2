"""Fixed train/val/test splits shared by the data modules."""

from __future__ import annotations

import torch


def stratified_split(
    labels: torch.Tensor, fractions: dict[str, float], seed: int, stratify: bool = True
) -> dict[str, torch.Tensor]:
    """Indices per named split, fixed by `seed`.

    With `stratify`, each class is divided in the same proportions (class labels); without it
    the split is a plain random one (real-valued targets, which have no classes to balance).
    """
    from sklearn.model_selection import train_test_split

    remaining = torch.arange(len(labels)).numpy()
    out: dict[str, torch.Tensor] = {}
    left = 1.0
    names = list(fractions)
    for name in names[:-1]:
        share = fractions[name] / left
        strata = labels[remaining].numpy() if stratify else None
        taken, remaining = train_test_split(
            remaining, train_size=share, stratify=strata, random_state=seed
        )
        out[name] = torch.as_tensor(taken)
        left -= fractions[name]
    out[names[-1]] = torch.as_tensor(remaining)
    return out
