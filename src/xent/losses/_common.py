"""Shared pieces of the loss zoo: the base class, argument checks and log-space helpers.

Every loss is called as `loss(logits, target, *, index=None, features=None)` with logits of
shape (B, K), hard integer labels of shape (B,), and returns the mean over the batch. A loss
lists the extra keyword inputs it needs in `requires`; the task passes exactly those.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from xent import checks

# A sum-exponential style term exp(e) is evaluated exactly up to e = EXP_CLAMP and continued
# linearly (same value and slope at the join) beyond it. exp(50) ≈ 5.2e21, so even the linear
# tail at |logit| ~ 1e4 stays ~1e26, far below the fp32 maximum (3.4e38) after a batch sum.
EXP_CLAMP = 50.0


def bad_value(name: str, value: Any, valid: str) -> ValueError:
    """The one-line construction error every loss raises: names the key and the valid range."""
    return checks.bad_value(f"loss.{name}", value, valid, error=ValueError)


def number(name: str, value: Any, **bounds: Any) -> float:
    """`xent.checks.number` on `loss.<name>`, raising ValueError (`above=0`, `at_least=0`, ...)."""
    return checks.number(f"loss.{name}", value, error=ValueError, **bounds)


def integer(name: str, value: Any, **bounds: Any) -> int:
    """`xent.checks.integer` on `loss.<name>`, raising ValueError (`at_least=1`, ...)."""
    return checks.integer(f"loss.{name}", value, error=ValueError, **bounds)


def one_of(name: str, value: Any, choices: tuple[Any, ...], what: str | None = None) -> Any:
    """`xent.checks.one_of` on `loss.<name>`, raising ValueError."""
    return checks.one_of(f"loss.{name}", value, choices, what=what, error=ValueError)


def flag(name: str, value: Any) -> bool:
    """`xent.checks.flag` on `loss.<name>`, raising ValueError."""
    return checks.flag(f"loss.{name}", value, error=ValueError)


class Loss(nn.Module):
    """Base class: declares no extra inputs and checks the (logits, target) pair."""

    requires: tuple[str, ...] = ()

    @property
    def loss_name(self) -> str:
        return type(self).__name__

    def prepare(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Half-precision logits are upcast to fp32; shapes must be (B, K) and (B,), K >= 2."""
        if logits.dim() != 2 or target.dim() != 1 or len(target) != len(logits):
            raise ValueError(
                f"{self.loss_name} expects logits (B, K) and integer targets (B,), got "
                f"{tuple(logits.shape)} and {tuple(target.shape)}"
            )
        if logits.shape[1] < 2:
            raise ValueError(f"{self.loss_name} needs at least 2 classes, got {logits.shape[1]}")
        if target.dtype.is_floating_point:
            raise ValueError(f"{self.loss_name} takes hard integer labels, got {target.dtype}")
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        return logits

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.hparams().items())

    def hparams(self) -> dict[str, Any]:
        return {}


def target_log_prob(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """log p_y = s_y − logsumexp(s), per sample."""
    return logits.log_softmax(dim=-1).gather(1, target[:, None]).squeeze(1)


def log1m_target_prob(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """log(1 − p_y) = logsumexp_{k≠y}(s_k) − logsumexp(s), exact even where p_y rounds to 1.

    `−expm1(log p_y)` loses 1 − p_y once p_y is within an ulp of 1 (it becomes exactly 0 and
    powers like (1 − p_y)^γ, γ < 1, then have an infinite derivative). Summing over the other
    classes instead keeps it finite for any finite logits (needs K >= 2).
    """
    # scatter the label out: a masked_fill with F.one_hot costs ~3x as much (one_hot checks the
    # labels' range with two reductions and builds a (B, K) tensor), for the same values
    others = logits.scatter(1, target[:, None], float("-inf"))
    return others.logsumexp(dim=-1) - logits.logsumexp(dim=-1)


def log1m_softmax(logits: torch.Tensor) -> torch.Tensor:
    """log(1 − p_k) for every class k, exact for finite logits (K >= 2).

    Only the arg-max class can have p_k > 1/2; for it the complement is summed directly
    (`logsumexp` over the other classes), for the rest `log1p(−p_k)` is accurate.
    """
    top = logits.argmax(dim=-1, keepdim=True)
    is_top = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, top, True)
    lse = logits.logsumexp(dim=-1, keepdim=True)
    p = (logits - lse).exp()
    rest = torch.log1p(-p.masked_fill(is_top, 0.0))  # the top entry is replaced below
    top_value = logits.masked_fill(is_top, float("-inf")).logsumexp(dim=-1, keepdim=True) - lse
    return torch.where(is_top, top_value, rest)


def clamped_expm1(e: torch.Tensor) -> torch.Tensor:
    """expm1(e) for e <= EXP_CLAMP, continued linearly beyond (value and slope exp(EXP_CLAMP)).

    A hard clamp would zero the gradient of the worst-classified samples; the linear
    continuation keeps pushing them, with a bounded, finite slope.
    """
    head = torch.expm1(e.clamp(max=EXP_CLAMP))
    return head + math.exp(EXP_CLAMP) * (e - EXP_CLAMP).clamp(min=0.0)


class PerSampleState(Loss):
    """A loss that keeps state per training sample, keyed by the sample's dataset index.

    The dataset size is unknown at config time: the task calls `setup_samples(N)` once with
    the training-set size before training; that (re)allocates the state as registered
    buffers, so checkpoints carry it (and `load_state_dict` of such a checkpoint into an
    un-setup loss allocates the buffers at the checkpoint's size). Not synchronised across
    processes: under DDP each rank would update only the samples it sees.
    """

    requires: tuple[str, ...] = ("index",)
    state_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        for name in self.state_names:
            self.register_buffer(name, None)
        self.num_samples: int | None = None

    def initial_state(self, num_samples: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def setup_samples(self, num_samples: int) -> None:
        """Allocate fresh per-sample state for a training set of `num_samples` samples."""
        if not checks.is_integer(num_samples) or num_samples < 1:
            raise ValueError(f"{self.loss_name}.setup_samples: num_samples={num_samples!r} < 1")
        device = next((b.device for b in self.buffers()), None)
        for name, value in self.initial_state(num_samples).items():
            setattr(self, name, value if device is None else value.to(device))
        self.num_samples = num_samples

    def state_index(self, index: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
        """Check `index` and the state, move the state to the logits' device, return index."""
        if index is None:
            raise ValueError(
                f"{self.loss_name} needs 'index' (the batch's dataset indices) to look up its "
                "per-sample state; the task must pass index=..."
            )
        if getattr(self, self.state_names[0]) is None:
            raise RuntimeError(
                f"{self.loss_name} got 'index' before setup_samples(num_samples) was called "
                "with the training-set size"
            )
        if index.shape != (len(logits),):
            raise ValueError(
                f"{self.loss_name}: index must have shape ({len(logits)},), got "
                f"{tuple(index.shape)}"
            )
        for name in self.state_names:
            buf = getattr(self, name)
            if buf.device != logits.device:
                setattr(self, name, buf.to(logits.device))
        return index.to(device=logits.device, dtype=torch.long)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in self.state_names:
            saved = state_dict.get(prefix + name)
            if saved is not None and getattr(self, name) is None:
                setattr(self, name, torch.empty_like(saved))
                self.num_samples = len(saved)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
