"""Two different losses called "z-loss" (docs/methods/losses.md §7).

`ZLoss`: de Brébisson & Vincent 2016, a *replacement* for softmax-CE on standardised logits.
`CELogZLoss`: PaLM's auxiliary z-loss, an *add-on* to CE that penalises (log Z)². They share
only the name; `loss=zloss` is the former, `loss=ce_logz` the latter.
"""

from __future__ import annotations

import torch.nn.functional as F

from xent.losses._common import Loss, number

# Added to the variance before the square root: constant logits (σ = 0) give z = 0 and a
# finite gradient instead of 0/0. Negligible against any real spread of logits.
VAR_EPS = 1e-12


class ZLoss(Loss):
    """The Z-loss (de Brébisson & Vincent 2016): with μ, σ the mean and (population) standard
    deviation of the K logits, `z_y = (s_y − μ)/σ` and

        L = (1/a)·softplus(a·(b − z_y)) = (1/a)·log(1 + exp(a·(b − z_y))),  batch mean.

    Invariant to shifting and positively scaling the logits (exactly, up to VAR_EPS). A
    "spherical family" loss: it depends only on Σs, Σs², s_y (the paper's O(1)-in-K algorithm
    needs a special output layer; with a dense head this is O(K), like CE). Not PaLM's z-loss
    (that is `CELogZLoss`).

    a > 0 sets the sharpness, b the offset; the paper tunes both per task and gives no
    universal default. Defaults chosen here: a = 1, b = 3 (UNVERIFIED). Since
    z_y <= sqrt(K − 1) (= 3 for K = 10), b ≈ sqrt(K − 1) puts the softplus knee at the best
    attainable z_y: use a larger b for more classes.
    """

    def __init__(self, a: float = 1.0, b: float = 3.0):
        super().__init__()
        self.a = number("a", a, above=0)
        self.b = number("b", b)

    def hparams(self):
        return {"a": self.a, "b": self.b}

    def forward(self, logits, target, *, index=None, features=None):
        logits = self.prepare(logits, target)
        centred = logits - logits.mean(dim=-1, keepdim=True)
        sigma = (centred.square().mean(dim=-1) + VAR_EPS).sqrt()
        z_y = centred.gather(1, target[:, None]).squeeze(1) / sigma
        return (F.softplus(self.a * (self.b - z_y)) / self.a).mean()


class CELogZLoss(Loss):
    """CE + coef·(log Z)², log Z = logsumexp(s) per sample, batch mean (PaLM §5's auxiliary
    z-loss; default coef = 1e-4 from PaLM; OLMo 2 uses 1e-5). Pushes the softmax normaliser
    toward 1 (log Z → 0), which keeps bf16 logits well-scaled. Not the Z-loss of
    de Brébisson & Vincent (that is `ZLoss`).
    """

    def __init__(self, coef: float = 1e-4):
        super().__init__()
        self.coef = number("coef", coef, at_least=0)

    def hparams(self):
        return {"coef": self.coef}

    def forward(self, logits, target, *, index=None, features=None):
        logits = self.prepare(logits, target)
        log_z = logits.logsumexp(dim=-1)
        nll = log_z - logits.gather(1, target[:, None]).squeeze(1)
        return (nll + self.coef * log_z.square()).mean()
