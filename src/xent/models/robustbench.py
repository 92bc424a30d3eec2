"""The two CIFAR source models of continual test-time adaptation, in RobustBench's layout.

CIFAR10-C adapts RobustBench's CIFAR-10 `Standard` model (WRN-28-10) and CIFAR100-C adapts
its CIFAR-100 `Hendrycks2020AugMix_ResNeXt` (ResNeXt-29, cardinality 4, base width 32); see
docs/methods/tta.md §2.4. These classes keep RobustBench's module names, so a
RobustBench checkpoint loads with `load_state_dict(strict=True)` after `unwrap_state_dict`,
and they keep xent's `Classifier` split (`head` is a property over `fc` / `classifier`, so it
adds no `head.*` state-dict keys).

State-dict layout, written from knowledge of RobustBench's `wide_resnet.py` and
`resnext.py` (not checked against a downloaded checkpoint here):

* `WideResNet28x10`: `conv1.weight`; `block{1,2,3}.layer.{0..3}.{bn1,bn2}.{weight,bias,
  running_mean,running_var,num_batches_tracked}`, `block{1,2,3}.layer.{0..3}.{conv1,conv2}
  .weight`; `block{1,2,3}.layer.0.convShortcut.weight` (only where the width changes: all
  three first blocks, 16->160, 160->320, 320->640); final `bn1.*`; `fc.weight`, `fc.bias`.
  No `sub_block1` (the `Standard` model is built with RobustBench's default
  `sub_block1=False`). No input normalisation: the model expects images in [0, 1].
* `CifarResNeXt29`: `conv_1_3x3.weight`, `bn_1.*`; `stage_{1,2,3}.{0,1,2}.{conv_reduce,
  conv_conv,conv_expand}.weight`, `...{bn_reduce,bn,bn_expand}.*`; `stage_{1,2,3}.0
  .downsample.0.weight` (1x1 conv) and `.downsample.1.*` (BN); `classifier.weight`,
  `classifier.bias`. The AugMix wrapper computes `(x - mu) / sigma` with 0.5 per channel.
  RobustBench registers `mu` / `sigma` as buffers on its wrapper, but the released checkpoint
  does not contain them (RobustBench lists "Missing key(s) in state_dict: mu, sigma" as an
  expected failure and falls back to non-strict loading). Here they are non-persistent
  buffers: they follow `.to(device)`, stay out of the state dict, and the checkpoint loads
  strictly. A state dict taken from RobustBench's in-memory model does carry `mu` / `sigma`;
  drop those two keys before loading it.

Both nets end with an 8x8 average pool in RobustBench; here the pool is a global mean, which
is the same on 32x32 inputs and also runs on other sizes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xent.models.base import Classifier, init_conv_bn


class _RenamedHeadClassifier(Classifier):
    """A `Classifier` whose `head` lives under RobustBench's name (`fc`, `classifier`).

    `head` reads that attribute, and assigning `model.head = ...` replaces it (nn.Module's
    `__setattr__` would otherwise register a second `head.*` module the property hides).
    """

    _head_attr: ClassVar[str]

    @property
    def head(self) -> nn.Linear:  # type: ignore[override]
        return getattr(self, self._head_attr)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(self._head_attr if name == "head" else name, value)


# ---------------------------------------------------------------------------------------------
# WRN-28-10 (RobustBench `WideResNet`, CIFAR-10 `Standard`)
# ---------------------------------------------------------------------------------------------


class _WRNBlock(nn.Module):
    """RobustBench's pre-activation `BasicBlock`: bn1-relu-conv1-bn2-relu-conv2 plus shortcut.

    Where the width changes, the bn1-relu output feeds both conv1 and the 1x1 `convShortcut`;
    otherwise the identity shortcut takes the raw input. Same arithmetic as RobustBench.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.equal_in_out = in_planes == out_planes
        self.convShortcut: nn.Conv2d | None = None  # noqa: N815 (RobustBench's key name)
        if not self.equal_in_out:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        act = F.relu(self.bn1(x))
        shortcut = x if self.convShortcut is None else self.convShortcut(act)
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        return shortcut + out


