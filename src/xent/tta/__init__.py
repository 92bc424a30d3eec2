"""Continual test-time adaptation methods in plain torch: Source, BN-1, TENT, CoTTA, RMT.

No Lightning or Hydra here: `xent.tasks` wraps a `TTAMethod` (see `base.py` for the contract).
"""

from xent.tta.augment import AugmentParams, apply_params, sample_params, tta_augment
from xent.tta.base import Source, TTAMethod, ema_update
from xent.tta.bn import Norm, bn_affine_params, use_batch_statistics
from xent.tta.cotta import CoTTA
from xent.tta.losses import (
    soft_cross_entropy,
    softmax_entropy,
    supcon_loss,
    symmetric_cross_entropy,
)
from xent.tta.rmt import RMT
from xent.tta.tent import Tent

METHODS: dict[str, type[TTAMethod]] = {
    "source": Source,
    "norm": Norm,
    "tent": Tent,
    "cotta": CoTTA,
    "rmt": RMT,
}

__all__ = [
    "METHODS",
    "RMT",
    "AugmentParams",
    "CoTTA",
    "Norm",
    "Source",
    "TTAMethod",
    "Tent",
    "apply_params",
    "bn_affine_params",
    "ema_update",
    "sample_params",
    "soft_cross_entropy",
    "softmax_entropy",
    "supcon_loss",
    "symmetric_cross_entropy",
    "tta_augment",
    "use_batch_statistics",
]
