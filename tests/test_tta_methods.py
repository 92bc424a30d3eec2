"""The pure-torch continual TTA methods (xent.tta): losses, augmentation, BN regime, the per-batch
procedures of TENT / CoTTA / RMT, warm-up, source-free replay, reset, and config errors."""

from __future__ import annotations

import copy
import functools
import itertools
import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xent.errors import ConfigError
from xent.models import resnet8
from xent.tta import (
    RMT,
    AugmentParams,
    CoTTA,
    Norm,
    Source,
    Tent,
    apply_params,
    bn_affine_params,
    ema_update,
    sample_params,
    soft_cross_entropy,
    softmax_entropy,
    supcon_loss,
    symmetric_cross_entropy,
    tta_augment,
    use_batch_statistics,
)

B, SIZE, CLASSES = 8, 16, 10


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny models: one intra-op thread is fastest, and avoids OpenMP spinning (10x slower)
    when other processes share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def model() -> nn.Module:
    """A resnet8 whose BN running stats and affine params are not the identity (like a trained
    source model), so batch vs running statistics and BN updates are visible."""
    net = resnet8(num_classes=CLASSES, in_channels=3)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)
    return net


def batch(n: int = B, size: int = SIZE) -> Tensor:
    return torch.rand(n, 3, size, size)


class CountingSource:
    """An infinite source iterator that counts the batches drawn."""

    def __init__(self, batch_size: int = B):
        self.batch_size = batch_size
        self.drawn = 0
        self.gen = torch.Generator().manual_seed(123)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self

    def __next__(self) -> tuple[Tensor, Tensor]:
        self.drawn += 1
        x = torch.rand(self.batch_size, 3, SIZE, SIZE, generator=self.gen)
        y = torch.randint(0, CLASSES, (self.batch_size,), generator=self.gen)
        return x, y


def rmt(**kwargs) -> RMT:
    kwargs = {"warmup_samples": 16, "prototype_samples": 16, **kwargs}
    return RMT(model(), **kwargs)


def setup(method, source: CountingSource | None = None):
    method.setup_source(source if source is not None else CountingSource())
    return method


# -- losses ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.5, 0.3])
def test_sce_matches_formula_and_only_the_student_gets_gradient(alpha: float) -> None:
    s = torch.randn(6, 5, requires_grad=True)
    t = torch.randn(6, 5, requires_grad=True)
    loss = symmetric_cross_entropy(s, t, alpha)
    s64, t64 = s.detach().double(), t.detach().double()
    ps, pt = s64.exp() / s64.exp().sum(1, keepdim=True), t64.exp() / t64.exp().sum(1, keepdim=True)
    expected = -(1 - alpha) * (pt * ps.log()).sum(1) - alpha * (ps * pt.log()).sum(1)
    assert loss.shape == (6,)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    loss.sum().backward()
    assert t.grad is None or torch.count_nonzero(t.grad) == 0
    assert s.grad is not None and s.grad.abs().sum() > 0


def softmax64(logits: Tensor) -> Tensor:
    x = logits.detach().double()
    return x.exp() / x.exp().sum(1, keepdim=True)


