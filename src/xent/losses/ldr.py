"""Label-distributionally-robust losses LDR-KL and ALDR-KL (Zhu, Ying, Yang, ICML 2023)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from xent.losses._common import Loss, PerSampleState, number


def ldr_kl_per_sample(
    logits: torch.Tensor, target: torch.Tensor, margin: float, lam: torch.Tensor | float
) -> torch.Tensor:
    """`λ·log((1/K) Σ_k exp((δ_k + s_k − s_y)/λ))`, δ_k = margin·1[k≠y]; λ scalar or (B,)."""
    num_classes = logits.shape[1]
    onehot = F.one_hot(target, num_classes).to(logits.dtype)
    diff = logits - logits.gather(1, target[:, None])  # differences first: exact at 1e4
    if isinstance(lam, torch.Tensor):
        lam = lam[:, None]
    scaled = (diff + margin * (1 - onehot)) / lam
    # log((1/K) Σ exp(z)) = m + log1p(mean(expm1(z − m))), m = max z: unlike
    # logsumexp(z) − log K it does not cancel when the result is small (e.g. large λ).
    top = scaled.max(dim=-1, keepdim=True).values.detach()
    log_mean = top + torch.log1p(torch.expm1(scaled - top).mean(dim=-1, keepdim=True))
    return (lam * log_mean).squeeze(1)


class LDRKLLoss(Loss):
    """LDR-KL: `max_{q∈Δ} Σ_k q_k(δ_k + s_k − s_y) − λ·KL(q‖uniform)` in closed form,
    `λ·log((1/K) Σ_k exp((δ_k + s_k − s_y)/λ))`, δ_k = margin·1[k≠y]. Batch mean.

    λ → 0: the hinge `max_k(δ_k + s_k − s_y)`; λ → ∞: the mean over k; margin 0, λ 1:
    `CE − log K`. Defaults margin = 0.1, lam = 10 are the LDR repo's experiment.py defaults
    (its `LDRLoss_V1` class defaults are margin 2, λ 1).

    Raw logits are used, as in the paper's formula: the reference code's preprocessing
    (softplus, then division by the row mean) is not applied.
    """

    def __init__(self, margin: float = 0.1, lam: float = 10.0):
        super().__init__()
        self.margin = number("margin", margin, at_least=0)
        self.lam = number("lam", lam, above=0)

    def hparams(self):
        return {"margin": self.margin, "lam": self.lam}

    def forward(self, logits, target, *, index=None, features=None):
        logits = self.prepare(logits, target)
        return ldr_kl_per_sample(logits, target, self.margin, self.lam).mean()


class ALDRKLLoss(PerSampleState):
    """ALDR-KL: LDR-KL with a per-sample λ_i, adapted in closed form on every visit.

    For sample i with stored λ_i (initially λ₀ = lam):
      q = softmax(s/λ_i)  (as in the reference code: scores only, without the margin),
      λ_i ← λ₀ − λ₀·KL(q‖uniform)/(α·log K), clipped to [λ₀(1 − 1/α), λ₀] (float safety),
    then the loss is LDR-KL with λ_i plus `−(α·log K/(2λ₀))·(λ_i − λ₀)²` (λ detached, so the
    extra term only shifts the reported value). Since 0 <= KL <= log K, λ_i ∈ [λ₀(1 − 1/α), λ₀],
    which is positive only for α > 1 (α = 1 lets λ_i reach 0: a division by zero once a
    prediction is one-hot in float), so `alpha` must be > 1.

    KL is computed exactly from log-softmax (the reference adds 1e-5 to q and renormalises to
    keep the log finite; that is not needed in log space). Raw logits, no preprocessing (the
    reference divides by ‖s‖₁/K, with optional softplus). The stored λ is updated only by
    training-mode calls; an eval-mode call still uses the closed-form λ from the stored one.
    Defaults margin = 0.1, lam = 10, alpha = 2 follow the LDR repo's experiment.py. Needs
    `index` and `setup_samples(N)`.
    """

    requires: tuple[str, ...] = ("index",)
    state_names = ("lam_i",)

    def __init__(self, margin: float = 0.1, lam: float = 10.0, alpha: float = 2.0):
        super().__init__()
        self.margin = number("margin", margin, at_least=0)
        self.lam = number("lam", lam, above=0)
        self.alpha = number("alpha", alpha, above=1)

    def hparams(self):
        return {"margin": self.margin, "lam": self.lam, "alpha": self.alpha}

    def initial_state(self, num_samples: int) -> dict[str, torch.Tensor]:
        return {"lam_i": torch.full((num_samples,), self.lam)}

    def updated_lambda(self, logits: torch.Tensor, lam_old: torch.Tensor) -> torch.Tensor:
        """The closed-form λ for each row of `logits`, given the previous λ (both detached)."""
        log_k = math.log(logits.shape[1])
        log_q = (logits / lam_old[:, None]).log_softmax(dim=-1)
        kl = (log_q.exp() * log_q).sum(dim=-1) + log_k
        lam = self.lam - self.lam * kl / (self.alpha * log_k)
        return lam.clamp(min=self.lam * (1 - 1 / self.alpha), max=self.lam)

    def forward(self, logits, target, *, index=None, features=None):
        logits = self.prepare(logits, target)
        index = self.state_index(index, logits)
        with torch.no_grad():
            lam = self.updated_lambda(logits.detach(), self.lam_i[index].to(logits.dtype))
            if self.training:
                self.lam_i[index] = lam.to(self.lam_i.dtype)
        log_k = math.log(logits.shape[1])
        penalty = -(self.alpha * log_k / (2 * self.lam)) * (lam - self.lam) ** 2
        return (ldr_kl_per_sample(logits, target, self.margin, lam) + penalty).mean()
