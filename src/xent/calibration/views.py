"""The transformed views the CA calibrator reads (docs/methods/calibrate.md §5): fixed, not
random, so that a run's cached view logits are the same every time they are computed."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.transforms.v2 import functional as TF

ROTATION_DEGREES = 15.0


def image_views(images: torch.Tensor) -> list[torch.Tensor]:
    """Three views of a batch (B, C, H, W), as the model receives it. Colour images: rotation,
    greyscale and a brightness/contrast jitter (the paper's kinds of view); one-channel images,
    where greyscale and colour change nothing: rotation, a horizontal flip and a small affine
    jitter (shift by 2 pixels, scale 0.95)."""
    rotated = TF.rotate(images, ROTATION_DEGREES)
    if images.shape[1] == 3:
        grey = TF.rgb_to_grayscale(images, num_output_channels=3)
        jittered = TF.adjust_contrast(TF.adjust_brightness(images, 1.2), 0.8)
        return [rotated, grey, jittered]
    flipped = TF.horizontal_flip(images)
    shifted = TF.affine(images, angle=0.0, translate=[2, 2], scale=0.95, shear=[0.0, 0.0])
    return [rotated, flipped, shifted]


@torch.no_grad()
def view_logits(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(V, B, K): the net's logits on each view of the batch."""
    return torch.stack([net(view) for view in image_views(images)])
