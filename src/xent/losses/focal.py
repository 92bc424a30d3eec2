"""Softmax focal loss (Lin et al., ICCV 2017), multi-class form."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from omegaconf import ListConfig

from xent.checks import is_number
from xent.losses._common import Loss, bad_value, log1m_target_prob, number, target_log_prob


class FocalLoss(Loss):
    """`−α_y (1 − p_y)^γ log p_y`, averaged over the batch.

    gamma: focusing exponent γ >= 0 (paper default 2); γ = 0 without `alpha` is exactly CE.
    alpha: optional per-class weights α_k >= 0 (a list of length K), or None for no weighting.
        Lin et al.'s α = 0.25 belongs to the *sigmoid* (binary, per-element) form, where it
        weights the positive class; a softmax loss has no positive class, so the default here is
        no α. Pass e.g. inverse class frequencies for imbalanced data.

    Numerics: `log p_y` from log-softmax; `(1 − p_y)^γ = exp(γ·log(1 − p_y))` with
    `log(1 − p_y) = logsumexp_{k≠y} s_k − logsumexp(s)`, which stays finite (and so does its
    gradient) even where p_y rounds to 1; `(1 − p_y)^γ` computed from a rounded `1 − p_y` has an
    infinite derivative at 0 for γ < 1. `(1 − p_y)^γ` is not detached (the original is not; the
    Active-Passive-Losses variant detaches it).
    """

    def __init__(self, gamma: float = 2.0, alpha: Sequence[float] | None = None):
        super().__init__()
        self.gamma = number("gamma", gamma, at_least=0)
        if alpha is None:
            self.register_buffer("alpha", None, persistent=False)
            return
        valid = "null or a list of per-class weights >= 0"
        if isinstance(alpha, str | bytes) or not isinstance(alpha, Sequence | ListConfig):
            raise bad_value("alpha", alpha, valid)
        if not alpha or not all(is_number(a) and a >= 0 for a in alpha):
            raise bad_value("alpha", alpha, valid)
        values = [float(a) for a in alpha]
        self.register_buffer("alpha", torch.tensor(values), persistent=False)

    def hparams(self):
        alpha = None if self.alpha is None else self.alpha.tolist()
        return {"gamma": self.gamma, "alpha": alpha}

    def forward(self, logits, target, *, index=None, features=None):
        logits = self.prepare(logits, target)
        log_py = target_log_prob(logits, target)
        if self.gamma == 0:
            loss = -log_py
        else:
            loss = -torch.exp(self.gamma * log1m_target_prob(logits, target)) * log_py
        if self.alpha is not None:
            if len(self.alpha) != logits.shape[1]:
                raise ValueError(
                    f"FocalLoss: alpha has {len(self.alpha)} entries but the logits have "
                    f"{logits.shape[1]} classes"
                )
            loss = self.alpha.to(loss)[target] * loss
        return loss.mean()