def test_entropy_and_soft_cross_entropy_match_their_formulas() -> None:
    s, t = torch.randn(6, 5) * 3, torch.randn(6, 5) * 3
    ps, pt = softmax64(s), softmax64(t)
    torch.testing.assert_close(
        softmax_entropy(s).double(), -(ps * ps.log()).sum(1), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(
        soft_cross_entropy(s, t).double(), -(pt * ps.log()).sum(1), rtol=1e-5, atol=1e-6
    )
    assert softmax_entropy(s).shape == soft_cross_entropy(s, t).shape == (6,)


def test_sce_default_alpha_is_one_half() -> None:
    s, t = torch.randn(6, 5), torch.randn(6, 5)
    assert torch.equal(symmetric_cross_entropy(s, t), symmetric_cross_entropy(s, t, 0.5))


@pytest.mark.parametrize("shape", [(4, 1, 3), (4, 6)])
def test_supcon_needs_two_views(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError) as info:
        supcon_loss(torch.randn(*shape))
    assert str(info.value) == (
        f"supcon_loss needs features of shape (B, V>=2, d), got {torch.Size(shape)}"
    )
    assert torch.isfinite(supcon_loss(torch.randn(4, 2, 3)))  # two views are enough


def test_supcon_default_temperature_is_0_1() -> None:
    f = torch.randn(3, 2, 4)
    assert supcon_loss(f).item() == supcon_loss(f, temperature=0.1, base_temperature=0.1).item()


def test_supcon_matches_an_explicit_double_loop() -> None:
    b, v, d, tau, base = 3, 3, 5, 0.1, 0.07
    f = torch.randn(b, v, d, dtype=torch.float64)
    u = [[f[i, j] / f[i, j].norm() for j in range(v)] for i in range(b)]
    flat = [(i, u[i][j]) for i in range(b) for j in range(v)]
    total = 0.0
    for a, (ia, ua) in enumerate(flat):
        denom = sum(math.exp(float(ua @ uk) / tau) for k, (_, uk) in enumerate(flat) if k != a)
        terms = [
            math.log(math.exp(float(ua @ up) / tau) / denom)
            for p, (ip, up) in enumerate(flat)
            if p != a and ip == ia
        ]
        total += -(tau / base) * sum(terms) / len(terms)
    expected = total / len(flat)
    got = supcon_loss(f, temperature=tau, base_temperature=base)
    assert got.item() == pytest.approx(expected, rel=1e-10)
    assert supcon_loss(f, tau).item() == pytest.approx(expected * base / tau, rel=1e-10)
    g = f.clone().requires_grad_(True)
    supcon_loss(g, tau).backward()
    assert torch.isfinite(g.grad).all()


def test_ema_update_is_the_formula_for_every_parameter_and_leaves_buffers() -> None:
    teacher, student = model(), model()
    buffers = {k: v.clone() for k, v in teacher.named_buffers()}
    m = 0.9
    expected = {
        k: m * t.detach() + (1 - m) * s.detach()
        for (k, t), (_, s) in zip(
            teacher.named_parameters(), student.named_parameters(), strict=True
        )
    }
    ema_update(teacher, student, m)
    for k, p in teacher.named_parameters():
        assert torch.equal(p, expected[k]), k
    for k, b in teacher.named_buffers():
        assert torch.equal(b, buffers[k]), k


# -- augmentation ---------------------------------------------------------------------------------


def test_augment_shape_range_and_reproducible_with_a_seeded_generator() -> None:
    x = batch(4, 32) * 1.4 - 0.2  # outside [0, 1] on purpose: the transform clips
    a = tta_augment(x, torch.Generator().manual_seed(7))
    b = tta_augment(x, torch.Generator().manual_seed(7))
    c = tta_augment(x, torch.Generator().manual_seed(8))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_augment_draws_one_parameter_set_per_batch() -> None:
    img = 0.3 + 0.4 * torch.rand(1, 3, 32, 32)
    x = torch.cat([img, img, 0.3 + 0.4 * torch.rand(1, 3, 32, 32)])
    for seed in range(5):
        out = tta_augment(x, torch.Generator().manual_seed(seed), noise_std=0.0)
        assert torch.equal(out[0], out[1])  # same colour/affine/blur/flip for the whole batch
        noisy = tta_augment(x, torch.Generator().manual_seed(seed))
        diff = noisy[0] - noisy[1]  # only the independent per-pixel noise differs
        assert diff.std().item() == pytest.approx(0.005 * math.sqrt(2), rel=0.15)
        assert (noisy[0] - noisy[2]).abs().mean() > 0.02


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_augment_parameters_are_one_uniform_each_mapped_to_the_papers_ranges(seed: int) -> None:
    """docs/methods/tta.md §1.4: brightness 0.6–1.4, contrast 0.7–1.3, saturation 0.5–1.5,
    hue ±0.06, gamma 0.7–1.3, ±15°, translate up to 1/16 of the padded size (32 + 2·16 = 64:
    ±4 px), scale 0.9–1.1, blur σ 0.001–0.5, flip with p 0.5; one colour order and 11 uniforms
    per draw."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(5, generator=g).tolist()
    u = torch.rand(11, generator=g, dtype=torch.float64).tolist()
    params = sample_params(32, 32, torch.Generator().manual_seed(seed))
    ranges = [(0.6, 1.4), (0.7, 1.3), (0.5, 1.5), (-0.06, 0.06), (0.7, 1.3), (-15.0, 15.0)]
    ranges += [(-4.0, 4.0), (-4.0, 4.0), (0.9, 1.1), (0.001, 0.5)]
    expected = [low + (high - low) * v for (low, high), v in zip(ranges, u, strict=False)]
    expected[6:8] = [round(expected[6]), round(expected[7])]
    got = [params.brightness, params.contrast, params.saturation, params.hue, params.gamma]
    got += [params.angle, *params.translate, params.scale, params.sigma]
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert params.order == tuple(order) and params.flip is (u[10] < 0.5)


def test_augment_pipeline_with_neutral_parameters_is_identity_then_flip() -> None:
    x = batch(2, 32)
    neutral = AugmentParams(
        order=(0, 1, 2, 3, 4), brightness=1.0, contrast=1.0, saturation=1.0, hue=0.0,
        gamma=1.0, angle=0.0, translate=(0, 0), scale=1.0, sigma=1e-3, flip=False,
    )  # fmt: skip
    torch.testing.assert_close(apply_params(x, neutral, noise_std=0.0), x, atol=1e-5, rtol=0)
    flipped = AugmentParams(**{**neutral.__dict__, "flip": True})
    torch.testing.assert_close(apply_params(x, flipped, 0.0), x.flip(-1), atol=1e-5, rtol=0)
    shifted = AugmentParams(**{**neutral.__dict__, "translate": (2, 0)})
    out = apply_params(x, shifted, 0.0)
    torch.testing.assert_close(out[..., 2:], x[..., :-2], atol=1e-5, rtol=0)


# -- BN regime ------------------------------------------------------------------------------------


def first_bn_call(method, x: Tensor) -> dict[str, Tensor]:
    """Run the method on x and capture the first call of the student's first BN layer."""
    seen: dict[str, Tensor] = {}
    bn = method.model.bn1

    def hook(mod, inputs, output):
        if not seen:
            seen.update(
                x=inputs[0].detach().clone(),
                y=output.detach().clone(),
                w=mod.weight.detach().clone(),
                b=mod.bias.detach().clone(),
            )

    handle = bn.register_forward_hook(hook)
    try:
        method(x)
    finally:
        handle.remove()
    return seen


def manual_bn(seen: dict[str, Tensor], eps: float) -> Tensor:
    x = seen["x"]
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * seen["w"][:, None, None] + seen["b"][:, None, None]


@pytest.mark.parametrize(
    "make", [lambda: Norm(model()), lambda: Tent(model()), lambda: setup(rmt())]
)
def test_norm_tent_rmt_use_batch_statistics(make) -> None:
    method = make()
    bns = [m for m in method.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.running_mean is None and m.running_var is None for m in bns)
    method.train()  # what Lightning does to the module tree: must not change the BN regime
    x = batch()
    seen = first_bn_call(method, x)
    torch.testing.assert_close(seen["y"], manual_bn(seen, method.model.bn1.eps))
    # the prediction for sample 0 depends on the rest of the batch
    method.reset()
    first = method(x)[0]
    method.reset()
    other = method(torch.cat([x[:1], batch(B - 1)]))[0]
    assert not torch.allclose(first, other, atol=1e-4)


def test_source_uses_running_statistics_and_ignores_the_batch() -> None:
    method = Source(model())
    method.train()
    assert not method.model.training
    x = batch()
    seen = first_bn_call(method, x)
    bn = method.model.bn1
    expected = F.batch_norm(seen["x"], bn.running_mean, bn.running_var, seen["w"], seen["b"])
    torch.testing.assert_close(seen["y"], expected)
    assert not torch.allclose(seen["y"], manual_bn(seen, bn.eps), atol=1e-3)
    a = method(x)[0]
    b = method(torch.cat([x[:1], batch(B - 1)]))[0]
    torch.testing.assert_close(a, b)
    assert method.last_losses == {}


def test_use_batch_statistics_keeps_forward_working_in_eval() -> None:
    net = use_batch_statistics(model()).eval()
    x = batch()
    out = net(x)
    assert out.shape == (B, CLASSES) and torch.isfinite(out).all()
    ref = copy.deepcopy(net).train()(x)
    torch.testing.assert_close(out, ref)  # eval == train: both use batch statistics


# -- TENT -----------------------------------------------------------------------------------------


def test_tent_updates_only_bn_affine_and_lowers_entropy() -> None:
    method = Tent(model(), optimizer=functools.partial(torch.optim.Adam, lr=1e-2))
    affine = {id(p) for p in bn_affine_params(method.model)}
    assert all(p.requires_grad == (id(p) in affine) for p in method.model.parameters())
    before = {k: v.detach().clone() for k, v in method.model.named_parameters()}
    x = batch()
    entropies = []
    for _ in range(6):
        out = method(x)
        assert out.grad_fn is None
        assert all(p.grad is None for p in method.model.parameters())
        entropies.append(method.last_losses["entropy"])
        entropy = -(softmax64(out) * softmax64(out).log()).sum(1).mean().item()
        assert entropies[-1] == pytest.approx(entropy, rel=1e-5)  # of the returned logits
    for name, p in method.model.named_parameters():
        changed = not torch.equal(p, before[name])
        assert changed == (id(p) in affine), name
    assert entropies[-1] < entropies[0]
    assert all(b < a for a, b in itertools.pairwise(entropies))


def test_tent_returns_pre_update_logits_and_adapts_under_no_grad() -> None:
    method = Tent(model())
    x = batch()
    expected = copy.deepcopy(method.model)(x)
    with torch.no_grad():  # the method turns grad on itself
        out = method(x)
    torch.testing.assert_close(out, expected.detach())
    assert not torch.equal(
        method.model.bn1.weight, copy.deepcopy(method._snapshot)["model.bn1.weight"]
    )


def test_inference_mode_is_refused_with_a_clear_error() -> None:
    method = Tent(model())
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        method(batch())


# -- CoTTA ----------------------------------------------------------------------------------------


def test_cotta_confident_batch_predicts_with_the_pre_update_teacher() -> None:
    method = CoTTA(model(), threshold=0.0, restore_prob=0.0)
    x = batch()
    teacher = copy.deepcopy(method.teacher)
    student_before = {k: v.detach().clone() for k, v in method.model.named_parameters()}
    out = method(x)
    torch.testing.assert_close(out, teacher(x))
    assert method.last_losses["augmented"] == 0.0
    changed = [not torch.equal(p, student_before[k]) for k, p in method.model.named_parameters()]
    assert all(changed)  # all parameters are trained


def test_cotta_unsure_batch_averages_the_teacher_over_augmented_copies() -> None:
    method = CoTTA(model(), threshold=1.0, num_augs=3, seed=5)
    x = batch()
    teacher = copy.deepcopy(method.teacher)
    g = torch.Generator().manual_seed(5)
    expected = sum(teacher(tta_augment(x, g)) for _ in range(3)) / 3
    out = method(x)
    assert method.last_losses["augmented"] == 1.0
    torch.testing.assert_close(out, expected.detach())
    assert not torch.allclose(out, teacher(x), atol=1e-4)


def test_cotta_defaults_are_the_papers_cifar10_setting() -> None:
    method = CoTTA(model())
    settings = (method.momentum, method.restore_prob, method.threshold, method.num_augs)
    assert settings == (0.999, 0.01, 0.92, 32)
    assert (method.steps, method.seed) == (1, None)
    assert isinstance(method.optimizer, torch.optim.Adam)
    assert method.optimizer.defaults["lr"] == 1e-3


def test_cotta_takes_the_given_optimizer_and_steps() -> None:
    sgd = functools.partial(torch.optim.SGD, lr=0.5)
    method = CoTTA(model(), optimizer=sgd, steps=3, threshold=0.0, restore_prob=0.0)
    assert isinstance(method.optimizer, torch.optim.SGD) and method.steps == 3
    steps = []
    method.optimizer.register_step_post_hook(lambda *_: steps.append(1))
    method(batch())
    assert len(steps) == 3


def test_cotta_teacher_is_the_default_momentum_ema_of_the_updated_student() -> None:
    """θ_T = 0.999·θ_source + 0.001·θ_S after one step, θ_S the student after its update."""
    method = CoTTA(model(), threshold=0.0, restore_prob=0.0)
    source = {k: v.detach().clone() for k, v in method.teacher.named_parameters()}
    method(batch())
    student = {k: v.detach() for k, v in method.model.named_parameters()}
    for k, t in method.teacher.named_parameters():
        assert torch.equal(t, 0.999 * source[k] + (1 - 0.999) * student[k]), k
    assert not torch.equal(t, source[k])


def test_cotta_reports_its_loss_confidence_and_augmentation() -> None:
    method = CoTTA(model(), threshold=0.0, restore_prob=0.0)
    x = batch()
    student = method.model(x).detach()
    confidence = method.anchor(x).softmax(1).amax(1).mean().item()
    target = method(x)
    loss = -(target.softmax(1) * student.log_softmax(1)).sum(1).mean().item()
    assert method.last_losses.keys() == {"loss", "anchor_confidence", "augmented"}
    assert method.last_losses["loss"] == pytest.approx(loss, rel=1e-5)
    assert method.last_losses["anchor_confidence"] == pytest.approx(confidence, rel=1e-6)


def cotta_step(restore_prob: float, seed: int = 3) -> CoTTA:
    """One CoTTA step on the same model and batch every time."""
    torch.manual_seed(0)
    method = CoTTA(model(), threshold=0.0, restore_prob=restore_prob, seed=seed)
    method(batch())
    return method


@pytest.mark.parametrize(("restore_prob", "restored"), [(0.0, 0), (1.0, 78042), (0.3, 23657)])
def test_cotta_stochastic_restore(restore_prob: float, restored: int) -> None:
    """Each element is reset to the source with probability p, from the seeded generator,
    after the EMA update: the teacher is the one of a run without restore. resnet8 has 78042
    weights; with p = 0.3 and seed 3, 23657 of them (30.3 %) are restored."""
    free, method = cotta_step(0.0), cotta_step(restore_prob)
    g = torch.Generator().manual_seed(3)
    sources = dict(method.anchor.named_parameters())
    updated = dict(free.model.named_parameters())
    masks = []
    for k, p in method.model.named_parameters():
        mask = torch.rand(p.shape, generator=g) < restore_prob
        assert torch.equal(p, torch.where(mask, sources[k], updated[k])), k
        masks.append(mask.flatten())
    assert int(torch.cat(masks).sum()) == restored
    for (k, t), t_free in zip(
        method.teacher.named_parameters(), free.teacher.parameters(), strict=True
    ):
        assert torch.equal(t, t_free), k


# -- RMT ------------------------------------------------------------------------------------------


def test_rmt_prediction_is_pre_update_student_plus_teacher_and_it_adapts() -> None:
    method = setup(rmt(seed=0))
    x = batch()
    student, teacher = copy.deepcopy(method.model), copy.deepcopy(method.teacher)
    with torch.no_grad():
        expected = student(x) + teacher(x)
    out = method(x)
    assert out.grad_fn is None
    torch.testing.assert_close(out, expected)
    assert torch.equal(out.argmax(1), expected.argmax(1))
    for (k, p), q in zip(method.model.named_parameters(), student.parameters(), strict=True):
        assert not torch.equal(p, q), k
    # EMA after the step: teacher = m·teacher_before + (1−m)·student_after
    for t, t0, s in zip(
        method.teacher.parameters(), teacher.parameters(), method.model.parameters(), strict=True
    ):
        torch.testing.assert_close(t, 0.999 * t0 + 0.001 * s)
    assert all(p.grad is None for p in method.parameters())
    assert set(method.last_losses) == {"st", "cont", "src", "loss"}
    ll = method.last_losses
    assert ll["loss"] == pytest.approx(ll["st"] + ll["cont"] + ll["src"], rel=1e-5)


def test_rmt_prototypes_are_source_class_means_before_warmup() -> None:
    source = CountingSource()
    reference = copy.deepcopy(source)
    method = RMT(model(), warmup_samples=0, prototype_samples=16)
    f0 = copy.deepcopy(method.model)
    method.setup_source(source)
    assert source.drawn == 3  # 8, 16, 24 > 16 samples
    feats, labels = zip(
        *[(f0.forward_features(x), y) for x, y in (next(reference) for _ in range(3))], strict=True
    )
    feats, labels = torch.cat(feats), torch.cat(labels)
    for k in range(CLASSES):
        chosen = feats[labels == k]
        expected = chosen.mean(0) if len(chosen) else torch.zeros(feats.shape[1])
        torch.testing.assert_close(method.prototypes[k], expected.detach())


class RecordingAdam(torch.optim.Adam):
    """Adam that records every param group's lr at each step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen_lrs: list[list[float]] = []

    def step(self, closure=None):
        self.seen_lrs.append([g["lr"] for g in self.param_groups])
        return super().step(closure)


def test_rmt_warmup_steps_and_linear_lr_ramp() -> None:
    source = CountingSource()
    method = RMT(
        model(),
        optimizer=functools.partial(RecordingAdam, lr=1e-3),
        warmup_samples=43,
        prototype_samples=16,
    )
    teacher0 = copy.deepcopy(method.teacher)
    method.setup_source(source)
    steps = 43 // B
    assert method.warmup_steps == steps == 5
    assert source.drawn == 3 + steps
    opt = method.optimizer
    assert len(opt.param_groups) == 2  # model, projector
    expected = [[1e-3 * (k + 1) / steps] * 2 for k in range(steps)]
    assert [lr for lrs in opt.seen_lrs for lr in lrs] == pytest.approx(sum(expected, []))
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-3]
    assert any(
        not torch.equal(a, b)
        for a, b in zip(method.teacher.parameters(), teacher0.parameters(), strict=True)
    )
    method(batch())
    assert opt.seen_lrs[-1] == [1e-3, 1e-3]

    none = RMT(model(), optimizer=functools.partial(RecordingAdam, lr=1e-3),
               warmup_samples=0, prototype_samples=16)  # fmt: skip
    none.setup_source(CountingSource())
    assert none.warmup_steps == 0 and none.optimizer.seen_lrs == []


@pytest.mark.parametrize(
    ("lambda_src", "steps", "per_batch"), [(0.0, 1, 0), (1.0, 1, 1), (0.5, 2, 2)]
)
def test_rmt_replay_draws_one_source_batch_per_step_and_none_source_free(
    lambda_src: float, steps: int, per_batch: int
) -> None:
    source = CountingSource()
    method = setup(rmt(lambda_src=lambda_src, steps=steps), source)
    drawn = source.drawn
    for _ in range(3):
        method(batch())
    assert source.drawn - drawn == 3 * per_batch
    assert ("src" in method.last_losses) == (lambda_src > 0)


def test_rmt_needs_source_batches() -> None:
    assert RMT.needs_source and not Tent.needs_source and not CoTTA.needs_source
    with pytest.raises(ConfigError, match=r"^tta\.method=rmt needs source batches"):
        rmt().setup_source(None)
    with pytest.raises(RuntimeError, match="setup_source"):
        rmt()(batch())


# -- reset ----------------------------------------------------------------------------------------


def state(method) -> tuple[dict[str, Tensor], dict]:
    return (
        {k: v.detach().clone() for k, v in method.state_dict().items()},
        copy.deepcopy(method.optimizer.state_dict()) if method.optimizer is not None else {},
    )


def assert_same_optimizer_state(a: dict, b: dict) -> None:
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        for name, v in a["state"][k].items():
            w = b["state"][k][name]
            assert torch.equal(v, w) if isinstance(v, Tensor) else v == w


@pytest.mark.parametrize(
    "make",
    [
        lambda: Norm(model()),
        lambda: Tent(model()),
        lambda: CoTTA(model(), threshold=1.0, num_augs=2),
        lambda: rmt(),
    ],
)
def test_reset_restores_the_post_setup_state_exactly(make) -> None:
    method = setup(make())
    weights, opt = state(method)
    x = batch()
    first = method(x)
    for _ in range(3):
        method(batch())
    if method.adapts:
        assert any(not torch.equal(v, weights[k]) for k, v in method.state_dict().items())
    method.reset()
    weights_after, opt_after = state(method)
    assert weights_after.keys() == weights.keys()
    for k in weights:
        assert torch.equal(weights_after[k], weights[k]), k
    if opt:
        assert_same_optimizer_state(opt_after, opt)
    assert method.last_losses == {}
    if isinstance(method, (Norm, Tent)):  # deterministic: the stream replays identically
        torch.testing.assert_close(method(x), first, rtol=0, atol=0)


# -- config errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (RMT, {"momentum": 1.5}, "tta.momentum=1.5 must be in [0, 1)"),
        (RMT, {"temperature": 0.0}, "tta.temperature=0 must be > 0"),
        (RMT, {"lambda_src": -1.0}, "tta.lambda_src=-1 must be >= 0"),
        (RMT, {"sce_alpha": 2}, "tta.sce_alpha=2 must be in [0, 1]"),
        (RMT, {"warmup_samples": -5}, "tta.warmup_samples=-5 must be an integer >= 0"),
        (RMT, {"prototype_samples": 0}, "tta.prototype_samples=0 must be an integer >= 1"),
        (RMT, {"projection_dim": 1.5}, "tta.projection_dim=1.5 must be an integer >= 0"),
        (Tent, {"steps": 0}, "tta.steps=0 must be an integer >= 1"),
        (CoTTA, {"restore_prob": 1.2}, "tta.restore_prob=1.2 must be in [0, 1]"),
        (CoTTA, {"momentum": 1.0}, "tta.momentum=1 must be in [0, 1)"),
        (CoTTA, {"momentum": -0.5}, "tta.momentum=-0.5 must be in [0, 1)"),
        (
            CoTTA,
            {"lr": 0.1},
            "tta.lr=0.1 is not a parameter of CoTTA; valid: momentum, num_augs, optimizer, "
            "restore_prob, seed, steps, threshold",
        ),
        (CoTTA, {"threshold": -0.1}, "tta.threshold=-0.1 must be in [0, 1]"),
        (CoTTA, {"num_augs": 0}, "tta.num_augs=0 must be an integer >= 1"),
        (CoTTA, {"seed": "x"}, "tta.seed=x must be an integer or null"),
        (Tent, {"lr": 0.1}, "tta.lr=0.1 is not a parameter of Tent; valid: optimizer, steps"),
    ],
)
def test_bad_hyperparameters_raise_one_line_config_errors(cls, kwargs, message) -> None:
    with pytest.raises(ConfigError) as info:
        cls(model(), **kwargs)
    assert str(info.value) == message


def test_tent_without_batch_norm_is_a_config_error() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, CLASSES))
    with pytest.raises(ConfigError, match=r"^tta\.method=tent needs a model with affine BatchNorm"):
        Tent(net)


def test_moving_the_method_moves_the_optimizer_state_too() -> None:
    """What Lightning's `.to(device)` does after setup: stand-in, a dtype move on CPU."""
    method = setup(rmt(lambda_src=0.0))
    assert method.optimizer.state  # Adam moments from the warm-up
    method.double()
    moments = [s["exp_avg"] for s in method.optimizer.state.values()]
    assert all(m.dtype == torch.float64 for m in moments)
    assert method.prototypes.dtype == torch.float64
    out = method(batch().double())
    assert out.dtype == torch.float64 and torch.isfinite(out).all()
    method.reset()


# -- RMT, step by step against a reference ------------------------------------------------------


def test_rmt_defaults_are_the_papers_cifar_setting() -> None:
    """docs/methods/tta.md §1.5: λ_st = λ_cont = λ_src = 1, m 0.999, τ 0.1, a 128-d projector,
    50k warm-up samples, SCE α 0.5, prototypes over 100k source samples."""
    method = RMT(model())
    settings = (method.lambda_st, method.lambda_cont, method.lambda_src, method.momentum)
    assert settings == (1.0, 1.0, 1.0, 0.999)
    assert (method.temperature, method.projection_dim, method.sce_alpha) == (0.1, 128, 0.5)
    assert (method.warmup_samples, method.prototype_samples) == (50000, 100000)
    assert (method.steps, method.seed, method.warmup_steps) == (1, None, 0)
    assert method.prototypes.shape == (CLASSES, method.model.feature_dim)
    assert not method.prototypes.any()
    assert RMT(model(), seed=7).seed == 7


def test_rmt_projector_is_linear_relu_linear_or_the_identity() -> None:
    method = RMT(model(), projection_dim=1)
    first, relu, second = method.projector
    assert isinstance(relu, nn.ReLU)
    assert (first.in_features, first.out_features) == (method.model.feature_dim, 1)
    assert (second.in_features, second.out_features) == (1, 1)
    assert [len(g["params"]) for g in method.optimizer.param_groups] == [
        len(list(method.model.parameters())),
        4,
    ]
    identity = rmt(projection_dim=0)
    assert isinstance(identity.projector, nn.Identity)
    assert len(identity.optimizer.param_groups) == 1  # the model's parameters only
    setup(identity)
    out = identity(batch())
    assert torch.isfinite(out).all() and identity.last_losses["cont"] > 0


def test_rmt_buffers_and_projector_follow_the_models_device_and_dtype() -> None:
    """On the meta device (a stand-in for a GPU: the source batches come from the CPU) and in
    float64: the prototypes, the projector and every source batch follow the model."""
    meta = RMT(model().to("meta"), warmup_samples=0, prototype_samples=16)
    assert meta.prototypes.device.type == "meta"
    assert {p.device.type for p in meta.projector.parameters()} == {"meta"}
    meta.setup_source(CountingSource())  # source batches (CPU) are moved to the model
    assert meta.prototypes.device.type == "meta"

    source = CountingSource()
    reference = copy.deepcopy(source)
    double = RMT(model().double(), warmup_samples=0, prototype_samples=8)
    assert double.prototypes.dtype == torch.float64
    assert {p.dtype for p in double.projector.parameters()} == {torch.float64}
    f0 = copy.deepcopy(double.model)
    double.setup_source(source)  # float32 source batches, cast to the model's float64
    x, y = next(reference)
    x2, y2 = next(reference)
    # batch statistics: each batch's features on their own
    feats = torch.cat([f0.forward_features(x.double()), f0.forward_features(x2.double())])
    labels = torch.cat([y, y2])
    k = int(labels[0])
    torch.testing.assert_close(double.prototypes[k], feats[labels == k].mean(0).detach())


def test_rmt_unknown_hyperparameter_and_bad_lambdas_are_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        RMT(model(), lr=0.1)
    assert str(info.value) == (
        "tta.lr=0.1 is not a parameter of RMT; valid: lambda_cont, lambda_src, lambda_st, "
        "momentum, optimizer, projection_dim, prototype_samples, sce_alpha, seed, steps, "
        "temperature, warmup_samples"
    )
    for name in ("lambda_st", "lambda_cont"):
        with pytest.raises(ConfigError) as info:
            RMT(model(), **{name: -0.5})
        assert str(info.value) == f"tta.{name}=-0.5 must be >= 0"
        assert getattr(RMT(model(), **{name: 0.5}), name) == 0.5  # any weight >= 0
    with pytest.raises(RuntimeError) as info:
        rmt()(batch())
    assert str(info.value) == "RMT.setup_source must run before the test stream"


def rmt_reference_step(method: RMT, x: Tensor, source: CountingSource, g: torch.Generator, lr):
    """One RMT step (docs/methods/tta.md §1.2) on copies of the method's networks, plain SGD."""
    student, teacher = copy.deepcopy(method.model), copy.deepcopy(method.teacher)
    projector = copy.deepcopy(method.projector)
    alpha = method.sce_alpha
    z = student.forward_features(x)
    z_aug = student.forward_features(tta_augment(x, g))
    s, s_aug = student.head(z), student.head(z_aug)
    with torch.no_grad():
        t = teacher(x)
    st = 0.5 * (symmetric_cross_entropy(s, t, alpha) + symmetric_cross_entropy(s_aug, t, alpha))
    st = st.mean()
    protos = method.prototypes
    cos = (z / z.norm(dim=1, keepdim=True)) @ (protos / protos.norm(dim=1, keepdim=True)).T
    nearest = cos.detach().argmax(1)
    views = torch.stack([protos[nearest], z, z_aug], dim=1)
    cont = supcon_loss(projector(views.reshape(-1, views.shape[-1])).reshape(len(x), 3, -1),
                       method.temperature)  # fmt: skip
    x_src, y_src = next(source)
    src = F.cross_entropy(student(x_src), y_src)
    total = method.lambda_st * st + method.lambda_cont * cont + method.lambda_src * src
    total.backward()
    with torch.no_grad():
        for p in [*student.parameters(), *projector.parameters()]:
            p -= lr * p.grad
    ema_update(teacher, student, method.momentum)
    losses = {"st": st.item(), "cont": cont.item(), "src": src.item(), "loss": total.item()}
    return (s + t).detach(), losses, student, teacher, projector


def test_rmt_steps_match_a_reference_implementation() -> None:
    """Two test batches with non-default weights, α, τ and seed: the prediction, each loss term,
    the SGD update of the student and projector (the gradient of λ_st·L_st + λ_cont·L_cont +
    λ_src·L_src) and the EMA teacher. The prototypes get very different norms, so the nearest
    one in cosine is not the nearest in dot product."""
    lr = 0.1
    method = rmt(
        optimizer=functools.partial(torch.optim.SGD, lr=lr), warmup_samples=0,
        lambda_st=0.7, lambda_cont=0.3, lambda_src=0.5, sce_alpha=0.3, temperature=0.2,
        projection_dim=16, seed=4, momentum=0.9,
    )  # fmt: skip
    source = CountingSource()
    setup(method, source)
    with torch.no_grad():
        method.prototypes.mul_(torch.logspace(-3, 3, CLASSES)[:, None])
    g = torch.Generator().manual_seed(4)
    for _ in range(2):
        x = batch()
        expected, losses, student, teacher, projector = rmt_reference_step(
            method, x, copy.deepcopy(source), g, lr
        )
        out = method(x)
        torch.testing.assert_close(out, expected)
        assert method.last_losses == pytest.approx(losses, rel=1e-5)
        for ours, theirs in [(method.model, student), (method.teacher, teacher)]:
            for (k, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
                torch.testing.assert_close(p, q, msg=k)
        for p, q in zip(method.projector.parameters(), projector.parameters(), strict=True):
            torch.testing.assert_close(p, q)


def test_rmt_without_the_contrastive_term_reports_it_as_zero() -> None:
    method = setup(rmt(lambda_cont=0.0, lambda_src=0.5))
    method(batch())
    ll = method.last_losses
    assert ll["cont"] == 0.0
    assert ll["loss"] == pytest.approx(ll["st"] + 0.5 * ll["src"], rel=1e-6)


def test_rmt_contrastive_loss_works_in_the_features_dtype() -> None:
    """Under autocast the features are bfloat16 while the prototypes stay float32."""
    method = setup(rmt(projection_dim=0, warmup_samples=0))
    z = torch.randn(B, method.model.feature_dim, dtype=torch.bfloat16)
    z_aug = torch.randn(B, method.model.feature_dim, dtype=torch.bfloat16)
    protos = method.prototypes
    cos = F.normalize(z.float(), dim=1) @ F.normalize(protos, dim=1).T
    views = torch.stack([protos[cos.argmax(1)].bfloat16(), z, z_aug], dim=1)
    loss = method.contrastive_loss(z, z_aug)
    assert loss.dtype == torch.bfloat16
    assert torch.equal(loss, supcon_loss(views, method.temperature))


def test_rmt_warmup_matches_a_reference_and_restores_the_exact_lr() -> None:
    """3 warm-up steps of SCE(S(x_src), T(x_src)) with α 0.3 at lr 0.1·(k+1)/3, EMA after
    each; 0.1·3/3 is not 0.1 in floating point, so the lr is restored, not recomputed."""
    lr, alpha = 0.1, 0.3
    source = CountingSource()
    sgd = functools.partial(torch.optim.SGD, lr=lr)
    method = RMT(model(), optimizer=sgd, warmup_samples=3 * B, prototype_samples=16,
                 sce_alpha=alpha, momentum=0.9)  # fmt: skip
    student, teacher = copy.deepcopy(method.model), copy.deepcopy(method.teacher)
    reference = copy.deepcopy(source)
    method.setup_source(source)
    for _ in range(3):  # the prototypes' batches
        next(reference)
    for k in range(3):
        x, _ = next(reference)
        with torch.no_grad():
            t = teacher(x)
        symmetric_cross_entropy(student(x), t, alpha).mean().backward()
        with torch.no_grad():
            for p in student.parameters():
                p -= lr * (k + 1) / 3 * p.grad
                p.grad = None
        ema_update(teacher, student, 0.9)
    assert method.warmup_steps == 3
    for ours, theirs in [(method.model, student), (method.teacher, teacher)]:
        for (k, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
            torch.testing.assert_close(p, q, msg=k)
    assert lr * 3 / 3 != lr
    assert [group["lr"] for group in method.optimizer.param_groups] == [lr, lr]


def test_rmt_restored_setup_continues_like_the_original() -> None:
    """`restore_setup` (the task's cache) skips prototypes and warm-up but keeps the source
    for replay: the restored method predicts and adapts exactly as the one it was cached from."""
    original = setup(rmt(seed=2))
    state = original.setup_state()
    restored = rmt(seed=2)
    with pytest.raises(ConfigError) as info:
        restored.restore_setup(state, None)
    assert str(info.value) == (
        "tta.method=rmt needs source batches (prototypes, warm-up, replay); none given"
    )
    source = CountingSource()
    restored.restore_setup(state, source)
    assert source.drawn == 0  # nothing recomputed
    assert torch.equal(restored.prototypes, original.prototypes)
    assert restored.optimizer.state  # the warm-up's Adam moments come back too
    assert_same_optimizer_state(
        copy.deepcopy(restored.optimizer.state_dict()), original.optimizer.state_dict()
    )
    original._source = copy.deepcopy(source)  # both replay the same source batches
    x = batch()
    torch.testing.assert_close(restored(x), original(x), rtol=0, atol=0)
    assert source.drawn == 1
    assert restored.last_losses == original.last_losses


def test_supcon_runs_where_its_features_are() -> None:
    """The masks are made on the features' device (meta: a stand-in for a GPU)."""
    loss = supcon_loss(torch.randn(4, 3, 5, device="meta"))
    assert loss.device.type == "meta" and loss.shape == ()


def test_bn_affine_params_are_every_bn_scale_then_shift() -> None:
    net = model()
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    expected = [id(p) for m in bns for p in (m.weight, m.bias)]
    assert [id(p) for p in bn_affine_params(net)] == expected
    no_affine = nn.Sequential(nn.BatchNorm2d(3, affine=False), nn.BatchNorm1d(4))
    assert [id(p) for p in bn_affine_params(no_affine)] == [
        id(no_affine[1].weight),
        id(no_affine[1].bias),
    ]


def test_norm_changes_no_parameter() -> None:
    method = Norm(model())
    assert not any(p.requires_grad for p in method.parameters())
    assert method.optimizer is None and not method.adapts


# -- augmentation, piece by piece ----------------------------------------------------------------

NEUTRAL = AugmentParams(
    order=(0, 1, 2, 3, 4), brightness=1.0, contrast=1.0, saturation=1.0, hue=0.0,
    gamma=1.0, angle=0.0, translate=(0, 0), scale=1.0, sigma=1e-3, flip=False,
)  # fmt: skip


def with_params(**changes) -> AugmentParams:
    return AugmentParams(**{**NEUTRAL.__dict__, **changes})


@pytest.mark.parametrize(("height", "width"), [(31, 33), (32, 17)])
def test_augment_translation_bound_is_a_sixteenth_of_the_edge_padded_size(height, width) -> None:
    """Padding is n//2 on each side: an odd n pads to 2n − 1, not 2n."""
    max_dx, max_dy = (width + 2 * (width // 2)) / 16, (height + 2 * (height // 2)) / 16
    for seed in range(100):
        g = torch.Generator().manual_seed(seed)
        torch.randperm(5, generator=g)
        u = torch.rand(11, generator=g, dtype=torch.float64).tolist()
        params = sample_params(height, width, torch.Generator().manual_seed(seed))
        assert params.translate == (
            round(-max_dx + 2 * max_dx * u[6]),
            round(-max_dy + 2 * max_dy * u[7]),
        ), seed


def test_augment_parameters_take_a_permutation_and_11_uniforms_from_the_generator() -> None:
    g, reference = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    sample_params(32, 32, g)
    torch.randperm(5, generator=reference)
    torch.rand(11, generator=reference, dtype=torch.float64)
    assert torch.equal(g.get_state(), reference.get_state())


def test_augment_parameters_are_drawn_on_the_generators_device() -> None:
    """Whatever the default device (here meta, where nothing can be read back)."""
    expected = sample_params(32, 32, torch.Generator().manual_seed(1))
    with torch.device("meta"):
        assert sample_params(32, 32, torch.Generator().manual_seed(1)) == expected
        assert isinstance(sample_params(32, 32), AugmentParams)  # global RNG: on the CPU


def test_augment_without_noise_draws_no_noise() -> None:
    x = batch(2, 16)
    g, reference = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    out = tta_augment(x, g, noise_std=0.0)
    torch.testing.assert_close(out, apply_params(x, sample_params(16, 16, reference), 0.0))
    assert torch.equal(g.get_state(), reference.get_state())


@pytest.mark.parametrize("seeded", [True, False])
def test_augment_noise_is_added_gaussian_noise_then_clipped(seeded: bool) -> None:
    x = 0.2 + 0.6 * batch(2, 16)
    params = with_params(angle=7.0, gamma=1.2)
    torch.manual_seed(11)
    g = torch.Generator().manual_seed(9) if seeded else None
    out = apply_params(x, params, 0.05, g)
    torch.manual_seed(11)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(9) if seeded else None)
    expected = (apply_params(x, params, 0.0) + 0.05 * noise).clamp(0.0, 1.0)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("seeded", [True, False])
def test_augment_keeps_the_dtype_and_device_of_the_images(seeded: bool) -> None:
    """bfloat16 (autocast) stays bfloat16; on the meta device (a stand-in for a GPU fed by a
    CPU generator) the noise is moved to the images."""
    g = torch.Generator().manual_seed(0) if seeded else None
    x = batch(2, 8)
    assert tta_augment(x.bfloat16(), g).dtype == torch.bfloat16
    assert tta_augment(x.double(), g).dtype == torch.float64
    assert tta_augment(x.to("meta"), g).device.type == "meta"


def test_augment_clips_its_input_to_0_1_first() -> None:
    """Hue and gamma first (they do not clip): out-of-range pixels would change them."""
    x = batch(2, 16) * 2.0 - 0.5
    params = with_params(order=(3, 4, 0, 1, 2), hue=0.05, gamma=1.3)
    out = apply_params(x, params, 0.0)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, apply_params(x.clamp(0.0, 1.0), params, 0.0))


def test_augment_pads_by_the_edge_and_fills_beyond_the_padding_with_zero() -> None:
    x = 0.1 + 0.8 * batch(2, 32)
    shifted = apply_params(x, with_params(translate=(2, 0)), 0.0)
    edge = x[..., :1].expand(-1, -1, -1, 2)  # the two columns shifted in: the edge column
    torch.testing.assert_close(shifted[..., :2], edge, atol=1e-5, rtol=0)
    # padded to 64 columns; a 40 px shift brings in 24 columns from beyond the padding
    far = apply_params(x, with_params(translate=(40, 0)), 0.0)
    assert torch.equal(far[..., :24], torch.zeros_like(far[..., :24]))
    edge = x[..., :1].expand(-1, -1, -1, 8)  # then the 8 first padding columns
    torch.testing.assert_close(far[..., 24:], edge, atol=1e-5, rtol=0)


def test_augment_affine_is_bilinear() -> None:
    """Scaling by 1.1 interpolates: most output pixels are values no input pixel has (nearest
    neighbour would only copy input values)."""
    x = batch(1, 32)
    out = apply_params(x, with_params(scale=1.1), 0.0)
    copied = torch.isin(out, x).float().mean().item()
    assert copied < 0.2


def test_augment_takes_height_and_width_from_the_last_two_dimensions() -> None:
    """A non-square batch, and a single (3, H, W) image: the draw is sample_params(H, W)."""
    x = batch(2, 16)[..., :16, :].repeat(1, 1, 1, 3)[..., :40]  # (2, 3, 16, 40)
    assert x.shape == (2, 3, 16, 40)
    for seed in range(4):
        g, reference = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        expected = apply_params(x, sample_params(16, 40, reference), 0.005, reference)
        assert torch.equal(tta_augment(x, g), expected)
        g, reference = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        single = tta_augment(x[0], g)
        assert single.shape == (3, 16, 40)
        assert torch.equal(single, apply_params(x[0], sample_params(16, 40, reference), 0.005,
                                                reference))  # fmt: skip


# -- the base class and its helpers --------------------------------------------------------------


def test_default_optimizer_is_adam_lr_1e_3_without_weight_decay() -> None:
    """TENT's, CoTTA's and RMT's CIFAR setting (docs/methods/tta.md)."""
    opt = Tent(model()).optimizer
    assert isinstance(opt, torch.optim.Adam)
    settings = (opt.defaults["lr"], opt.defaults["betas"], opt.defaults["weight_decay"])
    assert settings == (1e-3, (0.9, 0.999), 0.0)


def test_frozen_copies_take_no_gradient() -> None:
    method = setup(rmt())
    for frozen in (method.teacher, CoTTA(model()).anchor, CoTTA(model()).teacher):
        assert not any(p.requires_grad for p in frozen.parameters())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "tta.temperature=True must be > 0"),
        ("hot", "tta.temperature=hot must be > 0"),
        (float("nan"), "tta.temperature=nan must be > 0"),
    ],
)
def test_a_non_number_is_a_config_error(value, message) -> None:
    with pytest.raises(ConfigError) as info:
        RMT(model(), temperature=value)
    assert str(info.value) == message


