"""Flow-matching core: 2D samplers, I-/OT-/W-CFM losses, ODE sampling, W2/NPE metrics.

Pure torch (no Lightning, no Hydra). POT, torchdiffeq and matplotlib are imported where used.
A training step is `loss(velocity_net, x0, x1)`; evaluation is `integrate(...)` then
`wasserstein2(...)` and `normalized_path_energy(...)`.
"""

from xent.flow.distributions import DISTRIBUTIONS, check_name, sample
from xent.flow.matchers import (
    FlowBatch,
    FlowMatchingLoss,
    ICFMLoss,
    OTCFMLoss,
    WCFMLoss,
    exact_ot_plan,
    plan_permutation,
    sample_plan_pairs,
)
from xent.flow.metrics import normalized_path_energy, wasserstein2
from xent.flow.nets import VelocityMLP
from xent.flow.ode import ODESolution, integrate

__all__ = [
    "DISTRIBUTIONS",
    "FlowBatch",
    "FlowMatchingLoss",
    "ICFMLoss",
    "ODESolution",
    "OTCFMLoss",
    "VelocityMLP",
    "WCFMLoss",
    "check_name",
    "exact_ot_plan",
    "integrate",
    "normalized_path_energy",
    "plan_permutation",
    "sample",
    "sample_plan_pairs",
    "wasserstein2",
]
