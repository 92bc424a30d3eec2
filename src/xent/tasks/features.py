"""Access to a model's last convolutional feature map, for losses that weigh samples by it."""

from __future__ import annotations

import torch
from torch import nn


class FeatureMapTap:
    """Keeps the input of the model's last global average pool: its pre-pooling feature map.

    Every conv model in the zoo ends in an AdaptiveAvgPool2d, so one forward hook serves them
    all without each model exposing its internals (bias loss needs this map, Abrahamyan et al.).
    """

    def __init__(self, net: nn.Module):
        pools = [m for m in net.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
        if not pools:
            raise ValueError("it has no global average pool, so no conv feature map to read")
        self.value: torch.Tensor | None = None
        self._handle = pools[-1].register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output) -> None:
        self.value = inputs[0]

    def remove(self) -> None:
        self._handle.remove()
