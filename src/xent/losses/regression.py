"""Regression losses for `task=regress`: plain MSE and regression as classification (HL-Gauss).

Called as `loss(outputs, target)` with outputs (B, K) and real targets (B,); `predict(outputs)`
turns outputs into the scalar prediction (B,) that RMSE is measured on.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from xent.losses._common import Loss, integer, number


class RegressionLoss(Loss):
    """Base: real-valued targets, outputs (B, num_outputs)."""

    target_kind = "real"
    num_outputs = 1

    def prepare(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if outputs.dim() != 2 or outputs.shape[1] != self.num_outputs or target.dim() != 1:
            raise ValueError(
                f"{self.loss_name} expects outputs (B, {self.num_outputs}) and targets (B,), got "
                f"{tuple(outputs.shape)} and {tuple(target.shape)}"
            )
        if not target.dtype.is_floating_point:
            raise ValueError(f"{self.loss_name} takes real-valued targets, got {target.dtype}")
        return outputs.float()

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class MSELoss(RegressionLoss):
    """Mean squared error on a single output: the regression baseline."""

    def forward(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        outputs = self.prepare(outputs, target)
        return F.mse_loss(outputs[:, 0], target.float())

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs[:, 0]


class HLGaussLoss(RegressionLoss):
    """Cross-entropy against a Gaussian histogram of the target (Farebrother et al. 2024).

    `num_bins` equal bins over [v_min, v_max]; the target's label is the mass of
    N(y, σ²) in each bin, σ = sigma_ratio · bin width (paper: 0.75; lucidrains' default of
    2.0 is a different choice), renormalised over the support. Targets outside the support
    are clamped into it first: otherwise the normaliser vanishes and the label is NaN. The
    prediction is the softmax-weighted mean of the bin centres (z_i + z_{i+1}) / 2.
    """

    def __init__(
        self, v_min: float = -3.0, v_max: float = 3.0, num_bins: int = 51, sigma_ratio=0.75
    ):
        super().__init__()
        v_min = number("v_min", v_min)
        self.v_max = number("v_max", v_max, above=v_min, what=f"a number > v_min={v_min:g}")
        self.v_min = v_min
        self.num_bins = integer("num_bins", num_bins, at_least=2)
        self.num_outputs = self.num_bins
        self.sigma_ratio = number("sigma_ratio", sigma_ratio, above=0, what="a number > 0")
        edges = torch.linspace(self.v_min, self.v_max, self.num_bins + 1, dtype=torch.float64)
        self.sigma = self.sigma_ratio * (self.v_max - self.v_min) / self.num_bins
        self.register_buffer("edges", edges.float(), persistent=False)
        self.register_buffer("centres", ((edges[:-1] + edges[1:]) / 2).float(), persistent=False)

    def hparams(self) -> dict[str, Any]:
        return {
            "v_min": self.v_min,
            "v_max": self.v_max,
            "num_bins": self.num_bins,
            "sigma_ratio": self.sigma_ratio,
        }

    def target_histogram(self, target: torch.Tensor) -> torch.Tensor:
        """(B, num_bins) bin masses of N(clamp(y), σ²), summing to 1 over the support."""
        y = target.float().clamp(self.v_min, self.v_max)[:, None]
        cdf = torch.special.erf((self.edges[None, :] - y) / (math.sqrt(2.0) * self.sigma))
        mass = cdf[:, 1:] - cdf[:, :-1]
        return mass / (cdf[:, -1:] - cdf[:, :1])

    def forward(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        outputs = self.prepare(outputs, target)
        labels = self.target_histogram(target)
        return -(labels * outputs.log_softmax(dim=-1)).sum(dim=-1).mean()

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.float().softmax(dim=-1) @ self.centres
