"""task=distill: teacher selection, the teacher cache, loading, and the teacher kept frozen."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from tests.cli_batch import Command, run_commands
from tests.conftest import composed, write_cifar
from xent.losses import DKDLoss, KDLoss
from xent.pretrained import cache_dir, obtain_pretrained
from xent.runner.preflight import build_parts
from xent.runner.run import run
from xent.tasks.distill import DistillTask

FAST = ["trainer.max_epochs=1", "logger=none", "teacher.recipe.epochs=2"]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory) -> tuple[Path, dict]:
    """A resnet20 trained on digits by this runner (task=classify): a teacher checkpoint."""
    tmp = tmp_path_factory.mktemp("teacher")
    cfg = composed(tmp, "model=resnet20", "trainer.max_epochs=3", "logger=none")
    result = run(cfg)
    assert result["status"] == "ok"
    return tmp / "run", result


def test_distill_losses_select_the_task_and_a_teacher_per_dataset(tmp_path):
    cfg = composed(tmp_path, "loss=pld")
    assert cfg.task._target_ == "xent.tasks.distill.DistillTask"
    assert cfg.teacher.model._target_ == "xent.models.resnet20"
    assert cfg.teacher.recipe.epochs == 30
    cifar = composed(tmp_path, "loss=kd", "data=cifar100")
    assert cifar.teacher.model._target_ == "xent.models.resnet32x4"
    assert cifar.teacher.recipe.epochs == 240 and cifar.teacher.recipe.batch_size == 64
    chosen = composed(tmp_path, "loss=dkd", "data=cifar100", "teacher=wrn_40_2")
    assert chosen.teacher.model._target_ == "xent.models.wrn_40_2"
    assert composed(tmp_path, "loss=ce").get("teacher") is None  # classify has no teacher


def test_cache_key_follows_model_data_recipe_and_seed(tmp_path):
    base = cache_dir(composed(tmp_path, "loss=pld"))
    assert base.name.startswith("resnet20-digits-")
    assert cache_dir(composed(tmp_path, "loss=kd", "seed=5")) == base  # student seed: same teacher
    assert cache_dir(composed(tmp_path, "loss=pld", "data.num_workers=2")) == base
    for change in ("teacher.seed=1", "teacher.recipe.epochs=3", "data.label_noise=0.2"):
        assert cache_dir(composed(tmp_path, "loss=pld", change)) != base, change
    assert cache_dir(composed(tmp_path, "loss=pld", "teacher=resnet56")).name.startswith("resnet56")


def test_a_missing_teacher_is_trained_once_by_the_function_the_caller_passes(tmp_path):
    """xent.pretrained imports no runner: the caller passes the function that trains (the
    runner passes its `run`). It gets a CE classify run of the teacher into the cache entry,
    once; the entry's last checkpoint becomes teacher.pt, loaded frozen."""
    cfg = composed(tmp_path, "loss=kd", f"paths.teachers={tmp_path / 'teachers'}")
    torch.manual_seed(0)
    weights = instantiate(cfg.teacher.model).state_dict()
    run_configs = []

    def train(run_cfg):
        run_configs.append(run_cfg)
        checkpoints = Path(run_cfg.paths.output_dir) / "checkpoints"
        checkpoints.mkdir(parents=True)
        torch.save(
            {"state_dict": {f"net.{k}": v for k, v in weights.items()}}, checkpoints / "last.ckpt"
        )
        return {"test/acc": 0.5}

    first, path = obtain_pretrained(cfg, train=train)
    again, _ = obtain_pretrained(cfg, train=train)
    assert len(run_configs) == 1
    assert path == cache_dir(cfg) / "teacher.pt" and path.is_file()
    (run_cfg,) = run_configs
    assert run_cfg.paths.output_dir == str(cache_dir(cfg))
    assert run_cfg.task._target_ == "xent.tasks.classify.ClassifyTask"
    assert run_cfg.loss._target_ == "torch.nn.CrossEntropyLoss"
    assert run_cfg.trainer.max_epochs == 30 and run_cfg.seed == 0
    assert "teacher" not in run_cfg
    for teacher in (first, again):
        assert all(torch.equal(v, weights[k]) for k, v in teacher.state_dict().items())
        assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training


@pytest.mark.slow  # seconds: keeps the fast tier under its 2-minute budget
def test_teacher_from_a_runner_checkpoint_and_a_plain_state_dict(tmp_path, teacher_run):
    """The loaded teacher scores on the test split exactly what its own run measured."""
    run_dir, result = teacher_run
    plain = tmp_path / "plain.pt"
    torch.save(
        torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)["state_dict"], plain
    )
    net_only = {k[4:]: v for k, v in torch.load(plain, weights_only=True).items()}
    torch.save(net_only, plain)
    for i, source in enumerate((run_dir / "checkpoints" / "last.ckpt", plain)):
        cfg = composed(tmp_path / str(i), "loss=kd", f"teacher.ckpt={source}", *FAST)
        metrics = run(cfg)
        assert metrics["status"] == "ok"
        assert metrics["teacher"] == str(source)
        assert metrics["teacher/test_acc"] == pytest.approx(result["test/acc"], abs=1e-6)
        assert "best/test_acc" in metrics
    assert not (tmp_path / "teachers").exists()  # an explicit checkpoint never touches the cache


def test_ce_under_distill_is_the_no_teacher_baseline(tmp_path):
    cfg = composed(tmp_path, "task=distill", "teacher.ckpt=/nonexistent.pt", *FAST)
    metrics = run(cfg)
    assert metrics["status"] == "ok" and "teacher/test_acc" not in metrics
    assert "teacher" not in metrics


