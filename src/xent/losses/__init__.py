"""The loss zoo: cross-entropy-family classification losses (see docs in each module).

Every loss is an `nn.Module` called as `loss(logits, target, *, index=None, features=None)`
and returns the batch mean. `requires` names the extra inputs a loss needs ("index": dataset
indices of the batch, after `setup_samples(N)`; "features": the last conv feature map).
Invalid hyperparameters raise `ValueError("loss.<key>=<value> must be <range>")` at
construction.
"""

from xent.losses.anyloss import AnyLoss
from xent.losses.bias import BiasLoss
from xent.losses.comp_sum import CompSumLoss, MAELoss
from xent.losses.dice import DiceLoss
from xent.losses.distill import DISTLoss, DKDLoss, KDLoss, NKDLoss, PLDLoss
from xent.losses.focal import FocalLoss
from xent.losses.gce import GCELoss
from xent.losses.ldr import ALDRKLLoss, LDRKLLoss
from xent.losses.regression import HLGaussLoss, MSELoss
from xent.losses.sce import SCELoss
from xent.losses.zloss import CELogZLoss, ZLoss

__all__ = [
    "PLDLoss",
    "NKDLoss",
    "KDLoss",
    "DKDLoss",
    "DISTLoss",
    "ALDRKLLoss",
    "AnyLoss",
    "BiasLoss",
    "CELogZLoss",
    "CompSumLoss",
    "DiceLoss",
    "FocalLoss",
    "GCELoss",
    "HLGaussLoss",
    "LDRKLLoss",
    "MAELoss",
    "MSELoss",
    "SCELoss",
    "ZLoss",
]
