"""Small models for the bundled data sets: fast enough to train to convergence in seconds."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from xent.models.base import Classifier, init_conv_bn


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class SmallCNN(Classifier):
    """Two conv-bn-relu pairs, a 2x2 max-pool, two more pairs (twice as wide), global pool.

    Sized for 8x8 inputs (99-100% test accuracy on digits after 20 epochs of SGD); global
    average pooling lets it run on larger images too.
    """

    def __init__(
        self, num_classes: int, in_channels: int = 1, image_size: int = 8, width: int = 32
    ):
        super().__init__()
        if image_size < 2:
            raise ValueError(
                f"cnn needs images of at least 2x2 (it max-pools once), got {image_size}"
            )
        self.features = nn.Sequential(
            *_conv_bn_relu(in_channels, width),
            *_conv_bn_relu(width, width),
            nn.MaxPool2d(2),
            *_conv_bn_relu(width, 2 * width),
            *_conv_bn_relu(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, num_classes)
        init_conv_bn(self)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)


class MLP(Classifier):
    """Flatten, then `depth` Linear-ReLU layers of width `hidden` (depth 0: a linear model).

    Takes any `input_shape`: (C, H, W) images or (D,) table rows. The shape is fixed at
    construction, so a wrong-sized input fails with a message that names both shapes rather
    than a matrix-multiply error.
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int] = (1, 8, 8),
        hidden: int = 256,
        depth: int = 2,
    ):
        super().__init__()
        if depth < 0:
            raise ValueError(f"mlp depth must be >= 0, got {depth}")
        self.input_shape = tuple(int(d) for d in input_shape)
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(self.input_shape)
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            expected = "x".join(map(str, self.input_shape))
            raise ValueError(
                f"mlp was built for {expected} inputs, got {'x'.join(map(str, x.shape[1:]))}"
            )
        return self.features(x)


def cnn(num_classes: int, in_channels: int = 1, image_size: int = 8, width: int = 32) -> SmallCNN:
    """Small conv net for 8x8 digits."""
    return SmallCNN(num_classes, in_channels, image_size, width)


def mlp(
    num_classes: int, input_shape: Sequence[int] = (1, 8, 8), hidden: int = 256, depth: int = 2
) -> MLP:
    """Fully connected baseline on flattened pixels or table rows."""
    return MLP(num_classes, input_shape, hidden, depth)
