"""Synthetic label noise for the noisy-label losses (GCE, SCE, ...)."""

from __future__ import annotations

import torch

from xent.checks import number


def symmetric_label_noise(
    labels: torch.Tensor, rate: float, num_classes: int, seed: int
) -> torch.Tensor:
    """Flip exactly round(rate·N) labels, each to a class drawn uniformly from the *other* K−1.

    Flipping to a different class (rather than to any class, which leaves 1/K of the "noisy"
    labels correct) makes the realised noise rate equal to `rate`, which is what the
    noisy-label tables report (e.g. SCE's "40% symmetric").
    """
    number("data.label_noise", rate, at_least=0, below=1, error=ValueError, show=str)
    noisy = labels.clone()
    n_flip = round(rate * len(labels))
    if n_flip == 0:
        return noisy
    gen = torch.Generator().manual_seed(seed)
    flip = torch.randperm(len(labels), generator=gen)[:n_flip]
    shift = torch.randint(1, num_classes, (n_flip,), generator=gen)
    noisy[flip] = (labels[flip] + shift) % num_classes
    return noisy
