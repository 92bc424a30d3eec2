"""The task contract: everything the runner asks of a task, declared once, here.

The runner (`xent.runner`: preflight, run, rundir, report) reaches a task only through the class
`task._target_` names and the members below; it names no task. A new task is
one module in `tasks/` plus its `conf/task/*.yaml`, and edits no other file
(docs/pipeline.md §6).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import lightning as L
import torch
from omegaconf import DictConfig
from torch import nn

from xent.pretrained import RunTrainer
from xent.tasks.probes import check_data_fits, loss_kind, probe_model

__all__ = ["Prepared", "RunTrainer", "Task"]


@dataclass
class Prepared:
    """What a task's `prepare` hands the runner: the net the task is built on (the run's own,
    or a pretrained one it adapts), extra task arguments, and entries for metrics.json."""

    net: nn.Module
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


class Task(L.LightningModule):
    """Base of the tasks: the net, the loss, and the optimizer and schedule factories.

    The factories are partials (Hydra `_partial_: true`) that receive the parameters or the
    optimizer here, so the config never needs to know the model.

    What a subclass declares for the runner (class attributes, read before it is built):
    `target_kind` and `trains_on` (the data and losses it fits, and how messages say so),
    `loss_hint` (the losses that fit), `reported` (the metric keys copied to metrics.json),
    `best_key` (its best validation value, `best_value`), `best_test_keys` (test metrics also
    measured on the best checkpoint), `summary_keys` (a sweep table's columns, in order),
    `fits` (False: the run only tests), `trainer_overrides` (Trainer arguments it needs) and
    `resume_keys` (config nodes a resume must keep, beyond the ones every run has). And
    classmethods: `loss_target_kind` (what a loss trains on, as the task sees it),
    `provided_inputs` (the extra loss inputs it gives), `check_data`, `check`
    (before anything is written) and `prepare` (a teacher or source model, when it needs one).
    """

    target_kind: ClassVar[str] = "class"
    trains_on: ClassVar[str] = "class labels"
    loss_hint: ClassVar[str] = ""
    reported: tuple[str, ...] = ()  # an instance may narrow it once it has run (TTA)
    best_key: ClassVar[str] = ""
    best_test_keys: ClassVar[dict[str, str]] = {}  # test metric -> its best-checkpoint key
    summary_keys: ClassVar[tuple[str, ...]] = ()
    fits: ClassVar[bool] = True
    trainer_overrides: ClassVar[dict[str, Any]] = {}
    resume_keys: ClassVar[tuple[str, ...]] = ()
    # Options of other groups that `task=<this>` on the command line selects where the command
    # names none for that group (xent.runner.command_line.with_task_defaults): a task config
    # comes before data and model in the defaults list, so it cannot override them itself.
    group_defaults: ClassVar[dict[str, str]] = {}

    @classmethod
    def provided_inputs(cls, **task_cfg: Any) -> tuple[str, ...]:
        """The extra loss inputs (`loss.requires`) this task can give, for its config."""
        return ()

    @classmethod
    def loss_target_kind(cls, loss: nn.Module) -> str:
        """What `loss` trains on, as this task sees it (compared with `target_kind`); a task
        that adapts other losses (task=lm runs the classify CE losses on tokens) says so here."""
        return loss_kind(loss)

    @classmethod
    def check_data(cls, cfg: DictConfig) -> None:
        """Before any model is built: the data holds what this task trains on, and the model
        takes that data's inputs. One `ConfigError` line otherwise."""
        check_data_fits(cfg, cls)

    @classmethod
    def check(
        cls, cfg: DictConfig, net: nn.Module, loss: nn.Module, *, load_pretrained: bool = True
    ) -> None:
        """Before anything is written: the built net and loss work together (a forward on
        zeros, one loss value), and, with `load_pretrained`, any pretrained model the task
        needs is reachable. One `ConfigError` line otherwise."""
        probe_model(cfg, net, loss)

    @classmethod
    def prepare(
        cls, cfg: DictConfig, net: nn.Module, loss: nn.Module, *, train: RunTrainer
    ) -> Prepared:
        """In the job, before the task is built: obtain what it needs beyond the run's parts
        (a pretrained model, trained once by `train` when not cached)."""
        return Prepared(net)

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None,
        monitor: str,
        monitor_mode: str,
    ):
        super().__init__()
        self.net, self.loss = net, loss
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.monitor, self.monitor_mode = monitor, monitor_mode

    # The best validation value so far (of `best_key`); set by the subclass, kept in checkpoints.
    best_value: float

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[self.best_key] = self.best_value

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.best_value = checkpoint.get(self.best_key, self.best_value)

    def on_train_epoch_start(self) -> None:
        # Logged here rather than by LearningRateMonitor, which refuses to run without a logger.
        lr = self.optimizers().param_groups[0]["lr"]
        self.log("train/lr", lr, on_epoch=True, sync_dist=True)

    # How often the schedule steps: "epoch", or "step" for a task that counts optimizer steps.
    scheduler_interval = "epoch"

    def optimizer_params(self) -> Any:
        """What the optimizer partial is called with: all parameters, or a task's groups."""
        return self.parameters()

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.optimizer_params())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval},
        }


class FewThreads:
    """Lightning hooks that run a task's fit/test with `num_threads` torch intra-op threads and
    restore the count after. Why: a small model (2D flows, tiny GPTs) on a few shared CPU cores
    gains nothing from extra threads, which only spin (flow: 200 steps take 19.5 s with 2
    threads, 2.1 s with 1; gpt_tiny on a busy 2-core machine: 1.2 s a step with 2, 22 ms with 1).
    The task sets `self.num_threads` (None: torch's default)."""

    num_threads: int | None = None
    _saved_threads: int | None = None

    def setup(self, stage: str) -> None:
        if self.num_threads and self._saved_threads is None:
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(self.num_threads)

    def teardown(self, stage: str) -> None:
        if self._saved_threads is not None:
            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None
