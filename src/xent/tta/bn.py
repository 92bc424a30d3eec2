"""Batch-statistics BatchNorm (docs/methods/tta.md §1.4) and the BN-1 baseline ("norm").

Covariate shift moves the feature statistics; replacing BN's source running statistics with
the current test batch's is the simplest fix (Schneider et al. 2020, "BN-1") and the BN regime
TENT, CoTTA and RMT all adapt in.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from xent.tta.base import TTAMethod


def batch_norms(model: nn.Module) -> list[_BatchNorm]:
    """Every BatchNorm layer (1d/2d/3d, SyncBatchNorm) of `model`."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


def use_batch_statistics(model: nn.Module) -> nn.Module:
    """Make every BatchNorm normalise with the current batch's statistics, in train or eval.

    `track_running_stats=False` with the running buffers set to None is how PyTorch expresses
    "always batch statistics": such a layer neither reads nor updates running stats, so the
    model's train/eval mode no longer matters to BN. Affine parameters are kept. Returns `model`.
    """
    for m in batch_norms(model):
        m.track_running_stats = False
        m.running_mean = None
        m.running_var = None
        m.num_batches_tracked = None
    return model


def bn_affine_params(model: nn.Module) -> list[nn.Parameter]:
    """The BN scale and shift parameters (TENT's only trainable parameters)."""
    params: list[nn.Parameter] = []
    for m in batch_norms(model):
        if m.weight is not None:
            params.append(m.weight)
        if m.bias is not None:
            params.append(m.bias)
    return params


class Norm(TTAMethod):
    """BN-1: every BatchNorm uses the test batch's statistics; no parameter changes."""

    def configure(self) -> None:
        use_batch_statistics(self.model)
        self.model.eval()
        self.model.requires_grad_(False)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits with batch-statistics BN."""
        return self.model(x)
