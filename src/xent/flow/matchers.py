"""Conditional flow-matching losses: I-CFM, OT-CFM (exact minibatch OT) and W-CFM.

All three share one interface, so a task never branches on the method:

    loss = WCFMLoss(sigma=0.1, eps=5.0)            # or ICFMLoss(...), OTCFMLoss(...)
    value = loss(velocity_net, x0, x1)             # scalar; velocity_net(t, x) -> v

`loss.sample(x0, x1)` returns the `FlowBatch` (t, x_t, u_t, pair weights, the coupled x0/x1)
and `loss.regress(velocity_net, batch)` the weighted regression, for a task that wants to log
the weights. The path is torchcfm's `ConditionalFlowMatcher`: x_t = t x1 + (1 − t) x0 + σ ε,
u_t = x1 − x0, t ~ U[0, 1), ε ~ N(0, I); the regression is the mean over pairs of
w_i · mean_dims (v_θ(t_i, x_t,i) − u_t,i)², which for w = 1 is torchcfm's
`torch.mean((vt - ut) ** 2)`. Inputs are batches of shape (B, *dims); images are fine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from xent.losses._common import flag, number, one_of

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# ot.emd's default (1e5) stops early on batches of ~1000 and returns a suboptimal plan (with
# only a warning); torchcfm keeps the default for training and uses 1e7 for its metric.
EMD_MAX_ITER = 10_000_000


@dataclass
class FlowBatch:
    """One regression batch: the (coupled) pairs, times, path points, targets, pair weights."""

    t: torch.Tensor  # (B,)
    xt: torch.Tensor  # (B, *dims)
    ut: torch.Tensor  # (B, *dims)
    weights: torch.Tensor | None  # (B,), None = all ones
    x0: torch.Tensor  # the pairs actually used (re-paired by OT-CFM)
    x1: torch.Tensor
    noise: torch.Tensor | None  # ε, None when σ = 0


def sq_distances(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances (n, m) of the flattened samples, in float64.

    float64 because exact OT is decided by cost differences; torchcfm uses float32
    `torch.cdist(x0, x1) ** 2`, which agrees except on near-ties.
    """
    a = x0.detach().flatten(1).double()
    b = x1.detach().flatten(1).double()
    return torch.cdist(a, b).pow(2)


