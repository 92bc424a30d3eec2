"""The velocity MLP of Tong et al.'s 2D experiments."""

from __future__ import annotations

import torch
from torch import nn

from xent.checks import integer


class VelocityMLP(nn.Module):
    """v_θ(t, x): an MLP on [x, t] with `depth` SELU hidden layers of `width` (default 3 × 64).

    The layer layout (and so the state_dict keys `net.0.weight`, ...) is torchcfm's
    `MLP(dim, w=64, time_varying=True)` behind `torch_wrapper` (t appended after x), so its
    checkpoints load here. t may be a scalar (as an ODE solver passes it) or a (B,) tensor.
    """

    def __init__(self, dim: int = 2, width: int = 64, depth: int = 3) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("width", width), ("depth", depth)):
            integer(f"model.{name}", value, at_least=1, error=ValueError)
        self.dim = dim
        layers: list[nn.Module] = [nn.Linear(dim + 1, width), nn.SELU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.SELU()]
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.dim() == 0:
            t = t.expand(len(x))
        return self.net(torch.cat([x, t.reshape(-1, 1)], dim=1))
