"""Callbacks xent adds to every Trainer."""

from __future__ import annotations

import logging
import sys

import lightning as L
import torch

log = logging.getLogger("xent")


class EpochSeed(L.Callback):
    """Reseed torch at each epoch start from (seed, epoch).

    Lightning's checkpoints do not carry the global RNG state, so without this a resumed run's
    dropout masks (and any other torch draws in the model) would differ from an uninterrupted
    run. Data order and augmentation are seeded separately by the data module.
    """

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.manual_seed(self.seed * 1_000_003 + trainer.current_epoch + 1)


class EpochLog(L.Callback):
    """One log line per epoch (to the console and the run dir's xent.log).

    The live progress bar is for terminals; this line is what a log file, a SLURM .out file
    or a CI transcript keeps. An epoch's line is written once all its metrics are final:
    at the next epoch's start, or when training ends.
    """

    def __init__(
        self, keys: tuple[str, ...] = ("train/loss", "val/loss", "val/acc", "val/nll", "val/rmse")
    ):
        self.keys = tuple(keys)
        self._pending: int | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pending = trainer.current_epoch + 1

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._emit(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._emit(trainer)

    def _emit(self, trainer: L.Trainer) -> None:
        if self._pending is None:
            return
        values = trainer.callback_metrics
        shown = " ".join(f"{key}={float(values[key]):.4f}" for key in self.keys if key in values)
        log.info("%s %s", progress_words(trainer, self._pending), shown)
        self._pending = None


def progress_words(trainer: L.Trainer, epoch: int) -> str:
    """`epoch 3/30`; where max_steps ends the run (task=lm, whose max_epochs is only a ceiling
    of 1,000,000) `step 750/2000 (epoch 3)`: "epoch 3/1000000" would say nothing."""
    if trainer.max_steps is not None and trainer.max_steps > 0:
        return f"step {trainer.global_step}/{trainer.max_steps} (epoch {epoch})"
    return f"epoch {epoch}/{trainer.max_epochs}"


def progress_bar(leave: bool = True) -> L.Callback:
    """Rich's live bar on a terminal; on a pipe or file, no bar (EpochLog writes lines)."""
    from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

    if sys.stdout.isatty():
        return RichProgressBar(leave=leave)

    class _NoBar(ProgressBar):
        def disable(self) -> None:
            pass

        @property
        def is_enabled(self) -> bool:
            return False

    return _NoBar()
