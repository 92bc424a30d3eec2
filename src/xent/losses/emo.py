"""EMO, Earth Mover Distance Optimisation (Ren et al., ICLR 2024), on tokens.

Docs: docs/methods/lm_losses.md §3.

For a one-hot target y the earth mover distance between the model's Q and the target is
bounded by the transport cost of moving all of Q onto y,

    EMO = Σ_i Q(i)·C(i, y) = 1 − ê_yᵀ(Σ_i Q(i)·ê_i),   C(i, j) = 1 − cos(e_i, e_j),

with ê the L2-normalised rows of a cost embedding: here the (tied) LM head weight, DETACHED,
so the loss cannot lower its cost by moving the embeddings instead of Q. It is combined with
CE per token with a detached ratio that gives the two terms the same size, as the `emoloss`
package (PyPI EMOLoss, DRSY/EMO) does:

    mode 1 ("MLE emphasised", the package's default):  ½·(min(sg(CE/EMO), 3)·EMO + CE)
    mode 2 ("EMO emphasised"):                          sg(EMO/CE)·CE + EMO

(sg: stop-gradient, 1e-10 guards each division), averaged over trained tokens. The package's
mode-1 cap of 3 on the ratio is kept (`max_ratio`); the paper's "adaptive" variant (Q(y)'s value
removed from EMO) is not implemented. EMO needs the full softmax: dense head only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xent.losses._common import number, one_of
from xent.losses.lm import LMLoss, LMLossOutput
from xent.losses.lm_head import trained_rows, upcast

RATIO_EPS = 1e-10  # the package's guard of the detached ratios


def transport_cost(probs: torch.Tensor, cost_embedding: torch.Tensor, target: torch.Tensor):
    """Σ_i Q(i)·(1 − cos(e_i, e_y)) per row, (N,): the expected cost of moving Q onto y."""
    unit = F.normalize(cost_embedding.to(probs.dtype), dim=-1)
    return 1 - ((probs @ unit) * unit[target]).sum(-1)


class EMOLoss(LMLoss):
    """EMO mixed with CE per token (see the module docstring); dense head only."""

    needs_full_logits = True
    name = "emo"

    def __init__(self, mode: int = 1, max_ratio: float = 3.0):
        super().__init__()
        self.mode = one_of("mode", mode, (1, 2))
        self.max_ratio = number("max_ratio", max_ratio, above=0)

    def hparams(self) -> dict[str, float]:
        return {"mode": self.mode, "max_ratio": self.max_ratio}

    def combine(self, ce: torch.Tensor, emo: torch.Tensor) -> torch.Tensor:
        """The per-token mix of CE and EMO, ratios detached."""
        if self.mode == 1:
            ratio = (ce / (emo + RATIO_EPS)).detach().clamp(max=self.max_ratio)
            return 0.5 * (ratio * emo + ce)
        return (emo / (ce + RATIO_EPS)).detach() * ce + emo

    def forward(self, hidden, weight, target, head="dense"):
        self.check_head(head)
        hidden, target, _ = trained_rows(hidden, target)
        logits = upcast(hidden @ weight.T)
        log_probs = logits.log_softmax(-1)
        ce = -log_probs.gather(1, target[:, None]).squeeze(1)
        emo = transport_cost(log_probs.exp(), weight.detach(), target)
        lse = logits.detach().logsumexp(-1)
        return LMLossOutput(self.combine(ce, emo).mean(), lse.mean())
