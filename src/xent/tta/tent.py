"""TENT: test entropy minimisation (Wang et al., ICLR 2021).

BN runs on batch statistics and only its affine scale/shift are trained, by minimising the mean
softmax entropy of the test batch; one step per batch with Adam (lr 1e-3 on CIFAR-10-C).
Entropy minimisation of a few per-channel parameters is what keeps TENT cheap and stable.

Choices: all BatchNorm types count as "BN" (1d/2d/3d), LayerNorm/GroupNorm do not (the paper
and its code adapt BN only). The prediction is the logits of the forward that the (last) step's
loss is computed on, i.e. before that update, as in the official code.
"""

from __future__ import annotations

from torch import Tensor

from xent.errors import ConfigError
from xent.tta.base import TTAMethod
from xent.tta.bn import bn_affine_params, use_batch_statistics
from xent.tta.losses import softmax_entropy


class Tent(TTAMethod):
    """Entropy minimisation of BN affine parameters, BN in batch-statistics mode."""

    adapts = True

    def configure(self) -> None:
        use_batch_statistics(self.model)
        self.model.eval()
        self.model.requires_grad_(False)
        params = bn_affine_params(self.model)
        if not params:
            raise ConfigError(
                "tta.method=tent needs a model with affine BatchNorm layers; this one has none"
            )
        for p in params:
            p.requires_grad_(True)
        self.optimizer = self.optimizer_factory(params)

    def forward_and_adapt(self, x: Tensor) -> Tensor:
        """Entropy step on the BN affine parameters; returns the pre-update logits."""
        logits = self.model(x)
        loss = softmax_entropy(logits).mean()
        self._step(loss)
        self.last_losses = {"entropy": loss.item()}
        return logits.detach()
