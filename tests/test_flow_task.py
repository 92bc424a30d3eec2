"""task=flow through the runner: data=toy2d, the flow loss configs, training to a measured W2,
metrics.json and PNGs, and bad input failing in one line before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.conftest import assert_one_line_error, composed, run_bad_commands
from xent.data.toy2d import Toy2DDataModule
from xent.errors import ConfigError
from xent.flow import VelocityMLP, integrate, wasserstein2
from xent.runner.run import run

CONF = Path(__file__).resolve().parents[1] / "src" / "xent" / "conf"
# The flow recipe's optimizer (Tong et al.: AdamW 1e-3, constant lr); the root default SGD
# (lr 0.05, momentum 0.9) diverges on flow matching. The experiments set it themselves.
RECIPE = ["optim=adamw", "sched=none", "logger=none"]
FLOW_KEYS = ("test/w2", "test/npe", "test/nfe", "test/pe", "test/w2_euler", "best/val_w2")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- data=toy2d ----------------------------------------------------------------------------------


def toy(**kwargs) -> Toy2DDataModule:
    dm = Toy2DDataModule(**kwargs)
    dm.setup()
    return dm


def test_toy2d_sets_are_fixed_per_seed_and_per_side():
    dm = toy(source="gaussian", target="8gaussians", data_seed=3)
    sizes = {split: tuple(dm.splits[split][0].shape) for split in ("train", "val", "test")}
    assert sizes == {"train": (10000, 2), "val": (1000, 2), "test": (1000, 2)}
    again = toy(source="gaussian", target="8gaussians", data_seed=3)
    assert all(torch.equal(dm.splits["test"][i], again.splits["test"][i]) for i in (0, 1))
    other_seed = toy(data_seed=4)
    assert not torch.equal(dm.splits["test"][1], other_seed.splits["test"][1])
    # each (split, side) has its own generator: the target set does not depend on the source
    moons = toy(source="moons", target="8gaussians", data_seed=3, n_train=50)
    assert torch.equal(moons.splits["test"][1], dm.splits["test"][1])
    assert not torch.equal(moons.splits["test"][0], dm.splits["test"][0])


def test_toy2d_batches_pair_source_and_target_independently():
    dm = toy(shuffle_seed=0)
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == 20 and [len(b[0]) for b in batches[-2:]] == [512, 10000 - 19 * 512]
    x0 = torch.cat([b[0] for b in batches])
    x1 = torch.cat([b[1] for b in batches])
    train0, train1 = dm.splits["train"]
    # each epoch visits every point once, source and target in two different orders
    assert torch.equal(x0.sort(0).values, train0.sort(0).values)
    assert torch.equal(x1.sort(0).values, train1.sort(0).values)
    rows0, rows1 = torch.cdist(x0[:64], train0).argmin(1), torch.cdist(x1[:64], train1).argmin(1)
    assert not torch.equal(rows0, rows1)
    # the order depends on (seed, epoch) only: a resumed run sees the same batches
    loader.sampler.set_epoch(1)
    epoch1 = next(iter(loader))
    assert not torch.equal(epoch1[0], batches[0][0])
    loader.sampler.set_epoch(0)
    assert torch.equal(next(iter(loader))[0], batches[0][0])
    val = list(dm.val_dataloader())
    assert len(val) == 1 and val[0][0].shape == (1000, 2)  # W2 compares the whole set


def test_toy2d_rejects_unknown_distributions_in_one_line():
    with pytest.raises(ConfigError) as info:
        Toy2DDataModule(source="ring")
    assert str(info.value) == (
        "data.source='ring' is not a distribution; valid: 8gaussians, gaussian, moons, scurve"
    )
    with pytest.raises(ConfigError, match="data.batch_size=0 must be a positive integer"):
        Toy2DDataModule(batch_size=0)


# --- configs -------------------------------------------------------------------------------------


def test_flow_losses_select_task_data_and_velocity_net(tmp_path):
    for loss in ("cfm", "otcfm", "wcfm"):
        cfg = composed(tmp_path, f"loss={loss}")
        assert cfg.task._target_ == "xent.tasks.flow.FlowTask"
        assert cfg.data._target_ == "xent.data.toy2d.Toy2DDataModule"
        assert cfg.model._target_ == "xent.flow.nets.VelocityMLP"
        assert cfg.loss.sigma == 0.1  # Tong et al.'s 2D protocol
        assert cfg.callbacks.best_checkpoint.monitor == "val/w2"
    # what the command line names still wins
    cfg = composed(tmp_path, "loss=cfm", "data=digits", "model=mlp")
    assert cfg.data._target_.endswith("DigitsDataModule") and cfg.model._target_.endswith("mlp")


def test_velocity_mlp_config_is_tong_et_als_net(tmp_path):
    path = CONF / "model" / "velocity_mlp.yaml"
    assert path.read_text().startswith("# ")
    assert OmegaConf.to_container(OmegaConf.load(path))["dim"] == "${data.dim}"  # typed once
    net = instantiate(composed(tmp_path, "loss=wcfm").model)
    assert isinstance(net, VelocityMLP) and net.dim == 2
    assert sum(p.numel() for p in net.parameters()) == 3 * 64 + 64 + 2 * (64 * 64 + 64) + 130
    assert sum(isinstance(m, torch.nn.SELU) for m in net.modules()) == 3


def test_flow_pairs_set_the_four_tasks(tmp_path):
    pairs = sorted(p.stem for p in (CONF / "flow_pair").glob("*.yaml"))
    assert len(pairs) == 4
    for pair in pairs:
        cfg = composed(tmp_path, "experiment=wcfm_2d", f"flow_pair={pair}", "loss=wcfm")
        assert f"{cfg.data.source}-{cfg.data.target}" == pair
        assert (cfg.optim.weight_decay, cfg.data.batch_size) == (1e-5, 512)
        assert (cfg.trainer.max_epochs, cfg.trainer.check_val_every_n_epoch) == (100, 10)


# --- training through the runner -----------------------------------------------------------------


@pytest.mark.slow
def test_wcfm_learns_gaussian_to_8gaussians(tmp_path):
    """W-CFM (eps 5), 30 epochs = 600 steps of batch 512, AdamW 1e-3, val every 10 (~3 s).

    Measured (torch 2.15 CPU, seeds 0 / 1 / 2): W2(dopri5 samples, 1000 test targets) =
    3.78 / 3.88 / 3.81 untrained, 0.98 / 0.91 / 1.17 after 600 steps (2000 steps, seed 42:
    0.64); NPE 0.02 / 0.03 / 0.11; NFE 32 / 32 / 26. This test runs seed 0.
    """
    torch.manual_seed(0)  # the runner's init: seed_everything(0), then the model is built first
    dm = toy(data_seed=0)
    x0, x1 = dm.splits["test"]
    untrained = wasserstein2(integrate(VelocityMLP(), x0).x, x1)
    assert untrained > 3.5, untrained
    cfg = composed(
        tmp_path,
        "loss=wcfm",
        *RECIPE,
        "trainer.max_epochs=30",
        "trainer.check_val_every_n_epoch=10",
    )
    result = run(cfg)
    run_dir = tmp_path / "run"
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk["status"] == "ok" and on_disk["epochs"] == 30
    assert all(key in on_disk for key in FLOW_KEYS + ("best/test_w2",)), sorted(on_disk)
    assert result["test/w2"] < 1.3, result["test/w2"]
    assert 0.0 <= result["test/npe"] < 0.5 and result["test/nfe"] >= 14  # dopri5: 6 per step + 2
    assert result["best/val_w2"] < 1.3 and result["test/w2_euler"] < untrained
    for name in ("samples.png", "trajectories.png"):
        data = (run_dir / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, name
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["cfm", "otcfm"])
def test_other_flow_losses_run_a_short_job(tmp_path, loss):
    cfg = composed(
        tmp_path,
        f"loss={loss}",
        *RECIPE,
        "trainer.max_epochs=2",
        "+trainer.limit_train_batches=5",
        "data.source=moons",
    )
    result = run(cfg)
    assert result["status"] == "ok" and result["epochs"] == 2
    assert all(key in result for key in FLOW_KEYS)
    assert 0.0 < result["test/w2"] < 10.0 and result["test/nfe"] > 0
    assert (tmp_path / "run" / "samples.png").read_bytes()[:8] == PNG_MAGIC


# --- bad input: one line on stderr, exit 2, no run dir ------------------------------------------

BAD = {
    "unknown distribution": (
        ["loss=wcfm", "data.source=ring"],
        "data.source='ring' is not a distribution; valid: 8gaussians, gaussian, moons, scurve",
    ),
    "2D velocity net on images": (
        ["loss=cfm", "data=digits"],
        "model=velocity_mlp takes 2D points, but data=digits has images of shape 1x8x8: "
        "use model=velocity_unet",
    ),
    "image velocity net on points": (
        ["loss=cfm", "model=velocity_unet"],
        "model=velocity_unet takes images, but data=toy2d has points of shape [2]: "
        "use model=velocity_mlp",
    ),
    # eps <= 0, a flow loss on class data and a class loss on task=flow: tests/test_bad_input.py
}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    return run_bad_commands(tmp_path_factory.mktemp("bad"), BAD)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_fails_in_one_line_before_training(bad_runs, name):
    assert_one_line_error(*bad_runs[name], BAD[name][1])
