"""One job: build the parts, fit, test, write the run dir. Called by Hydra for every run."""

from __future__ import annotations

import logging
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from xent.checkpoint_io import AtomicCheckpointIO
from xent.checks import task_class
from xent.errors import XentError, root_message
from xent.run_guards import keep_sigint_handler, stop_on_sigterm, sweep_stop_callbacks
from xent.runner.console import print_config, print_results
from xent.runner.preflight import build_parts
from xent.runner.rundir import (
    CONTINUE,
    FINISHED,
    Interrupted,
    continue_command,
    finished_line,
    finished_run,
    is_interrupt,
    resume_checkpoint,
    resume_plan,
    write_metrics,
)

log = logging.getLogger("xent")


class _DropTips(logging.Filter):
    """Lightning advertises cloud products at every fit; a run log has no use for that."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡")


def _quiet_library_noise() -> None:
    # Lightning prints its info lines to stderr through a handler of its own; route them through
    # the run's logging instead (stdout and xent.log), so stderr carries only errors.
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "torchmetrics"):
        library_log = logging.getLogger(name)
        for handler in list(library_log.handlers):
            library_log.removeHandler(handler)
        library_log.propagate = True
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropTips())
    # Raised inside Lightning against torch 2.15's pytree; nothing a user can act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # Small tables have fewer batches per epoch than the logging interval; epoch logs cover it.
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
    # best.ckpt is the first ModelCheckpoint on purpose (conf/callbacks/default.yaml).
    warnings.filterwarnings("ignore", message=r".*multiple `ModelCheckpoint` callbacks.*")
    # On a SLURM login node Lightning suggests `srun` for every run; xent's SLURM path is
    # hydra/launcher=slurm, whose jobs SLURM starts itself (Lightning then detects SLURM).
    warnings.filterwarnings("ignore", message=r".*The `srun` command is available on your system.*")
    # On a machine with more than 2 cores Lightning suggests worker processes for every loader
    # with fewer than 2; xent's in-memory loaders build batches in the main process or in
    # data.num_workers threads (PrefetchLoader), so the hint does not apply (and it is stderr).
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # resume=true continues in a run dir whose checkpoints/ holds last.ckpt: that is the point.
    warnings.filterwarnings("ignore", message=r".*exists and is not empty.*")


def _instantiate_all(node: DictConfig | None) -> list[Any]:
    """A dict-of-`_target_` group (callbacks, logger) to a list; an empty group to []."""
    if not node:
        return []
    return [instantiate(entry) for entry in node.values() if entry and "_target_" in entry]


def _plugins(trainer_cfg: DictConfig) -> list[Any]:
    """The config's Trainer plugins plus AtomicCheckpointIO (atomic saves, weights-only loads),
    unless the config brings a CheckpointIO of its own."""
    from lightning.fabric.plugins import CheckpointIO

    given = trainer_cfg.get("plugins")
    if given is None:
        plugins = []
    elif isinstance(given, ListConfig):
        plugins = list(instantiate(given))
    else:
        plugins = [instantiate(given) if isinstance(given, DictConfig) else given]
    if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
        plugins.append(AtomicCheckpointIO())
    return plugins


def _save_resolved_config(cfg: DictConfig, run_dir: Path) -> None:
    """Replace Hydra's unresolved .hydra/config.yaml by the resolved one a later reader needs."""
    hydra_dir = run_dir / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    (hydra_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))


def _finish_wandb(loggers: list[Any]) -> None:
    if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        import wandb

        wandb.finish()


def _best_checkpoint_test(cfg, trainer, task, datamodule, metrics: dict) -> dict[str, float]:
    """Test metrics of the best-validation checkpoint, as `best/test_*`.

    With CIFAR's default val = test split this is the best-epoch test accuracy the CIFAR
    literature reports; test/* stays the final (or `eval_ckpt`) weights' result.
    """
    keys = task.best_test_keys
    callback = trainer.checkpoint_callback
    if cfg.eval_ckpt == "best" or callback is None or not callback.best_model_path:
        return {best: metrics[key] for key, best in keys.items() if key in metrics}
    trainer.test(task, datamodule=datamodule, ckpt_path="best", verbose=False)
    values = trainer.callback_metrics
    return {best: float(values[key]) for key, best in keys.items() if key in values}


def _save_hydra_files(run_dir: Path) -> None:
    """.hydra/overrides.yaml and hydra.yaml, where Hydra left them unwritten: under resume it
    writes nothing into a run dir (conf/hydra/default.yaml), and a job that starts there needs
    them (xent-report finds a sweep's jobs by their overrides.yaml). Not for a run nested in
    the job (a teacher trained for it): those would be the job's files, not its own."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    if Path(HydraConfig.get().runtime.output_dir).resolve() != run_dir.resolve():
        return
    hydra_dir = run_dir / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "overrides.yaml": HydraConfig.get().overrides.task,
        "hydra.yaml": HydraConfig.instance().cfg,  # {hydra: ...}, as Hydra writes it
    }
    for name, content in files.items():
        if not (hydra_dir / name).exists():
            (hydra_dir / name).write_text(OmegaConf.to_yaml(content))


def _sweep_dir() -> Path | None:
    """The sweep dir of a multirun job, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return Path(HydraConfig.get().sweep.dir).absolute()


