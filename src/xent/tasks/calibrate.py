"""Post-hoc calibration of a trained classifier (docs/methods/calibrate.md).

Nothing is trained: the run tests this task. Before the test loop it computes the source's
logits on the validation split (the calibration split); the test loop collects the test
split's logits; at its end the calibrator is fitted on the calibration logits alone and every
metric is measured on the test logits before (`test/<metric>_uncal`) and after (`test/*`), and
on each shifted test set (`test/<metric>/<shift>`, calibration/shifts.py) where the data has a
corruption stream. The logits go to `logits.pt`, the calibrated test split's reliability diagram to
`reliability.png`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from xent.calibration import CALIBRATORS, Calibrator, make_calibrator
from xent.calibration.calibrators import calibrator_from_config
from xent.calibration.evaluate import (
    IN_DISTRIBUTION,
    Logits,
    calibrate_and_measure,
    check_split_size,
)
from xent.calibration.logits_cache import load_logits, logits_cache_file, save_logits
from xent.calibration.shifts import (
    ShiftSpec,
    check_shift_stream,
    collect_by_shift,
    shift_spec,
    shift_stream,
)
from xent.calibration.source_run import read_source_run
from xent.calibration.views import view_logits
from xent.checkpoint_io import atomic_torch_save
from xent.checks import instantiate_group, one_of
from xent.pretrained import check_pretrained, load_weights, obtain_pretrained
from xent.tasks.base import Prepared, RunTrainer, Task

log = logging.getLogger("xent")

LOGITS_FILE = "logits.pt"
RELIABILITY_PNG = "reliability.png"


def _source_run_dir(cfg: DictConfig) -> str | None:
    source = cfg.get("source")
    return None if source is None else source.get("run_dir")


def _load_source_run(cfg: DictConfig) -> tuple[nn.Module, Path]:
    """The source run's own model (its resolved config), with its last weights, frozen."""
    source = read_source_run(_source_run_dir(cfg), cfg.data)
    model = instantiate(source.config.model)
    return load_weights(model, source.checkpoint, cfg, "source"), source.checkpoint


def _calibrator(name: str, node: Mapping[str, Any] | None) -> Calibrator:
    """The calibrator with its group's options (`calibrator.odir`), so that an override of one
    reaches the fit, and a bad value is refused, instead of the class default being used."""
    return make_calibrator(name) if node is None else calibrator_from_config(node)


def _shift_spec(cfg: DictConfig) -> ShiftSpec | None:
    return shift_spec(cfg.task, cfg.data, str(cfg.paths.data_dir))


def _clean_data(cfg: DictConfig):
    """The run's data module, set up."""
    data = instantiate_group(cfg, "data")
    data.setup("test")
    return data


