"""Knowledge-distillation losses: PLD (arXiv 2506.12542) and the baselines KD, DKD, NKD, DIST.

Every loss is called as `loss(logits, target, teacher_logits)` with student logits (B, C),
integer labels (B,) and teacher logits of the student's shape, and returns the batch mean.
DKD also takes `epoch=` (declared in `requires`). The teacher logits are detached here as well
as by the task, so no gradient can reach the teacher even if a caller forgets `no_grad`.
Formulas and defaults: docs/methods/distill.md §1 (PLD) and §2.1–2.4.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from xent.checks import is_integer
from xent.losses._common import Loss, integer, log1m_target_prob, number, target_log_prob

# Guard of the Pearson denominator ‖a‖·‖b‖ + eps, the value of the DIST authors' code. It only
# matters for (near-)constant rows or columns, e.g. a class no sample in the batch predicts.
DIST_EPS = 1e-8


def _positive(name: str, value: Any) -> float:
    return number(name, value, above=0)


def _weight(name: str, value: Any) -> float:
    return number(name, value, at_least=0)


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
    return logits.gather(1, skip_column(target, logits.shape[1]))


def skip_column(column: torch.Tensor, width: int) -> torch.Tensor:
    """Indices (B, width − 1) of every column but `column[i]` in row i, in order.

    A gather with these beats a boolean mask (`nonzero` plus an index and, backwards, an
    index_put: ~40% of DKD's and NKD's time on a CPU at batch 128, and a GPU sync).
    """
    cols = torch.arange(width - 1, device=column.device)
    return cols + (cols >= column[:, None])


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

    A stable sort, so ties keep class order and the result is deterministic. float32 on a CPU
    goes through numpy's SIMD sort of packed keys (`_packed_key_permutation`), ~10x faster than
    torch's CPU sort; the result is the same for any non-NaN logits.
    """
    if teacher_logits.device.type == "cpu" and teacher_logits.dtype == torch.float32:
        return _packed_key_permutation(teacher_logits, target)
    order = torch.argsort(teacher_logits, dim=1, descending=True, stable=True)
    label_at = (order == target[:, None]).int().argmax(dim=1)
    rest = order.gather(1, skip_column(label_at, order.shape[1]))
    return torch.cat([target[:, None], rest], dim=1)


