"""The 8-layer CNN of the noisy-label literature (SCE: Wang et al. 2019; APL: Ma et al. 2020).

Six 3x3 conv-BN-ReLU layers in three blocks of (64, 128, 196) channels, each block closed by a
2x2 max-pool, then a 256-wide fully connected layer with batch norm and ReLU, then the linear
head: 1.6M parameters on CIFAR-10. It flattens rather than pools, so the flatten width follows
the input size (196·(S/8)² for S×S inputs). Conv weights use He init as the Keras original
(`he_normal`) does.
"""

from __future__ import annotations

from torch import Tensor, nn

from xent.models.base import Classifier


def _block(in_channels: int, out_channels: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for c_in in (in_channels, out_channels):
        layers += [
            nn.Conv2d(c_in, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
    return layers + [nn.MaxPool2d(2)]


class NoisyLabelCNN(Classifier):
    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32):
        super().__init__()
        if image_size < 8 or image_size % 8:
            raise ValueError(
                f"cnn8 needs a multiple of 8 as image size (3 pools), got {image_size}"
            )
        side = image_size // 8
        self.features = nn.Sequential(
            *_block(in_channels, 64),
            *_block(64, 128),
            *_block(128, 196),
            nn.Flatten(),
            nn.Linear(196 * side * side, 256),
            nn.BatchNorm1d(256),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(256, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)


def cnn8(num_classes: int, in_channels: int = 3, image_size: int = 32) -> NoisyLabelCNN:
    """8-layer CNN (6 conv + 2 FC) used by SCE/APL for CIFAR-10 with noisy labels."""
    return NoisyLabelCNN(num_classes, in_channels, image_size)
