"""Every option of every config group composes and builds (models: tests/test_models.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.conftest import composed

CONF = Path(__file__).resolve().parents[1] / "src" / "xent" / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_groups_hold_the_options_the_readme_promises():
    assert {"sgd", "adamw"} <= set(options("optim"))
    assert {"cosine", "multistep", "none"} <= set(options("sched"))
    assert {"default", "cpu", "gpu", "debug"} <= set(options("trainer"))
    assert {"csv", "wandb", "tensorboard", "none"} <= set(options("logger"))
    assert {"digits", "digits32", "cifar10", "cifar100"} <= set(options("data"))


@pytest.mark.parametrize("name", options("data"))
def test_data_option_builds_with_declared_shape(tmp_path, name):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("to be or not to be\n" * 20)
    cfg = composed(tmp_path, f"data={name}", *([f"data.path={corpus}"] if name == "text" else []))
    dm = instantiate(cfg.data)
    if dm.target_kind == "tokens":  # text corpora (task=lm): token windows of the model's context
        assert dm.block_size == cfg.data.block_size == 64
        return
    assert dm.num_classes == cfg.data.num_classes
    if "in_channels" in cfg.data:  # images: the shape is (C, H, W)
        shape = [cfg.data.in_channels, cfg.data.image_size, cfg.data.image_size]
        assert list(cfg.data.input_shape) == shape
        assert (dm.in_channels, dm.image_size) == (shape[0], shape[1])
    else:  # tables: one row of features
        assert list(dm.input_shape) == list(cfg.data.input_shape)
        assert len(dm.input_shape) == 1
    if name.startswith("cifar"):
        assert Path(cfg.data.root) == tmp_path / "data"


@pytest.mark.parametrize("optim", options("optim"))
@pytest.mark.parametrize("sched", options("sched"))
def test_optim_and_sched_options_step(tmp_path, optim, sched):
    cfg = composed(tmp_path, f"optim={optim}", f"sched={sched}", "trainer.max_epochs=8")
    net = torch.nn.Linear(4, 2)
    opt = instantiate(cfg.optim)(params=net.parameters())
    assert opt.param_groups[0]["lr"] == cfg.optim.lr
    if sched == "none":
        assert cfg.sched._target_ is None
        return
    scheduler = instantiate(cfg.sched)(optimizer=opt)
    lrs = []
    for _ in range(8):
        opt.step()
        scheduler.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[-1] < cfg.optim.lr  # both schedules decay over the run


def test_multistep_milestones_follow_max_epochs(tmp_path):
    cfg = composed(tmp_path, "sched=multistep", "trainer.max_epochs=240")
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.05)
    scheduler = instantiate(cfg.sched)(optimizer=opt)
    assert sorted(scheduler.milestones) == [150, 180, 210]  # CRD's CIFAR schedule


@pytest.mark.parametrize("name", options("trainer"))
def test_trainer_option_composes(tmp_path, name):
    cfg = composed(tmp_path, f"trainer={name}")
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    if name == "gpu" and not torch.cuda.is_available():
        pytest.skip("accelerator=gpu cannot be built without a GPU")
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert trainer.max_epochs == cfg.trainer.max_epochs


@pytest.mark.parametrize("name", options("logger"))
def test_logger_option_builds(tmp_path, name, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    if name == "wandb":
        pytest.importorskip("wandb")
    if name == "tensorboard":
        pytest.importorskip("tensorboard")
    cfg = composed(tmp_path, f"logger={name}")
    loggers = [instantiate(node) for node in (cfg.logger or {}).values()]
    assert len(loggers) == (0 if name == "none" else 1)


def test_callbacks_build_and_monitor_the_task_metric(tmp_path):
    cfg = composed(tmp_path)
    callbacks = {k: instantiate(v) for k, v in cfg.callbacks.items()}
    best, last = callbacks["best_checkpoint"], callbacks["last_checkpoint"]
    assert best.monitor == "val/acc" and best.mode == "max"
    assert last.monitor is None and last.filename == "last"
    assert Path(best.dirpath) == Path(last.dirpath) == tmp_path / "run" / "checkpoints"


def test_model_and_task_read_classes_from_data(tmp_path):
    cfg = composed(tmp_path, "data=cifar100", "model=resnet20")
    assert cfg.model.num_classes == 100 and cfg.model.in_channels == 3
    assert cfg.task.num_classes == 100
    raw = OmegaConf.load(CONF / "model" / "resnet20.yaml")
    assert OmegaConf.to_container(raw)["num_classes"] == "${data.num_classes}"  # typed once
