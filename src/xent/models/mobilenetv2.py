"""MobileNetV2 (Sandler et al. 2018) in the CIFAR layout of the CRD/RepDistiller zoo.

The zoo keeps the stride-2 stem but runs the second stage (24 channels) at stride 1, so a
32x32 image is downsampled 16x to 2x2 before the 1x1 conv to 1280 channels. The default
width multiplier 0.5 is the zoo's `mobile_half`, the usual MobileNetV2 student.
"""

from __future__ import annotations

from torch import Tensor, nn

from xent.models.base import Classifier, conv_bn, init_conv_bn

# (expansion, output channels, blocks, first stride); None: the model's `expansion` (6).
SETTINGS: list[tuple[int | None, int, int, int]] = [
    (1, 16, 1, 1),
    (None, 24, 2, 1),  # stride 2 on ImageNet
    (None, 32, 3, 2),
    (None, 64, 4, 2),
    (None, 96, 3, 1),
    (None, 160, 3, 2),
    (None, 320, 1, 1),
]
LAST_CHANNELS = 1280


class InvertedResidual(nn.Module):
    """1x1 expand, 3x3 depthwise, 1x1 linear projection; residual when shapes allow.

    As in the zoo, the expansion conv is present even when the expansion ratio is 1.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        self.conv = nn.Sequential(
            *conv_bn(in_channels, hidden, 1),
            *conv_bn(hidden, hidden, 3, stride, groups=hidden),
            *conv_bn(hidden, out_channels, 1, relu=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(Classifier):
    """MobileNetV2 with CIFAR strides; `width_mult` scales every stage but the last 1x1 conv."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        width_mult: float = 0.5,
        expansion: int = 6,
    ):
        super().__init__()
        channels = int(32 * width_mult)
        stem = nn.Sequential(*conv_bn(in_channels, channels, 3, stride=2))
        blocks: list[nn.Module] = [stem]
        for t, c, n, s in SETTINGS:
            out_channels, ratio = int(c * width_mult), expansion if t is None else t
            layers = []
            for i in range(n):
                layers.append(InvertedResidual(channels, out_channels, s if i == 0 else 1, ratio))
                channels = out_channels
            blocks.append(nn.Sequential(*layers))
        last = int(LAST_CHANNELS * width_mult) if width_mult > 1.0 else LAST_CHANNELS
        blocks.append(nn.Sequential(*conv_bn(channels, last, 1)))
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(last, num_classes)
        init_conv_bn(self, linear_std=0.01)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.pool(self.features(x)).flatten(1)


def mobilenetv2(
    num_classes: int, in_channels: int = 3, width_mult: float = 0.5, expansion: int = 6
) -> MobileNetV2:
    """MobileNetV2, half width by default (the zoo's `mobile_half`)."""
    return MobileNetV2(num_classes, in_channels, width_mult, expansion)
