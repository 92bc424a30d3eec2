"""The CoTTA test-time augmentation that RMT and CoTTA use, on [0, 1] batches
(docs/methods/tta.md §1.4).

One parameter draw per call, shared by the whole batch (the reference applies its transform to
the batch tensor, so every image gets the same colour, affine, blur and flip); only the additive
Gaussian noise differs per pixel. All random numbers come from `generator` when one is given, so
a seeded generator reproduces the output exactly.

Order: clip → colour jitter (brightness, contrast, saturation, hue, gamma in a random order) →
edge-pad by n/2 → affine (±15°, translate 1/16 of the padded size, scale 0.9–1.1, bilinear,
fill 0) → Gaussian blur (kernel 5, σ ∈ [0.001, 0.5]) → centre crop n → hflip (p 0.5) →
noise (std 0.005) → clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor
from torchvision.transforms import InterpolationMode

BRIGHTNESS = (0.6, 1.4)
CONTRAST = (0.7, 1.3)
SATURATION = (0.5, 1.5)
HUE = (-0.06, 0.06)
GAMMA = (0.7, 1.3)
DEGREES = 15.0
TRANSLATE = 1.0 / 16.0
SCALE = (0.9, 1.1)
BLUR_KERNEL = 5
BLUR_SIGMA = (0.001, 0.5)
FLIP_P = 0.5
NOISE_STD = 0.005


@dataclass(frozen=True)
class AugmentParams:
    """One draw of every random choice of the transform except the per-pixel noise."""

    order: tuple[int, ...]  # permutation of (brightness, contrast, saturation, hue, gamma)
    brightness: float
    contrast: float
    saturation: float
    hue: float
    gamma: float
    angle: float
    translate: tuple[int, int]  # (dx, dy) in pixels of the padded image
    scale: float
    sigma: float
    flip: bool


def _uniform(u: float, bounds: tuple[float, float]) -> float:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def sample_params(
    height: int, width: int, generator: torch.Generator | None = None
) -> AugmentParams:
    """Draw the batch's parameters; `height`/`width` are the unpadded image size.

    Translation is a whole number of pixels, up to 1/16 of the padded size in each direction,
    rounded as torchvision's RandomAffine does.
    """
    device = generator.device if generator is not None else torch.device("cpu")
    order = torch.randperm(5, generator=generator, device=device).tolist()
    u = torch.rand(11, generator=generator, device=device, dtype=torch.float64).tolist()
    padded_h, padded_w = height + 2 * (height // 2), width + 2 * (width // 2)
    max_dx, max_dy = TRANSLATE * padded_w, TRANSLATE * padded_h
    return AugmentParams(
        order=tuple(order),
        brightness=_uniform(u[0], BRIGHTNESS),
        contrast=_uniform(u[1], CONTRAST),
        saturation=_uniform(u[2], SATURATION),
        hue=_uniform(u[3], HUE),
        gamma=_uniform(u[4], GAMMA),
        angle=_uniform(u[5], (-DEGREES, DEGREES)),
        translate=(
            round(_uniform(u[6], (-max_dx, max_dx))),
            round(_uniform(u[7], (-max_dy, max_dy))),
        ),
        scale=_uniform(u[8], SCALE),
        sigma=_uniform(u[9], BLUR_SIGMA),
        flip=u[10] < FLIP_P,
    )


def _colour(x: Tensor, p: AugmentParams) -> Tensor:
    ops = (
        lambda t: TF.adjust_brightness(t, p.brightness),
        lambda t: TF.adjust_contrast(t, p.contrast),
        lambda t: TF.adjust_saturation(t, p.saturation),
        lambda t: TF.adjust_hue(t, p.hue),
        lambda t: TF.adjust_gamma(t, p.gamma),
    )
    for i in p.order:
        x = ops[i](x)
    return x


def apply_params(
    x: Tensor,
    params: AugmentParams,
    noise_std: float = NOISE_STD,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Apply a fixed draw to a (..., 3, H, W) batch in [0, 1]; only the noise is drawn here."""
    h, w = x.shape[-2:]
    x = x.clamp(0.0, 1.0)
    x = _colour(x, params)
    x = TF.pad(x, [w // 2, h // 2, w // 2, h // 2], padding_mode="edge")
    x = TF.affine(
        x,
        angle=params.angle,
        translate=list(params.translate),
        scale=params.scale,
        shear=[0.0, 0.0],
        interpolation=InterpolationMode.BILINEAR,
        fill=0.0,
    )
    x = TF.gaussian_blur(x, [BLUR_KERNEL, BLUR_KERNEL], [params.sigma, params.sigma])
    x = TF.center_crop(x, [h, w])
    if params.flip:
        x = TF.horizontal_flip(x)
    if noise_std > 0:
        if generator is None:
            noise = torch.randn(x.shape, device=x.device, dtype=x.dtype)
        else:
            noise = torch.randn(x.shape, generator=generator, device=generator.device)
            noise = noise.to(device=x.device, dtype=x.dtype)
        x = x + noise_std * noise
    return x.clamp(0.0, 1.0)


def tta_augment(
    x: Tensor, generator: torch.Generator | None = None, noise_std: float = NOISE_STD
) -> Tensor:
    """Augment a (B, 3, H, W) batch in [0, 1] with one parameter draw for the whole batch."""
    params = sample_params(x.shape[-2], x.shape[-1], generator)
    return apply_params(x, params, noise_std, generator)
