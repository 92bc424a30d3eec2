"""ImageNet-layout ResNets (four stages, 64-2048 wide) with the CIFAR stem used for 32x32.

The ImageNet stem (7x7 stride-2 conv + max-pool) would shrink a 32x32 image to 8x8 before
the first block; the CIFAR variant (RepDistiller's `resnetv2.py`, kuangliu's pytorch-cifar)
uses a 3x3 stride-1 conv and no max-pool instead. The rest is torchvision's ResNet, built
exactly as `torchvision.models.resnet18/50(num_classes=...)` build it (stride on the 3x3
conv of bottlenecks, 1x1 conv + BN projection shortcuts, He fan-out init), which is the
same network as RepDistiller's `ResNet50`.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models import resnet as tv_resnet

from xent.models.base import Classifier


class CifarStemResNet(Classifier, tv_resnet.ResNet):
    """torchvision ResNet with a 3x3 stride-1 stem, no max-pool, and `fc` renamed `head`.

    The rename gives every model in the zoo the same `head` attribute (and state-dict keys).
    """

    def __init__(
        self,
        block: type[tv_resnet.BasicBlock | tv_resnet.Bottleneck],
        layers: list[int],
        num_classes: int,
        in_channels: int = 3,
    ):
        super().__init__(block, layers, num_classes=num_classes)
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.maxpool = nn.Identity()
        self.head = self.fc
        del self.fc

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # maxpool is the identity
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


def resnet18(num_classes: int, in_channels: int = 3) -> CifarStemResNet:
    """ResNet-18 (basic blocks [2, 2, 2, 2]) with the CIFAR stem."""
    return CifarStemResNet(tv_resnet.BasicBlock, [2, 2, 2, 2], num_classes, in_channels)


def resnet50(num_classes: int, in_channels: int = 3) -> CifarStemResNet:
    """ResNet-50 (bottlenecks [3, 4, 6, 3]) with the CIFAR stem."""
    return CifarStemResNet(tv_resnet.Bottleneck, [3, 4, 6, 3], num_classes, in_channels)
