"""Self-adjusting Dice loss (Li et al., "Dice Loss for Data-imbalanced NLP Tasks", ACL 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xent.losses._common import Loss, log1m_softmax, number


class DiceLoss(Loss):
    """Multi-class self-adjusting Dice, square-denominator form, per example:

        p̃_k = (1 − p_k)^α · p_k,   DSC_k = (2·p̃_k·y_k + γ) / (p̃_k² + y_k² + γ),
        L = Σ_k (1 − DSC_k),

    with y the one-hot label; summed over class columns and averaged over examples (the
    ShannonAI `--dice_square` branch with softmax inputs). α = 0 is plain smoothed Dice; α > 0
    down-weights confident predictions, as in focal loss (note the loss then rises again as
    p_y → 1: p̃_y → 0).

    Defaults α = 0.01, γ = 1 are what every script of the paper's repo passes
    (`--dice_square`, smooth 1, alpha 0.01); the class defaults there are α = 0, smooth 1e-4.
    The square form is chosen because the repo's non-square branch divides a per-example
    numerator by a whole-batch denominator (the loss would depend on batch composition). OHEM
    is not implemented. γ must be > 0 (γ = 0 makes 0/0 for classes with p̃_k = 0).

    Numerics: p̃_k = exp(log p_k + α·log(1 − p_k)) with log(1 − p_k) exact (see
    `log1m_softmax`), so (1 − p_k)^α is right, with a finite gradient, even where p_k rounds
    to 1 (with α = 0.01 a rounded 1 − p_k = 0 would change p̃ from ~0.8 to 0).
    """

    def __init__(self, alpha: float = 0.01, gamma: float = 1.0):
        super().__init__()
        self.alpha = number("alpha", alpha, at_least=0)
        self.gamma = number("gamma", gamma, above=0)

    def hparams(self):
        return {"alpha": self.alpha, "gamma": self.gamma}

    def forward(self, logits, target, *, index=None, features=None):
        logits = self.prepare(logits, target)
        log_p = logits.log_softmax(dim=-1)
        if self.alpha == 0:
            p_tilde = log_p.exp()
        else:
            p_tilde = torch.exp(log_p + self.alpha * log1m_softmax(logits))
        y = F.one_hot(target, logits.shape[1]).to(p_tilde.dtype)
        dsc = (2 * p_tilde * y + self.gamma) / (p_tilde.square() + y + self.gamma)  # y² = y
        return (1 - dsc).sum(dim=-1).mean()
