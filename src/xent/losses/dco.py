"""DCO, Direct Coverage Optimisation (Chen et al. 2025), on whole answers.

Docs: docs/methods/lm_losses.md §4.

With p̂ the probability of a sequence's whole answer (log p̂ = the sum of the token
log-probabilities over the answer span: the positions whose target is not IGNORE_INDEX),

    ℓ_N = −log(1 − (1 − p̂)^N),   averaged over the sequences that have an answer,

the loss of "at least one of N samples is right". Its gradient is F(N, p̂)·∇(−log p̂) with
F = N(1−p̂)^{N−1}p̂ / (1 − (1−p̂)^N): 1 for an unlikely answer, → 0 once p̂ ≳ 1/N.
N = 1 is the sequence-level CE: the sum of the answer's token NLLs, averaged over answers
(token CE × trained tokens / answers). Computed in log space, never with p̂**N, so a
log p̂ of −200 (or −1e4) gives the right value and gradient.
"""

from __future__ import annotations

import math

import torch

from xent.losses._common import integer
from xent.losses.lm import IGNORE_INDEX, LMLoss, LMLossOutput
from xent.losses.lm_head import target_logit, token_lse, trained_rows

LN2 = math.log(2.0)
# Below this log-value the first-order forms are exact in float32 (the next term is ~e^(2x)).
SMALL_LOG = -20.0


def branch_input(take: torch.Tensor, x: torch.Tensor, safe: float) -> torch.Tensor:
    """x where `take`, else a harmless constant: each branch of a `torch.where` sees only inputs
    it is exact and finite on, so no inf or nan from the unused branch leaks into the gradient
    (a clamp would, besides, zero the gradient at the boundary itself)."""
    return torch.where(take, x, torch.full_like(x, safe))


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − eˣ) for x < 0, accurate on both sides of −ln 2 (Mächler 2012)."""
    near = x > -LN2
    near_zero = torch.log(-torch.expm1(branch_input(near, x, -LN2 / 2)))
    far = torch.log1p(-torch.exp(branch_input(~near, x, -2 * LN2)))
    return torch.where(near, near_zero, far)


def log_neg_log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(−log(1 − eˣ)) for x < 0; x + eˣ/2 for x < SMALL_LOG, where 1 − eˣ rounds to 1."""
    small = x < SMALL_LOG
    direct = torch.log(-log1mexp(branch_input(~small, x, -1.0)))
    tail = branch_input(small, x, 2 * SMALL_LOG)
    return torch.where(small, tail + 0.5 * tail.exp(), direct)


def dco_from_log_prob(log_p: torch.Tensor, n: int) -> torch.Tensor:
    """ℓ_N = −log(1 − (1 − p)^N) from log p, per element.

    With w = log(−N·log(1 − p)) (so (1 − p)^N = exp(−eʷ)), ℓ = −log1mexp(−eʷ), and for
    w < SMALL_LOG, ℓ = −w + eʷ/2 (for a tiny p: ℓ ≈ −log N − log p). log p is kept below −tiny:
    at p = 1 exactly the loss is 0 and so is its gradient, as CE's is."""
    log_p = log_p.clamp(max=-torch.finfo(log_p.dtype).tiny)
    w = math.log(n) + log_neg_log1mexp(log_p)
    small = w < SMALL_LOG
    large = -log1mexp(-branch_input(~small, w, 0.0).exp())
    tail = branch_input(small, w, 2 * SMALL_LOG)
    return torch.where(small, -tail + 0.5 * tail.exp(), large)


def answer_log_probs(token_log_probs: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """Σ of the trained tokens' log-probs per row of the (B, T) mask `kept`, for the rows that
    have at least one trained token: (number of answers,)."""
    rows = kept.nonzero()[:, 0]
    per_row = token_log_probs.new_zeros(kept.shape[0]).index_add(0, rows, token_log_probs)
    return per_row[kept.any(1)]


class DCOLoss(LMLoss):
    """−log(1 − (1 − p̂)^N) of each sequence's whole answer, averaged over answers."""

    needs_answer_spans = True
    name = "dco"

    def __init__(self, n: int = 16):
        super().__init__()
        self.n = integer("n", n, at_least=1)

    def hparams(self) -> dict[str, int]:
        return {"n": self.n}

    def check_targets(self, target: torch.Tensor) -> None:
        """An answer span is the trained part of a row whose prompt is masked: targets with no
        IGNORE_INDEX at all (plain text) or nothing trained mark no answer to score."""
        ignored = target == IGNORE_INDEX
        if not ignored.any() or ignored.all():
            what = "every target is trained" if not ignored.any() else "no target is trained"
            raise ValueError(
                f"loss=dco needs answer spans: {what}, so no sequence has a prompt masked with "
                f"{IGNORE_INDEX} and an answer after it; use data with prompt/answer pairs "
                "(experiment=dco_arith)"
            )

    def forward(self, hidden, weight, target, head="dense"):
        self.check_targets(target)
        rows, tokens, kept = trained_rows(hidden, target)
        lse = token_lse(rows, weight, tokens, head)
        token_log_probs = target_logit(rows, weight, tokens) - lse
        loss = dco_from_log_prob(answer_log_probs(token_log_probs, kept), self.n)
        return LMLossOutput(loss.mean(), lse.detach().mean())