@pytest.mark.slow  # seconds: keeps the fast tier under its 2-minute budget
def test_teacher_stays_frozen_and_outside_the_checkpoint(tmp_path, teacher_run):
    run_dir, _ = teacher_run
    cfg = composed(tmp_path, "loss=dkd", f"teacher.ckpt={run_dir / 'checkpoints/last.ckpt'}")
    parts = build_parts(cfg)
    teacher, _ = obtain_pretrained(cfg, train=run)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    task = instantiate(
        cfg.task,
        net=parts.net,
        loss=parts.loss,
        optimizer=parts.optimizer,
        scheduler=None,
        teacher=teacher,
    )
    assert not any(k.startswith("teacher") for k in task.state_dict())
    optimizer = task.configure_optimizers()
    n_opt = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
    assert n_opt == sum(p.numel() for p in parts.net.parameters())
    task.train()  # Lightning's .train() must not reach the teacher
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    x = torch.randn(8, 1, 8, 8)
    seen = {}

    class Spy(DKDLoss):
        def forward(self, logits, target, teacher_logits, *, epoch=1):
            seen.update(epoch=epoch, grad=teacher_logits.requires_grad)
            return super().forward(logits, target, teacher_logits, epoch=epoch)

    task.loss = Spy()
    value = task.compute_loss(x, parts.net(x), torch.zeros(8, dtype=torch.long), torch.arange(8))
    value.backward()
    assert seen == {"epoch": 1, "grad": False}  # Lightning's epoch 0 is the paper's epoch 1
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert task.teacher is teacher and isinstance(task, DistillTask)


# Concurrent jobs sharing one teacher cache: tests/test_reliability.py (4 processes).


class _RunsCode:
    def __reduce__(self):
        return (print, ("this pickle runs code",))


def _bad_checkpoints(tmp_path: Path, run_dir: Path) -> list[tuple[list[str], str]]:
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as handle:
        pickle.dump({"head.weight": _RunsCode()}, handle)
    other = tmp_path / "resnet56.pt"
    torch.save(
        instantiate({"_target_": "xent.models.resnet56", "num_classes": 10}).state_dict(), other
    )
    classes = tmp_path / "classes.pt"
    net = instantiate({"_target_": "xent.models.resnet20", "num_classes": 7, "in_channels": 1})
    torch.save(net.state_dict(), classes)
    last = run_dir / "checkpoints" / "last.ckpt"
    return [
        (
            ["teacher.train_if_missing=false"],
            r"no teacher: teacher.ckpt is null and the cache has none at .*teacher.pt; pass "
            r"teacher.ckpt=PATH, or teacher.train_if_missing=true",
        ),
        ([f"teacher.ckpt={tmp_path / 'nope.pt'}"], r"teacher.ckpt=.*nope.pt: no such file$"),
        (
            [f"teacher.ckpt={evil}"],
            r"teacher.ckpt=.*evil.pt: not a weights-only checkpoint, refused",
        ),
        (
            [f"teacher.ckpt={classes}"],
            r"teacher.ckpt=.*classes.pt: the teacher has 7 classes but the data has 10$",
        ),
        (
            [f"teacher.ckpt={other}"],
            r"teacher.ckpt=.*resnet56.pt is not a state dict of teacher.model=resnet20: "
            r"\d+ unexpected",
        ),
        (
            ["teacher=resnet56", f"teacher.ckpt={last}"],
            r"teacher.ckpt=.*last.ckpt is not a state dict of teacher.model=resnet56: \d+ missing",
        ),
    ]


@pytest.mark.slow  # seconds: keeps the fast tier under its 2-minute budget
@pytest.mark.slow
def test_bad_teachers_fail_before_training_in_one_line(tmp_path, teacher_run):
    run_dir, _ = teacher_run
    cases = _bad_checkpoints(tmp_path, run_dir)
    targets = [tmp_path / f"student{i}" for i in range(len(cases))]
    commands = [
        Command(
            ["loss=pld", f"paths.teachers={tmp_path / 'empty-cache'}", f"hydra.run.dir={target}"]
            + overrides,
            cwd=tmp_path,
        )
        for (overrides, _), target in zip(cases, targets, strict=True)
    ]
    for (overrides, message), target, proc in zip(
        cases, targets, run_commands(commands), strict=True
    ):
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (overrides, proc.stderr)
        assert len(lines) == 1 and lines[0].startswith("xent-run: error: "), proc.stderr
        assert re.search(message, lines[0]), lines[0]
        assert "this pickle runs code" not in proc.stdout + proc.stderr
        assert not target.exists()
    assert not (tmp_path / "empty-cache").exists()


def test_kd_loss_is_exported_for_configs():
    assert KDLoss().requires == ("teacher_logits",)


@pytest.mark.slow
def test_the_issue_command_runs_on_cifar100_files(tmp_path, skip_cifar_checksum):
    """`xent-run loss=pld model=resnet8x4 data=cifar100 teacher=resnet32x4` end to end on tiny
    files in the real CIFAR-100 format: the teacher is trained into the cache, then distilled."""
    write_cifar(tmp_path / "data", "cifar100", n_train=100, n_test=40)
    cfg = composed(
        tmp_path,
        "loss=pld",
        "model=resnet8x4",
        "data=cifar100",
        "teacher=resnet32x4",
        f"paths.data_dir={tmp_path / 'data'}",
        "teacher.recipe.epochs=1",
        "trainer.max_epochs=1",
        "logger=none",
    )
    metrics = run(cfg)
    assert metrics["status"] == "ok"
    assert Path(metrics["teacher"]).parent.name.startswith("resnet32x4-cifar-")
    assert 0.0 <= metrics["teacher/test_acc"] <= 1.0 and "best/test_acc" in metrics
