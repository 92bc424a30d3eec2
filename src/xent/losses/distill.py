"""Knowledge-distillation losses: PLD (arXiv 2506.12542) and the baselines KD, DKD, NKD, DIST.

Every loss is called as `loss(logits, target, teacher_logits)` with student logits (B, C),
integer labels (B,) and teacher logits of the student's shape, and returns the batch mean.
DKD also takes `epoch=` (declared in `requires`). The teacher logits are detached here as well
as by the task, so no gradient can reach the teacher even if a caller forgets `no_grad`.
Formulas and defaults: design/distill.md §1 (PLD) and §2.1–2.4.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
import torch.nn.functional as F

from xent.losses._common import Loss, integer, log1m_target_prob, number, target_log_prob

# Guard of the Pearson denominator ‖a‖·‖b‖ + eps, the value of the DIST authors' code. It only
# matters for (near-)constant rows or columns, e.g. a class no sample in the batch predicts.
DIST_EPS = 1e-8


def _positive(name: str, value: Any) -> float:
    return number(name, value, lambda v: v > 0, "> 0")


def _weight(name: str, value: Any) -> float:
    return number(name, value, lambda v: v >= 0, ">= 0")


def kl_from_logs(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) per row from log-probabilities, `Σ p (log p − log q)`; a zero-probability
    entry of p contributes 0 even where its log is −inf (where `0·(−inf)` would be NaN)."""
    p = log_p.exp()
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(dim=-1)


def non_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The (B, C−1) logits of the classes other than the label, in class order.

    Dropping the label column is exact, where mdistiller's "subtract 1000 from the label's
    logit" is not for logits of that size, and it avoids the −inf/NaN bookkeeping of masking.
    """
    batch, num_classes = logits.shape
    keep = torch.ones_like(logits, dtype=torch.bool).scatter_(1, target[:, None], False)
    return logits[keep].view(batch, num_classes - 1)


class DistillLoss(Loss):
    """Base class: checks the (student, target, teacher) triple and detaches the teacher.

    `requires` names "teacher_logits": only task=distill gives them, and it loads a teacher
    only for losses that ask (so `ce` under task=distill is the no-teacher baseline).
    """

    requires: tuple[str, ...] = ("teacher_logits",)

    def prepare_pair(
        self, logits: torch.Tensor, target: torch.Tensor, teacher_logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Student logits upcast from half precision; teacher logits detached, in the same dtype.

        Shapes must match: a teacher with a different number of classes (or batch) is a wiring
        error that broadcasting could otherwise hide.
        """
        logits = self.prepare(logits, target)
        if teacher_logits.shape != logits.shape:
            raise ValueError(
                f"{self.loss_name}: teacher_logits must have the student logits' shape "
                f"{tuple(logits.shape)}, got {tuple(teacher_logits.shape)}"
            )
        return logits, teacher_logits.detach().to(logits.dtype)


# ----- PLD -----------------------------------------------------------------------------------


