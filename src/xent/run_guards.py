"""Guards that stop a run cleanly instead of letting it rot: a non-finite loss and SIGTERM.

Both end the run with an exception, so `xent.runner.run.run`'s error path writes metrics.json
(status failed, with the reason) and error.log, and the CLI prints one line. Neither saves a
checkpoint: the last one on disk is the last good state, and `resume=true` continues from it.
"""

from __future__ import annotations

import os
import signal
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch

LAST_CKPT_NAME = "last.ckpt"
DIVERGED_HINT = "training diverged: lower optim.lr or set trainer.gradient_clip_val"


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the step and the checkpoint."""


class Terminated(Exception):
    """SIGTERM arrived during a run. An Exception (not SystemExit, unlike Lightning's own
    SIGTERMException) so that the CLI reports it as a failed run in one line and exits 1."""


def last_good_checkpoint(trainer: L.Trainer) -> Path | None:
    """The checkpoint `resume=true` would continue from: the ModelCheckpoint files on disk,
    `last.ckpt` first, else the newest. Saved before the failing step, so never a NaN state."""
    found: list[Path] = []
    for callback in trainer.checkpoint_callbacks:
        names = [
            getattr(callback, "last_model_path", ""),
            getattr(callback, "best_model_path", ""),
            *getattr(callback, "best_k_models", {}),
        ]
        found += [Path(name) for name in names if name and Path(name).is_file()]
    if not found:
        return None
    lasts = [path for path in found if path.name == LAST_CKPT_NAME]
    return max(lasts or found, key=lambda path: path.stat().st_mtime_ns)


def _describe_checkpoint(path: Path | None) -> str:
    """`<path> (epoch E, step S)`, 1-based epochs as the epoch log lines count them."""
    if path is None:
        return "none yet"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return f"{path} (epoch {int(saved['epoch']) + 1}, step {int(saved['global_step'])})"
    except Exception:  # noqa: BLE001 - the path alone still helps
        return str(path)


def check_finite_loss(trainer: L.Trainer, loss: torch.Tensor, hint: str = DIVERGED_HINT) -> None:
    """Raise NonFiniteLossError when `loss` is NaN/inf. Steps count as Lightning's global_step
    does (optimizer steps done before this one); under DDP every rank stops together, so none
    is left waiting in an all-reduce."""
    bad = not bool(torch.isfinite(loss.detach()).all())
    if trainer.world_size > 1:
        bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
    if not bad:
        return
    value = float(loss.detach().float().flatten()[0]) if loss.numel() else float("nan")
    checkpoint = _describe_checkpoint(last_good_checkpoint(trainer))
    raise NonFiniteLossError(
        f"train/loss is {value} at step {trainer.global_step} (epoch {trainer.current_epoch + 1});"
        f" last good checkpoint: {checkpoint}; {hint}"
    )


class NonFiniteLoss(L.Callback):
    """Stop at the first non-finite training loss, before its backward pass and optimizer step.

    Raising here also skips the epoch-end checkpointing, so checkpoints/last.ckpt stays the last
    finite state; a NaN that trained on would only spend compute and overwrite it.
    """

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        check_finite_loss(trainer, loss)


# Whether this process has had a SIGTERM during a run: later runs of the same process (the jobs
# of a sequential multirun) then fail at once instead of starting.
_sigterm_received = False


def _raise_terminated(signum: int, frame: Any) -> None:
    global _sigterm_received
    if _sigterm_received:  # a second SIGTERM while the first is being recorded: die as asked
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    _sigterm_received = True
    raise Terminated("SIGTERM received; resume=true continues the run from its last checkpoint")


def stop_on_sigterm() -> Callable[[], None]:
    """Make SIGTERM raise `Terminated` in the run (as Ctrl+C raises KeyboardInterrupt), so the
    run records why it ended instead of vanishing; returns the function that undoes it.

    Files a run writes are safe against this: checkpoints and metrics.json are written to a
    temp file and renamed. Left alone off the main thread and where SIGTERM already has a
    handler (submitit's jobs bypass it on purpose: SLURM's preemption sends SIGTERM before
    the signal that checkpoints and requeues); nested runs (a teacher trained for a student)
    share the outer run's handler.
    """
    if _sigterm_received:
        raise Terminated("SIGTERM received before this run started; it was not started")
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return lambda: None
    signal.signal(signal.SIGTERM, _raise_terminated)
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL)


def keep_sigint_handler() -> Callable[[], None]:
    """Return the function that puts back this moment's SIGINT handler. Lightning sets SIGINT
    to "ignore" when a Ctrl-C reaches a fit (so that more Ctrl-Cs do not cut its shutdown short)
    and never restores it: without this, the next Ctrl-C of the process would do nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    handler = signal.getsignal(signal.SIGINT)
    if handler is None:  # installed outside Python: nothing this process could put back
        return lambda: None
    return lambda: signal.signal(signal.SIGINT, handler)


class StopWhenSweepStops(L.Callback):
    """A job of hydra/launcher=cores stops as Ctrl-C would stop it (a KeyboardInterrupt, so the
    run records itself as interrupted) once its sweep's stop file appears: xent-run writes it
    on Ctrl-C, which reaches a worker process only from a terminal, not from `kill -INT`."""

    def __init__(self, stop_file: Path):
        self.stop_file = Path(stop_file)

    def _stop_if_asked(self) -> None:
        if self.stop_file.exists():
            raise KeyboardInterrupt

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self._stop_if_asked()

    def on_validation_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self._stop_if_asked()

    def on_test_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self._stop_if_asked()


def sweep_stop_callbacks() -> list[L.Callback]:
    """[StopWhenSweepStops] in a worker of hydra/launcher=cores, else []."""
    from xent.job_relay import STOP_FILE_ENV

    stop_file = os.environ.get(STOP_FILE_ENV)
    return [StopWhenSweepStops(Path(stop_file))] if stop_file else []