def test_interval_messages_show_open_and_closed_ends() -> None:
    from xent.tta.base import check_float, reject_unknown

    cases = [
        ({"low_open": True}, "tta.p=0 must be in (0, 1]"),
        ({"high_open": True}, "tta.p=0 must be in [0.5, 1)"),
        ({"low_open": True, "high_open": True}, "tta.p=0 must be in (0.5, 1)"),
    ]
    for kwargs, message in cases:
        low = 0.0 if message.endswith("(0, 1]") else 0.5
        with pytest.raises(ConfigError) as info:
            check_float("p", 0, low, 1.0, **kwargs)
        assert str(info.value) == message
    assert check_float("p", 1, 0.0, 1.0, low_open=True) == 1.0
    with pytest.raises(ConfigError) as info:
        reject_unknown("Nothing", {"lr": 0.1}, [])
    assert str(info.value) == "tta.lr=0.1 is not a parameter of Nothing; valid: none"


def test_a_non_callable_optimizer_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        Tent(model(), optimizer="adam")
    assert str(info.value) == (
        "tta.optimizer='adam' must be a callable building an optimizer from params "
        "(Hydra _partial_: true)"
    )


def test_inference_mode_error_names_the_method_and_the_fix() -> None:
    with torch.inference_mode(), pytest.raises(RuntimeError) as info:
        CoTTA(model())(batch())
    assert str(info.value) == (
        "CoTTA adapts at test time: call it with inference_mode off (Trainer(inference_mode=False))"
    )