def exact_ot_plan(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """The exact OT plan (n, m) between uniform empirical measures, squared Euclidean cost.

    POT's network simplex (`ot.emd`) on the CPU, as torchcfm's `OTPlanSampler("exact")`; the
    plan sums to 1 and, for n == m, is a permutation matrix scaled by 1/n.
    """
    import ot

    cost = sq_distances(x0, x1).cpu().numpy()
    plan = ot.emd(ot.unif(len(x0)), ot.unif(len(x1)), cost, numItermax=EMD_MAX_ITER)
    return torch.from_numpy(plan)


def plan_permutation(plan: torch.Tensor) -> torch.Tensor:
    """j such that the plan pairs row i with column j[i]; the plan must be a permutation."""
    n, m = plan.shape
    j = plan.argmax(dim=1)
    support = int((plan > 0).sum())
    if n != m or support != n or not torch.equal(j.sort().values, torch.arange(n)):
        raise ValueError(
            f"OT-CFM pairing='permutation' needs a plan that is a permutation (equal batch "
            f"sizes), got a {n}x{m} plan with {support} non-zero entries"
        )
    return j


def sample_plan_pairs(
    plan: torch.Tensor, size: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw `size` index pairs (i, j) ~ plan with replacement, as torchcfm's `sample_map`.

    torchcfm draws with numpy's global RNG; this draws with `generator` (or torch's global RNG),
    on the generator's device. Duplicated and dropped points are part of that scheme (#142).
    """
    device = generator.device if generator is not None else plan.device
    p = plan.flatten().to(device=device, dtype=torch.float64)
    flat = torch.multinomial(p / p.sum(), size, replacement=True, generator=generator)
    return flat // plan.shape[1], flat % plan.shape[1]


class FlowMatchingLoss(nn.Module):
    """I-CFM (independent coupling); the base class of the other matchers.

    sigma: std of the Gaussian path around the straight line. Default 0.0 is torchcfm's class
    default and its CIFAR recipe; the 2D protocol of Tong et al. uses 0.1.
    """

    coupling = "independent"
    target_kind = "flow"  # what the runner's preflight matches against the task's kind

    def __init__(self, sigma: float = 0.0) -> None:
        super().__init__()
        self.sigma = number("sigma", sigma, at_least=0)

    @property
    def loss_name(self) -> str:
        return type(self).__name__

    def hparams(self) -> dict[str, Any]:
        return {"sigma": self.sigma}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.hparams().items())

    def couple(
        self, x0: torch.Tensor, x1: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The pairs to regress on; independent coupling keeps the input order."""
        return x0, x1

    def pair_weights(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor | None:
        """Per-pair loss weights (B,), or None for all ones."""
        return None

    def sample(
        self,
        x0: torch.Tensor,
        x1: torch.Tensor,
        *,
        t: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> FlowBatch:
        """Couple the batch, then draw t (and ε if σ > 0) unless given.

        Draw order is coupling, t, ε, all from `generator` (default: torch's global RNG, which
        Lightning seeds), so I-CFM and W-CFM see the same t and ε for the same seed.
        """
        if x0.shape != x1.shape or x0.dim() < 2:
            raise ValueError(
                f"{self.loss_name} expects x0 and x1 of the same shape (B, *dims), got "
                f"{tuple(x0.shape)} and {tuple(x1.shape)}"
            )
        x0, x1 = self.couple(x0, x1, generator)
        if t is None:
            t = torch.rand(len(x0), generator=generator, device=x0.device, dtype=x0.dtype)
        if t.shape != (len(x0),):
            raise ValueError(f"t must have shape ({len(x0)},), got {tuple(t.shape)}")
        tb = t.reshape(-1, *([1] * (x0.dim() - 1)))
        xt = tb * x1 + (1 - tb) * x0
        if self.sigma > 0:
            if noise is None:
                noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
            xt = xt + self.sigma * noise
        ut = x1 - x0
        return FlowBatch(t, xt, ut, self.pair_weights(x0, x1), x0, x1, noise)

    @staticmethod
    def regress(velocity: Velocity, batch: FlowBatch) -> torch.Tensor:
        """mean_i w_i · mean_dims (v(t_i, x_t,i) − u_t,i)²."""
        per_pair = (velocity(batch.t, batch.xt) - batch.ut).pow(2).flatten(1).mean(dim=1)
        if batch.weights is None:
            return per_pair.mean()
        return (batch.weights * per_pair).mean()

    def forward(
        self,
        velocity: Velocity,
        x0: torch.Tensor,
        x1: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The scalar loss for a source batch x0 and a target batch x1."""
        return self.regress(velocity, self.sample(x0, x1, generator=generator))


class ICFMLoss(FlowMatchingLoss):
    """I-CFM (Tong et al.): independent pairs; torchcfm's `ConditionalFlowMatcher`."""


class OTCFMLoss(FlowMatchingLoss):
    """OT-CFM: re-pair the batch by the exact minibatch OT plan, then regress as I-CFM.

    pairing="sample" (default) draws B pairs from the plan with replacement, as torchcfm 1.0.7's
    `ExactOptimalTransportConditionalFlowMatcher` (the published numbers used it), but from the
    torch generator instead of numpy's global RNG. pairing="permutation" keeps x0 in order and
    pairs it with its assigned x1: deterministic, no duplicated or dropped points (what torchcfm
    main's `sample_plan_with_scipy` does). Cost: one `ot.emd` on the CPU per step.
    """

    coupling = "exact_ot"
    PAIRINGS = ("permutation", "sample")

    def __init__(self, sigma: float = 0.0, pairing: str = "sample") -> None:
        super().__init__(sigma)
        self.pairing = one_of("pairing", pairing, self.PAIRINGS)

    def hparams(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "pairing": self.pairing}

    def couple(
        self, x0: torch.Tensor, x1: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        plan = exact_ot_plan(x0, x1)
        if self.pairing == "permutation":
            return x0, x1[plan_permutation(plan).to(x1.device)]
        i, j = sample_plan_pairs(plan, len(x0), generator)
        return x0[i.to(x0.device)], x1[j.to(x1.device)]


class WCFMLoss(FlowMatchingLoss):
    """W-CFM (arXiv 2507.22270): independent pairs, each weighted by w = exp(−c(x0, x1)/ε).

    The Gibbs weight turns μ⊗ν into (a tilted) entropic-OT plan without solving OT, at I-CFM's
    cost. Knobs, with the defaults and why (see docs/methods/flow.md §1.2; ⚠ = unverified there):

    - cost="euclidean": c = ||x0 − x1||. The third-party notes and the unofficial code use the
      plain norm, and the paper's ε ∝ √d scaling only fits it (a squared cost at CIFAR scale
      underflows every weight at ε = 5). "sqeuclidean" (EOT's usual ||·||²) is available. ⚠
    - eps=5.0, eps_mode="direct": ε as given; 5.0 is the one value the sources report (best in
      the CIFAR-10 sweep, Table 6; the unofficial repo's value). "sqrt_dim" reads eps as κ with
      ε = κ·√d (the paper's parameterisation; d = numel of one sample); "mean_cost" reads eps
      as ρ with ε = ρ · (mean cost of the batch's pairs), a scale-free choice for sweeps across
      data sets. ε must suit the data scale: too small tilts the marginals, too large is I-CFM.
    - normalize=True: weights are divided by their batch mean (computed in log space, so a batch
      whose raw weights all underflow still trains). The population minimiser is unchanged
      (E[w ℓ]/E[w] is the paper's objective over a constant), but the loss keeps I-CFM's scale,
      so Adam's ε, grad clipping and logged losses behave as for I-CFM; raw weights at CIFAR
      scale are ~exp(−62/5) ≈ 4e-6. The sources do not say; the unofficial code is unnormalised
      (normalize=False). ⚠
    - sigma=0.0 as I-CFM (the path noise for W-CFM is not reported ⚠).
    """

    coupling = "independent"
    COSTS = ("euclidean", "sqeuclidean")
    EPS_MODES = ("direct", "mean_cost", "sqrt_dim")

    def __init__(
        self,
        sigma: float = 0.0,
        eps: float = 5.0,
        eps_mode: str = "direct",
        cost: str = "euclidean",
        normalize: bool = True,
    ) -> None:
        super().__init__(sigma)
        self.eps = number("eps", eps, above=0)
        self.eps_mode = one_of("eps_mode", eps_mode, self.EPS_MODES)
        self.cost = one_of("cost", cost, self.COSTS)
        self.normalize = flag("normalize", normalize)

    def hparams(self) -> dict[str, Any]:
        return {
            "sigma": self.sigma,
            "eps": self.eps,
            "eps_mode": self.eps_mode,
            "cost": self.cost,
            "normalize": self.normalize,
        }

    def pair_cost(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """c(x0_i, x1_i) per pair (B,), in at least float32."""
        diff = (x1.detach() - x0.detach()).flatten(1)
        if diff.dtype in (torch.float16, torch.bfloat16):
            diff = diff.float()
        sq = diff.pow(2).sum(dim=1)
        return sq.sqrt() if self.cost == "euclidean" else sq

    def temperature(self, cost: torch.Tensor, dim: int) -> torch.Tensor | float:
        """ε for this batch: eps, eps·√d or eps·mean(cost)."""
        if self.eps_mode == "direct":
            return self.eps
        if self.eps_mode == "sqrt_dim":
            return self.eps * math.sqrt(dim)
        # all-zero costs (x0 == x1) would give 0/0; a tiny floor makes every weight 1
        return self.eps * cost.mean().clamp_min(torch.finfo(cost.dtype).tiny)

    def pair_weights(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        cost = self.pair_cost(x0, x1)
        log_w = -cost / self.temperature(cost, x0[0].numel())
        if self.normalize:
            weights = torch.softmax(log_w, dim=0) * len(log_w)
        else:
            weights = log_w.exp()
        return weights.to(x0.dtype)
