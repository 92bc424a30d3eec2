"""Symmetric cross-entropy (Wang et al., ICCV 2019)."""

from __future__ import annotations

import torch

from xent.losses._common import Loss, number, target_log_prob


class SCELoss(Loss):
    """`α·CE + β·RCE`, RCE = `−Σ_k p_k log t_k` with log 0 := A; for a hard label
    RCE = `−A·(1 − p_y)`, a scaled reduced MAE. Batch mean.

    Defaults α = 0.1, β = 1.0 are the official CIFAR-10 values (train_models.py; the
    Active-Passive-Losses configs agree). Other datasets: CIFAR-100 α = 6.0, β = 0.1;
    MNIST α = 0.01, β = 1.0.

    A: the paper's A = −4 (RCE = 4(1 − p_y)) is the default. The official Keras code (and
    HanxunH's PyTorch port) instead clip the one-hot label to 1e-4, i.e. A = ln 1e-4 ≈ −9.21;
    set A: -9.2103 to reproduce their numbers. A must be < 0.

    CE comes from log-softmax and `1 − p_y` from `−expm1(log p_y)`: no probability clamp
    (the reference code clamps p to >= 1e-7 before the log).
    """

    def __init__(self, alpha: float = 0.1, beta: float = 1.0, A: float = -4.0):
        super().__init__()
        self.alpha = number("alpha", alpha, at_least=0)
        self.beta = number("beta", beta, at_least=0)
        self.A = number("A", A, below=0)

    def hparams(self):
        return {"alpha": self.alpha, "beta": self.beta, "A": self.A}

    def forward(self, logits, target, *, index=None, features=None):
        logits = self.prepare(logits, target)
        log_py = target_log_prob(logits, target)
        rce = -self.A * -torch.expm1(log_py)
        return (self.alpha * -log_py + self.beta * rce).mean()
