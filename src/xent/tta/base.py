"""The interface every test-time adaptation method keeps, the Source baseline and shared helpers.

A method wraps a `Classifier` and is called once per test batch: `forward(x)` predicts and, for
adapting methods, takes its optimisation step(s) on that same batch (online TTA). Lightning and
Hydra stay outside: the task builds the model, hands over an optimizer partial and source
batches, and logs `last_losses`.

Mode policy: every inner network is kept in eval mode (dropout off) whatever `.train()` the
wrapper receives, because Lightning toggles train/eval on the whole module tree between loops.
Batch statistics, where a method wants them, come from `use_batch_statistics` (BN without running
stats uses the batch in eval mode too), so the mode never changes what BN does. TENT's and
CoTTA's reference code call `model.train()` instead; for networks without dropout the two are
identical.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from xent.checks import integer, number, plain
from xent.errors import ConfigError
from xent.models.base import Classifier

OptimizerFactory = Callable[[Iterable[Any]], torch.optim.Optimizer]
SourceBatches = Iterator[tuple[Tensor, Tensor]]


def default_optimizer() -> OptimizerFactory:
    """Adam, lr 1e-3, β (0.9, 0.999), no weight decay: the CIFAR-10/100-C setting of TENT, CoTTA
    and RMT, used when the task passes no optimizer."""
    return functools.partial(torch.optim.Adam, lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0)


def check_int(name: str, value: Any, low: int) -> int:
    """An integer >= low, else a one-line ConfigError naming `tta.<name>`."""
    return integer(f"tta.{name}", value, at_least=low, show=plain)


def check_float(
    name: str,
    value: Any,
    low: float,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real number in the given interval, else a one-line ConfigError naming
    `tta.<name>`."""
    return number(
        f"tta.{name}",
        value,
        above=low if low_open else None,
        at_least=None if low_open else low,
        below=high if high_open else None,
        at_most=None if high_open else high,
        show=plain,
    )


def check_seed(value: Any) -> int | None:
    """None (use the global RNG, which Lightning's seed_everything seeds) or an integer."""
    return integer("tta.seed", value, optional=True, what="an integer or null", show=plain)


