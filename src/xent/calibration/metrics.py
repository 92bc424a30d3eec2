"""Calibration metrics of a classifier's logits: what `task=calibrate` reports per test domain.

ECE convention (the one `task=classify` logs as `test/ece`, through torchmetrics): 15 equal-width
bins on the top-1 confidence, each closed on the left and open on the right, `[k/15, (k+1)/15)`;
a confidence of exactly 1.0 sits in a bin of its own. The edges are `torch.linspace(0, 1, 16)` in
the confidences' dtype, so a confidence equal to an edge goes to the bin that starts there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

N_BINS = 15


def top1(probs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-1 confidence and whether the top-1 class is the label (as 0.0/1.0)."""
    confidence, predicted = probs.max(dim=1)
    return confidence, (predicted == labels).to(probs.dtype)


def bin_index(confidence: torch.Tensor, n_bins: int = N_BINS) -> torch.Tensor:
    """Each confidence's bin, 0..n_bins-1, and n_bins for a confidence of exactly 1.0."""
    edges = torch.linspace(0, 1, n_bins + 1, dtype=confidence.dtype, device=confidence.device)
    return torch.bucketize(confidence, edges, right=True) - 1


def _bin_gaps(
    confidence: torch.Tensor, correct: torch.Tensor, bins: torch.Tensor, n_slots: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per bin: |accuracy - mean confidence| and the share of samples; empty bins give 0, 0."""
    count = torch.bincount(bins, minlength=n_slots).to(confidence.dtype)
    conf_sum = torch.bincount(bins, weights=confidence, minlength=n_slots)
    acc_sum = torch.bincount(bins, weights=correct, minlength=n_slots)
    filled = count > 0
    gap = torch.zeros_like(count)
    gap[filled] = (acc_sum[filled] - conf_sum[filled]).abs() / count[filled]
    return gap, count / count.sum()


def ece(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = N_BINS) -> float:
    """Expected calibration error on equal-width bins (the module's convention)."""
    gap, share = _bin_gaps(confidence, correct, bin_index(confidence, n_bins), n_bins + 1)
    return float((gap * share).sum())


def mce(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = N_BINS) -> float:
    """Maximum calibration error: the largest gap of a non-empty equal-width bin."""
    gap, _ = _bin_gaps(confidence, correct, bin_index(confidence, n_bins), n_bins + 1)
    return float(gap.max())


def adaptive_ece(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = N_BINS) -> float:
    """ECE on equal-mass bins: sorted confidences cut into n_bins runs of (nearly) equal size."""
    order = torch.argsort(confidence, stable=True)
    sizes = torch.tensor([len(chunk) for chunk in torch.tensor_split(order, n_bins)])
    bins = torch.repeat_interleave(torch.arange(n_bins), sizes)
    gap, share = _bin_gaps(confidence[order], correct[order], bins, n_bins)
    return float((gap * share).sum())


def smooth_ece(confidence: torch.Tensor, correct: torch.Tensor) -> float:
    """Smooth ECE (Blasiok and Nakkiran 2023): no bins, a kernel of fitted bandwidth (relplot)."""
    import relplot  # here: it imports pandas and seaborn, which most runs never need

    return float(relplot.smECE(f=confidence.double().numpy(), y=correct.double().numpy()))


def brier(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Multiclass Brier score: squared distance to the one-hot label, summed over classes."""
    one_hot = F.one_hot(labels, probs.shape[1]).to(probs.dtype)
    return float(((probs - one_hot) ** 2).sum(dim=1).mean())


def calibration_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """acc, nll, brier, ece, ace, smece, mce of one set of logits (computed in float64)."""
    logits = logits.detach().double().cpu()
    labels = labels.cpu()
    probs = logits.softmax(dim=1)
    confidence, correct = top1(probs, labels)
    return {
        "acc": float(correct.mean()),
        "nll": float(F.cross_entropy(logits, labels)),
        "brier": brier(probs, labels),
        "ece": ece(confidence, correct),
        "ace": adaptive_ece(confidence, correct),
        "smece": smooth_ece(confidence, correct),
        "mce": mce(confidence, correct),
    }
