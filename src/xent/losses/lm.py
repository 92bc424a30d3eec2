"""Token losses for task=lm: the head (hidden @ Wᵀ) is applied inside the loss.

Why inside: the (tokens × vocabulary) logits are the largest tensor of a small language model,
and `lm.head=chunked|cce` computes the same loss without ever holding them. So an LM loss is
called with the model's hidden states and the (tied) output weight, not with logits:

    loss(hidden (B, T, D), weight (V, D), target (B, T), head="dense") -> LMLossOutput

`target` holds token ids, `IGNORE_INDEX` where a position is not trained on (a prompt, padding).
The classify losses `ce` (with label smoothing) and `ce_logz` run on tokens through
`as_lm_loss`, so `xent-run task=lm loss=ce` is ordinary token CE. The head modes live in
`xent.losses.lm_head`; EMO and DCO in `xent.losses.emo` and `xent.losses.dco`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from xent.losses._common import number
from xent.losses.lm_head import (
    HEADS,
    IGNORE_INDEX,
    check_cce_installed,
    mean_logit,
    mean_token_nll,
    target_logit,
    token_lse,
    trained_rows,
)

__all__ = ["HEADS", "IGNORE_INDEX", "LMLoss", "LMLossOutput", "TokenCE", "as_lm_loss"]


@dataclass
class LMLossOutput:
    """What a training step needs: the loss to minimise and the mean log-sum-exp of the logits
    over trained tokens (detached; logged as train/lse_mean, the quantity z-loss controls)."""

    loss: torch.Tensor
    lse_mean: torch.Tensor


class LMLoss(nn.Module):
    """Base of the token losses.

    `needs_full_logits` losses (EMO) refuse the memory-lean heads; `needs_answer_spans` losses
    (DCO) score whole answers, so their targets must mask each prompt with IGNORE_INDEX: the
    task's preflight calls `check_targets` on a real batch's targets (a probe on unmasked
    targets would fail)."""

    target_kind = "tokens"
    needs_full_logits = False
    needs_answer_spans = False
    name = "lm"  # the loss config's name, for messages

    def check_head(self, head: str) -> None:
        """Raise ValueError with one line (`lm.head=... must be ...`) where this loss cannot run
        with `head`: an unknown head, a memory-lean head for a loss that needs full logits, `cce`
        without its package. Called by the task's preflight, before anything is written."""
        if head not in HEADS:
            raise ValueError(f"lm.head={head} must be one of {', '.join(HEADS)}")
        if self.needs_full_logits and head != "dense":
            raise ValueError(
                f"lm.head={head} must be dense with loss={self.name}: it needs the softmax over "
                "the whole vocabulary, which the memory-lean heads never hold"
            )
        if head == "cce":
            check_cce_installed()

    def check_targets(self, target: torch.Tensor) -> None:
        """Raise ValueError (one line) where a batch's targets cannot be trained on; no check
        by default."""

    def forward(
        self, hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, head: str = "dense"
    ) -> LMLossOutput:
        raise NotImplementedError


class TokenCE(LMLoss):
    """Token cross-entropy with label smoothing ε (PyTorch's convention: off-value ε/V) and
    PaLM's z-loss term `z_coef·lse²`, averaged over trained tokens:

        L = mean_tokens[(1 − ε)(lse − s_y) + ε(lse − s̄) + z_coef·lse²]

    with lse, s_y, s̄ the log-sum-exp, target logit and mean logit (`xent.losses.lm_head`), so
    every head computes the same loss. Plain CE (ε = z_coef = 0) takes each head's fused mean.
    """

    name = "ce"

    def __init__(self, label_smoothing: float = 0.0, z_coef: float = 0.0):
        super().__init__()
        self.label_smoothing = number("label_smoothing", label_smoothing, at_least=0, at_most=1)
        self.z_coef = number("z_coef", z_coef, at_least=0)

    def forward(self, hidden, weight, target, head="dense"):
        hidden, target, _ = trained_rows(hidden, target)
        if not (self.label_smoothing or self.z_coef):
            nll = mean_token_nll(hidden, weight, target, head)
            # mean lse = mean nll + mean s_y: exact, without a second pass over the vocabulary
            s_y = target_logit(hidden.detach(), weight.detach(), target)
            return LMLossOutput(nll, nll.detach() + s_y.mean())
        lse = token_lse(hidden, weight, target, head)
        loss = lse - target_logit(hidden, weight, target)
        if self.label_smoothing:
            smooth = lse - mean_logit(hidden, weight)
            loss = (1 - self.label_smoothing) * loss + self.label_smoothing * smooth
        if self.z_coef:
            loss = loss + self.z_coef * lse.square()
        return LMLossOutput(loss.mean(), lse.detach().mean())


def as_lm_loss(loss: nn.Module) -> LMLoss:
    """The token loss a configured loss stands for: an LM loss as is; `ce` and `ce_logz` (the
    classify configs) as `TokenCE` with their label smoothing or z coefficient."""
    from xent.losses.zloss import CELogZLoss

    if isinstance(loss, LMLoss):
        return loss
    if isinstance(loss, nn.CrossEntropyLoss):
        return TokenCE(label_smoothing=loss.label_smoothing)
    if isinstance(loss, CELogZLoss):
        token_ce = TokenCE(z_coef=loss.coef)
        token_ce.name = "ce_logz"
        return token_ce
    raise TypeError(f"{type(loss).__name__} is not a token loss")