class _WRNStage(nn.Module):
    """RobustBench's `NetworkBlock`: the blocks sit under `.layer`, giving `blockN.layer.i`."""

    def __init__(self, blocks: int, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.layer = nn.Sequential(
            *(
                _WRNBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1)
                for i in range(blocks)
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


class WideResNet28x10(_RenamedHeadClassifier):
    """WRN-28-10 with RobustBench's key names; features are the 640-d BN-ReLU-pooled map."""

    _head_attr = "fc"

    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        depth, widen = 28, 10
        blocks = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = _WRNStage(blocks, widths[0], widths[1], 1)
        self.block2 = _WRNStage(blocks, widths[1], widths[2], 2)
        self.block3 = _WRNStage(blocks, widths[2], widths[3], 2)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        # RobustBench: N(0, 2 / (k*k*out)) convs (= He fan-out), BN 1/0, fc bias 0.
        init_conv_bn(self)
        nn.init.zeros_(self.fc.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return F.relu(self.bn1(x)).mean(dim=(2, 3))


def wrn28_10(num_classes: int = 10, in_channels: int = 3) -> Classifier:
    """WRN-28-10, RobustBench's CIFAR-10 `Standard` architecture (36.5M params, 10 classes)."""
    return WideResNet28x10(num_classes, in_channels)


# ---------------------------------------------------------------------------------------------
# ResNeXt-29 4x32d (RobustBench `CifarResNeXt`, CIFAR-100 `Hendrycks2020AugMix_ResNeXt`)
# ---------------------------------------------------------------------------------------------


class _ResNeXtBottleneck(nn.Module):
    """1x1 reduce, grouped 3x3, 1x1 expand (x4), post-activation, as RobustBench's block."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        cardinality: int,
        base_width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ):
        super().__init__()
        width = (planes * base_width // 64) * cardinality
        self.conv_reduce = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn_reduce = nn.BatchNorm2d(width)
        self.conv_conv = nn.Conv2d(
            width, width, 3, stride=stride, padding=1, groups=cardinality, bias=False
        )
        self.bn = nn.BatchNorm2d(width)
        self.conv_expand = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn_expand = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn_reduce(self.conv_reduce(x)))
        out = F.relu(self.bn(self.conv_conv(out)))
        out = self.bn_expand(self.conv_expand(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(residual + out)


class CifarResNeXt29(_RenamedHeadClassifier):
    """ResNeXt-29 (4x32d) for CIFAR with the AugMix model's built-in (x - 0.5) / 0.5.

    `normalize=False` skips the normalisation (the plain `CifarResNeXt`); the state dict is the
    same either way.
    """

    _head_attr = "classifier"

    def __init__(
        self,
        num_classes: int = 100,
        in_channels: int = 3,
        cardinality: int = 4,
        base_width: int = 32,
        normalize: bool = True,
    ):
        super().__init__()
        depth = 29
        blocks = (depth - 2) // 9
        self.cardinality, self.base_width, self.normalize = cardinality, base_width, normalize
        # Not persistent: RobustBench's checkpoint has no `mu` / `sigma` entries.
        self.register_buffer("mu", torch.full((1, in_channels, 1, 1), 0.5), persistent=False)
        self.register_buffer("sigma", torch.full((1, in_channels, 1, 1), 0.5), persistent=False)
        self.conv_1_3x3 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn_1 = nn.BatchNorm2d(64)
        self.inplanes = 64
        self.stage_1 = self._make_stage(64, blocks, 1)
        self.stage_2 = self._make_stage(128, blocks, 2)
        self.stage_3 = self._make_stage(256, blocks, 2)
        self.classifier = nn.Linear(256 * _ResNeXtBottleneck.expansion, num_classes)
        # RobustBench: He fan-out convs, BN 1/0, Linear He (fan-in) normal with zero bias.
        init_conv_bn(self)
        nn.init.kaiming_normal_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    def _make_stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        out_planes = planes * _ResNeXtBottleneck.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, out_planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_planes),
            )
        layers = [
            _ResNeXtBottleneck(
                self.inplanes, planes, self.cardinality, self.base_width, stride, downsample
            )
        ]
        self.inplanes = out_planes
        layers += [
            _ResNeXtBottleneck(self.inplanes, planes, self.cardinality, self.base_width)
            for _ in range(blocks - 1)
        ]
        return nn.Sequential(*layers)

    def forward_features(self, x: Tensor) -> Tensor:
        if self.normalize:
            x = (x - self.mu) / self.sigma
        x = F.relu(self.bn_1(self.conv_1_3x3(x)))
        x = self.stage_3(self.stage_2(self.stage_1(x)))
        return x.mean(dim=(2, 3))


def resnext29(num_classes: int = 100, in_channels: int = 3) -> Classifier:
    """ResNeXt-29 4x32d, RobustBench's CIFAR-100 `Hendrycks2020AugMix_ResNeXt` (6.9M params)."""
    return CifarResNeXt29(num_classes, in_channels)


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "net", "model")


def unwrap_state_dict(obj: Any) -> dict[str, Tensor]:
    """The tensor dict inside a checkpoint, with DataParallel's leading `module.` stripped.

    RobustBench's CIFAR checkpoints are mostly `{"state_dict": {"module.<key>": ...}}`; this
    accepts that, `{"model_state_dict": ...}`, `{"net": ...}`, `{"model": ...}` or a plain
    state dict, so `model.load_state_dict(unwrap_state_dict(torch.load(path, weights_only=True)))`
    is strict.
    """
    found = obj
    while isinstance(found, Mapping) and not _is_state_dict(found):
        inner = next((found[k] for k in _WRAPPER_KEYS if k in found), None)
        if inner is None:
            break
        found = inner
    if not isinstance(found, Mapping) or not _is_state_dict(found):
        keys = list(obj)[:5] if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(f"no state dict of tensors found in the checkpoint (top level: {keys})")
    return {_strip_module(str(k)): v for k, v in found.items()}


def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def _strip_module(key: str) -> str:
    while key.startswith("module."):
        key = key[len("module.") :]
    return key
