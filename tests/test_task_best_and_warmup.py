"""What the tasks feed their losses and metrics, checked on the task objects themselves: the
1-indexed epoch DKD's warm-up sees, `best/val_acc` as the best epoch's value, and the 15-bin
ECE (against an independent implementation, edge samples included)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from xent.losses import DKDLoss
from xent.tasks.classify import ClassifyTask, classification_metrics
from xent.tasks.distill import DistillTask

NUM_CLASSES = 4


def with_trainer(task: ClassifyTask, epoch: int = 0, sanity_checking: bool = False):
    """Attach the two trainer fields the task reads, and record what it logs."""
    task._trainer = SimpleNamespace(current_epoch=epoch, sanity_checking=sanity_checking)
    task.logged = {}
    task.log = lambda key, value, **_: task.logged.__setitem__(key, float(value))
    task.log_dict = lambda values, **_: task.logged.update({k: float(v) for k, v in values.items()})
    return task


def classify_task(loss: nn.Module | None = None, **kwargs) -> ClassifyTask:
    cls = DistillTask if "teacher" in kwargs else ClassifyTask
    return cls(
        net=nn.Identity(),  # the batch's x are the logits
        loss=loss or nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD,
        num_classes=NUM_CLASSES,
        **kwargs,
    )


class EpochRecorder(nn.Module):
    """A distillation loss that only records the epoch it is given."""

    requires = ("teacher_logits", "epoch")

    def __init__(self):
        super().__init__()
        self.epochs: list[int] = []

    def forward(self, logits, target, teacher_logits, epoch):
        self.epochs.append(epoch)
        return logits.sum() * 0


def batch(seed: int = 0, n: int = 12):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, NUM_CLASSES, generator=gen) * 3
    return logits, torch.randint(0, NUM_CLASSES, (n,), generator=gen), torch.arange(n)


# -- DKD: the epoch the distill task passes (class defaults: test_distill_losses.py) ------------


def test_distill_task_passes_the_1_indexed_epoch():
    recorder = EpochRecorder()
    task = classify_task(recorder, teacher=nn.Identity())
    x, y, index = batch()
    for epoch in range(4):
        with_trainer(task, epoch).compute_loss(x, x, y, index)
    assert recorder.epochs == [1, 2, 3, 4]


def test_dkd_warmup_factor_under_the_task_at_epochs_0_to_5():
    """ce_weight=0: the loss is factor x (TCKD + NCKD); warmup=4 ramps 1/4, 2/4, 3/4, 1, 1, 1."""
    teacher = nn.Linear(NUM_CLASSES, NUM_CLASSES)
    x, y, index = batch(1)
    ramped = DKDLoss(ce_weight=0.0, alpha=1.0, beta=1.0, warmup=4)
    full = DKDLoss(ce_weight=0.0, alpha=1.0, beta=1.0, warmup=0)
    with torch.no_grad():
        unramped = float(full(x, y, teacher(x), epoch=1))
        task = classify_task(ramped, teacher=teacher)
        factors = [
            float(with_trainer(task, e).compute_loss(x, x, y, index)) / unramped for e in range(6)
        ]
    assert unramped > 0.1
    assert factors == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0], rel=1e-6)


# -- best/val_acc: the best epoch's value, sanity checks left out --------------------------------


def validation_epoch(task: ClassifyTask, correct: int, n: int = 10, sanity: bool = False) -> dict:
    """One validation epoch in which `correct` of `n` samples are right; returns what it logged."""
    y = torch.arange(n) % NUM_CLASSES
    logits = torch.nn.functional.one_hot(y, NUM_CLASSES).float() * 5
    logits[correct:] = logits[correct:].roll(1, dims=1)  # the rest predict the next class
    with_trainer(task, sanity_checking=sanity)
    task.validation_step((logits, y, torch.arange(n)), 0)
    task.on_validation_epoch_end()
    return task.logged


def test_best_val_acc_is_the_best_epoch_not_the_last():
    task = classify_task()
    assert task.best_value == 0.0
    seen = [validation_epoch(task, correct)["best/val_acc"] for correct in (5, 8, 6, 3)]
    assert seen == pytest.approx([0.5, 0.8, 0.8, 0.8])
    assert task.logged["val/acc"] == pytest.approx(0.3)


def test_a_sanity_check_never_sets_best_val_acc():
    task = classify_task()
    assert validation_epoch(task, 9, sanity=True)["best/val_acc"] == 0.0
    assert validation_epoch(task, 4)["best/val_acc"] == pytest.approx(0.4)


def test_best_val_acc_survives_a_checkpoint_round_trip():
    task = classify_task()
    validation_epoch(task, 7)
    checkpoint: dict = {}
    task.on_save_checkpoint(checkpoint)
    resumed = classify_task()
    resumed.on_load_checkpoint(checkpoint)
    assert checkpoint["best/val_acc"] == resumed.best_value == pytest.approx(0.7)


# -- ECE: 15 equal bins [k/15, (k+1)/15), a confidence of exactly 1 in a bin of its own ----------

BINS = 15


def reference_ece(
    probs: torch.Tensor, target: torch.Tensor, n_bins: int = BINS, left_closed: bool = True
) -> float:
    """L1 ECE in float64; left-closed bins are torchmetrics' convention, written out here.

    Edges and confidences are float32 values, as the metric sees them, so that a confidence
    of float32(k/15) is exactly on edge k."""
    edges = torch.tensor([k / n_bins for k in range(n_bins + 1)], dtype=torch.float32).tolist()
    conf, pred = probs.max(dim=1)
    bins: dict[int, list[tuple[float, float]]] = {}
    for c, right in zip(conf.double().tolist(), (pred == target).tolist(), strict=True):
        inside = [i for i, edge in enumerate(edges) if (edge <= c if left_closed else edge < c)]
        k = max(inside)  # left-closed: 1.0 -> k = n_bins, a bin of its own
        bins.setdefault(k, []).append((c, float(right)))
    n = len(target)
    return sum(
        abs(sum(r for _, r in s) / len(s) - sum(c for c, _ in s) / len(s)) * len(s) / n
        for s in bins.values()
    )


def rows_with_confidence(confidences: list[float], classes: int = 3) -> torch.Tensor:
    """Probability rows whose top class 0 has the given confidence (float32, exact)."""
    conf = torch.tensor(confidences, dtype=torch.float32)
    rest = ((1 - conf) / (classes - 1))[:, None].expand(-1, classes - 1)
    return torch.cat([conf[:, None], rest], dim=1)


def float32_below(value: float) -> float:
    """The largest float32 below float32(value)."""
    v = torch.tensor(value, dtype=torch.float32)
    return torch.nextafter(v, torch.tensor(0.0)).item()


def test_ece_uses_15_bins_and_left_closed_edges():
    # 11/15 and 12/15 are float32 values exactly on an edge, at or above k/15; so is 1.0.
    on_edges = [11 / 15, 11 / 15, 12 / 15, 1.0, 1.0]
    below = [float32_below(11 / 15), 0.70, 0.95, 0.99, 0.999]  # bin 10, 10, 14, 14, 14
    probs = rows_with_confidence(on_edges + below)
    target = torch.tensor([0, 1, 0, 0, 2, 0, 0, 1, 0, 1])
    ece = classification_metrics(3)["ece"]
    ece.update(probs, target)
    expected = reference_ece(probs, target)
    assert float(ece.compute()) == pytest.approx(expected, rel=1e-6)
    # The data tells the conventions apart: another bin count or right-closed bins differ.
    assert abs(reference_ece(probs, target, n_bins=16) - expected) > 1e-3
    assert abs(reference_ece(probs, target, left_closed=False) - expected) > 1e-3


@pytest.mark.parametrize("spread", [0.0, 3.0])
def test_task_ece_is_on_softmax_probabilities(spread):
    """Logits all in [0, 1) (spread 0) would pass as probabilities if fed to the metric as is."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.rand(200, NUM_CLASSES, generator=gen) + spread * torch.randn(
        200, NUM_CLASSES, generator=gen
    )
    y = torch.randint(0, NUM_CLASSES, (200,), generator=gen)
    task = with_trainer(classify_task())
    task.validation_step((logits, y, torch.arange(200)), 0)
    task.on_validation_epoch_end()
    expected = reference_ece(logits.softmax(dim=1), y)
    assert task.logged["val/ece"] == pytest.approx(expected, rel=1e-5)
