"""The classify task gives a loss the extra inputs it declares, and refuses what it cannot."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.conftest import composed
from xent.errors import ConfigError
from xent.runner.preflight import build_parts


class RecordingLoss(nn.Module):
    """CE that declares `index` and `features` and records what it was given."""

    requires = ("index", "features")
    calls: list[dict] = []
    samples: list[int] = []

    def setup_samples(self, num_samples: int) -> None:
        RecordingLoss.samples.append(num_samples)

    def forward(self, logits, target, *, index=None, features=None):
        RecordingLoss.calls.append(
            {"index": index.clone(), "features": tuple(features.shape), "n": len(target)}
        )
        return F.cross_entropy(logits, target)


class NeedsTeacher(nn.Module):
    requires = ("teacher_logits",)

    def forward(self, logits, target, *, teacher_logits=None):
        return F.cross_entropy(logits, target)


HERE = "tests.test_task_inputs"


@pytest.mark.slow
def test_index_and_features_reach_the_loss(tmp_path):
    from xent.runner.run import run

    RecordingLoss.calls.clear()
    RecordingLoss.samples.clear()
    cfg = composed(
        tmp_path,
        f"loss._target_={HERE}.RecordingLoss",
        "~loss.label_smoothing",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=3",
        "logger=none",
    )
    assert run(cfg)["status"] == "ok"
    assert 1257 in RecordingLoss.samples  # the digits training-set size
    train_calls = [c for c in RecordingLoss.calls if c["n"] == 64]
    assert len(train_calls) >= 3
    for call in train_calls:
        # the cnn's last conv map on 8x8 digits: 64 channels at 4x4 (one 2x2 max-pool)
        assert call["features"] == (64, 64, 4, 4)
        assert call["index"].min() >= 0 and call["index"].max() < 1257
    seen = torch.cat([c["index"] for c in train_calls])
    assert len(set(seen.tolist())) == len(seen)  # distinct samples within the epoch


def test_features_on_a_model_without_conv_map_fails_at_start(tmp_path):
    cfg = composed(
        tmp_path, f"loss._target_={HERE}.RecordingLoss", "~loss.label_smoothing", "model=mlp"
    )
    with pytest.raises(ConfigError) as info:
        build_parts(cfg)
    assert str(info.value) == (
        "loss=ce needs 'features' (a conv feature map), but model=mlp it has no global "
        "average pool, so no conv feature map to read"
    )


def test_an_input_the_task_does_not_give_fails_at_start(tmp_path):
    cfg = composed(tmp_path, f"loss._target_={HERE}.NeedsTeacher", "~loss.label_smoothing")
    with pytest.raises(ConfigError) as info:
        build_parts(cfg)
    assert str(info.value) == (
        "loss=ce needs 'teacher_logits', which task=classify does not provide "
        "(it gives: features, index)"
    )
