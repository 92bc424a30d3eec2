"""conf/pair: each teacher -> student pair composes, sets both models and the literature's
per-pair settings, and passes the preflight with the CRD recipe on CIFAR-100."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import composed, write_cifar
from xent.runner.preflight import build_parts

PAIR_CONF = Path(__file__).resolve().parents[1] / "src" / "xent" / "conf" / "pair"

# pair: (DKD's beta, the CRD recipe's student lr). Beta from mdistiller's
# configs/cifar100/dkd/<pair>.yaml (8.0 where a file sets none: its default in
# mdistiller/engine/cfg.py); lr 0.05, and 0.01 for MobileNetV2 and ShuffleNet students (the
# SOLVER.LR of those files, as in RepDistiller's train_student.py).
EXPECTED = {
    "resnet32x4-resnet8x4": (8.0, 0.05),
    "resnet32x4-shufflenetv1": (8.0, 0.01),
    "resnet32x4-shufflenetv2": (8.0, 0.01),
    "resnet50-mobilenetv2": (8.0, 0.01),
    "resnet56-resnet20": (2.0, 0.05),
    "wrn_40_2-shufflenetv1": (8.0, 0.01),
    "wrn_40_2-wrn_40_1": (6.0, 0.05),
}
PAIRS = sorted(p.stem for p in PAIR_CONF.glob("*.yaml"))


def test_every_pair_has_its_literature_settings_here():
    assert PAIRS == sorted(EXPECTED)


@pytest.mark.parametrize("pair", PAIRS)
def test_pair_sets_both_models_and_its_settings(tmp_path, skip_cifar_checksum, pair):
    teacher, student = pair.split("-")
    beta, lr = EXPECTED[pair]
    write_cifar(tmp_path / "data", "cifar100")
    cfg = composed(
        tmp_path,
        "experiment=kd_cifar100_crd",
        f"pair={pair}",
        "loss=dkd",
        f"paths.data_dir={tmp_path / 'data'}",
    )
    assert cfg.model._target_ == f"xent.models.{student}"
    assert cfg.teacher.model._target_ == f"xent.models.{teacher}"
    assert cfg.loss.beta == beta and cfg.optim.lr == lr
    assert cfg.teacher.model.num_classes == cfg.model.num_classes == 100
    parts = build_parts(cfg, load_pretrained=False)  # no teacher training in a unit test
    assert parts.net.head.out_features == 100
    assert parts.loss.beta == beta
