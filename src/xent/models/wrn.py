"""Wide ResNets (Zagoruyko & Komodakis 2016) as in the CRD/RepDistiller zoo.

WRN-d-k: a 3x3 stem to 16 channels, then three stages of pre-activation basic blocks at
widths 16k/32k/64k, n = (d - 4) / 6 blocks each, a final BN-ReLU and global pooling.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from xent.models.base import Classifier, init_conv_bn


class WideBasic(nn.Module):
    """bn-relu-conv3x3-(dropout)-bn-relu-conv3x3, added to the shortcut.

    When the block changes width or stride, its 1x1 projection shortcut reads the
    pre-activated input (bn-relu applied), as in the reference implementation.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.dropout = dropout
        self.shortcut: nn.Conv2d | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        act = F.relu(self.bn1(x))
        residual = x if self.shortcut is None else self.shortcut(act)
        out = F.relu(self.bn2(self.conv1(act)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        return self.conv2(out) + residual


def _stage(in_planes: int, planes: int, blocks: int, stride: int, dropout: float) -> nn.Sequential:
    layers = [WideBasic(in_planes, planes, stride, dropout)]
    layers += [WideBasic(planes, planes, 1, dropout) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class WideResNet(Classifier):
    """WRN-depth-widen_factor for 32x32 inputs (global pooling lets it run on 8x8 too)."""

    def __init__(
        self,
        depth: int,
        widen_factor: int,
        num_classes: int,
        in_channels: int = 3,
        dropout: float = 0.0,
    ):
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n + 4 with n >= 1, got {depth}")
        blocks = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.block1 = _stage(widths[0], widths[1], blocks, 1, dropout)
        self.block2 = _stage(widths[1], widths[2], blocks, 2, dropout)
        self.block3 = _stage(widths[2], widths[3], blocks, 2, dropout)
        self.bn = nn.BatchNorm2d(widths[3])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(widths[3], num_classes)
        init_conv_bn(self)
        nn.init.zeros_(self.head.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.pool(F.relu(self.bn(x))).flatten(1)


def wide_resnet(
    depth: int, widen_factor: int, num_classes: int, in_channels: int = 3, dropout: float = 0.0
) -> WideResNet:
    """Any WRN-depth-widen_factor (depth = 6n + 4)."""
    return WideResNet(depth, widen_factor, num_classes, in_channels, dropout)


def wrn_16_2(num_classes: int, in_channels: int = 3, dropout: float = 0.0) -> WideResNet:
    """WRN-16-2."""
    return WideResNet(16, 2, num_classes, in_channels, dropout)


def wrn_40_1(num_classes: int, in_channels: int = 3, dropout: float = 0.0) -> WideResNet:
    """WRN-40-1."""
    return WideResNet(40, 1, num_classes, in_channels, dropout)


def wrn_40_2(num_classes: int, in_channels: int = 3, dropout: float = 0.0) -> WideResNet:
    """WRN-40-2, the zoo's usual WRN teacher."""
    return WideResNet(40, 2, num_classes, in_channels, dropout)
