"""Continual test-time adaptation: a source model predicts a corruption stream while adapting.

There is no training loop. `run` tests this task on the stream of a `*_c` data module: every
batch is predicted and adapted on in one call of the method (`xent.tta`), and the prediction
counts toward the online error of its domain, as in the reference framework
(mariodoebler/test-time-adaptation). The settings: `continual` (15 domains, no reset),
`reset_each_shift` (back to the post-setup state at each new domain) and `gradual` (each
corruption at severities 1..5..1, no reset).

Reported: `test/err` (the mean over the schedule's entries: the reference's "mean error"),
`test/err/<corruption>` (over that corruption's entries) and, for gradual, `test/err_at5` (the
mean over the severity-5 entries). `tta_errors.json` and `tta_errors.png` in the run dir hold
the per-domain errors in stream order.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from xent.checkpoint_io import atomic_torch_save
from xent.checks import call_checked, instantiate_group, one_of, task_arguments
from xent.data.corrupted import continual_schedule, domain_names, gradual_schedule
from xent.errors import ConfigError
from xent.models.base import Classifier
from xent.pretrained import check_pretrained, missing_node, obtain_pretrained, trained_here
from xent.tasks.base import Prepared, RunTrainer, Task

log = logging.getLogger("xent")

SETTINGS = ("continual", "reset_each_shift", "gradual")
ERRORS_JSON = "tta_errors.json"
ERRORS_PNG = "tta_errors.png"


def summarize_errors(errors: list[float], schedule: list[tuple[str, int]]) -> dict[str, float]:
    """Per-domain online errors (stream order) → `test/err` (mean over the schedule's entries,
    the reference's "mean error"), `test/err/<corruption>` (mean over that corruption's
    entries) and, when the schedule mixes severities, `test/err_at5` (severity-5 entries)."""
    if len(errors) != len(schedule) or not errors:
        raise ValueError(f"{len(errors)} errors for {len(schedule)} domains")
    metrics = {"test/err": sum(errors) / len(errors)}
    if len({s for _, s in schedule}) > 1:
        at5 = [e for e, (_, s) in zip(errors, schedule, strict=True) if s == 5]
        if at5:
            metrics["test/err_at5"] = sum(at5) / len(at5)
    for corruption in dict.fromkeys(c for c, _ in schedule):
        mine = [e for e, (c, _) in zip(errors, schedule, strict=True) if c == corruption]
        metrics[f"test/err/{corruption}"] = sum(mine) / len(mine)
    return metrics


# Method settings that act only on the stream, not on the source-side setup (warm-up).
_STREAM_ONLY = ("lambda_st", "lambda_cont", "lambda_src", "steps")


def setup_cache_file(cfg: Any, source_weights: Path) -> Path:
    """Where a method's source-side setup is cached: a hash of everything it depends on (the
    source weights' bytes, the method's setup settings, optimizer, data, normalisation, seed).
    RMT with and without replay, and every setting of the stream, share one warm-up."""
    import hashlib

    from omegaconf import OmegaConf

    method = OmegaConf.to_container(cfg.tta, resolve=True)
    for key in _STREAM_ONLY:
        method.pop(key, None)
    data = OmegaConf.to_container(cfg.data, resolve=True)
    identity = {
        "source": hashlib.sha256(Path(source_weights).read_bytes()).hexdigest(),
        "method": method,
        "optim": OmegaConf.to_container(cfg.optim, resolve=True),
        "data": {k: data.get(k) for k in ("variant", "batch_size", "source_batch_size", "clean")},
        "input_norm": cfg.task.get("input_norm"),
        "seed": cfg.seed,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    name = str(method.get("_target_", "tta")).rsplit(".", 1)[-1].lower()
    return Path(cfg.paths.teachers) / "tta_setup" / f"{name}-{digest.hexdigest()[:12]}.pt"


class NormalizedClassifier(Classifier):
    """A classifier fed [0, 1] images that it normalises first, as its training data was.

    Keeps the `Classifier` split (features, head) the methods rely on; mean/std are buffers, so
    they follow the module to its device but are constants, never adapted.
    """

    def __init__(self, net: Classifier, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.net = net
        self.register_buffer("mean", mean.float().view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std.float().view(1, -1, 1, 1), persistent=False)

    @property
    def head(self) -> nn.Linear:  # type: ignore[override]
        return self.net.head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features((x - self.mean) / self.std)


def _forever(loader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:
        yield from loader


class _Counted:
    """An iterator that counts the items taken from it."""

    def __init__(self, items: Iterator):
        self.items, self.count = items, 0

    def __iter__(self) -> _Counted:
        return self

    def __next__(self):
        item = next(self.items)
        self.count += 1
        return item


class TTATask(Task):
    """Runs a TTA method over the data module's stream and scores its online predictions."""

    target_kind = "class"
    loss_hint = "no loss (the method brings its own objective); keep loss=ce"
    best_key = ""
    summary_keys = ("test/err", "test/err_at5")
    resume_keys = ("tta",)
    fits = False  # run() only tests this task: the adaptation happens in the test loop
    # Lightning runs test steps under torch.inference_mode by default, where no tensor can
    # take part in autograd: the methods could not compute a single gradient. The runner
    # builds this task's Trainer with these arguments, so adaptation can backpropagate; the
    # test step then turns gradients on explicitly (Lightning still wraps it in no_grad).
    trainer_overrides = {"inference_mode": False}

    @classmethod
    def check_setting(
        cls, setting: str = "continual", input_norm: bool | str = "auto", **_: Any
    ) -> None:
        one_of("task.setting", setting, SETTINGS)
        one_of("task.input_norm", input_norm, (True, False, "auto"), what="auto, true or false")

    @classmethod
    def check(
        cls, cfg: DictConfig, net: nn.Module, loss: nn.Module, *, load_pretrained: bool = True
    ) -> None:
        """The classify probes; then there is a source model to adapt, the setting is known,
        the method and its hyperparameters build on a copy of the model, and (with
        `load_pretrained`) the source model is reachable and loads."""
        super().check(cfg, net, loss, load_pretrained=load_pretrained)
        if cfg.get("source") is None:
            raise missing_node("source")  # `~source`: the run would adapt an untrained net
        cls.check_setting(**task_arguments(cfg, "method"))
        if cfg.get("tta") is None:
            raise ConfigError("task=tta needs a method: tta=source, norm, tent, cotta or rmt")
        optimizer = instantiate_group(cfg, "optim")
        method = instantiate_group(cfg, "tta")
        call_checked(cfg, "tta", method, model=copy.deepcopy(net), optimizer=optimizer)
        if load_pretrained:
            check_pretrained(cfg, "source")

    @classmethod
    def prepare(
        cls, cfg: DictConfig, net: nn.Module, loss: nn.Module, *, train: RunTrainer
    ) -> Prepared:
        """The net is the pretrained source model (loaded, or trained into the cache once);
        its setup cache file and, for `input_norm: auto`, whether it was trained here."""
        source, path = obtain_pretrained(cfg, "source", train=train)
        task_kwargs: dict[str, Any] = {"setup_cache": str(setup_cache_file(cfg, path))}
        if cfg.task.get("input_norm") == "auto":
            task_kwargs["input_norm"] = trained_here(cfg, path, "source")
        input_norm = task_kwargs.get("input_norm", cfg.task.get("input_norm"))
        return Prepared(source, task_kwargs, {"source": str(path), "input_norm": input_norm})

    def __init__(
        self,
        net: Classifier,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        monitor: str = "test/err",
        monitor_mode: str = "min",
        method: Callable[..., nn.Module] | None = None,
        setting: str = "continual",
        input_norm: bool | str = True,
        save_adapted: bool = True,
        output_dir: str | None = None,
        seed: int = 0,
        setup_cache: str | None = None,
    ):
        super().__init__(net, loss, optimizer, scheduler, monitor, monitor_mode)
        self.check_setting(setting)
        one_of("task.input_norm", input_norm, (True, False), what="auto, true or false")
        if method is None:
            raise ConfigError("task=tta needs a method: tta=source, norm, tent, cotta or rmt")
        self.method_factory, self.setting = method, setting
        self.input_norm, self.save_adapted = input_norm, save_adapted
        self.output_dir = Path(output_dir) if output_dir else None
        self.seed = seed  # orders each domain's samples and the source batches
        self.setup_cache = Path(setup_cache) if setup_cache else None
        self.method: nn.Module | None = None
        self.best_value = float("nan")
        self.reported: tuple[str, ...] = ("test/err",)
        self._schedule: list[tuple[str, int]] = []
        self._wrong: list[int] = []
        self._seen: list[int] = []
        self._domain = -1
        self._started = 0.0

    # -- before the stream ----------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.method is not None:
            return
        data = self.trainer.datamodule
        if self.setting == "gradual":
            data.schedule = gradual_schedule(data.corruptions)
        else:
            data.schedule = continual_schedule(data.corruptions, data.severity)
        data.stream_seed = self.seed
        self._schedule = list(data.schedule)
        model: Classifier = self.net
        if self.input_norm:
            clean = data.clean_module
            model = NormalizedClassifier(self.net, clean.mean, clean.std)
        self.method = self.method_factory(model=model, optimizer=self.optimizer_factory)
        per_corruption = [f"test/err/{c}" for c in dict.fromkeys(c for c, _ in self._schedule)]
        at5 = ["test/err_at5"] if self.setting == "gradual" else []
        self.reported = ("test/err", *at5, *per_corruption)

    def on_test_start(self) -> None:
        """Source-side preparation (RMT: prototypes, warm-up) on the run's device, once."""
        assert self.method is not None
        self._wrong = [0] * len(self._schedule)
        self._seen = [0] * len(self._schedule)
        self._domain = -1
        source = None
        if getattr(self.method, "needs_source", False):
            loader = self.trainer.datamodule.source_loader(self.seed)
            source = ((x.to(self.device), y.to(self.device)) for x, y in _forever(loader))
        started = time.perf_counter()
        with torch.enable_grad():
            how = self._setup_method(source)
        seconds = time.perf_counter() - started
        log.info("tta: %s ready in %.1f s (%s)", type(self.method).__name__, seconds, how)
        self._started = time.perf_counter()

    def _setup_method(self, source) -> str:
        """The method's source-side setup (RMT's prototypes and warm-up), from the cache when
        an identical setup was done before (as the reference caches its warm-up); else done
        now and cached, under a lock so concurrent jobs of a sweep do it once."""
        if self.setup_cache is None or not getattr(self.method, "needs_source", False):
            self.method.setup_source(source)
            return "nothing to prepare" if source is None else "source setup"
        from filelock import FileLock

        self.setup_cache.parent.mkdir(parents=True, exist_ok=True)
        # A cached setup must leave the run where a fresh one would: the source stream at the
        # same batch (replay continues from there) and the method's generator in the same state.
        counted = _Counted(source)
        with FileLock(str(self.setup_cache) + ".lock"):
            if self.setup_cache.is_file():
                state = torch.load(self.setup_cache, map_location="cpu", weights_only=True)
                for _ in range(int(state.get("source_batches", 0))):
                    next(counted)
                self.method.restore_setup(state, counted)
                if state.get("rng") is not None:
                    self.method.rng(self.device).set_state(state["rng"])
                return f"setup from the cache: {self.setup_cache}"
            self.method.setup_source(counted)
            state = self.method.setup_state()
            state["source_batches"] = counted.count
            generator = getattr(self.method, "_generator", None)
            state["rng"] = generator.get_state() if generator is not None else None
            atomic_torch_save(state, self.setup_cache)
            return f"setup done and cached: {self.setup_cache}"

    # -- the stream -----------------------------------------------------------------------------
    def test_step(self, batch, batch_idx: int) -> None:
        x, y, domain = batch
        d = int(domain[0])
        if d != self._domain:
            if self.setting == "reset_each_shift" and self._domain >= 0:
                self.method.reset()
            self._domain = d
        with torch.enable_grad():
            logits = self.method(x)
        self._wrong[d] += int((logits.argmax(dim=1) != y).sum())
        self._seen[d] += len(y)

    def on_test_epoch_end(self) -> None:
        pairs = zip(self._wrong, self._seen, strict=True)
        errors = [wrong / seen if seen else float("nan") for wrong, seen in pairs]
        metrics = summarize_errors(errors, self._schedule)
        self.log_dict(metrics)
        self.best_value = metrics["test/err"]
        seconds = time.perf_counter() - self._started
        log.info(
            "tta: %d domains in %.1f s, mean online error %.4f",
            len(errors),
            seconds,
            metrics["test/err"],
        )
        if self.output_dir is not None:
            self._write(errors, metrics)

    def _write(self, errors: list[float], metrics: dict[str, float]) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        names = domain_names(self._schedule)
        record = {
            "method": type(self.method).__name__,
            "setting": self.setting,
            "domains": [
                {"domain": name, "corruption": c, "severity": s, "err": e, "n": n}
                for name, (c, s), e, n in zip(
                    names, self._schedule, errors, self._seen, strict=True
                )
            ],
            **metrics,
        }
        (self.output_dir / ERRORS_JSON).write_text(json.dumps(record, indent=2))
        try:
            from xent.tta.plots import plot_domain_errors

            title = (
                f"{record['method']} ({self.setting}): mean online error {metrics['test/err']:.1%}"
            )
            plot_domain_errors(
                {record["method"]: errors}, names, self.output_dir / ERRORS_PNG, title=title
            )
        except ImportError:
            log.warning("matplotlib is not installed: no %s", ERRORS_PNG)
        if self.save_adapted:
            ckpt = self.output_dir / "checkpoints"
            ckpt.mkdir(exist_ok=True)
            atomic_torch_save(self.method.state_dict(), ckpt / "adapted.pt")
