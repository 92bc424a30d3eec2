"""ShuffleNet V1 (Zhang et al. 2018) and V2 (Ma et al. 2018) as the CRD/RepDistiller zoo's students.

The zoo swaps the ImageNet stem (3x3 stride-2 conv and a max-pool) for a 1x1 conv to 24
channels at stride 1, so a 32x32 image enters the first stage at full size and each of the
three stages halves it (32 -> 16 -> 8 -> 4). Kept from the zoo, where it differs from the
papers: V1 has a ReLU after its depthwise conv; V2 ends in a 1x1 conv to 1024 channels.
Like the zoo's ShuffleNets (and unlike its other models), the weights keep PyTorch's default
initialisation. As elsewhere in this package the zoo's fixed AvgPool2d(4) is a global average
pool: identical at 32x32, and the nets also run on 8x8 digits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xent.models.base import Classifier, conv_bn

STEM_CHANNELS = 24
V1_CHANNELS = (240, 480, 960)  # groups = 3 (the paper's Table 1)
V1_BLOCKS = (4, 8, 4)
V1_GROUPS = 3
V2_CHANNELS = (116, 232, 464)  # net size 1x (the paper's Table 5)
V2_BLOCKS = (3, 7, 3)  # stride-1 units after each stage's stride-2 unit
V2_LAST_CHANNELS = 1024


class ChannelShuffle(nn.Module):
    """Interleaves the channels of `groups` groups, so the next grouped conv sees all of them."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _stem(in_channels: int) -> nn.Sequential:
    """The zoo's CIFAR stem: 1x1 conv to 24 channels at stride 1, BN, ReLU."""
    return nn.Sequential(*conv_bn(in_channels, STEM_CHANNELS, 1))


class ShuffleV1Unit(nn.Module):
    """Grouped 1x1, shuffle, 3x3 depthwise, grouped 1x1 (bottleneck width out/4), then ReLU.

    At stride 2 the input, average-pooled 3x3, is concatenated to the branch (which then makes
    only `out_channels - in_channels` channels); at stride 1 it is added.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, groups: int, first_groups: int
    ):
        super().__init__()
        self.stride = stride
        branch_channels = out_channels - in_channels if stride == 2 else out_channels
        mid = branch_channels // 4
        self.branch = nn.Sequential(
            *conv_bn(in_channels, mid, 1, groups=first_groups),
            ChannelShuffle(first_groups),
            *conv_bn(mid, mid, 3, stride, groups=mid),
            *conv_bn(mid, branch_channels, 1, groups=groups, relu=False),
        )
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out, shortcut = self.branch(x), self.shortcut(x)
        return F.relu(torch.cat([out, shortcut], 1) if self.stride == 2 else out + shortcut)


class ShuffleNetV1(Classifier):
    """Stem, three stages of ShuffleNet units (the first of each at stride 2), pool, head."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        stage_channels: Sequence[int] = V1_CHANNELS,
        stage_blocks: Sequence[int] = V1_BLOCKS,
        groups: int = V1_GROUPS,
    ):
        super().__init__()
        units: list[nn.Module] = [_stem(in_channels)]
        channels = STEM_CHANNELS
        for out_channels, blocks in zip(stage_channels, stage_blocks, strict=True):
            for i in range(blocks):
                # The paper leaves the first unit's 1x1 ungrouped: the stem's 24 channels are few.
                first_groups = groups if len(units) > 1 else 1
                stride = 2 if i == 0 else 1
                units.append(ShuffleV1Unit(channels, out_channels, stride, groups, first_groups))
                channels = out_channels
        self.features = nn.Sequential(*units)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.pool(self.features(x)).flatten(1)


def _v2_branch(in_channels: int, out_channels: int, stride: int) -> list[nn.Module]:
    """1x1 (ReLU), 3x3 depthwise at `stride` (linear), 1x1 (ReLU): V2's main branch."""
    return [
        *conv_bn(in_channels, out_channels, 1),
        *conv_bn(out_channels, out_channels, 3, stride, groups=out_channels, relu=False),
        *conv_bn(out_channels, out_channels, 1),
    ]


class ShuffleV2Unit(nn.Module):
    """ShuffleNet V2 unit; its two halves are concatenated and shuffled (2 groups).

    Stride 1: the channels are split in half; one half passes unchanged, the other goes
    through the branch. Stride 2: both halves of the output are computed from the whole input,
    one by the branch and one by a 3x3 depthwise (linear) + 1x1 (ReLU) shortcut.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        half = out_channels // 2
        self.split = stride == 1
        if self.split:
            self.shortcut: nn.Module = nn.Identity()
            self.branch = nn.Sequential(*_v2_branch(half, half, 1))
        else:
            self.shortcut = nn.Sequential(
                *conv_bn(in_channels, in_channels, 3, stride, groups=in_channels, relu=False),
                *conv_bn(in_channels, half, 1),
            )
            self.branch = nn.Sequential(*_v2_branch(in_channels, half, stride))
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: Tensor) -> Tensor:
        if self.split:
            kept, x = x.chunk(2, dim=1)
        else:
            kept = self.shortcut(x)
        return self.shuffle(torch.cat([kept, self.branch(x)], 1))


class ShuffleNetV2(Classifier):
    """Stem, three stages (a stride-2 unit, then `stage_blocks` stride-1 units), a 1x1 conv to
    `last_channels`, pool, head."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        stage_channels: Sequence[int] = V2_CHANNELS,
        stage_blocks: Sequence[int] = V2_BLOCKS,
        last_channels: int = V2_LAST_CHANNELS,
    ):
        super().__init__()
        units: list[nn.Module] = [_stem(in_channels)]
        channels = STEM_CHANNELS
        for out_channels, blocks in zip(stage_channels, stage_blocks, strict=True):
            units.append(ShuffleV2Unit(channels, out_channels, stride=2))
            units += [ShuffleV2Unit(out_channels, out_channels, stride=1) for _ in range(blocks)]
            channels = out_channels
        units.append(nn.Sequential(*conv_bn(channels, last_channels, 1)))
        self.features = nn.Sequential(*units)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(last_channels, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.pool(self.features(x)).flatten(1)


def shufflenetv1(num_classes: int, in_channels: int = 3) -> ShuffleNetV1:
    """ShuffleNet V1, 3 groups, stages of 240/480/960 channels: the zoo's `ShuffleV1` student."""
    return ShuffleNetV1(num_classes, in_channels)


def shufflenetv2(num_classes: int, in_channels: int = 3) -> ShuffleNetV2:
    """ShuffleNet V2 at 1x (116/232/464, then 1024): the zoo's `ShuffleV2` student."""
    return ShuffleNetV2(num_classes, in_channels)
