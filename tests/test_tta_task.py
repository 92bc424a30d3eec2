"""task=tta through the runner: configs, the online-error bookkeeping, the source model from the
runner's cache, the digits32_c check of the issue (norm and RMT beat the unadapted source), the
issue's CIFAR-10-C command on tiny files with a RobustBench-format WRN-28-10, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from tests.conftest import assert_one_line_error, composed, run_bad_commands, write_cifar
from xent.corrupt.layout import write_corrupted
from xent.models import resnet8, wrn28_10
from xent.runner.run import run
from xent.tasks.tta import NormalizedClassifier, TTATask, setup_cache_file, summarize_errors

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CORRUPTIONS = [
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
    "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
    "elastic_transform", "pixelate", "jpeg_compression",
]  # fmt: skip


# --- bookkeeping -----------------------------------------------------------------------------


def test_continual_errors_are_per_domain_and_their_mean():
    schedule = [("gaussian_noise", 5), ("fog", 5), ("contrast", 5)]
    metrics = summarize_errors([0.3, 0.1, 0.2], schedule)
    assert metrics == pytest.approx(
        {
            "test/err": 0.2,
            "test/err/gaussian_noise": 0.3,
            "test/err/fog": 0.1,
            "test/err/contrast": 0.2,
        }
    )


def test_gradual_errors_pool_severities_and_report_severity_5():
    schedule = [("fog", s) for s in (1, 2, 3, 4, 5, 4, 3, 2, 1)] + [("snow", 1), ("snow", 5)]
    errors = [0.1, 0.2, 0.3, 0.4, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, 0.7]
    metrics = summarize_errors(errors, schedule)
    assert metrics["test/err"] == pytest.approx(sum(errors) / 11)  # the reference's mean error
    assert metrics["test/err_at5"] == pytest.approx((0.5 + 0.7) / 2)
    assert metrics["test/err/fog"] == pytest.approx(2.5 / 9)
    assert metrics["test/err/snow"] == pytest.approx(0.35)
    with pytest.raises(ValueError, match="2 errors for 11 domains"):
        summarize_errors(errors[:2], schedule)


class CountingMethod(torch.nn.Module):
    """Predicts class 0 always; counts resets."""

    def __init__(self):
        super().__init__()
        self.resets = 0

    def reset(self):
        self.resets += 1

    def forward(self, x):
        assert torch.is_grad_enabled()  # the task turns gradients on for adaptation
        return torch.zeros(len(x), 10).index_fill_(1, torch.tensor([0]), 1.0)


@pytest.mark.parametrize("setting, resets", [("continual", 0), ("reset_each_shift", 2)])
def test_test_step_counts_online_errors_and_resets_at_each_new_domain(setting, resets):
    net = resnet8(num_classes=10, in_channels=3)
    task = TTATask(net, torch.nn.CrossEntropyLoss(), optimizer=None, method=lambda **_: None)
    task.setting, task.method = setting, CountingMethod()
    task._schedule = [("fog", 5), ("snow", 5), ("contrast", 5)]
    task._wrong, task._seen, task._domain = [0, 0, 0], [0, 0, 0], -1
    x = torch.zeros(4, 3, 8, 8)
    with torch.no_grad():  # as Lightning's test loop runs it (inference mode is off)
        for domain, labels in (
            (0, [0, 0, 1, 1]),
            (0, [0, 2, 2, 2]),
            (1, [0, 0, 0, 0]),
            (2, [1] * 4),
        ):
            task.test_step((x, torch.tensor(labels), torch.full((4,), domain)), 0)
    assert task._wrong == [5, 0, 4] and task._seen == [8, 4, 4]
    assert task.method.resets == resets


def test_tta_task_turns_inference_mode_off():
    assert TTATask.trainer_overrides == {"inference_mode": False} and TTATask.fits is False


def test_normalized_classifier_feeds_the_net_normalised_input():
    torch.manual_seed(0)
    net = resnet8(num_classes=10, in_channels=3).eval()
    mean, std = torch.tensor([0.2, 0.3, 0.4]), torch.tensor([0.5, 0.6, 0.7])
    wrapped = NormalizedClassifier(net, mean, std).eval()
    x = torch.rand(2, 3, 32, 32)
    expected = net((x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))
    assert torch.allclose(wrapped(x), expected, atol=1e-6)
    assert wrapped.head is net.head and wrapped.feature_dim == net.feature_dim
    assert set(wrapped.state_dict()) == {f"net.{k}" for k in net.state_dict()}


# --- configs ---------------------------------------------------------------------------------


def test_a_method_selects_the_tta_task_and_its_recipe(tmp_path):
    cfg = composed(tmp_path, "tta=rmt")
    assert cfg.task._target_ == "xent.tasks.tta.TTATask"
    assert cfg.data._target_ == "xent.data.corrupted.CorruptedStreamDataModule"
    assert cfg.optim._target_ == "torch.optim.Adam" and cfg.optim.lr == 1e-3
    assert cfg.sched._target_ is None
    assert cfg.source.model == cfg.model and cfg.source.data.image_size == 32
    assert cfg.tta.warmup_samples == cfg.data.source_train_size == 1257  # one pass, as on CIFAR
    cfg = composed(tmp_path, "tta=rmt", "data=cifar10_c", "model=wrn28_10", "source.ckpt=/w.pt")
    assert cfg.source.data.variant == "cifar10" and cfg.source.model._target_.endswith("wrn28_10")
    assert cfg.tta.warmup_samples == 50000 and cfg.data.batch_size == 200


def test_rmt_with_and_without_replay_share_one_cached_warmup(tmp_path):
    weights = tmp_path / "source.pt"
    weights.write_bytes(b"weights")
    rmt = setup_cache_file(composed(tmp_path, "tta=rmt"), weights)
    assert rmt == setup_cache_file(composed(tmp_path, "tta=rmt_sf"), weights)
    assert rmt == setup_cache_file(composed(tmp_path, "tta=rmt", "task.setting=gradual"), weights)
    assert rmt != setup_cache_file(composed(tmp_path, "tta=rmt", "seed=1"), weights)
    assert rmt != setup_cache_file(composed(tmp_path, "tta=rmt", "tta.momentum=0.99"), weights)
    weights.write_bytes(b"other weights")
    assert rmt != setup_cache_file(composed(tmp_path, "tta=rmt"), weights)


# --- through the runner on digits32_c -----------------------------------------------------------

QUICK = ["model=resnet8", "data.n_per_domain=64", "logger=none", "source.recipe.epochs=4"]


@pytest.fixture(scope="module")
def digits_paths(tmp_path_factory):
    """One source model (resnet8, 4 epochs on clean digits32) and one digits32_c for the module."""
    root = tmp_path_factory.mktemp("tta")
    return [f"paths.teachers={root / 'cache'}", f"paths.data_dir={root / 'data'}"]


def tta_run(tmp_path: Path, paths: list[str], *overrides: str) -> tuple[dict, Path]:
    result = run(composed(tmp_path, *QUICK, *paths, *overrides))
    return result, tmp_path / "run"


@pytest.mark.slow
def test_norm_and_rmt_beat_the_source_model_on_digits32_c(tmp_path, digits_paths):
    """The issue's check: seeded, severity 5, continual, 64 images per corruption.

    Measured (seed 0, resnet8 source at 4 epochs): mean online error source 0.559, norm 0.310,
    rmt 0.313.
    """
    errs = {}
    for method in ("source", "norm", "rmt"):
        result, run_dir = tta_run(tmp_path / method, digits_paths, f"tta={method}")
        assert result["status"] == "ok" and result["train_time_s"] == 0.0
        assert {f"test/err/{c}" for c in CORRUPTIONS} <= set(result)
        errs[method] = result["test/err"]
        record = json.loads((run_dir / "tta_errors.json").read_text())
        assert [d["domain"] for d in record["domains"]] == CORRUPTIONS
        assert all(d["n"] == 64 for d in record["domains"])
        assert (run_dir / "tta_errors.png").read_bytes()[:8] == PNG_MAGIC
        assert (run_dir / "checkpoints" / "adapted.pt").is_file()
        assert Path(result["source"]).is_file()  # the cached source model's weights
        assert result["input_norm"] is True  # trained here: it gets its data's normalisation
    assert errs["norm"] < errs["source"] - 0.05, errs
    assert errs["rmt"] < errs["source"] - 0.05, errs


@pytest.mark.slow
def test_tent_adapts_in_the_test_loop_and_gradual_visits_every_severity(tmp_path, digits_paths):
    result, run_dir = tta_run(
        tmp_path,
        digits_paths,
        "tta=tent",
        "task.setting=gradual",
        "data.corruptions=[fog,contrast]",
        "data.n_per_domain=32",
    )
    record = json.loads((run_dir / "tta_errors.json").read_text())
    assert [(d["corruption"], d["severity"]) for d in record["domains"]] == [
        (c, s) for c in ("fog", "contrast") for s in (1, 2, 3, 4, 5, 4, 3, 2, 1)
    ]
    assert set(result) >= {"test/err", "test/err_at5", "test/err/fog", "test/err/contrast"}
    # gradients reached the model inside Lightning's test loop: its BN affine weights moved
    adapted = torch.load(run_dir / "checkpoints" / "adapted.pt", weights_only=True)
    source = torch.load(result["source"], weights_only=True)
    moved = [
        k
        for k in source
        if k.endswith("bn1.weight") and not torch.equal(adapted[f"model.net.{k}"], source[k])
    ]
    assert moved, "TENT did not update a single BN weight"
    conv = next(k for k in source if k.endswith("conv1.weight"))
    assert torch.equal(adapted[f"model.net.{conv}"], source[conv])  # TENT trains BN affine only


# --- the command: CIFAR-10-C, WRN-28-10, a RobustBench-format checkpoint ---------------


@pytest.mark.slow
def test_rmt_on_tiny_cifar10_c_with_a_robustbench_checkpoint(tmp_path, skip_cifar_checksum):
    data = tmp_path / "data"
    write_cifar(data, "cifar10", n_train=50, n_test=20)
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    write_corrupted(data / "CIFAR-10-C", clean, np.arange(10) % 10, ["gaussian_noise", "fog"])
    torch.manual_seed(0)
    state = {f"module.{k}": v for k, v in wrn28_10().state_dict().items()}
    ckpt = tmp_path / "Standard.pt"
    torch.save({"state_dict": state}, ckpt)  # as RobustBench ships it (DataParallel keys)
    result = run(
        composed(
            tmp_path,
            "tta=rmt",
            "data=cifar10_c",
            "model=wrn28_10",
            f"source.ckpt={ckpt}",
            f"paths.data_dir={data}",
            f"paths.teachers={tmp_path / 'cache'}",
            "data.corruptions=[gaussian_noise,fog]",
            "data.batch_size=10",
            "data.source_train_size=50",
            "tta.warmup_samples=10",
            "tta.prototype_samples=10",
            "logger=none",
        )
    )
    assert result["status"] == "ok" and result["source"] == str(ckpt)
    assert result["input_norm"] is False  # a plain state dict from elsewhere: [0, 1] input
    assert 0.0 <= result["test/err/gaussian_noise"] <= 1.0 and "test/err/fog" in result
    assert list((tmp_path / "cache" / "tta_setup").glob("rmt-*.pt"))  # the warm-up is cached


# --- bad input: one line, exit 2, nothing written --------------------------------------------

BAD = {
    "unknown setting": (
        ["tta=norm", "task.setting=bogus"],
        "task.setting='bogus' must be one of continual, reset_each_shift, gradual",
    ),
    "bad method hyperparameter": (
        ["tta=rmt", "tta.momentum=1.5"],
        "tta.momentum=1.5 must be in [0, 1)",
    ),
    "missing source checkpoint": (
        ["tta=norm", "source.ckpt=/nonexistent/source.pt"],
        "source.ckpt=/nonexistent/source.pt: no such file",
    ),
    "no CIFAR-10-C on disk": (
        ["tta=norm", "data=cifar10_c", "paths.data_dir=/nonexistent"],
        "/nonexistent/CIFAR-10-C/gaussian_noise.npy not found; make it with: xent-corrupt",
    ),
    "task=tta without a method": (
        ["task=tta", "data=digits32_c", "model=resnet8"],
        "task=tta needs a method: tta=source, norm, tent, cotta or rmt",
    ),
}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    return run_bad_commands(tmp_path_factory.mktemp("bad"), BAD)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_fails_in_one_line_before_anything_is_written(bad_runs, name):
    assert_one_line_error(*bad_runs[name], BAD[name][1])


def test_the_tta_configs_build_their_methods(tmp_path):
    for method in ("source", "norm", "tent", "cotta", "rmt", "rmt_sf"):
        cfg = composed(tmp_path, f"tta={method}", "model=resnet8")
        built = instantiate(cfg.tta)(model=resnet8(num_classes=10, in_channels=3))
        assert type(built).__name__.lower() == method.replace("_sf", "")
