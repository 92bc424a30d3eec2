"""VGG with batch norm, in the CIFAR layout of the CRD/RepDistiller zoo.

Five stages of 3x3 conv-BN-ReLU; 2x2 max-pools follow the first three stages, so a 32x32
image reaches stages four and five at 4x4, and global average pooling feeds a single
linear head (no 4096-wide FC layers). The zoo applies a fourth max-pool only to 64x64
inputs; that branch is left out, so the 32x32 network is the zoo's exactly.

The three max-pools need inputs of at least 8x8, at which size stages four and five see
1x1 maps; the architecture is designed for 32x32.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from xent.models.base import Classifier, init_conv_bn

# Conv widths per stage, named after the zoo's configurations.
CONFIGS: dict[str, list[list[int]]] = {
    "S": [[64], [128], [256], [512], [512]],  # VGG-8
    "B": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],  # VGG-13
}
POOLED_STAGES = 3  # a 2x2 max-pool after each of the first three stages


def _stage(in_channels: int, widths: Sequence[int], pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in widths:
        layers += [
            nn.Conv2d(in_channels, width, 3, padding=1),  # biased, as in the zoo
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        in_channels = width
    if pool:
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class VGG(Classifier):
    """VGG-BN built from per-stage conv widths (see `CONFIGS`)."""

    def __init__(self, stages: Sequence[Sequence[int]], num_classes: int, in_channels: int = 3):
        super().__init__()
        blocks = []
        for i, widths in enumerate(stages):
            blocks.append(_stage(in_channels, widths, pool=i < POOLED_STAGES))
            in_channels = widths[-1]
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(in_channels, num_classes)
        init_conv_bn(self, linear_std=0.01)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.pool(self.features(x)).flatten(1)


def vgg8(num_classes: int, in_channels: int = 3) -> VGG:
    """VGG-8 with BN (zoo config "S": one conv per stage)."""
    return VGG(CONFIGS["S"], num_classes, in_channels)


def vgg13(num_classes: int, in_channels: int = 3) -> VGG:
    """VGG-13 with BN (zoo config "B": two convs per stage)."""
    return VGG(CONFIGS["B"], num_classes, in_channels)
