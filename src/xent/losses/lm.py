"""Token losses for task=lm: the head (hidden @ Wᵀ) is applied inside the loss.

Why inside: the (tokens × vocabulary) logits are the largest tensor of a small language model,
and `lm.head=chunked|cce` computes the same loss without ever holding them. So an LM loss is
called with the model's hidden states and the (tied) output weight, not with logits:

    loss(hidden (B, T, D), weight (V, D), target (B, T), head="dense") -> LMLossOutput

`target` holds token ids, `IGNORE_INDEX` where a position is not trained on (a prompt, padding).
The classify losses `ce` (with label smoothing) and `ce_logz` run on tokens through
`as_lm_loss`, so `xent-run task=lm loss=ce` is ordinary token CE.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100
HEADS = ("dense", "chunked", "cce")


@dataclass
class LMLossOutput:
    """What a training step needs: the loss to minimise and the mean log-sum-exp of the logits
    over trained tokens (detached; logged as train/lse_mean, the quantity z-loss controls)."""

    loss: torch.Tensor
    lse_mean: torch.Tensor


class LMLoss(nn.Module):
    """Base of the token losses; `needs_full_logits` losses (EMO) refuse the memory-lean heads."""

    target_kind = "tokens"
    needs_full_logits = False

    def check_head(self, head: str) -> None:
        """Raise ValueError with one line (`lm.head=... must be ...`) where this loss cannot run
        with `head`: an unknown head, a memory-lean head for a loss that needs full logits, `cce`
        without its package. Called by the task's preflight, before anything is written."""
        if head not in HEADS:
            raise ValueError(f"lm.head={head} must be one of {', '.join(HEADS)}")

    def forward(
        self, hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, head: str = "dense"
    ) -> LMLossOutput:
        raise NotImplementedError


class TokenCE(LMLoss):
    """Token cross-entropy with label smoothing and PaLM's z-loss term `z_coef·lse²`, averaged
    over trained tokens."""

    def __init__(self, label_smoothing: float = 0.0, z_coef: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing
        self.z_coef = z_coef

    def forward(self, hidden, weight, target, head="dense"):
        # Placeholder dense path; lm.head=chunked|cce live in xent.losses.lm_head.
        logits = hidden.reshape(-1, hidden.shape[-1]) @ weight.T
        flat = target.reshape(-1)
        ce = F.cross_entropy(
            logits, flat, ignore_index=IGNORE_INDEX, label_smoothing=self.label_smoothing
        )
        kept = flat != IGNORE_INDEX
        lse = logits.logsumexp(-1)[kept]
        loss = ce + self.z_coef * lse.square().mean() if self.z_coef else ce
        return LMLossOutput(loss, lse.detach().mean())


def as_lm_loss(loss: nn.Module) -> LMLoss:
    """The token loss a configured loss stands for: an LM loss as is; `ce` and `ce_logz` (the
    classify configs) as `TokenCE` with their label smoothing or z coefficient."""
    from xent.losses.zloss import CELogZLoss

    if isinstance(loss, LMLoss):
        return loss
    if isinstance(loss, nn.CrossEntropyLoss):
        return TokenCE(label_smoothing=loss.label_smoothing)
    if isinstance(loss, CELogZLoss):
        return TokenCE(z_coef=loss.coef)
    raise TypeError(f"{type(loss).__name__} is not a token loss")
