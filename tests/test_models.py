"""The model zoo: every config builds and trains, and the architectures match the literature.

The main test is parametrized over the files in `conf/model/`, so a new config is tested as
soon as it exists.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

import xent.models
from xent.models import Classifier, cnn8, resnet18, vgg8, wide_resnet

CONF_DIR = Path(xent.models.__file__).resolve().parents[1] / "conf" / "model"
# Velocity nets v(t, x) of task=flow are not classifiers: tests/test_flow_*.py cover them.
FLOW_MODELS = {"velocity_mlp", "velocity_unet"}
# Language models (a `vocab_size`, token windows in, hidden states out): tests/test_gpt.py.
LM_MODELS = {p.stem for p in CONF_DIR.glob("*.yaml") if "vocab_size" in OmegaConf.load(p)}
CONFIGS = sorted(
    path.stem for path in CONF_DIR.glob("*.yaml") if path.stem not in FLOW_MODELS | LM_MODELS
)

# The largest zoo models take seconds each on a CPU: the full suite trains them; the fast tier
# trains the rest.
HEAVY = {"wrn28_10", "wrn_16_2", "wrn_40_1", "resnet50", "resnet56", "resnet110", "resnext29"}

CIFAR = {"num_classes": 100, "in_channels": 3, "image_size": 32, "input_shape": [3, 32, 32]}
DIGITS = {"num_classes": 10, "in_channels": 1, "image_size": 8, "input_shape": [1, 8, 8]}
DIGITS_MODELS = {"cnn", "mlp"}  # built for 8x8 grey digits; every other config is a CIFAR model


def data_for(name: str) -> dict:
    return DIGITS if name in DIGITS_MODELS else CIFAR


def build(name: str, data: dict | None = None) -> nn.Module:
    """Instantiate `conf/model/<name>.yaml` under a `data` node, as the runner does."""
    model_cfg = OmegaConf.load(CONF_DIR / f"{name}.yaml")
    cfg = OmegaConf.merge({"data": data or data_for(name)}, {"model": model_cfg})
    return instantiate(cfg.model)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_config_directory_is_complete():
    # Every public constructor has a config (wide_resnet is the generic WRN builder).
    constructors = set(xent.models.__all__) - {"Classifier", "wide_resnet"}
    assert constructors <= set(CONFIGS), constructors - set(CONFIGS)
    assert len(CONFIGS) >= 19


@pytest.mark.parametrize("name", CONFIGS)
def test_config_conventions(name: str):
    path = CONF_DIR / f"{name}.yaml"
    assert path.read_text().startswith("# "), "first line: what the model is, its param count"
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    assert raw["_target_"].startswith("xent.models.")
    # Classes and channels always come from the data config, never typed in.
    assert raw["num_classes"] == "${data.num_classes}"
    if "input_shape" in raw:  # shape-agnostic models (mlp) take the whole input shape
        assert raw["input_shape"] == "${data.input_shape}"
        return
    assert raw["in_channels"] == "${data.in_channels}"
    assert raw.get("image_size", "${data.image_size}") == "${data.image_size}"


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in CONFIGS]
)
def test_forward_features_head_and_a_training_step(name: str):
    data = data_for(name)
    torch.manual_seed(0)
    model = build(name)
    assert isinstance(model, Classifier)
    shape = (2, data["in_channels"], data["image_size"], data["image_size"])
    x, y = torch.randn(shape), torch.tensor([0, data["num_classes"] - 1])

    model.eval()
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
    assert logits.shape == (2, data["num_classes"])
    assert features.shape == (2, model.head.in_features)
    assert isinstance(model.head, nn.Linear) and model.head.out_features == data["num_classes"]
    torch.testing.assert_close(model.head(features), logits)

    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    F.cross_entropy(model(x), y).backward()
    for param_name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, f"{param_name} gets no gradient"
            assert torch.isfinite(param.grad).all(), f"{param_name} has a non-finite gradient"
    model.eval()  # BN statistics already moved in the forward above: isolate the SGD step
    with torch.no_grad():
        before = model(x)
        optimizer.step()
        after = model(x)
    assert not torch.allclose(before, after)


# Published parameter counts: (model, classes, millions, relative tolerance, source).
PUBLISHED = [
    # He et al. 2016, Table 6 (CIFAR-10; two significant figures, option-A shortcuts, so the
    # zoo's 1x1 projection shortcuts add ~0.003M).
    ("resnet20", 10, 0.27, 0.02, "He et al."),
    ("resnet32", 10, 0.46, 0.02, "He et al."),
    ("resnet44", 10, 0.66, 0.02, "He et al."),
    ("resnet56", 10, 0.85, 0.02, "He et al."),
    ("resnet110", 10, 1.7, 0.02, "He et al."),
    # Zagoruyko & Komodakis 2016 (CIFAR-10).
    ("wrn_40_2", 10, 2.2, 0.02, "WRN paper"),
    # The CRD/RepDistiller zoo's figures as quoted in the KD literature (CIFAR-100).
    ("resnet56", 100, 0.86, 0.01, "CRD zoo"),
    ("resnet110", 100, 1.73, 0.01, "CRD zoo"),
    ("resnet8x4", 100, 1.23, 0.01, "CRD zoo"),
    ("resnet32x4", 100, 7.43, 0.01, "CRD zoo"),
    ("wrn_16_2", 100, 0.70, 0.01, "CRD zoo"),
    ("wrn_40_1", 100, 0.57, 0.01, "CRD zoo"),
    ("wrn_40_2", 100, 2.25, 0.01, "CRD zoo"),
    ("vgg8", 100, 3.96, 0.01, "CRD zoo"),
    ("vgg13", 100, 9.46, 0.01, "CRD zoo"),
    ("mobilenetv2", 100, 0.81, 0.01, "CRD zoo"),
    ("shufflenetv1", 100, 0.95, 0.01, "CRD zoo"),
    ("shufflenetv2", 100, 1.36, 0.01, "CRD zoo"),
    ("resnet50", 100, 23.71, 0.01, "CRD zoo"),
    # CIFAR ResNet-18 (kuangliu/pytorch-cifar layout, CIFAR-10): 11.17M.
    ("resnet18", 10, 11.17, 0.005, "pytorch-cifar"),
]


@pytest.mark.parametrize(("name", "classes", "millions", "rel", "source"), PUBLISHED)
def test_parameter_count_matches_published(name, classes, millions, rel, source):
    data = {**data_for(name), "num_classes": classes}
    with torch.device("meta"):  # counts only: no memory, no init cost
        model = build(name, data)
    assert n_params(model) / 1e6 == pytest.approx(millions, rel=rel), source


def test_generic_wide_resnet_matches_the_wrn_paper():
    with torch.device("meta"):
        assert n_params(wide_resnet(28, 10, num_classes=10)) / 1e6 == pytest.approx(36.5, rel=0.01)
        assert n_params(wide_resnet(16, 8, num_classes=10)) / 1e6 == pytest.approx(11.0, rel=0.01)
    with pytest.raises(ValueError, match="6n \\+ 4"):
        wide_resnet(30, 2, num_classes=10)


def test_digits_models_are_small():
    # Measured, not published: the digits models stay well under 0.2M parameters.
    assert n_params(build("cnn")) == 65_834
    assert n_params(build("mlp")) == 64 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10


def test_cnn8_is_the_noisy_label_papers_network():
    # The Keras model of Wang et al. 2019 (models.py, cifar-10), counted layer by layer:
    # convs with bias, BN gamma/beta, fc1 3136->256, BN1d, head 256->10.
    convs = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 196), (196, 196)]
    expected = sum(9 * a * b + b for a, b in convs) + 2 * sum(b for _, b in convs)
    expected += 3136 * 256 + 256 + 2 * 256 + 256 * 10 + 10
    assert expected == 1_639_794
    assert n_params(build("cnn8", {**CIFAR, "num_classes": 10})) == expected
    with pytest.raises(ValueError, match="cnn8 needs a multiple of 8 as image size"):
        cnn8(num_classes=10, in_channels=1, image_size=12)


def test_resnet18_has_the_cifar_stem():
    model = resnet18(num_classes=10, in_channels=1)
    stem = model.conv1
    assert isinstance(stem, nn.Conv2d)
    assert (stem.in_channels, stem.out_channels) == (1, 64)
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1) and stem.padding == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    # Stride 1 stem and no pool: layer1 sees the full 32x32 image.
    shapes = []
    model.layer1.register_forward_hook(lambda mod, inp, out: shapes.append(out.shape))
    model.eval()(torch.randn(1, 1, 32, 32))
    assert shapes == [(1, 64, 32, 32)]


def test_cifar_models_accept_8x8_digits():
    # The ResNets and WRNs pool adaptively, so `data=digits` works with them too.
    for name in ("resnet20", "resnet8x4", "resnet18", "wrn_16_2", "mobilenetv2", "shufflenetv1"):
        model = build(name, DIGITS).eval()
        assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10), name


def test_vgg_needs_at_least_8x8_input():
    # Three 2x2 max-pools: 8x8 is the smallest input (stages 4-5 then see 1x1 maps; the net is
    # designed for 32x32), and anything smaller fails in the third pool.
    model = vgg8(num_classes=10, in_channels=1).eval()
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 1, 4, 4))


def test_mlp_reports_a_wrong_input_size():
    model = build("mlp")
    with pytest.raises(ValueError, match="built for 1x8x8 inputs, got 3x32x32"):
        model(torch.randn(2, 3, 32, 32))


def test_feature_dims():
    expected = {
        "resnet20": 64,
        "resnet32x4": 256,
        "wrn_40_2": 128,
        "resnet50": 2048,
        "vgg13": 512,
        "mobilenetv2": 1280,
        "resnet18": 512,
        "shufflenetv1": 960,
        "shufflenetv2": 1024,
    }
    for name, dim in expected.items():
        with torch.device("meta"):
            assert build(name).feature_dim == dim, name


def bn(channels: int) -> int:
    return 2 * channels  # a BatchNorm2d's weight and bias


def zoo_shufflev1_params(classes: int) -> int:
    """RepDistiller models/ShuffleNetv1.py, ShuffleV1 (out_planes 240/480/960, blocks 4/8/4,
    groups 3), counted layer by layer: 1x1 stem 3->24 + BN; each Bottleneck makes `out` channels
    (the stage width, minus the input width for the stride-2 first one, whose avg-pooled input
    is concatenated): 1x1 in->out/4 (ungrouped on the stem's 24 channels, else 3 groups), BN,
    3x3 depthwise, BN, 1x1 out/4->out in 3 groups, BN; Linear 960->classes."""
    total, channels = 3 * 24 + bn(24), 24
    for width, blocks in ((240, 4), (480, 8), (960, 4)):
        for i in range(blocks):
            out = width - channels if i == 0 else width
            mid, first_groups = out // 4, 1 if channels == 24 else 3
            total += channels * mid // first_groups + bn(mid) + 9 * mid + bn(mid)
            total += mid * out // 3 + bn(out)
            channels = width
    return total + 960 * classes + classes


def zoo_shufflev2_params(classes: int) -> int:
    """RepDistiller models/ShuffleNetv2.py, ShuffleV2 (net_size 1: out_channels 116/232/464/1024,
    num_blocks 3/7/3), counted layer by layer: 1x1 stem 3->24 + BN; per stage a DownBlock (left:
    3x3 depthwise + BN, 1x1 in->out/2 + BN; right: 1x1 in->out/2 + BN, 3x3 depthwise + BN, 1x1 +
    BN) and num_blocks BasicBlocks on half the channels (1x1, 3x3 depthwise, 1x1, each + BN);
    1x1 conv 464->1024 + BN; Linear 1024->classes."""
    total, channels = 3 * 24 + bn(24), 24
    for width, blocks in ((116, 3), (232, 7), (464, 3)):
        half = width // 2
        total += 9 * channels + bn(channels) + channels * half + bn(half)
        total += channels * half + bn(half) + 9 * half + bn(half) + half * half + bn(half)
        total += blocks * (2 * (half * half + bn(half)) + 9 * half + bn(half))
        channels = width
    return total + 464 * 1024 + bn(1024) + 1024 * classes + classes


@pytest.mark.parametrize("classes", [10, 100])
def test_shufflenets_have_the_zoo_parameter_counts(classes):
    assert zoo_shufflev1_params(100) == 949_258  # "0.95M" in the KD literature's tables
    assert zoo_shufflev2_params(100) == 1_355_528  # "1.36M"
    data = {**CIFAR, "num_classes": classes}
    assert n_params(build("shufflenetv1", data)) == zoo_shufflev1_params(classes)
    assert n_params(build("shufflenetv2", data)) == zoo_shufflev2_params(classes)


@pytest.mark.parametrize("name", ["shufflenetv1", "shufflenetv2"])
@pytest.mark.parametrize("classes", [10, 100])
def test_shufflenets_keep_the_zoo_resolutions(name, classes):
    """The 1x1 stride-1 stem keeps 32x32; the three stages give 16x16, 8x8 and 4x4 maps, and
    the last one (960 / 1024 channels) is what feature-reading losses get."""
    from xent.tasks.features import FeatureMapTap

    torch.manual_seed(0)
    model = build(name, {**CIFAR, "num_classes": classes}).eval()
    shapes = []
    for unit in model.features[1:]:
        unit.register_forward_hook(lambda mod, inp, out: shapes.append(tuple(out.shape[1:])))
    tap = FeatureMapTap(model)
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, classes)
    widths = {"shufflenetv1": (240, 480, 960), "shufflenetv2": (116, 232, 464)}[name]
    stage_ends = sorted({s for s in shapes if s[0] in widths}, key=lambda s: s[0])
    assert stage_ends == [(widths[0], 16, 16), (widths[1], 8, 8), (widths[2], 4, 4)]
    assert tuple(tap.value.shape) == (2, model.feature_dim, 4, 4)
    assert model.feature_dim == {"shufflenetv1": 960, "shufflenetv2": 1024}[name]


def test_channel_shuffle_interleaves_the_groups():
    from xent.models.shufflenet import ChannelShuffle

    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert ChannelShuffle(3)(x).flatten().tolist() == [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]
    assert ChannelShuffle(2)(x).flatten().tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
