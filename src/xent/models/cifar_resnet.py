"""CIFAR ResNets (He et al. 2016, Sec. 4.2) as in the CRD/RepDistiller zoo.

Three stages of 3x3 basic blocks at 32x32, 16x16 and 8x8, n = (depth - 2) / 6 blocks per
stage. Like the zoo (and unlike the paper's option-A zero-padding), a stage that changes
width or stride uses a 1x1 conv + BN projection shortcut. The zoo's fixed AvgPool2d(8) is
replaced by global average pooling: identical at 32x32, and the net also runs on 8x8 digits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from xent.models.base import Classifier, init_conv_bn

NARROW = (16, 16, 32, 64)
WIDE = (32, 64, 128, 256)  # the "x4" models of the zoo


class BasicBlock(nn.Module):
    """conv3x3-bn-relu-conv3x3-bn, plus the shortcut, then relu."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """`blocks` basic blocks; the first one changes width and stride."""
    layers = [BasicBlock(in_planes, planes, stride)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class CifarResNet(Classifier):
    """Stem conv (in_channels -> widths[0]), three stages of widths[1:], global pool, head."""

    def __init__(
        self,
        depth: int,
        num_classes: int,
        in_channels: int = 3,
        widths: Sequence[int] = NARROW,
    ):
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1, got {depth}")
        if len(widths) != 4:
            raise ValueError(f"widths must be (stem, stage1, stage2, stage3), got {widths}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.layer1 = _stage(widths[0], widths[1], blocks, stride=1)
        self.layer2 = _stage(widths[1], widths[2], blocks, stride=2)
        self.layer3 = _stage(widths[2], widths[3], blocks, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(widths[3], num_classes)
        init_conv_bn(self)

    def forward_features(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.pool(x).flatten(1)


def resnet8(num_classes: int, in_channels: int = 3) -> CifarResNet:
    """ResNet-8, widths 16/16/32/64."""
    return CifarResNet(8, num_classes, in_channels)


def resnet14(num_classes: int, in_channels: int = 3) -> CifarResNet:
    """ResNet-14, widths 16/16/32/64."""
    return CifarResNet(14, num_classes, in_channels)


def resnet20(num_classes: int, in_channels: int = 3) -> CifarResNet:
    """ResNet-20, widths 16/16/32/64."""
    return CifarResNet(20, num_classes, in_channels)


def resnet32(num_classes: int, in_channels: int = 3) -> CifarResNet:
    """ResNet-32, widths 16/16/32/64."""
    return CifarResNet(32, num_classes, in_channels)


def resnet44(num_classes: int, in_channels: int = 3) -> CifarResNet:
    """ResNet-44, widths 16/16/32/64."""
    return CifarResNet(44, num_classes, in_channels)


def resnet56(num_classes: int, in_channels: int = 3) -> CifarResNet:
    """ResNet-56, widths 16/16/32/64."""
    return CifarResNet(56, num_classes, in_channels)


def resnet110(num_classes: int, in_channels: int = 3) -> CifarResNet:
    """ResNet-110, widths 16/16/32/64."""
    return CifarResNet(110, num_classes, in_channels)


def resnet8x4(num_classes: int, in_channels: int = 3) -> CifarResNet:
    """ResNet-8 at four times the width (32/64/128/256), the zoo's usual small student."""
    return CifarResNet(8, num_classes, in_channels, WIDE)


def resnet32x4(num_classes: int, in_channels: int = 3) -> CifarResNet:
    """ResNet-32 at four times the width (32/64/128/256), the zoo's usual large teacher."""
    return CifarResNet(32, num_classes, in_channels, WIDE)