class CalibrateTask(Task):
    """Fits a calibrator on the source's validation logits; tests it on the test split."""

    target_kind = "class"
    trains_on = "class labels"
    loss_hint = "no loss (the source is trained already); keep loss=ce"
    summary_keys = ("test/ece", "test/ece_uncal", "test/nll", "test/acc", "calib/T")
    fits = False
    # The fit needs gradients, and Lightning's test loop runs under torch.inference_mode,
    # whose tensors never take part in autograd.
    trainer_overrides = {"inference_mode": False}

    @classmethod
    def check(
        cls, cfg: DictConfig, net: nn.Module, loss: nn.Module, *, load_pretrained: bool = True
    ) -> None:
        """The classify probes; a known calibrator; the source run (when given) finished a
        classify run on this data and loads; else the source model is reachable."""
        super().check(cfg, net, loss, load_pretrained=load_pretrained)
        name = one_of("calibrator", cfg.task.calibrator, sorted(CALIBRATORS))
        calibrator = _calibrator(name, cfg.task.get("calibrator_config"))
        num_classes = int(cfg.data.num_classes)
        spec = _shift_spec(cfg)
        if calibrator.n_params(num_classes) > 1 or spec is not None:
            data = _clean_data(cfg)
            n_calib = len(data.splits["val"].labels)  # the calibration split
            check_split_size(name, calibrator, n_calib, num_classes)
            if spec is not None:
                check_shift_stream(spec, data)
        if _source_run_dir(cfg):
            _load_source_run(cfg)
        elif load_pretrained:
            check_pretrained(cfg, "source")

    @classmethod
    def prepare(
        cls, cfg: DictConfig, net: nn.Module, loss: nn.Module, *, train: RunTrainer
    ) -> Prepared:
        """The net is the source: the run dir's model, or the cached one (trained once)."""
        if _source_run_dir(cfg):
            source, path = _load_source_run(cfg)
        else:
            source, path = obtain_pretrained(cfg, "source", train=train)
        spec = _shift_spec(cfg)
        views = cfg.task.calibrator == "ca"
        cache = logits_cache_file(cfg.paths.teachers, Path(path), cfg.data, spec, views)
        record = {
            "source": str(path),
            "calibrator": str(cfg.task.calibrator),
            "shifts": [] if spec is None else spec.names,
            "logits_cache": str(cache),
        }
        return Prepared(source, {"shift_spec": spec, "logits_cache": str(cache)}, record)

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        monitor: str = "test/ece",
        monitor_mode: str = "min",
        calibrator: str = "ts",
        calibrator_config: Mapping[str, Any] | None = None,
        output_dir: str | None = None,
        shifts: bool = True,
        shift_severity: int = 5,
        shift_samples: int | None = None,
        shift_spec: ShiftSpec | None = None,
        logits_cache: str | None = None,
    ):
        super().__init__(net, loss, optimizer, scheduler, monitor, monitor_mode)
        self.calibrator_name = one_of("calibrator", calibrator, sorted(CALIBRATORS))
        self.calibrator = _calibrator(self.calibrator_name, calibrator_config)
        self.output_dir = Path(output_dir) if output_dir else None
        self.best_value = float("nan")
        self.reported: tuple[str, ...] = ()
        self._calib: Logits | None = None
        self._test: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
        # task.shifts / shift_severity / shift_samples are read by `prepare` into shift_spec
        self.shift_spec = shift_spec if shifts else None
        self.logits_cache = Path(logits_cache) if logits_cache else None
        self._cached: tuple[Logits, dict[str, Logits]] | None = None

    @property
    def needs_views(self) -> bool:
        return self.calibrator_name == "ca"

    def _batch_logits(self, x: torch.Tensor):
        logits = self.net(x).detach().double().cpu()
        views = view_logits(self.net, x).double().cpu() if self.needs_views else None
        return logits, views

    def _labelled_logits(self, x: torch.Tensor, y: torch.Tensor):
        logits, views = self._batch_logits(x.to(self.device))
        return logits, y.cpu(), views

    def _shifted_domains(self) -> dict[str, Logits]:
        """Each shifted test set's logits (and views), read after the test loop."""
        if self._cached is not None:
            return self._cached[1]
        if self.shift_spec is None:
            return {}
        self.net.eval()
        stream = shift_stream(self.shift_spec, self.trainer.datamodule)
        with torch.no_grad():
            parts = collect_by_shift(stream, self._labelled_logits)
        return {name: _stack(*zip(*batches, strict=True)) for name, batches in parts.items()}

    def on_test_start(self) -> None:
        """The calibration split's logits, once, before any test batch is seen: from the logits
        cache where another calibrator of this source computed them already."""
        self._test = []
        self._cached = load_logits(self.logits_cache) if self.logits_cache else None
        if self._cached is not None:
            self._calib = self._cached[0]
            log.info("calibrate: the source's logits from %s", self.logits_cache)
            return
        self.net.eval()
        logits, labels, views = [], [], []
        with torch.no_grad():
            for x, y, _ in self.trainer.datamodule.val_dataloader():
                batch_logits, batch_views = self._batch_logits(x.to(self.device))
                logits.append(batch_logits)
                labels.append(y.cpu())
                views.append(batch_views)
        self._calib = _stack(logits, labels, views)

    def test_step(self, batch, batch_idx: int) -> None:
        x, y, _ = batch
        logits, views = self._batch_logits(x)
        self._test.append((logits, y.cpu(), views))

    def on_test_epoch_end(self) -> None:
        logits, labels, views = (list(parts) for parts in zip(*self._test, strict=True))
        shifted = self._shifted_domains()
        if self.logits_cache is not None and self._cached is None:
            save_logits(self.logits_cache, self._calib, shifted)
        domains = {IN_DISTRIBUTION: _stack(logits, labels, views), **shifted}
        with torch.enable_grad():
            metrics = calibrate_and_measure(
                self.calibrator_name, self.calibrator, self._calib, domains
            )
        self.reported = tuple(metrics)
        self.log_dict({k: float(v) for k, v in metrics.items()})
        self.best_value = metrics["test/ece"]
        log.info(
            "calibrate: %s on %d samples, test ECE %.4f -> %.4f",
            self.calibrator_name,
            len(self._calib.labels),
            metrics["test/ece_uncal"],
            metrics["test/ece"],
        )
        if self.output_dir is not None:
            self._write(domains)

    def _write(self, domains: dict[str, Logits]) -> None:
        from xent.calibration.plots import reliability_figure, save

        self.output_dir.mkdir(parents=True, exist_ok=True)
        test = domains[IN_DISTRIBUTION]
        shifted = {name: split.__dict__ for name, split in domains.items() if name}
        record = {"calib": self._calib.__dict__, "test": test.__dict__, "shifts": shifted}
        atomic_torch_save(record, self.output_dir / LOGITS_FILE)
        calibrated = self.calibrator(test.logits, test.view_logits)
        figure = reliability_figure(calibrated, test.labels, self.calibrator_name)
        save(figure, self.output_dir / RELIABILITY_PNG)


def _stack(logits: Sequence, labels: Sequence, views: Sequence) -> Logits:
    """One Logits of the batches' pieces (views only when every batch has them)."""
    stacked_views = None if any(v is None for v in views) else torch.cat(views, dim=1)
    return Logits(torch.cat(logits), torch.cat(labels), stacked_views)
