"""AnyLoss (Han, Moniz, Chawla 2024): binary confusion-matrix metrics turned into losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xent.losses._common import Loss, number, one_of

METRICS = ("f1", "bal_acc", "gmean", "acc")
SMOOTH = 1e-5  # the paper's s: keeps the metric's denominators away from 0


class AnyLoss(Loss):
    """`1 − metric` of a soft confusion matrix built over the whole batch (binary only).

    With p = softmax(logits)[:, 1] = sigmoid(s₁ − s₀) (class 1 is the positive class), each
    prediction is pushed towards a 0/1 decision by the amplifier A = sigmoid(L·(p − 0.5)),
    and with y ∈ {0, 1}: TP = Σ y·A, FN = Σ y(1−A), FP = Σ (1−y)A, TN = Σ (1−y)(1−A),
    n₁ = Σ y, n₀ = N − n₁, s = 1e-5. The metrics (the paper's / extension code's forms):

        f1       F_β = (1+β²)·TP / (β²·n₁ + ΣA + s)        (β = `beta`, F1 at β = 1)
        bal_acc  (n₀·TP + n₁·TN) / (2·n₀·n₁ + s)
        gmean    TP·TN / (n₀·n₁ + s)                       (TPR·TNR: the G-mean squared)
        acc      (TP + TN) / N

    metric: which one; L: amplifier > 0; beta: β > 0 (used by f1 only).
    r ∈ (0, 1]: weight of the metric term in the hybrid `(1−r)·WBCE + r·(1 − metric)`, where
        WBCE is the batch mean of binary CE weighting positives by n₀/N and negatives by n₁/N
        (batch proportions, as in the authors' code). r = 1 is pure AnyLoss. The authors'
        extension notebook feeds the raw p, not A, into the metric of its WBCE hybrids; here
        the metric term is the same amplified one for every r, so r → 1 is continuous.

    Default L = 73: the original paper's fixed choice (⚠ unverified here; the extension's
    README recommends an integer L in [2, 70]). A larger L makes A closer to a hard 0/1
    decision but saturates it sooner, so its gradient vanishes for confident p. Measured on
    data=breast_cancer, model=mlp, 15 epochs: with L = 73 the project's default SGD (lr 0.05,
    momentum 0.9) throws every p above 0.55 in its first step, A saturates at 1 and training
    stalls at "all positive" (test F1 0.548 on 3/3 seeds); optim=adamw (lr 1e-3) reaches test
    F1 0.91–0.94 (8 seeds), L = 10 with SGD 0.91–0.93 (3 seeds). So use a small step (Adam)
    or a smaller L.

    Batch-level and non-decomposable: the value depends on the batch's class mix, so use
    batches that hold both classes (data=breast_cancer uses 64). A batch with no positives
    has TP = 0, so F_β and gmean are exactly 0 and the loss is the constant 1 with zero
    gradient (the method's behaviour, kept). bal_acc and gmean divide by ≈ s when a class is
    missing but cannot blow up: their numerators then are exact zeros (empty sums), so they
    too give the constant loss 1. Otherwise every metric is in [0, 1] (TP ≤ min(n₁, ΣA),
    TN ≤ n₀), so the pure loss stays in [0, 1].

    Numerics: p via sigmoid of the logit difference (no cancellation near p = 1), the WBCE
    logs via logsigmoid (exact, where the authors' code adds s inside the log). Logits of
    ±1e4 give a finite loss and finite (possibly zero, once A saturates) gradients.
    """

    requires: tuple[str, ...] = ("binary_target",)

    def __init__(self, metric: str = "f1", L: float = 73.0, beta: float = 1.0, r: float = 1.0):
        super().__init__()
        self.metric = one_of("metric", metric, METRICS)
        self.L = number("L", L, above=0)
        self.beta = number("beta", beta, above=0)
        self.r = number("r", r, above=0, at_most=1)

    def hparams(self):
        return {"metric": self.metric, "L": self.L, "beta": self.beta, "r": self.r}

    def forward(self, logits, target, *, index=None, features=None):
        if logits.dim() == 2 and logits.shape[1] != 2:
            raise ValueError(
                f"AnyLoss is binary: it needs logits of shape (B, 2), got {tuple(logits.shape)}"
            )
        logits = self.prepare(logits, target)
        if len(target) and (target.min() < 0 or target.max() > 1):
            raise ValueError("AnyLoss takes binary targets in {0, 1}, got other labels")
        diff = logits[:, 1] - logits[:, 0]
        y = target.to(logits.dtype)
        n = float(len(target))
        n1 = y.sum()
        n0 = n - n1
        value = 1 - self.metric_value(torch.sigmoid(diff), y, n, n0, n1)
        if self.r == 1:
            return value
        log_p1, log_p0 = F.logsigmoid(diff), F.logsigmoid(-diff)
        wbce = -((n0 / n) * y * log_p1 + (n1 / n) * (1 - y) * log_p0).mean()
        return (1 - self.r) * wbce + self.r * value

    def metric_value(
        self, p: torch.Tensor, y: torch.Tensor, n: float, n0: torch.Tensor, n1: torch.Tensor
    ) -> torch.Tensor:
        """The soft metric of the batch: A = sigmoid(L·(p − 0.5)) in place of hard decisions."""
        a = torch.sigmoid(self.L * (p - 0.5))
        tp = (y * a).sum()
        tn = ((1 - y) * (1 - a)).sum()
        if self.metric == "f1":
            b2 = self.beta**2
            return (1 + b2) * tp / (b2 * n1 + a.sum() + SMOOTH)
        if self.metric == "bal_acc":
            return (n0 * tp + n1 * tn) / (2 * n0 * n1 + SMOOTH)
        if self.metric == "gmean":
            return tp * tn / (n0 * n1 + SMOOTH)
        return (tp + tn) / n