def reject_unknown(method: str, unknown: Mapping[str, Any], valid: Iterable[str]) -> None:
    """A one-line ConfigError for hyperparameters the method does not have (typos)."""
    if unknown:
        key = sorted(unknown)[0]
        names = ", ".join(sorted(valid)) or "none"
        raise ConfigError(
            f"tta.{key}={plain(unknown[key])} is not a parameter of {method}; valid: {names}"
        )


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """θ_T ← m·θ_T + (1−m)·θ_S for every parameter, in place; buffers are left alone.

    Written as that exact expression (not lerp / fused add) so it is bit-for-bit the formula.
    """
    pairs = zip(teacher.parameters(), student.parameters(), strict=True)
    for t, s in pairs:
        t.copy_(momentum * t + (1.0 - momentum) * s)


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy with every parameter detached from autograd (teacher, anchor)."""
    clone = copy.deepcopy(model)
    clone.requires_grad_(False)
    return clone


class TTAMethod(nn.Module):
    """Base class: predict-and-adapt on each test batch, resettable to the post-setup state.

    `optimizer` is a partial that takes params (Hydra `_partial_: true`); methods that adapt use
    Adam(lr 1e-3) when it is None, methods that do not adapt ignore it. `steps` optimisation
    steps are taken per batch; with steps > 1 the prediction is the logits of the last step's
    forward (before that step's update), as in the reference `TTAMethod.forward`.
    """

    needs_source: bool = False
    adapts: bool = False

    def __init__(
        self,
        model: Classifier,
        optimizer: OptimizerFactory | None = None,
        steps: int = 1,
        **hparams: Any,
    ):
        super().__init__()
        reject_unknown(type(self).__name__, hparams, self._hparam_names())
        if optimizer is not None and not callable(optimizer):
            raise ConfigError(
                f"tta.optimizer={optimizer!r} must be a callable building an optimizer from "
                "params (Hydra _partial_: true)"
            )
        self.model = model
        self.steps = check_int("steps", steps, 1)
        self.optimizer_factory: OptimizerFactory = optimizer or default_optimizer()
        self.optimizer: torch.optim.Optimizer | None = None
        self.last_losses: dict[str, float] = {}
        self._snapshot: dict[str, Tensor] | None = None
        self._optimizer_snapshot: dict[str, Any] | None = None
        self.seed: int | None = None
        self._generator: torch.Generator | None = None
        self.configure()
        self.snapshot()

    def configure(self) -> None:
        """Prepare the model (BN mode, what trains, the optimizer): methods without
        hyperparameters of their own need nothing else. Methods with their own constructor
        arguments set them up after `super().__init__` and snapshot again."""

    @classmethod
    def _hparam_names(cls) -> tuple[str, ...]:
        """The keyword parameters of the concrete constructor (for the typo message)."""
        params = inspect.signature(cls.__init__).parameters.values()
        keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return tuple(
            p.name for p in params if p.kind in keyword and p.name not in ("self", "model")
        )

    # -- modes -------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> TTAMethod:
        """Record the flag only: inner networks stay in eval mode (see the module docstring)."""
        self.training = mode
        return self

    def _inner_eval(self) -> None:
        for child in self.children():
            child.eval()

    def rng(self, device: torch.device) -> torch.Generator | None:
        """The method's generator on `device`, seeded with `seed`; None means the global RNG.

        Created lazily on the data's device so augmentation noise and restore masks are drawn
        where they are used; moving to another device re-seeds it.
        """
        if self.seed is None:
            return None
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> TTAMethod:
        """Module moves (`.to(device)`, what Lightning does) also move the optimizer state.

        Parameters move in place, but Adam's moments (present after RMT's warm-up) would stay
        behind; re-loading the state dict casts them to each parameter's device and dtype.
        """
        super()._apply(fn, recurse)
        if self.optimizer is not None and self.optimizer.state:
            self.optimizer.load_state_dict(self.optimizer.state_dict())
        return self

    # -- lifecycle ---------------------------------------------------------------------------
    def setup_source(self, source: SourceBatches | None) -> None:
        """Use source batches if the method needs them (base: none), then snapshot for reset."""
        self.snapshot()

    def setup_state(self) -> dict[str, Any]:
        """What `setup_source` produced (weights, buffers, optimizer state), to cache it."""
        return {
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
        }

    def restore_setup(self, state: dict[str, Any], source: SourceBatches | None) -> None:
        """Skip `setup_source`'s work (RMT: prototypes, warm-up) by loading its cached result;
        `source` is still kept for what the stream needs (replay)."""
        self.load_state_dict(state["state_dict"])
        if self.optimizer is not None and state.get("optimizer") is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self._restored(source)
        self.snapshot()

    def _restored(self, source: SourceBatches | None) -> None:
        """Hook: what a method keeps from `source` when its setup comes from the cache."""

    def snapshot(self) -> None:
        """Remember the current state (all submodules, buffers, optimizer) as the reset point."""
        self._snapshot = {k: v.detach().clone() for k, v in self.state_dict().items()}
        self._optimizer_snapshot = (
            copy.deepcopy(self.optimizer.state_dict()) if self.optimizer is not None else None
        )

    def reset(self) -> None:
        """Restore exactly the state right after `setup_source` (or construction)."""
        if self._snapshot is None:
            raise RuntimeError("reset() before any snapshot; call setup_source first")
        self.load_state_dict(self._snapshot)
        if self.optimizer is not None and self._optimizer_snapshot is not None:
            # load_state_dict may alias the given tensors; a copy keeps the snapshot pristine.
            self.optimizer.load_state_dict(copy.deepcopy(self._optimizer_snapshot))
            self.optimizer.zero_grad(set_to_none=True)
        self.last_losses = {}

    # -- per batch ---------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Predict this batch and adapt on it; returns detached prediction logits."""
        if torch.is_inference_mode_enabled():
            raise RuntimeError(
                f"{type(self).__name__} adapts at test time: call it with inference_mode off "
                "(Trainer(inference_mode=False))"
            )
        self._inner_eval()
        if not self.adapts:
            with torch.no_grad():
                return self.predict(x)
        out = x
        with torch.enable_grad():
            for _ in range(self.steps):
                out = self.forward_and_adapt(x)
        return out.detach()

    def predict(self, x: Tensor) -> Tensor:
        """Logits without adaptation (non-adapting methods)."""
        return self.model(x)

    def forward_and_adapt(self, x: Tensor) -> Tensor:
        """One optimisation step on `x`; returns the prediction logits (adapting methods)."""
        raise NotImplementedError

    def _step(self, loss: Tensor) -> None:
        assert self.optimizer is not None
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


class Source(TTAMethod):
    """The unadapted source model: eval mode, BN with its running (source) statistics."""

    def configure(self) -> None:
        self.model.eval()
