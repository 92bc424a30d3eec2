"""The TTA source models keep RobustBench's state-dict layout and xent's Classifier split.

Users load RobustBench checkpoints into these, so the key names and shapes are the contract;
WRN-28-10 is 36.5M parameters, so it is built once and fed batches of 2 at 32x32.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from xent.models import Classifier, resnext29, wrn28_10
from xent.models.robustbench import CifarResNeXt29, unwrap_state_dict


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def wrn() -> Classifier:
    torch.manual_seed(0)
    return wrn28_10(num_classes=10).eval()


@pytest.fixture(scope="module")
def rnx() -> Classifier:
    torch.manual_seed(0)
    return resnext29(num_classes=100).eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _randomise_bn_stats(model: nn.Module) -> None:
    """Non-trivial running stats, so a load that skipped them would change the outputs."""
    gen = torch.Generator().manual_seed(2)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(1 + 0.1 * torch.rand(m.num_features, generator=gen))


# --- parameter counts ------------------------------------------------------------------------


def test_wrn28_10_parameter_count():
    with torch.device("meta"):
        assert n_params(wrn28_10(num_classes=10)) == 36_479_194


def test_resnext29_parameter_count():
    # Derived by hand. Block width D = floor(planes * 32 / 64) * 4 = 2 * planes; out = 4 * planes.
    # A block from `cin` channels: conv_reduce cin*D + grouped 3x3 D*(D/4)*9 + conv_expand D*out,
    # BNs 2D + 2D + 2*out; stage 0 blocks add downsample cin*out + 2*out.
    def block(cin: int, planes: int, downsample: bool) -> int:
        d, out = 2 * planes, 4 * planes
        n = cin * d + d * (d // 4) * 9 + d * out + 2 * d + 2 * d + 2 * out
        return n + (cin * out + 2 * out if downsample else 0)

    stem = 3 * 64 * 9 + 2 * 64  # 1,856
    stage_1 = block(64, 64, True) + 2 * block(256, 64, False)  # 95,744 + 2 * 103,424
    stage_2 = block(256, 128, True) + 2 * block(512, 128, False)  # 478,208 + 2 * 411,648
    stage_3 = block(512, 256, True) + 2 * block(1024, 256, False)  # 1,906,688 + 2 * 1,642,496
    classifier = 1024 * 100 + 100
    expected = stem + stage_1 + stage_2 + stage_3 + classifier
    assert (stage_1, stage_2, stage_3) == (302_592, 1_301_504, 5_191_680)
    assert expected == 6_900_132
    with torch.device("meta"):
        assert n_params(resnext29(num_classes=100)) == expected


# --- state-dict layout -----------------------------------------------------------------------


def test_wrn28_10_state_dict_layout(wrn: Classifier):
    sd = wrn.state_dict()
    assert len(sd) == 155  # conv1, 12 blocks x 12, 3 shortcuts, bn1 x 5, fc x 2
    shortcuts = {k for k in sd if "convShortcut" in k}
    assert shortcuts == {f"block{i}.layer.0.convShortcut.weight" for i in (1, 2, 3)}
    assert "block1.layer.1.convShortcut.weight" not in sd
    assert sd["conv1.weight"].shape == (16, 3, 3, 3)
    assert sd["block1.layer.0.convShortcut.weight"].shape == (160, 16, 1, 1)
    assert sd["block2.layer.0.convShortcut.weight"].shape == (320, 160, 1, 1)
    assert sd["block3.layer.3.conv2.weight"].shape == (640, 640, 3, 3)
    for stat in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        assert f"block2.layer.2.bn1.{stat}" in sd and f"bn1.{stat}" in sd
    assert sd["fc.weight"].shape == (10, 640) and sd["fc.bias"].shape == (10,)
    assert not any(k.startswith(("head.", "sub_block1.")) for k in sd)
    assert {k.split(".")[0] for k in sd} == {"conv1", "block1", "block2", "block3", "bn1", "fc"}
    assert wrn.head is wrn.fc and wrn.feature_dim == 640


def test_resnext29_state_dict_layout(rnx: Classifier):
    sd = rnx.state_dict()
    assert {k.split(".")[0] for k in sd} == {
        "conv_1_3x3",
        "bn_1",
        "stage_1",
        "stage_2",
        "stage_3",
        "classifier",
    }
    assert sd["conv_1_3x3.weight"].shape == (64, 3, 3, 3)
    # Grouped 3x3: 128 channels in 4 groups of 32 inputs each.
    assert sd["stage_1.0.conv_conv.weight"].shape == (128, 32, 3, 3)
    assert sd["stage_3.2.conv_conv.weight"].shape == (512, 128, 3, 3)
    assert sd["stage_1.0.conv_reduce.weight"].shape == (128, 64, 1, 1)
    assert sd["stage_1.0.conv_expand.weight"].shape == (256, 128, 1, 1)
    assert sd["stage_1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert sd["stage_2.0.downsample.0.weight"].shape == (512, 256, 1, 1)
    assert "stage_2.0.downsample.1.running_var" in sd
    assert not any(".downsample." in k for k in sd if not k.split(".")[1] == "0")
    for bn in ("bn_reduce", "bn", "bn_expand"):
        assert f"stage_2.1.{bn}.num_batches_tracked" in sd
    assert sd["classifier.weight"].shape == (100, 1024)
    # The (x - 0.5) / 0.5 constants are not state: RobustBench's checkpoint has no mu / sigma.
    assert not any(k.startswith(("head.", "mu", "sigma")) for k in sd)
    assert rnx.head is rnx.classifier and rnx.feature_dim == 1024


def test_assigning_head_replaces_the_robustbench_layer():
    model = resnext29(num_classes=100)
    new = nn.Linear(1024, 7)
    model.head = new
    assert model.classifier is new and model.head is new
    assert not any(k.startswith("head.") for k in model.state_dict())
    assert model.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 7)


# --- forward ---------------------------------------------------------------------------------


@pytest.mark.slow  # seconds: keeps the fast tier under its 2-minute budget
@pytest.mark.parametrize(("name", "classes"), [("wrn", 10), ("rnx", 100)])
def test_forward_is_head_of_features(name: str, classes: int, x: torch.Tensor, request):
    model = request.getfixturevalue(name)
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
    assert logits.shape == (2, classes)
    assert features.shape == (2, model.feature_dim)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(model.head(features), logits, rtol=0, atol=0)


def test_resnext29_normalises_inside(rnx: CifarResNeXt29, x: torch.Tensor):
    plain = copy.deepcopy(rnx)
    plain.normalize = False
    assert plain.mu.device == x.device
    with torch.no_grad():
        torch.testing.assert_close(rnx(x), plain((x - 0.5) / 0.5))
        assert not torch.allclose(rnx(x), plain(x))


def test_wrn28_10_has_no_input_normalisation(wrn: Classifier):
    # Standard expects [0, 1] inputs as they are: no hidden mean/std constants, only BN stats.
    buffers = {name for name, _ in wrn.named_buffers()}
    assert buffers <= set(wrn.state_dict())
    assert all(name.rsplit(".", 1)[-1].startswith(("running_", "num_batches")) for name in buffers)


# --- loading RobustBench-style checkpoints ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "build"), [("wrn", lambda: wrn28_10(10)), ("rnx", lambda: resnext29(100))]
)
@pytest.mark.slow  # seconds: keeps the fast tier under its 2-minute budget
def test_dataparallel_checkpoint_loads_strictly(name, build, x, request, tmp_path: Path):
    source = request.getfixturevalue(name)
    _randomise_bn_stats(source)
    with torch.no_grad():
        expected = source(x)
    path = tmp_path / "ckpt.pt"
    wrapped = {"module." + k: v for k, v in source.state_dict().items()}
    torch.save({"state_dict": wrapped, "epoch": 199, "best_acc": 0.95}, path)

    torch.manual_seed(123)  # a differently initialised copy
    target = build().eval()
    result = target.load_state_dict(unwrap_state_dict(torch.load(path, weights_only=True)))
    assert not result.missing_keys and not result.unexpected_keys
    with torch.no_grad():
        torch.testing.assert_close(target(x), expected, rtol=0, atol=0)


def test_unwrap_state_dict_formats():
    sd = {"a.weight": torch.ones(2), "b.bias": torch.zeros(1)}
    for obj in (
        sd,
        {"state_dict": sd},
        {"model_state_dict": sd, "optimizer": {"lr": 0.1}},
        {"net": {"module." + k: v for k, v in sd.items()}, "acc": 95.0},
        {"state_dict": {"module.module." + k: v for k, v in sd.items()}},
    ):
        out = unwrap_state_dict(obj)
        assert list(out) == list(sd)
        assert all(out[k] is sd[k] for k in sd)
    # Only a leading prefix goes: an inner "module." is part of the name.
    assert list(unwrap_state_dict({"module.x.module.w": torch.ones(1)})) == ["x.module.w"]


@pytest.mark.parametrize(
    "obj", [{}, {"epoch": 3}, {"state_dict": {"w": 1.0}}, [torch.ones(1)], torch.ones(1)]
)
def test_unwrap_state_dict_rejects_non_checkpoints(obj):
    with pytest.raises(ValueError, match="no state dict of tensors") as info:
        unwrap_state_dict(obj)
    assert "\n" not in str(info.value)


def test_a_checkpoint_carrying_the_normalisation_constants_loads_as_a_source(tmp_path):
    """RobustBench's in-memory AugMix ResNeXt saves `mu`/`sigma`; its released file does not.
    Both load through the runner's loader; a different normalisation is refused."""
    from omegaconf import OmegaConf

    from xent.errors import ConfigError
    from xent.pretrained import load_weights

    cfg = OmegaConf.create({"source": {"model": {"_target_": "xent.models.resnext29"}}})
    model = resnext29(num_classes=100)
    state = {**model.state_dict(), "mu": model.mu.clone(), "sigma": model.sigma.clone()}
    torch.save(state, tmp_path / "with_constants.pt")
    load_weights(resnext29(num_classes=100), tmp_path / "with_constants.pt", cfg, "source")
    state["mu"] = torch.zeros_like(model.mu)
    torch.save(state, tmp_path / "other_mean.pt")
    with pytest.raises(ConfigError, match=r"1 unexpected \(e.g. mu\)"):
        load_weights(resnext29(num_classes=100), tmp_path / "other_mean.pt", cfg, "source")