def test_train_and_eval_set_the_flag_only() -> None:
    method = Tent(model())
    assert method.train(False) is method and method.training is False
    assert method.train() is method and method.training is True
    assert not method.model.training  # the network stays in eval mode
    method.eval()
    assert method.training is False


def test_methods_without_a_seed_use_the_global_rng() -> None:
    assert Tent(model()).seed is None and Tent(model()).rng(torch.device("cpu")) is None
    g = CoTTA(model(), seed=3).rng(torch.device("cpu"))
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(3).get_state())


def test_a_method_without_optimizer_moves_and_round_trips_its_setup() -> None:
    method = Norm(model())
    method.double()
    assert method(batch().double()).dtype == torch.float64
    state = method.setup_state()
    assert state["optimizer"] is None
    other = Norm(model()).double()
    other.restore_setup(state, None)
    for k, v in other.state_dict().items():
        assert torch.equal(v, method.state_dict()[k]), k


def test_reset_twice_restores_the_optimizer_state_both_times() -> None:
    """The optimizer loads a copy of its snapshot: steps after one reset cannot change what the
    next reset restores."""
    method = setup(rmt())
    _, opt = state(method)
    for _ in range(2):
        method(batch())
        method(batch())
        method.reset()
        assert_same_optimizer_state(copy.deepcopy(method.optimizer.state_dict()), opt)


def test_rmt_reset_before_setup_restores_the_constructed_state() -> None:
    method = rmt()
    with torch.no_grad():
        method.prototypes.fill_(1.0)
    method.reset()
    assert not method.prototypes.any()
