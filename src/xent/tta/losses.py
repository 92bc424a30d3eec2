"""Loss terms of the test-time adaptation methods (TENT, CoTTA, RMT), written for per-batch use.

Every teacher-side input is detached here, so callers cannot leak gradients into an EMA teacher
or a frozen anchor by forgetting a `no_grad`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def softmax_entropy(logits: Tensor) -> Tensor:
    """Per-sample Shannon entropy of softmax(logits), shape (B,): TENT's objective."""
    log_p = logits.log_softmax(dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def soft_cross_entropy(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Per-sample CE of the student against the teacher's softmax, shape (B,): CoTTA's loss.

    The teacher is a target, so its logits are detached.
    """
    target = teacher_logits.detach().softmax(dim=1)
    return -(target * student_logits.log_softmax(dim=1)).sum(dim=1)


def symmetric_cross_entropy(
    student_logits: Tensor, teacher_logits: Tensor, alpha: float = 0.5
) -> Tensor:
    """Per-sample symmetric CE of RMT (docs/methods/tta.md §1.2), shape (B,).

    `−(1−α) Σ σ(t) log σ(s) − α Σ σ(s) log σ(t)`: CE with the teacher as target plus the reverse
    CE. RMT prefers it to plain CE for its gradient (bounded, less overconfident self-training).
    Gradients flow only through the student; the teacher logits are detached.
    """
    t = teacher_logits.detach()
    log_s = student_logits.log_softmax(dim=1)
    log_t = t.log_softmax(dim=1)
    forward = -(log_t.exp() * log_s).sum(dim=1)
    reverse = -(log_s.exp() * log_t).sum(dim=1)
    return (1.0 - alpha) * forward + alpha * reverse


def supcon_loss(
    features: Tensor, temperature: float = 0.1, base_temperature: float | None = None
) -> Tensor:
    """Multi-view contrastive loss without labels (SupCon "all" mode = multi-view SimCLR).

    `features` is (B, V, d), V >= 2 views of each of B samples; they are L2-normalised here.
    Every one of the B·V vectors is an anchor; its positives are the other V−1 views of the same
    sample, every other vector (other samples' views, including duplicate prototypes) is a
    negative in the denominator, the anchor itself is excluded. Returns the mean over anchors of
    `−(τ/τ_base) · mean_{p∈P(a)} log softmax_{k≠a}(u_a·u_k/τ)[p]`; τ_base defaults to τ (RMT).
    """
    if features.dim() != 3 or features.shape[1] < 2:
        raise ValueError(f"supcon_loss needs features of shape (B, V>=2, d), got {features.shape}")
    b, v, _ = features.shape
    base = temperature if base_temperature is None else base_temperature
    u = F.normalize(features, dim=-1).reshape(b * v, -1)  # sample-major: row = sample*v + view
    sim = u @ u.T / temperature
    n = b * v
    eye = torch.eye(n, dtype=torch.bool, device=u.device)
    sample = torch.arange(b, device=u.device).repeat_interleave(v)
    positive = (sample[:, None] == sample[None, :]) & ~eye
    log_prob = sim - torch.logsumexp(sim.masked_fill(eye, float("-inf")), dim=1, keepdim=True)
    mean_log_pos = (log_prob * positive).sum(dim=1) / (v - 1)
    return -(temperature / base) * mean_log_pos.mean()
