"""RMT: Robust Mean Teacher for continual and gradual TTA (Döbler et al., CVPR 2023).

The per-batch procedure, warm-up and hyperparameters are docs/methods/tta.md §1.2–1.5 (official code
`mariodoebler/test-time-adaptation`, `methods/rmt.py`). Per test batch x (B images in [0, 1]):

1. student on x: z = f_S(x), s = g_S(z); on one augmented copy x̃ = A(x): z̃, s̃;
2. teacher on x only: t = T(x) (no gradient);
3. L_st = mean_i [½ SCE(s_i, t_i) + ½ SCE(s̃_i, t_i)], SCE with α = `sce_alpha`;
4. L_cont = SupCon over three views per sample, (p_n(i), z_i, z̃_i), all through the projector h
   and L2-normalised, where p_n(i) is the source class prototype nearest to z_i in cosine;
5. L_src = CE(S(x_src), y_src) on the next clean labelled source batch, only if λ_src > 0;
6. one step on λ_st·L_st + λ_cont·L_cont + λ_src·L_src, then θ_T ← m·θ_T + (1−m)·θ_S;
7. prediction: s + t, both from before this batch's update.

`setup_source` computes the prototypes (class means of f_0 over source samples, f_0 = the
student before warm-up, BN on batch statistics, stopping once more than `prototype_samples`
features were seen), then warms up (`warmup_samples // B` steps of SCE(S(x_src), T(x_src)) with
a linear lr ramp lr·(k+1)/steps on every param group, EMA after each step, B the source batch
size), and keeps the iterator for replay. The reset point is taken after the warm-up.

Choices:
- With an infinite source iterator, `prototype_samples=100000` reads ~2 passes of CIFAR's 50k
  (the reference reads its finite loader once); class means are the same up to sampling. A
  class never seen keeps a zero prototype (cosine 0 to everything) instead of NaN.
- The target loss and the replay loss are back-propagated separately before the one optimizer
  step (the gradients add up, as for their sum), so the two graphs never coexist in memory.
- `projection_dim=0` replaces the projector by the identity (the reference's DomainNet setting).
- Source-free (λ_src = 0) draws no replay batches, but prototypes (and the warm-up, unless
  `warmup_samples=0`) still use source data, as the reference code does.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xent.errors import ConfigError
from xent.models.base import Classifier
from xent.tta.augment import tta_augment
from xent.tta.base import (
    OptimizerFactory,
    SourceBatches,
    TTAMethod,
    check_float,
    check_int,
    check_seed,
    ema_update,
    frozen_copy,
)
from xent.tta.bn import use_batch_statistics
from xent.tta.losses import supcon_loss, symmetric_cross_entropy


class RMT(TTAMethod):
    """Mean teacher with SCE self-training, contrastive pull to source prototypes and replay."""

    needs_source = True
    adapts = True

    def __init__(
        self,
        model: Classifier,
        optimizer: OptimizerFactory | None = None,
        steps: int = 1,
        lambda_st: float = 1.0,
        lambda_cont: float = 1.0,
        lambda_src: float = 1.0,
        momentum: float = 0.999,
        temperature: float = 0.1,
        projection_dim: int = 128,
        warmup_samples: int = 50000,
        sce_alpha: float = 0.5,
        prototype_samples: int = 100000,
        seed: int | None = None,
        **hparams: Any,
    ):
        super().__init__(model, optimizer, steps, **hparams)
        self.lambda_st = check_float("lambda_st", lambda_st, 0.0)
        self.lambda_cont = check_float("lambda_cont", lambda_cont, 0.0)
        self.lambda_src = check_float("lambda_src", lambda_src, 0.0)
        self.momentum = check_float("momentum", momentum, 0.0, 1.0, high_open=True)
        self.temperature = check_float("temperature", temperature, 0.0, low_open=True)
        self.projection_dim = check_int("projection_dim", projection_dim, 0)
        self.warmup_samples = check_int("warmup_samples", warmup_samples, 0)
        self.sce_alpha = check_float("sce_alpha", sce_alpha, 0.0, 1.0)
        self.prototype_samples = check_int("prototype_samples", prototype_samples, 1)
        self.seed = check_seed(seed)

        use_batch_statistics(self.model)
        self.model.eval()
        self.model.requires_grad_(True)
        self.teacher = frozen_copy(self.model)

        param = next(self.model.parameters())
        dim, classes = self.model.feature_dim, self.model.head.out_features
        self.projector: nn.Module = nn.Identity()
        if self.projection_dim > 0:
            p = self.projection_dim
            self.projector = nn.Sequential(nn.Linear(dim, p), nn.ReLU(), nn.Linear(p, p))
            self.projector.to(device=param.device, dtype=param.dtype)
        self.register_buffer(
            "prototypes", torch.zeros(classes, dim, device=param.device, dtype=param.dtype)
        )

        groups: list[dict[str, Any]] = [{"params": list(self.model.parameters())}]
        projector_params = list(self.projector.parameters())
        if projector_params:
            groups.append({"params": projector_params})  # its own group, at the model's lr
        self.optimizer = self.optimizer_factory(groups)

        self._source: SourceBatches | None = None
        self._ready = False
        self.warmup_steps = 0
        self.snapshot()  # the reset point until setup_source takes the post-warm-up one

    # -- source side -------------------------------------------------------------------------
    def setup_source(self, source: SourceBatches | None) -> None:
        """Prototypes, then warm-up, then keep `source` for replay; snapshot for reset."""
        if source is None:
            raise ConfigError(
                "tta.method=rmt needs source batches (prototypes, warm-up, replay); none given"
            )
        self._source = source
        self._inner_eval()
        self.compute_prototypes()
        self.warmup()
        self._ready = True
        self.snapshot()

    def _restored(self, source: SourceBatches | None) -> None:
        if source is None:
            raise ConfigError(
                "tta.method=rmt needs source batches (prototypes, warm-up, replay); none given"
            )
        self._source = source
        self._ready = True

    def _next_source(self) -> tuple[Tensor, Tensor]:
        assert self._source is not None
        batch = next(self._source)
        x, y = batch[0], batch[1]
        like = self.prototypes  # follows the module's device and dtype
        x = x.to(like.device, like.dtype if x.is_floating_point() else x.dtype, non_blocking=True)
        return x, y.to(like.device).long()

    @torch.no_grad()
    def compute_prototypes(self) -> None:
        """Class means of the current student's features over > `prototype_samples` samples."""
        classes, dim = self.prototypes.shape
        like = {"device": self.prototypes.device, "dtype": self.prototypes.dtype}
        sums = torch.zeros(classes, dim, **like)
        counts = torch.zeros(classes, **like)
        seen = 0
        while seen <= self.prototype_samples:
            x, y = self._next_source()
            z = self.model.forward_features(x).to(sums.dtype)
            sums.index_add_(0, y, z)
            counts.index_add_(0, y, torch.ones_like(y, dtype=counts.dtype))
            seen += y.numel()
        self.prototypes.copy_(sums / counts.clamp(min=1.0)[:, None])

    def warmup(self) -> None:
        """`warmup_samples // B` steps of SCE(S, T) on source batches, linear lr ramp, EMA."""
        self.warmup_steps = 0
        if self.warmup_samples == 0:
            return
        assert self.optimizer is not None
        x, _ = self._next_source()
        steps = self.warmup_samples // x.shape[0]
        base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        with torch.enable_grad():
            for k in range(steps):
                if k > 0:
                    x, _ = self._next_source()
                for group, lr in zip(self.optimizer.param_groups, base_lrs, strict=True):
                    group["lr"] = lr * (k + 1) / steps
                student = self.model(x)
                with torch.no_grad():
                    teacher = self.teacher(x)
                loss = symmetric_cross_entropy(student, teacher, self.sce_alpha).mean()
                self._step(loss)
                ema_update(self.teacher, self.model, self.momentum)
        for group, lr in zip(self.optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = lr
        self.warmup_steps = steps

    # -- test side ---------------------------------------------------------------------------
    def contrastive_loss(self, z: Tensor, z_aug: Tensor) -> Tensor:
        """SupCon over (nearest prototype, clean feature, augmented feature) per sample."""
        with torch.no_grad():
            protos = F.normalize(self.prototypes, dim=1)
            cos = F.normalize(z.detach().to(protos.dtype), dim=1) @ protos.T
            nearest = cos.argmax(dim=1)
        views = torch.stack([self.prototypes[nearest].to(z.dtype), z, z_aug], dim=1)
        b, v, d = views.shape
        projected = self.projector(views.reshape(b * v, d)).reshape(b, v, -1)
        return supcon_loss(projected, self.temperature)

    def forward_and_adapt(self, x: Tensor) -> Tensor:
        """One RMT step on `x`; returns student + teacher logits from before the update."""
        if not self._ready:
            raise RuntimeError("RMT.setup_source must run before the test stream")
        assert self.optimizer is not None
        z = self.model.forward_features(x)
        s = self.model.head(z)
        z_aug = self.model.forward_features(tta_augment(x, self.rng(x.device)))
        s_aug = self.model.head(z_aug)
        with torch.no_grad():
            t = self.teacher(x)
        alpha = self.sce_alpha
        loss_st = (
            0.5
            * (
                symmetric_cross_entropy(s, t, alpha) + symmetric_cross_entropy(s_aug, t, alpha)
            ).mean()
        )
        loss_cont = (
            self.contrastive_loss(z, z_aug) if self.lambda_cont > 0 else torch.zeros_like(loss_st)
        )
        loss = self.lambda_st * loss_st + self.lambda_cont * loss_cont
        loss.backward()
        terms = {"st": loss_st.detach(), "cont": loss_cont.detach()}
        if self.lambda_src > 0:
            x_src, y_src = self._next_source()
            loss_src = F.cross_entropy(self.model(x_src), y_src)
            (self.lambda_src * loss_src).backward()
            terms["src"] = loss_src.detach()
            loss = loss.detach() + self.lambda_src * terms["src"]
        terms["loss"] = loss.detach()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        ema_update(self.teacher, self.model, self.momentum)
        values = torch.stack(list(terms.values())).tolist()
        self.last_losses = dict(zip(terms, values, strict=True))
        return (s + t).detach()
