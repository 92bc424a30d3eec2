"""Comp-sum losses (Mao, Mohri, Zhong, ICML 2023): sum-exponential, CE, GCE, MAE in one family."""

from __future__ import annotations

import torch

from xent.losses._common import Loss, clamped_expm1, number, target_log_prob


def comp_sum_per_sample(log_py: torch.Tensor, tau: float) -> torch.Tensor:
    """ℓ_τ = (1 − p_y^{τ−1})/(τ − 1) for τ ≠ 1, −log p_y for τ = 1, from log p_y.

    τ > 1: `−expm1((τ−1)·log p_y)/(τ−1)`, bounded by 1/(τ−1).
    τ < 1: `expm1((1−τ)·(−log p_y))/(1−τ)`, unbounded; the exponent is evaluated exactly up to
    EXP_CLAMP and continued linearly beyond (see `clamped_expm1`) so it cannot overflow fp32.
    """
    if tau == 1:
        return -log_py
    if tau > 1:
        return -torch.expm1((tau - 1) * log_py) / (tau - 1)
    return clamped_expm1((1 - tau) * -log_py) / (1 - tau)


class CompSumLoss(Loss):
    """The comp-sum family ℓ_τ(p_y), τ >= 0, averaged over the batch.

    τ = 0: sum-exponential `Σ_{k≠y} exp(s_k − s_y) = 1/p_y − 1 = expm1(lse − s_y)`;
    τ = 1: logistic loss = CE; τ ∈ (1, 2): GCE with q = τ − 1; τ = 2: reduced MAE `1 − p_y`;
    τ > 2: bounded, flatter still.

    Overflow guard (τ < 1 only): the exponent (1 − τ)(lse − s_y) is used exactly up to
    EXP_CLAMP = 50 and linearly beyond it, so the loss stays finite in fp32 (exact
    `1/p_y − 1` overflows once lse − s_y ≳ 88). Mao et al. recommend τ = 1 (CE); the family
    exists here to compare.
    """

    def __init__(self, tau: float = 1.0):
        super().__init__()
        self.tau = number("tau", tau, at_least=0)

    def hparams(self):
        return {"tau": self.tau}

    def forward(self, logits, target, *, index=None, features=None):
        logits = self.prepare(logits, target)
        return comp_sum_per_sample(target_log_prob(logits, target), self.tau).mean()


class MAELoss(Loss):
    """Reduced mean absolute error `1 − p_y` (= comp-sum τ = 2, = GCE q = 1), batch mean.

    Scaling pitfall: Ghosh et al. and Zhang & Sabuncu define MAE as `‖e_y − p‖₁ = 2(1 − p_y)`;
    this is the "reduced" form used by the Active-Passive-Losses and LDR repos and comp-sum
    τ = 2, i.e. half of it. The factor 2 acts as a 2x learning-rate change: halve the LR (or
    double this loss) to match results reported with the ‖·‖₁ definition.

    Bounded in [0, 1], but its gradient `−p_y(e_y − p)` vanishes for badly misclassified
    samples, which is why MAE underfits (e.g. on CIFAR-100).
    """

    def forward(self, logits, target, *, index=None, features=None):
        logits = self.prepare(logits, target)
        return (-torch.expm1(target_log_prob(logits, target))).mean()
