"""The contract every model keeps: logits are a linear head on pooled features.

Losses that work on features (prototypes, contrastive terms, distillation) need the
penultimate representation as well as the logits; splitting every model the same way lets
them use any model without knowing its architecture.
"""

from __future__ import annotations

from torch import Tensor, nn


class Classifier(nn.Module):
    """Base class: `forward(x) == head(forward_features(x))`.

    Subclasses set `head` to the final `nn.Linear(D, num_classes)` and implement
    `forward_features`, returning pooled features of shape (B, D).
    """

    head: nn.Linear

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled penultimate features, shape (B, D)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Logits, shape (B, num_classes)."""
        return self.head(self.forward_features(x))

    @property
    def feature_dim(self) -> int:
        """D, the width of `forward_features`' output."""
        return self.head.in_features


def init_conv_bn(module: nn.Module, linear_std: float | None = None) -> None:
    """He (fan-out) init for convs, identity for batch norms, as the CIFAR zoo initialises.

    `linear_std` also draws Linear weights from N(0, std²) with zero bias (the zoo's VGG and
    MobileNetV2 do this with 0.01); None leaves PyTorch's default Linear init.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    relu: bool = True,
) -> list[nn.Module]:
    """Conv ("same" padding, no bias) + BN (+ ReLU): the unit the mobile nets of the zoo stack.

    `groups` = `in_channels` makes it depthwise; `relu=False` leaves a linear output, as the
    bottlenecks' projections and depthwise convs of MobileNetV2 / ShuffleNet need.
    """
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False
        ),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return layers