def _packed_key_permutation(teacher_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """`teacher_optimal_permutation` for float32 CPU logits as one int64 sort per row.

    Key = (the logit's float32 bits mapped to an int32 whose order is the *reverse* float
    order) · 2³² + class, so ascending keys are descending logits with ties in class order,
    what a stable sort gives; the label's key is the smallest int64 (plus its class, kept in
    the low bits), so it comes first. numpy sorts int64 rows with SIMD (x86-simd-sort) where
    torch's CPU sort does not, and with the class in the key no argsort is needed. In-place
    steps: fresh temporaries are what cost most at these sizes. `+ 0.0` maps −0.0 to +0.0, so
    the two tie, as torch compares them.
    """
    batch, num_classes = teacher_logits.shape
    bits = (teacher_logits.detach().numpy() + np.float32(0.0)).view(np.int32)
    # reverse order: x >= 0 -> ~x (0x7f.. -> 0x80..), x < 0 -> x ^ INT32_MIN (sign bit cleared)
    flipped = bits >> 31
    np.invert(flipped, out=flipped)
    flipped |= np.int32(np.iinfo(np.int32).min)
    flipped ^= bits
    keys = flipped.astype(np.int64)
    keys *= 1 << 32
    keys += np.arange(num_classes)
    labels = target.detach().cpu().numpy().astype(np.int64)
    keys[np.arange(batch), labels] = np.iinfo(np.int64).min + labels
    keys.sort(axis=1)
    keys &= 0xFFFFFFFF
    return torch.from_numpy(keys)


def plackett_luce_nll(
    logits: torch.Tensor, perm: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Weighted Plackett-Luce NLL per row, `Σ_k α_k [log Σ_{ℓ≥k} exp(s_{π_ℓ}) − s_{π_k}]`.

    `weights[:, k]` is α_k, the weight of position k of `perm` (not of class k). The suffix
    log-sum-exps are O(C) after the sort. One-hot α on the label in position 0 gives CE;
    uniform α gives ListMLE. Computed by `_PlackettLuceNLL` (see there for how and why).
    """
    return _PlackettLuceNLL.apply(logits, perm, weights)


def _plackett_luce_nll_logspace(
    logits: torch.Tensor, perm: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """The reference form: suffix log-sum-exps from one reversed `logcumsumexp`, autograd."""
    s_perm = logits.gather(1, perm)
    suffix_lse = torch.logcumsumexp(s_perm.flip(1), dim=1).flip(1)
    return (weights * (suffix_lse - s_perm)).sum(dim=1)


class _PlackettLuceNLL(torch.autograd.Function):
    """`plackett_luce_nll` with suffix sums in linear space and a closed-form gradient.

    Why: torch's CPU `logcumsumexp` is a scalar loop and its autograd backward runs two more
    plus several exps: ~75% of PLD's time at 100 classes (batch 128, 1 thread). Here, with
    e = exp(s_π − max s) and Z_k = Σ_{ℓ≥k} e_ℓ (a reversed cumsum), the loss is
    Σ_k α_k (log Z_k + max s − s_{π_k}) and its gradient in s_{π_j} is
    `e_j · Σ_{k≤j} α_k / Z_k − α_j` (a cumsum), scattered back to class order.

    Exact (to rounding) whenever s_{π_last} − max s >= floor = log(tiny/eps) + log C (≈ −67 in
    float32 at 100 classes, −668 in float64): every Z_k holds e_last >= e^floor, so flushed or
    subnormal terms (< tiny each) change it by < eps relative. Otherwise (e.g. logits of ±1e4)
    the batch falls back to the log-space reference for the value and, by autograd through it
    in backward, the gradient.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, perm: torch.Tensor, weights: torch.Tensor):
        s = logits.gather(1, perm)
        top = s.amax(dim=1, keepdim=True)
        info = torch.finfo(s.dtype)
        floor = math.log(info.tiny) - math.log(info.eps) + math.log(max(s.shape[1], 1))
        ctx.exact = bool((s[:, -1:] - top >= floor).all())
        if not ctx.exact:
            ctx.save_for_backward(logits, perm, weights)
            return _plackett_luce_nll_logspace(logits, perm, weights)
        e = (s - top).exp_()
        suffix = e.flip(1).cumsum(dim=1).flip(1)
        gap = suffix.log().add_(top).sub_(s).clamp_(min=0.0)  # log Z_k + max − s_{π_k} >= 0
        ctx.save_for_backward(perm, weights, e, suffix, gap)
        ctx.num_classes = logits.shape[1]
        return (weights * gap).sum(dim=1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        needs_logits, _, needs_weights = ctx.needs_input_grad
        if not ctx.exact:
            logits, perm, weights = ctx.saved_tensors
            with torch.enable_grad():
                x = logits.detach().requires_grad_(needs_logits)
                w = weights.detach().requires_grad_(needs_weights)
                value = _plackett_luce_nll_logspace(x, perm, w)
                wanted = [t for t in (x, w) if t.requires_grad]
                found = iter(torch.autograd.grad(value, wanted, grad))
            return (
                (next(found) if needs_logits else None),
                None,
                (next(found) if needs_weights else None),
            )
        perm, weights, e, suffix, gap = ctx.saved_tensors
        grad_logits = grad_weights = None
        if needs_logits:
            d_s = (weights / suffix).cumsum(dim=1).mul_(e).sub_(weights).mul_(grad[:, None])
            shape = (len(perm), ctx.num_classes)
            grad_logits = d_s.new_zeros(shape).scatter_add_(1, perm, d_s)
        if needs_weights:
            grad_weights = gap * grad[:, None]
        return grad_logits, None, grad_weights


class PLDLoss(DistillLoss):
    """Plackett-Luce Distillation (Bassam, Zhu, Bian, NeurIPS 2025; docs/methods/distill.md §1).

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
    """Decoupled KD (Zhao et al., CVPR 2022; mdistiller), docs/methods/distill.md §2.2.

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
        self.warmup = integer("warmup", warmup, at_least=0, what="an integer >= 0 (0: no warm-up)")

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
        if not is_integer(epoch) or epoch < 1:
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
    """Normalized KD (Yang et al., ICCV 2023; yzd-v/cls_KD), docs/methods/distill.md §2.3.

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
    """DIST (Huang et al., NeurIPS 2022; docs/methods/distill.md §2.4): match correlations,
    not values.

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
