"""FID of generated images through torchmetrics, when its Inception weights can be had.

torchmetrics' `FrechetInceptionDistance` needs the `torch-fidelity` package and downloads the
Inception-v3 weights on first use (into torch's hub cache). Offline, without them, a flow run
on images still trains, samples and reports W2/NFE: FID is left out and one warning line says
why, instead of failing the run at its end.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger("xent")
_warned: set[str] = set()  # say each reason once per process (test and best-checkpoint test)


def _as_rgb(images: torch.Tensor) -> torch.Tensor:
    """Inception takes 3 channels: grey images are repeated, values clamped to [0, 1]."""
    images = images.clamp(0, 1)
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def frechet_inception_distance(
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    feature: int | nn.Module = 2048,
    batch_size: int = 256,
) -> float | None:
    """FID between two image sets (N, C, H, W) in [0, 1]; None (and a warning) when the
    Inception network cannot be loaded. `feature` may be a module, as torchmetrics allows.

    FID is biased upward at small N: compare runs only at the same number of samples.
    """
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance

        metric = FrechetInceptionDistance(feature=feature, normalize=True)
    except Exception as err:  # noqa: BLE001 - missing package, no weights offline, ...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if reason not in _warned:
            _warned.add(reason)
            log.warning("test/fid not computed: Inception weights unavailable (%s)", reason)
        return None
    metric = metric.to(real.device)
    for images, is_real in ((real, True), (fake, False)):
        for start in range(0, len(images), batch_size):
            metric.update(_as_rgb(images[start : start + batch_size]), real=is_real)
    return float(metric.compute())
