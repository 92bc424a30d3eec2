"""Batch-wise augmentation on uint8 tensors.

On 2 CPU cores a per-sample PIL pipeline is the bottleneck of a CIFAR epoch; indexing a whole
batch at once costs a few milliseconds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(
    images: torch.Tensor, padding: int, hflip: bool, generator: torch.Generator
) -> torch.Tensor:
    """Zero-pad by `padding`, take a random crop of the original size, flip half horizontally.

    Same distribution as torchvision's RandomCrop(size, padding) + RandomHorizontalFlip(),
    drawn per sample from `generator`.
    """
    batch, _, height, width = images.shape
    out = images
    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (batch,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (batch,), generator=generator)
        rows = (dy[:, None] + torch.arange(height))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(width))[:, None, None, :]
        b = torch.arange(batch)[:, None, None, None]
        c = torch.arange(images.shape[1])[None, :, None, None]
        out = padded[b, c, rows, cols]
    if hflip:
        flip = torch.rand(batch, generator=generator) < 0.5
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out