def teacher_optimal_permutation(teacher_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """π* per row: the label first, then the other classes by descending teacher logit.

    A stable sort, so ties keep class order and the result is deterministic.
    """
    batch, num_classes = teacher_logits.shape
    order = torch.argsort(teacher_logits, dim=1, descending=True, stable=True)
    rest = order[order != target[:, None]].view(batch, num_classes - 1)
    return torch.cat([target[:, None], rest], dim=1)


def plackett_luce_nll(
    logits: torch.Tensor, perm: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Weighted Plackett-Luce NLL per row, `Σ_k α_k [log Σ_{ℓ≥k} exp(s_{π_ℓ}) − s_{π_k}]`.

    `weights[:, k]` is α_k, the weight of position k of `perm` (not of class k). The suffix
    log-sum-exps come from one reversed `logcumsumexp`, O(C) after the sort. One-hot α on the
    label in position 0 gives CE; uniform α gives ListMLE.
    """
    s_perm = logits.gather(1, perm)
    suffix_lse = torch.logcumsumexp(s_perm.flip(1), dim=1).flip(1)
    return (weights * (suffix_lse - s_perm)).sum(dim=1)


class PLDLoss(DistillLoss):
    """Plackett-Luce Distillation (Bassam, Zhu, Bian, NeurIPS 2025; distill.md §1).

    The student is trained to rank the classes in the teacher-optimal order π* (label first,
    the rest by teacher logit), each selection step k weighted by α_k = softmax(t/τ)_{π*_k}:
    `Σ_k α_k [log Σ_{ℓ≥k} exp(s_{π*_ℓ}) − s_{π*_k}]`, batch mean. τ scales only the teacher's
    weights; the student logits are not temperature-scaled. Convex and shift-invariant in s.

    Used alone: its first step (weight α_1 = teacher probability of the label) already is a CE
    term, so there is no separate CE or mixing weight. tau = 4 is the paper's CIFAR-100 value;
    on ImageNet τ = 1 was 2 points better, so τ = 1 is the natural ablation.
    """

    def __init__(self, tau: float = 4.0):
        super().__init__()
        self.tau = _positive("tau", tau)

    def hparams(self) -> dict[str, Any]:
        return {"tau": self.tau}

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, teacher_logits: torch.Tensor
    ) -> torch.Tensor:
        logits, teacher = self.prepare_pair(logits, target, teacher_logits)
        perm = teacher_optimal_permutation(teacher, target)
        weights = (teacher / self.tau).softmax(dim=1).gather(1, perm)
        return plackett_luce_nll(logits, perm, weights).mean()


# ----- KD ------------------------------------------------------------------------------------


class KDLoss(DistillLoss):
    """Hinton KD: `ce_weight·CE(s, y) + kd_weight·τ²·KL(softmax(t/τ) ‖ softmax(s/τ))`.

    KL summed over classes, averaged over the batch ("batchmean"); τ² keeps the soft-target
    gradients on the CE scale as τ grows. Defaults are the CRD/mdistiller CIFAR-100 ones
    (0.1, 0.9, τ = 4). torchdistill's `α·CE + (1−α)·τ²·KL` is ce_weight = α, kd_weight = 1 − α.
    """

    def __init__(self, ce_weight: float = 0.1, kd_weight: float = 0.9, tau: float = 4.0):
        super().__init__()
        self.ce_weight = _weight("ce_weight", ce_weight)
        self.kd_weight = _weight("kd_weight", kd_weight)
        self.tau = _positive("tau", tau)

    def hparams(self) -> dict[str, Any]:
        return {"ce_weight": self.ce_weight, "kd_weight": self.kd_weight, "tau": self.tau}

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, teacher_logits: torch.Tensor
    ) -> torch.Tensor:
        logits, teacher = self.prepare_pair(logits, target, teacher_logits)
        log_q = (teacher / self.tau).log_softmax(dim=1)
        log_p = (logits / self.tau).log_softmax(dim=1)
        kd = kl_from_logs(log_q, log_p).mean() * self.tau**2
        return self.ce_weight * F.cross_entropy(logits, target) + self.kd_weight * kd


# ----- DKD -----------------------------------------------------------------------------------


class DKDLoss(DistillLoss):
    """Decoupled KD (Zhao et al., CVPR 2022; mdistiller), distill.md §2.2.

    `ce_weight·CE + min(epoch/warmup, 1)·(α·TCKD + β·NCKD)`, with, at temperature τ,
    TCKD = τ²·KL(b^T ‖ b^S) over the binary (label, not label) split b = [p_y, 1 − p_y] and
    NCKD = τ²·KL(p̂^T ‖ p̂^S) over the softmax of the non-target logits alone. Splitting KD this
    way frees the non-target ("dark knowledge") part from KD's implicit (1 − p^T_y) factor.

    `epoch` is 1-indexed as in mdistiller (the ramp reaches 1 at epoch == warmup); a Lightning
    task passes `current_epoch + 1`. warmup = 0 means no warm-up (factor 1 from the start).
    Defaults are mdistiller's; its CIFAR-100 configs use β = 6 or 2 for some pairs (§2.2).
    log(1 − p_y) is computed from the non-target logits, so TCKD stays exact as p_y → 1.
    """

    requires: tuple[str, ...] = ("teacher_logits", "epoch")

    def __init__(
        self,
        ce_weight: float = 1.0,
        alpha: float = 1.0,
        beta: float = 8.0,
        tau: float = 4.0,
        warmup: int = 20,
    ):
        super().__init__()
        self.ce_weight = _weight("ce_weight", ce_weight)
        self.alpha = _weight("alpha", alpha)
        self.beta = _weight("beta", beta)
        self.tau = _positive("tau", tau)
        self.warmup = integer("warmup", warmup, lambda v: v >= 0, "an integer >= 0 (0: no warm-up)")

    def hparams(self) -> dict[str, Any]:
        return {
            "ce_weight": self.ce_weight,
            "alpha": self.alpha,
            "beta": self.beta,
            "tau": self.tau,
            "warmup": self.warmup,
        }

    def warmup_factor(self, epoch: int) -> float:
        """min(epoch / warmup, 1) for a 1-indexed epoch (1 when warmup = 0)."""
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 1:
            raise ValueError(
                f"DKDLoss: epoch={epoch!r} must be an integer >= 1 (1-indexed, as in mdistiller; "
                "pass current_epoch + 1)"
            )
        return 1.0 if self.warmup == 0 else min(int(epoch) / self.warmup, 1.0)

    def _parts(
        self, logits: torch.Tensor, target: torch.Tensor, teacher: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = logits / self.tau, teacher / self.tau
        binary_s = torch.stack([target_log_prob(s, target), log1m_target_prob(s, target)], 1)
        binary_t = torch.stack([target_log_prob(t, target), log1m_target_prob(t, target)], 1)
        tckd = kl_from_logs(binary_t, binary_s).mean()
        log_ps = non_target(s, target).log_softmax(dim=1)
        log_pt = non_target(t, target).log_softmax(dim=1)
        nckd = kl_from_logs(log_pt, log_ps).mean()
        return tckd * self.tau**2, nckd * self.tau**2

    def parts(
        self, logits: torch.Tensor, target: torch.Tensor, teacher_logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(TCKD, NCKD), each τ²-scaled and batch-averaged, without α, β or the warm-up."""
        logits, teacher = self.prepare_pair(logits, target, teacher_logits)
        return self._parts(logits, target, teacher)

    def forward(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        teacher_logits: torch.Tensor,
        *,
        epoch: int = 1,
    ) -> torch.Tensor:
        factor = self.warmup_factor(epoch)
        logits, teacher = self.prepare_pair(logits, target, teacher_logits)
        tckd, nckd = self._parts(logits, target, teacher)
        ce = F.cross_entropy(logits, target)
        return self.ce_weight * ce + factor * (self.alpha * tckd + self.beta * nckd)


# ----- NKD -----------------------------------------------------------------------------------


class NKDLoss(DistillLoss):
    """Normalized KD (Yang et al., ICCV 2023; yzd-v/cls_KD), distill.md §2.3.

    `CE − mean(q^T_y · log p^S_y) − γ·τ²·mean Σ_{i≠y} T̂_i log Ŝ_i`: the target term uses
    τ = 1 softmaxes with the teacher's label probability as a (detached) weight; T̂, Ŝ are the
    τ-softmaxes of the non-target logits alone, so the non-target knowledge is compared as a
    normalised distribution whatever the teacher's confidence in the label.

    Defaults τ = 1, γ = 1.5 are the repo's ImageNet R34→R18 config; its CIFAR-100 R34→R18
    config uses τ = 3, γ = 3.5. ⚠ No NKD value for the CIFAR-100 CRD teacher/student pairs is
    verified.
    """

    def __init__(self, tau: float = 1.0, gamma: float = 1.5):
        super().__init__()
        self.tau = _positive("tau", tau)
        self.gamma = _weight("gamma", gamma)

    def hparams(self) -> dict[str, Any]:
        return {"tau": self.tau, "gamma": self.gamma}

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, teacher_logits: torch.Tensor
    ) -> torch.Tensor:
        logits, teacher = self.prepare_pair(logits, target, teacher_logits)
        log_ps_y = target_log_prob(logits, target)
        q_t_y = target_log_prob(teacher, target).exp()
        target_term = -(q_t_y * log_ps_y).mean()
        log_s_hat = (non_target(logits, target) / self.tau).log_softmax(dim=1)
        t_hat = (non_target(teacher, target) / self.tau).softmax(dim=1)
        non_target_term = -self.gamma * self.tau**2 * (t_hat * log_s_hat).sum(dim=1).mean()
        return F.cross_entropy(logits, target) + target_term + non_target_term


# ----- DIST ----------------------------------------------------------------------------------


def pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = DIST_EPS) -> torch.Tensor:
    """Pearson correlation of each row of `a` with the same row of `b`, `cov/(‖a‖‖b‖ + eps)`
    after centring; a constant row correlates 0 (and has zero gradient) instead of NaN."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


class DISTLoss(DistillLoss):
    """DIST (Huang et al., NeurIPS 2022), distill.md §2.4: match correlations, not values.

    `α·CE + β·τ²·inter + γ·τ²·intra`, with y = softmax(·/τ), inter = 1 − mean over samples of
    the Pearson correlation of y^S and y^T (each row), intra the same over classes (each column
    across the batch). Correlation is invariant to shifts and positive scalings of the
    predictions, so the student need not match the teacher's calibration exactly. Defaults are
    the CIFAR-100 ones (1, 2, 2, τ = 4). With a batch of one, intra is the constant 1.
    """

    def __init__(self, alpha: float = 1.0, beta: float = 2.0, gamma: float = 2.0, tau: float = 4.0):
        super().__init__()
        self.alpha = _weight("alpha", alpha)
        self.beta = _weight("beta", beta)
        self.gamma = _weight("gamma", gamma)
        self.tau = _positive("tau", tau)

    def hparams(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma, "tau": self.tau}

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, teacher_logits: torch.Tensor
    ) -> torch.Tensor:
        logits, teacher = self.prepare_pair(logits, target, teacher_logits)
        y_s = (logits / self.tau).softmax(dim=1)
        y_t = (teacher / self.tau).softmax(dim=1)
        inter = 1 - pearson_rows(y_s, y_t).mean()
        intra = 1 - pearson_rows(y_s.T, y_t.T).mean()
        relation = self.beta * inter + self.gamma * intra
        return self.alpha * F.cross_entropy(logits, target) + self.tau**2 * relation
