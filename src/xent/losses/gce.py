"""Generalized cross-entropy L_q (Zhang & Sabuncu, NeurIPS 2018), optionally truncated."""

from __future__ import annotations

import math

import torch

from xent.losses._common import PerSampleState, integer, number, target_log_prob


class GCELoss(PerSampleState):
    """`L_q = (1 − p_y^q)/q`, q ∈ (0, 1] (q → 0: CE; q = 1: reduced MAE), batch mean.

    Computed as `−expm1(q·log p_y)/q`; equals comp-sum with τ = 1 + q.

    Truncation (`k` set, k ∈ (0, 1)): the paper's `L_trunc = L_q(k)` if p_y <= k else
    `L_q(p_y)`, optimised with per-sample 0/1 weights w_i:
    `w_i·L_q(p_i) + (1 − w_i)·L_q(k)`, where pruned samples (w_i = 0) contribute the constant
    L_q(k) (no gradient). The value equals L_trunc whenever the weights are fresh (the
    reference code subtracts w·L_q(k) instead; that only shifts the value). Needs the sample
    index, so `requires = ("index",)` then, and `setup_samples(N)` before training.

    Weight update rule (the "pruning"): w_i = 1[p_i > k]. Chosen here: the loss re-estimates a
    sample's weight itself, from the logits of that sample's training step, on its own visit
    number v (counted per sample, so drop_last or limited epochs cannot skew it) when
    v >= start and (v − start) % every == 0; the step's loss still uses the previous weight,
    the new one applies from the next visit. All weights start at 1 (plain L_q until `start`).
    Defaults start = 40, every = 10 follow AlanChou/Truncated-Loss on CIFAR-10 (120 epochs),
    whose training loop prunes every 10 epochs from epoch 40. Why in the loss: the task only
    calls `loss(logits, target, index=...)`, so a rule that needs no extra hook works with any
    task; pruning at epoch 0 would drop every sample (p_y ≈ 1/K < k), hence the warm-up.
    Differences from the reference: it re-scores the whole training set in one extra pass
    with the best checkpoint in eval mode; here each sample is scored by its training-step
    (train-mode, augmented) logits. `prune(logits, target, index)` applies the rule at once,
    for a task that wants the paper's separate pass; `start=None` leaves pruning to it. Only
    training-mode calls update the state.
    """

    requires: tuple[str, ...] = ()  # ("index",) on instances with truncation (k set)

    def __init__(
        self,
        q: float = 0.7,
        k: float | None = None,
        start: int | None = 40,
        every: int = 10,
    ):
        super().__init__()
        self.q = number("q", q, above=0, at_most=1)
        self.k = number("k", k, above=0, below=1, optional=True)
        self.start = integer("start", start, at_least=0, optional=True, what=">= 0")
        self.every = integer("every", every, at_least=1)
        if self.k is not None:
            self.requires = ("index",)
            self.state_names = ("weight", "visits")
            for name in self.state_names:
                self.register_buffer(name, None)
            self.truncated_value = (1 - self.k**self.q) / self.q  # L_q(k)

    def hparams(self):
        return {"q": self.q, "k": self.k, "start": self.start, "every": self.every}

    def initial_state(self, num_samples: int) -> dict[str, torch.Tensor]:
        return {
            "weight": torch.ones(num_samples),
            "visits": torch.zeros(num_samples, dtype=torch.long),
        }

    def setup_samples(self, num_samples: int) -> None:
        if self.k is not None:
            super().setup_samples(num_samples)

    def per_sample(self, log_py: torch.Tensor) -> torch.Tensor:
        return -torch.expm1(self.q * log_py) / self.q

    @torch.no_grad()
    def prune(self, logits: torch.Tensor, target: torch.Tensor, index: torch.Tensor) -> None:
        """Set w_i = 1[p_i > k] for the given samples from these logits (no schedule)."""
        if self.k is None:
            raise ValueError("GCELoss.prune needs truncation: set loss.k")
        logits = self.prepare(logits, target)
        index = self.state_index(index, logits)
        keep = target_log_prob(logits, target) > math.log(self.k)
        self.weight[index] = keep.to(self.weight.dtype)

    def forward(self, logits, target, *, index=None, features=None):
        logits = self.prepare(logits, target)
        log_py = target_log_prob(logits, target)
        loss = self.per_sample(log_py)
        if self.k is None:
            return loss.mean()
        index = self.state_index(index, logits)
        w = self.weight[index].to(loss.dtype)
        value = (w * loss + (1 - w) * self.truncated_value).mean()
        if self.training:
            with torch.no_grad():
                visits = self.visits[index]
                if self.start is not None:
                    due = (visits >= self.start) & ((visits - self.start) % self.every == 0)
                    keep = (log_py.detach() > math.log(self.k)).to(self.weight.dtype)
                    self.weight[index] = torch.where(due, keep, self.weight[index])
                self.visits[index] = visits + 1
        return value
