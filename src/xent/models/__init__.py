"""Model zoo: the CIFAR distillation zoo (CRD/RepDistiller, ShuffleNet students included), the
noisy-label CNN, small models, and the RobustBench-layout TTA source models (WRN-28-10,
ResNeXt-29).

Every constructor takes `num_classes` and `in_channels` and returns a `Classifier`, whose
`forward(x) == head(forward_features(x))`. Configs in `xent/conf/model/` name these by
`_target_: xent.models.<name>`.
"""

from xent.models.base import Classifier
from xent.models.cifar_resnet import (
    resnet8,
    resnet8x4,
    resnet14,
    resnet20,
    resnet32,
    resnet32x4,
    resnet44,
    resnet56,
    resnet110,
)
from xent.models.imagenet_resnet import resnet18, resnet50
from xent.models.mobilenetv2 import mobilenetv2
from xent.models.noisy_cnn import cnn8
from xent.models.robustbench import resnext29, wrn28_10
from xent.models.shufflenet import shufflenetv1, shufflenetv2
from xent.models.small import cnn, mlp
from xent.models.vgg import vgg8, vgg13
from xent.models.wrn import wide_resnet, wrn_16_2, wrn_40_1, wrn_40_2

__all__ = [
    "Classifier",
    "cnn",
    "cnn8",
    "mlp",
    "mobilenetv2",
    "resnet8",
    "resnet8x4",
    "resnet14",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet32x4",
    "resnet44",
    "resnet50",
    "resnet56",
    "resnet110",
    "resnext29",
    "shufflenetv1",
    "shufflenetv2",
    "vgg8",
    "vgg13",
    "wide_resnet",
    "wrn_16_2",
    "wrn_40_1",
    "wrn_40_2",
    "wrn28_10",
]
