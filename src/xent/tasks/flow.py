"""Flow matching: a velocity net regressed on (x0, x1) pairs, evaluated by sampling its ODE.

The loss (`xent.flow`: I-CFM, OT-CFM, W-CFM) is called as `loss(net, x0, x1)`; the task only
feeds batches and measures. Evaluation follows Tong et al. (docs/methods/flow.md §2.2): push the
held-out source set through the learned ODE and compare with the held-out target set by exact
W2. Validation does that with the configured solver (its W2 picks the best checkpoint); the
test also integrates the path energy for NPE = |PE − W2²(q0, q1)| / W2²(q0, q1), counts the
solver's NFE, measures W2 after a few Euler steps (straight paths need few), and draws the
samples and trajectories into the run dir.

Image data (`data=digits`, `cifar10`, ...) is a supported shape: its batches (x, y, index) give
x1 = the images and x0 = standard Gaussian noise of the same shape (fresh per training step;
fixed per held-out batch, so every validation compares the same noise). The labels are unused.
W2 and NPE are then measured in the data's normalised pixel space; the test adds FID through
torchmetrics where its Inception weights can be loaded (else `test/fid` is absent and a warning
says so), and the figures are a grid of samples and a row of ODE states per sample.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from xent.checks import (
    call_checked,
    check_scalar_loss,
    choice_name,
    input_shape,
    integer,
    number,
    one_of,
    shape_words,
    task_arguments,
)
from xent.errors import ConfigError, root_message
from xent.flow import integrate, normalized_path_energy, wasserstein2
from xent.flow.fid import frechet_inception_distance
from xent.flow.ode import METHODS
from xent.run_guards import check_finite_loss
from xent.tasks.base import FewThreads, Task
from xent.tasks.probes import check_data_fits

log = logging.getLogger("xent")

SAMPLES_PNG = "samples.png"
TRAJECTORIES_PNG = "trajectories.png"
# Seeds of the fixed source noise of held-out image batches (batch i uses seed + i).
SPLIT_NOISE_SEEDS = {"val": 10_000, "test": 20_000}
METHOD_NAMES = {"ICFMLoss": "I-CFM", "OTCFMLoss": "OT-CFM", "WCFMLoss": "W-CFM"}
FLOW_DIVERGED_HINT = (
    "training diverged: flow matching wants optim=adamw sched=none (Tong et al.) or a lower lr"
)


def probe_velocity(cfg: DictConfig, net: nn.Module, loss: nn.Module) -> None:
    """A velocity call v(t, x) on a few points of the data's shape, then one loss value.

    Four points, so OT-CFM's exact plan costs nothing; the draws use their own generator,
    leaving the run's seeded global RNG untouched.
    """
    shape, model, dataset = input_shape(cfg), choice_name(cfg, "model"), choice_name(cfg, "data")
    gen = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(4, *shape, generator=gen), torch.randn(4, *shape, generator=gen)
    try:
        with torch.no_grad():
            velocity = net(torch.zeros(4), x0)
    except Exception as err:  # noqa: BLE001
        hint = (
            ""
            if model in ("model=velocity_mlp", "model=velocity_unet")
            else "; task=flow needs a velocity net v(t, x): model=velocity_mlp or velocity_unet"
        )
        raise ConfigError(
            f"{model} cannot take {dataset} points of shape {shape_words(shape)} as "
            f"v(t, x): {root_message(err)}{hint}"
        ) from err
    if tuple(velocity.shape) != tuple(x0.shape):
        raise ConfigError(
            f"{model} returns velocities of shape {tuple(velocity.shape)[1:]} but {dataset} "
            f"points have shape {shape}"
        )
    probe = copy.deepcopy(loss)
    with torch.no_grad():
        value = call_checked(cfg, "loss", lambda: probe(net, x0, x1, generator=gen))
    check_scalar_loss(cfg, value)


class FlowTask(FewThreads, Task):
    """Trains a velocity net `net(t, x)` with a flow-matching loss; reports W2, NPE and NFE."""

    target_kind = "flow"
    trains_on = "source/target point clouds or images"
    loss_hint = "a flow-matching loss (cfm, otcfm, wcfm)"
    reported = ("test/w2", "test/npe", "test/nfe", "test/pe", "test/w2_euler", "test/fid")
    best_key = "best/val_w2"
    best_test_keys = {"test/w2": "best/test_w2", "test/npe": "best/test_npe"}
    summary_keys = ("test/w2", "best/test_w2", "test/npe", "test/nfe", "test/w2_euler")

    @classmethod
    def check_data(cls, cfg: DictConfig) -> None:
        """Point clouds (toy2d) with a point model, or images with an image model: flow
        matching maps noise to images, their labels unused."""
        if "in_channels" not in cfg.data:
            check_data_fits(
                cfg,
                cls,
                instead="data=toy2d, or images: data=digits, cifar10",
                not_images=(f"has points of shape {list(input_shape(cfg))}", "model=velocity_mlp"),
            )
        elif "${data.dim}" in OmegaConf.to_container(cfg.model, resolve=False).values():
            raise ConfigError(
                f"{choice_name(cfg, 'model')} takes 2D points, but {choice_name(cfg, 'data')} "
                f"has images of shape {shape_words(input_shape(cfg))}: use model=velocity_unet"
            )

    @classmethod
    def check(
        cls, cfg: DictConfig, net: nn.Module, loss: nn.Module, *, load_pretrained: bool = True
    ) -> None:
        """A velocity call and one loss value (`probe_velocity`), then the sampler settings."""
        probe_velocity(cfg, net, loss)
        cls.check_sampler(**task_arguments(cfg))

    @classmethod
    def check_sampler(
        cls,
        solver: str = "dopri5",
        atol: float = 1e-4,
        rtol: float = 1e-4,
        euler_steps: int = 4,
        plot_times: int = 21,
        num_threads: int | None = 1,
        max_eval_samples: int | None = 1000,
        **_: Any,
    ) -> None:
        """Sampling settings that cannot work fail before training (the preflight calls this)."""
        one_of("task.solver", solver, METHODS)
        for key, value in (("atol", atol), ("rtol", rtol)):
            number(f"task.{key}", value, above=0, what="a number > 0")
        integer("task.euler_steps", euler_steps, at_least=1)
        integer("task.plot_times", plot_times, at_least=2)
        integer("task.max_eval_samples", max_eval_samples, at_least=2, optional=True)
        integer("task.num_threads", num_threads, at_least=1, optional=True)

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        monitor: str = "val/w2",
        monitor_mode: str = "min",
        solver: str = "dopri5",
        atol: float = 1e-4,
        rtol: float = 1e-4,
        euler_steps: int = 4,
        plot_dir: str | None = None,
        plot_times: int = 21,
        num_threads: int | None = 1,
        max_eval_samples: int | None = 1000,
        fid: bool = True,
    ):
        super().__init__(net, loss, optimizer, scheduler, monitor, monitor_mode)
        self.check_sampler(
            solver, atol, rtol, euler_steps, plot_times, num_threads, max_eval_samples
        )
        self.max_eval_samples, self.fid = max_eval_samples, fid
        self.solver = {"method": solver, "atol": atol, "rtol": rtol}
        self.euler_steps, self.plot_times = euler_steps, plot_times
        self.plot_dir = Path(plot_dir) if plot_dir else None
        self.num_threads = num_threads  # FewThreads applies it
        self.best_value = math.inf
        self._held: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {"val": [], "test": []}
        self._plotted = False

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.net(t, x)

    @staticmethod
    def _pair(batch, noise: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0, x1): a toy batch as it comes; an image batch (x, y, index) as (noise, x)."""
        if len(batch) == 2:
            return batch[0], batch[1]
        x1 = batch[0]
        if noise is None:
            return torch.randn_like(x1), x1
        return torch.randn(x1.shape, generator=noise).to(x1), x1

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x0, x1 = self._pair(batch)
        loss = self.loss(self.net, x0, x1)
        # Sampling a diverged net fails deep inside the ODE solver; say it here instead, as the
        # NonFiniteLoss callback would (checked here too, in case that callback is removed).
        check_finite_loss(self.trainer, loss, FLOW_DIVERGED_HINT)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(x0))
        return loss

    # -- evaluation: collect the held-out set, sample the ODE once at the epoch end -----------
    def _hold(self, stage: str, batch, batch_idx: int) -> None:
        if sum(len(b[0]) for b in self._held[stage]) >= (self.max_eval_samples or math.inf):
            return
        noise = torch.Generator().manual_seed(SPLIT_NOISE_SEEDS[stage] + batch_idx)
        self._held[stage].append(self._pair(batch, noise))

    def validation_step(self, batch, batch_idx: int) -> None:
        self._hold("val", batch, batch_idx)

    def test_step(self, batch, batch_idx: int) -> None:
        self._hold("test", batch, batch_idx)

    def _take(self, stage: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The held-out (x0, x1), at most `max_eval_samples` of each."""
        batches, self._held[stage] = self._held[stage], []
        if not batches:
            return None
        keep = self.max_eval_samples
        return torch.cat([b[0] for b in batches])[:keep], torch.cat([b[1] for b in batches])[:keep]

    def on_validation_epoch_end(self) -> None:
        held = self._take("val")
        if held is None:
            return
        x0, x1 = held
        sol = integrate(self.net, x0, **self.solver)
        w2 = wasserstein2(sol.x, x1)
        self.log_dict({"val/w2": w2, "val/nfe": float(sol.nfe)}, prog_bar=True)
        if not self.trainer.sanity_checking:
            self.best_value = min(self.best_value, w2)
        self.log(self.best_key, self.best_value)

    def on_test_epoch_end(self) -> None:
        held = self._take("test")
        if held is None:
            return
        x0, x1 = held
        sol = integrate(self.net, x0, **self.solver, path_energy=True, num_times=self.plot_times)
        w2 = wasserstein2(sol.x, x1)
        euler = integrate(self.net, x0, method="euler", steps=self.euler_steps)
        npe = normalized_path_energy(sol.path_energy, wasserstein2(x0, x1, squared=True))
        metrics = {
            "test/w2": w2,
            "test/npe": npe,
            "test/nfe": float(sol.nfe),
            "test/pe": sol.path_energy,
            "test/w2_euler": wasserstein2(euler.x, x1),
        }
        images = x1.dim() == 4
        if images and self.fid:
            fid = frechet_inception_distance(self._pixels(x1), self._pixels(sol.x))
            if fid is not None:
                metrics["test/fid"] = fid
        self.log_dict(metrics)
        if self.plot_dir is not None and not self._plotted:
            if images:
                self._plot_images(sol.x, sol.trajectory, w2)
            else:
                self._plot(sol.x, x1, sol.trajectory, w2)

    def _pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images back to [0, 1] by the data module's mean/std (when it has them)."""
        data = self.trainer.datamodule
        mean, std = getattr(data, "mean", None), getattr(data, "std", None)
        if mean is None or std is None:
            return x.clamp(0, 1)
        shape = (1, -1, 1, 1)
        return (x * std.to(x).view(shape) + mean.to(x).view(shape)).clamp(0, 1)

    def _can_plot(self) -> bool:
        """Once per run: the figures of the weights behind test/* (not the best-ckpt re-test)."""
        self._plotted = True
        try:
            import matplotlib  # noqa: F401
        except ImportError:  # a declared dependency, but a broken install keeps the run, not PNGs
            log.warning("matplotlib is not installed: no %s / %s", SAMPLES_PNG, TRAJECTORIES_PNG)
            return False
        self.plot_dir.mkdir(parents=True, exist_ok=True)
        return True

    def _method_name(self) -> str:
        return METHOD_NAMES.get(type(self.loss).__name__, type(self.loss).__name__)

    def _plot(self, samples, target, trajectory, w2: float) -> None:
        if not self._can_plot():
            return
        from xent.flow.plots import plot_samples, plot_trajectories

        data = self.trainer.datamodule
        pair = f"{data.source} → {data.target}" if hasattr(data, "source") else ""
        name = self._method_name()
        title = f"{name} {pair}: W2 {w2:.3f}"
        plot_samples(samples, target, self.plot_dir / SAMPLES_PNG, title=title)
        plot_trajectories(trajectory, self.plot_dir / TRAJECTORIES_PNG, title=f"{name} {pair}")

    def _plot_images(self, samples, trajectory, w2: float) -> None:
        if not self._can_plot():
            return
        from xent.flow.plots import plot_image_samples, plot_image_trajectories

        name, data = self._method_name(), getattr(self.trainer.datamodule, "name", "images")
        plot_image_samples(
            self._pixels(samples), self.plot_dir / SAMPLES_PNG, title=f"{name} {data}: W2 {w2:.2f}"
        )
        steps = torch.stack([self._pixels(x) for x in trajectory])
        plot_image_trajectories(
            steps, self.plot_dir / TRAJECTORIES_PNG, title=f"{name} {data}: noise → image"
        )