def _interrupted(run_dir: Path, trainer: Any) -> Interrupted:
    """The exception that carries an interrupted run's one line to the CLI."""
    epochs = trainer.current_epoch if trainer is not None else 0
    command = continue_command(sys.argv[1:], run_dir, _sweep_dir())
    return Interrupted(f"xent-run: interrupted after epoch {epochs}; continue with: {command}")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train and test one configuration; metrics.json is written whatever happens."""
    run_dir = Path(cfg.paths.output_dir)
    plan = resume_plan(cfg, run_dir)  # refuses a resume that cannot be done, writing nothing
    if plan == FINISHED:
        print(finished_line(run_dir), flush=True)  # not logged: xent.log is the run's, kept
        return finished_run(run_dir)
    metrics: dict[str, Any] = {"status": "failed", "seed": cfg.seed, "epochs": 0}
    loggers: list[Any] = []
    started = time.perf_counter()
    trainer = None
    _quiet_library_noise()
    # Under DDP every process runs this function; only rank 0 writes the run dir and prints.
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    rank_zero = rank_zero_only.rank == 0
    restore_sigterm = None
    restore_sigint = keep_sigint_handler()  # Lightning ignores SIGINT after a Ctrl-C
    try:
        restore_sigterm = stop_on_sigterm()  # SIGTERM raises guards.Terminated, recorded below
        if rank_zero:
            _save_resolved_config(cfg, run_dir)
            _save_hydra_files(run_dir)
            print_config(cfg)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        parts = build_parts(cfg, load_pretrained=False)
        task_cls = task_class(cfg)
        prepared = task_cls.prepare(cfg, parts.net, parts.loss, train=run)
        metrics.update(prepared.metrics)
        if task_cls.summary_keys:  # a sweep table's columns, in the task's order (xent-report)
            metrics["summary_keys"] = list(task_cls.summary_keys)
        task = instantiate(
            cfg.task,
            net=prepared.net,
            loss=parts.loss,
            optimizer=parts.optimizer,
            scheduler=parts.scheduler,
            **prepared.task_kwargs,
        )
        loggers = _instantiate_all(cfg.get("logger"))
        trainer = instantiate(
            cfg.trainer,
            callbacks=_instantiate_all(cfg.get("callbacks")) + sweep_stop_callbacks(),
            logger=loggers or False,
            plugins=_plugins(cfg.trainer),
            **task_cls.trainer_overrides,
        )
        if task_cls.fits:
            ckpt = resume_checkpoint(run_dir, plan == CONTINUE, cfg.get("ckpt_path"))
            if ckpt:
                log.info("resuming from %s", ckpt)
            fit_started = time.perf_counter()
            trainer.fit(task, datamodule=parts.datamodule, ckpt_path=ckpt)
            metrics["train_time_s"] = time.perf_counter() - fit_started
            fit_values = dict(trainer.callback_metrics)
            test_ckpt = "best" if cfg.eval_ckpt == "best" else None
        else:  # test-time adaptation: the test loop is the whole run, nothing is trained
            fit_values, test_ckpt = {}, None
            metrics["train_time_s"] = 0.0
        test_started = time.perf_counter()
        trainer.test(task, datamodule=parts.datamodule, ckpt_path=test_ckpt, verbose=False)
        metrics["test_time_s"] = time.perf_counter() - test_started
        values = {**fit_values, **trainer.callback_metrics}
        metrics.update({k: float(values[k]) for k in task.reported if k in values})
        if task.best_key:
            metrics[task.best_key] = task.best_value
        metrics.update(_best_checkpoint_test(cfg, trainer, task, parts.datamodule, metrics))
        # The model's size, N of `xent-report --fit`; a task that counts its own way (an LM
        # without its embeddings) reports it itself, and its count stands.
        metrics.setdefault("model/n_params", sum(p.numel() for p in parts.net.parameters()))
        metrics["status"] = "ok"
        return metrics
    except BaseException as err:
        if is_interrupt(err):  # not a failure: recorded as such, and the way on is named
            metrics["status"] = "interrupted"
            raise _interrupted(run_dir, trainer) from None
        metrics["error"] = root_message(err) if isinstance(err, Exception) else type(err).__name__
        # A sweep's jobs may run in other processes: the parent reads this to print the same
        # line (`xent-run: error: ...` for bad input) and exit code as for an in-process job.
        metrics["bad_input"] = isinstance(err, XentError)
        if rank_zero:
            (run_dir / "error.log").write_text(traceback.format_exc())
        raise
    finally:
        if restore_sigterm is not None:
            restore_sigterm()  # from here a SIGTERM ends the process; metrics.json is atomic
        metrics.setdefault("train_time_s", time.perf_counter() - started)
        if trainer is not None:
            metrics["epochs"] = trainer.current_epoch
        if rank_zero:
            write_metrics(run_dir, metrics)
            if metrics["status"] == "ok":
                print_results(metrics, run_dir)
        _finish_wandb(loggers)
        restore_sigint()
