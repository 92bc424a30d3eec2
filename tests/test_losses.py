"""The loss zoo (src/xent/losses) against independent float64 references, identities,
extreme logits, configs, argument checks, and per-sample state (docs/methods/losses.md is the
spec)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from xent.flow import FlowMatchingLoss, VelocityMLP
from xent.losses import (
    ALDRKLLoss,
    BiasLoss,
    CELogZLoss,
    CompSumLoss,
    DiceLoss,
    FocalLoss,
    GCELoss,
    LDRKLLoss,
    MAELoss,
    SCELoss,
    ZLoss,
)
from xent.losses.lm import IGNORE_INDEX, LMLoss

LOSS_CONF = Path(__file__).resolve().parents[1] / "src" / "xent" / "conf" / "loss"
K = 10
SEEDS = [0, 1, 2]
RTOL, ATOL = 1e-5, 1e-6


def batch(seed: int, n: int = 16, k: int = K, scale: float = 3.0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=gen) * scale
    target = torch.randint(0, k, (n,), generator=gen)
    return logits, target


def half_right(seed: int):
    """A batch where the even rows are confidently right (p_y > 1/2) and the odd ones not."""
    logits, target = batch(seed)
    rows_ = torch.arange(0, len(target), 2)
    logits[rows_, target[rows_]] += 12.0
    return logits, target


def feature_maps(seed: int, n: int = 16) -> torch.Tensor:
    gen = torch.Generator().manual_seed(100 + seed)
    return torch.randn(n, 8, 4, 4, generator=gen) * torch.rand(n, 1, 1, 1, generator=gen) * 3


def inputs_for(loss, n: int, seed: int = 0) -> dict:
    """The extra keyword inputs a loss declares in `requires` (index after setup_samples)."""
    extra = {}
    if "index" in loss.requires:
        loss.setup_samples(4 * n)
        extra["index"] = torch.arange(n) * 2
    if "features" in loss.requires:
        extra["features"] = feature_maps(seed, n)
    return extra


def close(actual, expected, rtol=RTOL, atol=ATOL):
    actual = float(actual)
    assert math.isclose(actual, expected, rel_tol=rtol, abs_tol=atol), (actual, expected)


# ----- independent float64 references: plain loops over samples with math ---------------


def rows(logits, target):
    return logits.double().numpy().tolist(), target.numpy().tolist()


def probs(row):
    m = max(row)
    z = sum(math.exp(v - m) for v in row)
    return [math.exp(v - m) / z for v in row], m + math.log(z)


def ref_mean(logits, target, per_sample):
    xs, ys = rows(logits, target)
    return sum(per_sample(x, y) for x, y in zip(xs, ys, strict=True)) / len(ys)


def ref_ce(x, y):
    p, lse = probs(x)
    return lse - x[y]


def ref_focal(gamma, alpha=None):
    def f(x, y):
        p, _ = probs(x)
        a = 1.0 if alpha is None else alpha[y]
        return -a * (1 - p[y]) ** gamma * math.log(p[y])

    return f


def ref_comp_sum(tau):
    def f(x, y):
        p, _ = probs(x)
        if tau == 1:
            return -math.log(p[y])
        if tau == 0:
            return sum(math.exp(x[k] - x[y]) for k in range(len(x)) if k != y)
        return (1 - p[y] ** (tau - 1)) / (tau - 1)

    return f


def ref_gce(q):
    return lambda x, y: (1 - probs(x)[0][y] ** q) / q


def ref_mae(x, y):
    return 1 - probs(x)[0][y]


def ref_sce(alpha, beta, A):  # noqa: N803
    def f(x, y):
        p, _ = probs(x)
        ce = -math.log(p[y])
        log_t = [0.0 if k == y else A for k in range(len(x))]  # log one-hot, log 0 := A
        rce = -sum(pk * lt for pk, lt in zip(p, log_t, strict=True))
        return alpha * ce + beta * rce

    return f


def ref_ldr(margin, lam):
    def f(x, y):
        terms = [math.exp(((margin if k != y else 0.0) + x[k] - x[y]) / lam) for k in range(len(x))]
        return lam * math.log(sum(terms) / len(x))

    return f


def ref_dice(alpha, gamma):
    def f(x, y):
        p, _ = probs(x)
        total = 0.0
        for k, pk in enumerate(p):
            pt = (1 - pk) ** alpha * pk
            yk = 1.0 if k == y else 0.0
            total += 1 - (2 * pt * yk + gamma) / (pt * pt + yk * yk + gamma)
        return total

    return f


def ref_zloss(a, b):
    def f(x, y):
        mu = sum(x) / len(x)
        sigma = math.sqrt(sum(v * v for v in x) / len(x) - mu * mu)
        z = (x[y] - mu) / sigma
        return math.log(1 + math.exp(a * (b - z))) / a

    return f


def ref_ce_logz(coef):
    def f(x, y):
        _, lse = probs(x)
        return lse - x[y] + coef * lse * lse

    return f


def ref_bias(logits, target, features, alpha, beta):
    feats = features.double().numpy().reshape(len(features), -1)
    var = [float(np.mean((f - f.mean()) ** 2)) for f in feats]
    lo, hi = min(var), max(var)
    xs, ys = rows(logits, target)
    total = 0.0
    for x, y, v in zip(xs, ys, var, strict=True):
        w = math.exp(alpha * (v - lo) / (hi - lo)) - beta
        total += w * ref_ce(x, y)
    return total / len(ys)


PLAIN_CASES = [
    (FocalLoss(), ref_focal(2.0)),
    (FocalLoss(gamma=0.5), ref_focal(0.5)),
    (FocalLoss(gamma=3, alpha=[0.1 * (i + 1) for i in range(K)]), None),
    (CompSumLoss(tau=0.0), ref_comp_sum(0)),
    (CompSumLoss(tau=0.5), ref_comp_sum(0.5)),
    (CompSumLoss(tau=1.0), ref_comp_sum(1)),
    (CompSumLoss(tau=1.3), ref_comp_sum(1.3)),
    (CompSumLoss(tau=2.0), ref_comp_sum(2)),
    (CompSumLoss(tau=3.5), ref_comp_sum(3.5)),
    (GCELoss(q=0.7), ref_gce(0.7)),
    (GCELoss(q=0.05), ref_gce(0.05)),
    (GCELoss(q=1.0), ref_gce(1.0)),
    (MAELoss(), ref_mae),
    (SCELoss(), ref_sce(0.1, 1.0, -4.0)),
    (SCELoss(alpha=6.0, beta=0.1, A=math.log(1e-4)), ref_sce(6.0, 0.1, math.log(1e-4))),
    (LDRKLLoss(), ref_ldr(0.1, 10.0)),
    (LDRKLLoss(margin=2.0, lam=1.0), ref_ldr(2.0, 1.0)),
    (LDRKLLoss(margin=0.5, lam=0.3), ref_ldr(0.5, 0.3)),
    (DiceLoss(), ref_dice(0.01, 1.0)),
    (DiceLoss(alpha=0.0, gamma=1e-4), ref_dice(0.0, 1e-4)),
    (DiceLoss(alpha=0.5, gamma=0.5), ref_dice(0.5, 0.5)),
    (ZLoss(), ref_zloss(1.0, 3.0)),
    (ZLoss(a=0.1, b=10.0), ref_zloss(0.1, 10.0)),
    (CELogZLoss(), ref_ce_logz(1e-4)),
    (CELogZLoss(coef=0.1), ref_ce_logz(0.1)),
]
PLAIN_CASES[2] = (PLAIN_CASES[2][0], ref_focal(3, [0.1 * (i + 1) for i in range(K)]))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("loss", "ref"), PLAIN_CASES, ids=lambda c: repr(c)[:40])
def test_matches_independent_float64_reference(loss, ref, seed):
    logits, target = batch(seed)
    close(loss(logits, target), ref_mean(logits, target, ref))


@pytest.mark.parametrize("seed", SEEDS)
def test_bias_loss_matches_reference(seed):
    logits, target = batch(seed)
    feats = feature_maps(seed)
    close(BiasLoss()(logits, target, features=feats), ref_bias(logits, target, feats, 0.3, 0.3))
    flat = feats.reshape(len(feats), -1)  # (B, D) features give the same result
    close(
        BiasLoss(alpha=1.0, beta=0.5)(logits, target, features=flat),
        ref_bias(logits, target, feats, 1.0, 0.5),
    )


def test_bias_loss_weights_span_the_papers_range():
    """α = β = 0.3: weights from 1 − β = 0.7 (lowest variance) to e^0.3 − 0.3 ≈ 1.05."""
    feats = feature_maps(0)
    w = BiasLoss().sample_weights(feats)
    close(w.min(), 0.7)
    close(w.max(), math.exp(0.3) - 0.3)
    assert abs(float(w.max()) - 1.05) < 0.001
    # a batch of 1 (or equal variances) gets v = 0, weight 1 − β, not 0/0
    close(BiasLoss().sample_weights(feats[:1]), 0.7)


def test_bias_loss_global_norm_keeps_a_running_min():
    loss = BiasLoss(norm="global")
    feats = feature_maps(0)
    var = feats.reshape(16, -1).var(dim=1, correction=0)
    loss.sample_weights(feats)
    close(loss.running_min, float(var.min()))
    # a later batch with larger variances is normalised from the running (lower) minimum
    w = loss.sample_weights(feats[:8] * 2)
    v = (var[:8] * 4 - var.min()) / (var[:8].max() * 4 - var[:8].min() * 4)
    assert torch.allclose(w, torch.exp(0.3 * v) - 0.3, rtol=1e-5)
    assert "running_min" in loss.state_dict()
    assert "running_min" not in BiasLoss().state_dict()


# ----- per-sample state: truncated GCE and ALDR-KL --------------------------------------


def test_truncated_gce_prunes_by_its_rule_and_stores_weights():
    logits, target = half_right(0)
    loss = GCELoss(q=0.7, k=0.5, start=0, every=1)
    assert loss.requires == ("index",)
    loss.setup_samples(40)
    index = torch.arange(16) + 3
    # first visit: every weight is 1, so plain L_q; the weights are then re-estimated
    close(loss(logits, target, index=index), ref_mean(logits, target, ref_gce(0.7)))
    p_y = [probs(x)[0][y] for x, y in zip(*rows(logits, target), strict=True)]
    expected = torch.ones(40)
    expected[index] = torch.tensor([1.0 if p > 0.5 else 0.0 for p in p_y])
    assert 0 < expected[index].sum() < 16  # the batch has both kinds
    assert torch.equal(loss.weight, expected)
    assert torch.equal(loss.state_dict()["weight"], expected)
    assert loss.state_dict()["visits"][index].tolist() == [1] * 16
    # second visit: the paper's L_trunc = L_q(k) if p_y <= k else L_q(p_y)
    lqk = (1 - 0.5**0.7) / 0.7
    trunc = [lqk if p <= 0.5 else (1 - p**0.7) / 0.7 for p in p_y]
    close(loss(logits, target, index=index), sum(trunc) / 16)


def test_truncated_gce_waits_for_start_and_prunes_every_n_visits():
    logits, target = half_right(1)
    loss = GCELoss(k=0.5, start=2, every=3)
    loss.setup_samples(16)
    index = torch.arange(16)
    refreshed = []
    for _ in range(9):
        loss.weight.fill_(1.0)  # a refresh on this visit shows as pruned samples
        loss(logits, target, index=index)
        refreshed.append(bool((loss.weight == 0).any()))
    # visits counted from 0 per sample; refresh on visits start, start + every, ...
    assert [v for v, r in enumerate(refreshed) if r] == [2, 5, 8]
    assert loss.visits.tolist() == [9] * 16


def test_truncated_gce_eval_mode_and_manual_prune():
    logits, target = batch(2)
    loss = GCELoss(k=0.5, start=0)
    loss.setup_samples(16)
    loss.eval()
    loss(logits, target, index=torch.arange(16))
    assert bool((loss.weight == 1).all()) and int(loss.visits.sum()) == 0
    loss.prune(logits, target, torch.arange(16))
    assert bool((loss.weight == 0).any())
    with pytest.raises(ValueError, match="needs truncation"):
        GCELoss().prune(logits, target, torch.arange(16))


def ref_aldr_step(x, y, lam_old, margin, lam0, alpha):
    """One ALDR-KL visit: closed-form λ from q = softmax(s/λ_old), then the loss with it."""
    k = len(x)
    q, _ = probs([v / lam_old for v in x])
    kl = sum(qk * math.log(qk * k) for qk in q if qk > 0)
    lam = lam0 - lam0 * kl / (alpha * math.log(k))
    value = ref_ldr(margin, lam)(x, y) - alpha * math.log(k) / (2 * lam0) * (lam - lam0) ** 2
    return value, lam


def test_aldr_kl_matches_reference_and_keeps_lambda_per_sample():
    margin, lam0, alpha = 0.1, 1.0, 2.0  # λ₀ = 1 so the adaptation is visible
    loss = ALDRKLLoss(margin=margin, lam=lam0, alpha=alpha)
    assert loss.requires == ("index",)
    loss.setup_samples(30)
    state = [lam0] * 30
    for seed, index in [(0, torch.arange(16)), (1, torch.arange(16) + 8), (2, torch.arange(16))]:
        logits, target = batch(seed)
        xs, ys = rows(logits, target)
        total = 0.0
        for x, y, i in zip(xs, ys, index.tolist(), strict=True):
            value, state[i] = ref_aldr_step(x, y, state[i], margin, lam0, alpha)
            total += value
        close(loss(logits, target, index=index), total / 16)
        assert np.allclose(loss.lam_i.numpy(), state, rtol=1e-5)
    assert loss.state_dict()["lam_i"].shape == (30,)
    assert float(loss.lam_i[24:].sub(lam0).abs().max()) == 0  # never visited
    assert float(loss.lam_i[:24].sub(lam0).abs().min()) > 0


def test_aldr_kl_lambda_range_is_lam_times_one_minus_one_over_alpha_to_lam():
    """0 <= KL <= log K gives λ_i ∈ [λ₀(1 − 1/α), λ₀]; α = 2 → [λ₀/2, λ₀]
    (docs/methods/losses.md §5)."""
    loss = ALDRKLLoss(lam=10.0, alpha=2.0)
    loss.setup_samples(2)
    logits = torch.tensor([[1e4] + [-1e4] * (K - 1), [0.0] * K])
    loss(logits, torch.tensor([0, 3]), index=torch.arange(2))
    assert torch.allclose(loss.lam_i, torch.tensor([5.0, 10.0]), rtol=1e-6)


@pytest.mark.parametrize("make", [lambda: GCELoss(k=0.5), ALDRKLLoss], ids=["tgce", "aldr"])
def test_per_sample_losses_need_index_and_setup(make):
    logits, target = batch(0)
    loss = make()
    name = type(loss).__name__
    with pytest.raises(ValueError) as info:
        loss(logits, target)
    assert name in str(info.value) and "'index'" in str(info.value)
    with pytest.raises(RuntimeError, match=r"before setup_samples\(num_samples\)"):
        loss(logits, target, index=torch.arange(16))
    loss.setup_samples(16)
    with pytest.raises(ValueError, match="index must have shape"):
        loss(logits, target, index=torch.arange(8))


@pytest.mark.parametrize("make", [lambda: GCELoss(k=0.5, start=0), ALDRKLLoss], ids=["g", "a"])
def test_per_sample_state_round_trips_through_state_dict(make):
    logits, target = batch(3)
    loss = make()
    loss.setup_samples(20)
    loss(logits, target, index=torch.arange(16) + 4)
    saved = {k: v.clone() for k, v in loss.state_dict().items()}
    fresh = make()
    fresh.load_state_dict(saved)  # no setup_samples: allocated at the checkpoint's size
    resumed = make()
    resumed.setup_samples(20)  # as the task does before restoring a checkpoint
    resumed.load_state_dict(saved)
    for other in (fresh, resumed):
        for key, value in saved.items():
            assert torch.equal(other.state_dict()[key], value)
    # setup_samples starts over
    resumed.setup_samples(20)
    assert not all(torch.equal(resumed.state_dict()[k], v) for k, v in saved.items())


def test_bias_loss_needs_features():
    logits, target = batch(0)
    with pytest.raises(ValueError, match=r"BiasLoss needs 'features'"):
        BiasLoss()(logits, target)


# ----- identities ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_comp_sum_identities(seed):
    logits, target = batch(seed)
    ce = F.cross_entropy(logits, target)
    close(CompSumLoss(tau=1.0)(logits, target), float(ce))
    close(CompSumLoss(tau=2.0)(logits, target), float(MAELoss()(logits, target)))
    for q in (0.05, 0.3, 0.7, 0.95, 1.0):
        close(CompSumLoss(tau=1 + q)(logits, target), float(GCELoss(q=q)(logits, target)))
    close(CompSumLoss(tau=1.7)(logits, target), float(GCELoss(q=0.7)(logits, target)))
    p_y = logits.softmax(-1).gather(1, target[:, None]).double()
    close(CompSumLoss(tau=0.0)(logits, target), float((1 / p_y - 1).mean()), rtol=1e-5)
    close(GCELoss(q=1e-6)(logits, target), float(ce), rtol=1e-4)  # q → 0 is CE


@pytest.mark.parametrize("seed", SEEDS)
def test_ce_identities(seed):
    logits, target = batch(seed)
    ce = float(F.cross_entropy(logits, target))
    close(FocalLoss(gamma=0)(logits, target), ce)
    close(FocalLoss(gamma=0, alpha=[1.0] * K)(logits, target), ce)
    close(SCELoss(alpha=0.7, beta=0.0)(logits, target), 0.7 * ce)
    close(CELogZLoss(coef=0.0)(logits, target), ce)
    close(LDRKLLoss(margin=0.0, lam=1.0)(logits, target), ce - math.log(K))


def test_ce_logz_gradient_is_t5x_formula():
    """t5x: d/ds [CE + z·lse²] = (1 + 2·z·lse)·softmax − onehot, per token."""
    logits, target = batch(4)
    logits.requires_grad_(True)
    CELogZLoss(coef=0.01)(logits, target).backward()
    lse = logits.detach().logsumexp(-1, keepdim=True)
    expected = (1 + 2 * 0.01 * lse) * logits.detach().softmax(-1) - F.one_hot(target, K)
    assert torch.allclose(logits.grad, expected / len(target), rtol=1e-5, atol=1e-7)


def test_sce_rce_is_a_scaled_mae():
    """Hard label: RCE = −A(1 − p_y); the official clip 1e-4 gives ≈ 9.21(1 − p_y)."""
    logits, target = batch(5)
    mae = float(MAELoss()(logits, target))
    close(SCELoss(alpha=0.0, beta=1.0, A=-4.0)(logits, target), 4 * mae)
    close(SCELoss(alpha=0.0, beta=1.0, A=math.log(1e-4))(logits, target), 9.2103404 * mae)


@pytest.mark.parametrize("seed", SEEDS)
def test_zloss_is_shift_and_scale_invariant(seed):
    logits, target = batch(seed)
    loss = ZLoss(a=0.5, b=2.0)
    base = float(loss(logits, target))
    for c, d in [(3.0, 5.0), (0.01, -100.0), (250.0, 1e3)]:
        close(loss(c * logits + d, target), base, rtol=1e-5)
    # constant logits: σ = 0, z_y = 0, L = softplus(a·b)/a
    close(loss(torch.full((2, K), 7.0), torch.tensor([0, 1])), math.log1p(math.exp(1.0)) / 0.5)


def test_focal_published_down_weighting():
    """Lin et al.: with γ = 2, p_t = 0.9 gives 100x lower loss than CE, p_t ≈ 0.968 ~1000x."""
    for p_t, factor in [(0.9, 100.0), (0.968, 1 / 0.032**2)]:
        logits = torch.tensor(
            [
                [math.log(p_t), math.log((1 - p_t) / (K - 1))]
                + [math.log((1 - p_t) / (K - 1))] * (K - 2)
            ]
        )
        target = torch.tensor([0])
        ratio = F.cross_entropy(logits, target) / FocalLoss(gamma=2)(logits, target)
        close(ratio, factor, rtol=1e-4)
    assert 976 < 1 / 0.032**2 < 977  # "≈ 1000x"


def test_ldr_kl_worked_examples():
    """Uniform logits: λ·log((1 + (K−1)e^{c/λ})/K); λ → 0 tends to max_k(δ_k + s_k − s_y)."""
    target = torch.tensor([0, 4])
    for margin, lam in [(0.1, 10.0), (2.0, 1.0), (0.5, 0.2)]:
        expected = lam * math.log((1 + (K - 1) * math.exp(margin / lam)) / K)
        close(LDRKLLoss(margin=margin, lam=lam)(torch.zeros(2, K), target), expected)
    logits, target = batch(6)
    hinge = logits + 0.5 * (1 - F.one_hot(target, K)) - logits.gather(1, target[:, None])
    hinge = float(hinge.max(dim=1).values.mean())
    lam = 1e-3  # within λ·log K of the hinge
    value = float(LDRKLLoss(margin=0.5, lam=lam)(logits, target))
    assert hinge - lam * math.log(K) - 1e-4 <= value <= hinge + 1e-4


def test_dice_perfect_prediction_and_plain_dice():
    target = torch.tensor([2, 7])
    confident = F.one_hot(target, K).float() * 50.0
    close(DiceLoss(alpha=0.0, gamma=1.0)(confident, target), 0.0, atol=1e-6)
    # self-adjusting: (1 − p)^α → 0 as p → 1, so the target column's DSC drops to γ/(γ + 1)
    close(DiceLoss(alpha=0.5, gamma=1.0)(confident, target), 0.5, atol=1e-6)


def test_project_ce_config_is_the_label_smoothing_closed_form():
    """(1−ε)(lse − s_y) + ε(lse − mean_k s_k), PyTorch's off-value ε/K convention."""
    cfg = OmegaConf.load(LOSS_CONF / "ce.yaml")
    assert OmegaConf.to_container(cfg) == {
        "_target_": "torch.nn.CrossEntropyLoss",
        "label_smoothing": 0.0,
    }
    for eps in (0.0, 0.1, 0.3):
        cfg.label_smoothing = eps
        loss = instantiate(cfg)
        for seed in SEEDS:
            logits, target = batch(seed)

            def closed(x, y, eps=eps):
                _, lse = probs(x)
                return (1 - eps) * (lse - x[y]) + eps * (lse - sum(x) / len(x))

            close(loss(logits, target), ref_mean(logits, target, closed))


# ----- extreme logits --------------------------------------------------------------------


def extreme_batches():
    gen = torch.Generator().manual_seed(7)
    target = torch.tensor([0, 1, 2, 3])
    wrong = torch.full((4, K), 1e4)
    wrong[torch.arange(4), target] = -1e4  # the true class hugely wrong
    right = -wrong  # hugely right
    mixed = torch.randn(4, K, generator=gen) * 1e4
    ties = torch.full((4, K), 1e4)
    return {
        "wrong": (wrong, target),
        "right": (right, target),
        "random": (mixed, target),
        "ties": (ties, target),
    }


EXTREME_LOSSES = {
    "focal": FocalLoss,
    "focal_g0.5_alpha": lambda: FocalLoss(gamma=0.5, alpha=[1.0] * K),
    "focal_g0.01": lambda: FocalLoss(gamma=0.01),
    **{f"comp_sum_{t}": (lambda t=t: CompSumLoss(tau=t)) for t in (0.0, 0.5, 1.0, 1.5, 2.0, 4.0)},
    "gce": GCELoss,
    "gce_trunc": lambda: GCELoss(k=0.5, start=0, every=1),
    "mae": MAELoss,
    "sce": SCELoss,
    "ldr_kl": LDRKLLoss,
    "ldr_kl_small_lam": lambda: LDRKLLoss(margin=1.0, lam=0.01),
    "aldr_kl": ALDRKLLoss,
    "aldr_kl_alpha_near_1": lambda: ALDRKLLoss(alpha=1.0001, lam=0.1),
    "dice": DiceLoss,
    "dice_plain": lambda: DiceLoss(alpha=0.0),
    "zloss": ZLoss,
    "ce_logz": CELogZLoss,
    "bias": BiasLoss,
    "bias_global": lambda: BiasLoss(norm="global"),
}


@pytest.mark.parametrize("case", ["wrong", "right", "random", "ties"])
@pytest.mark.parametrize("name", sorted(EXTREME_LOSSES))
def test_extreme_logits_give_finite_loss_and_gradients(name, case):
    loss = EXTREME_LOSSES[name]()
    logits, target = extreme_batches()[case]
    extra = inputs_for(loss, len(target))
    for _ in range(2):  # second pass: per-sample state updated from extreme logits
        x = logits.clone().requires_grad_(True)
        value = loss(x, target, **extra)
        value.backward()
        assert torch.isfinite(value), float(value)
        assert torch.isfinite(x.grad).all()


def test_sum_exponential_overflow_guard_is_continuous():
    """τ = 0 is exact below the clamp, linear beyond it, and keeps a gradient there."""
    from xent.losses._common import EXP_CLAMP

    target = torch.tensor([0])
    for gap in (EXP_CLAMP - 1, EXP_CLAMP + 1, 1e4):
        logits = torch.tensor([[0.0, gap]], dtype=torch.float64, requires_grad=True)
        value = CompSumLoss(tau=0.0)(logits, target)
        value.backward()
        value = value.detach()
        e = min(gap, EXP_CLAMP)
        expected = math.expm1(e) + math.exp(EXP_CLAMP) * max(gap - EXP_CLAMP, 0.0)
        close(value, expected, rtol=1e-6)
        assert float(logits.grad[0, 1]) > 0


def test_half_precision_logits_are_computed_in_fp32():
    logits, target = batch(0)
    for loss in (FocalLoss(), CompSumLoss(tau=0.0), DiceLoss(), ZLoss()):
        value = loss(logits.bfloat16(), target)
        assert value.dtype == torch.float32
        close(value, float(loss(logits.bfloat16().float(), target)))


# ----- configs ---------------------------------------------------------------------------

CONFIGS = sorted(LOSS_CONF.glob("*.yaml"))


def test_every_loss_has_a_config():
    names = {p.stem for p in CONFIGS}
    assert {
        "ce",
        "focal",
        "comp_sum",
        "gce",
        "mae",
        "sce",
        "ldr_kl",
        "aldr_kl",
        "dice",
        "zloss",
        "ce_logz",
        "bias_loss",
    } <= names


def flow_loss_trains_a_step(loss: FlowMatchingLoss) -> None:
    torch.manual_seed(0)
    net = VelocityMLP(dim=2)
    gen = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(32, 2, generator=gen), torch.randn(32, 2, generator=gen) + 3
    value = loss(net, x0, x1, generator=gen)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def token_loss_trains_a_step(loss: LMLoss) -> None:
    """A (2, 8) batch whose first three targets of each row are a masked prompt."""
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 8, 4, generator=gen, requires_grad=True)
    weight = torch.randn(K, 4, generator=gen)
    target = torch.randint(0, K, (2, 8), generator=gen)
    target[:, :3] = IGNORE_INDEX
    value = loss(hidden, weight, target).loss
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(hidden.grad).all() and hidden.grad.abs().sum() > 0


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_composes_instantiates_and_trains(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and len(first) > 20  # one-line comment: what and defaults
    from hydra import compose, initialize_config_module

    with initialize_config_module("xent.conf", version_base="1.3"):
        composed = compose("config", overrides=[f"loss={path.stem}"]).loss
    raw = OmegaConf.load(path)
    raw.pop("defaults", None)  # Hydra's (e.g. a distillation loss selecting task=distill)
    assert composed == raw
    loss = instantiate(composed)
    if isinstance(loss, FlowMatchingLoss):  # flow matching: a velocity net on (x0, x1) pairs
        flow_loss_trains_a_step(loss)
        return
    if isinstance(loss, LMLoss):  # task=lm: hidden states, the head weight, token targets
        token_loss_trains_a_step(loss)
        return
    requires = getattr(loss, "requires", ())
    assert isinstance(requires, tuple)
    assert set(requires) <= {"index", "features", "binary_target", "teacher_logits", "epoch"}
    if getattr(loss, "target_kind", "class") == "real":  # regression: outputs and values
        logits, target = torch.randn(16, loss.num_outputs), torch.randn(16)
    else:
        logits, target = batch(0, k=2 if "binary_target" in requires else K)
    logits.requires_grad_(True)
    extra = inputs_for(loss, len(target)) if requires else {}
    if "teacher_logits" in requires:  # distillation: a teacher's logits of the same shape
        extra["teacher_logits"] = batch(1, k=logits.shape[1])[0]
    value = loss(logits, target, **extra)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_requires_of_each_loss():
    assert FocalLoss.requires == CompSumLoss.requires == MAELoss.requires == ()
    assert SCELoss.requires == LDRKLLoss.requires == DiceLoss.requires == ()
    assert ZLoss.requires == CELogZLoss.requires == GCELoss.requires == ()
    assert GCELoss(k=0.5).requires == ("index",)
    assert ALDRKLLoss.requires == ("index",)
    assert BiasLoss.requires == ("features",)


# ----- argument checks -------------------------------------------------------------------

BAD = [
    (FocalLoss, {"gamma": -1}, "loss.gamma=-1 must be >= 0"),
    (
        FocalLoss,
        {"alpha": [1.0, -1.0]},
        "loss.alpha=[1.0, -1.0] must be null or a list of per-class weights >= 0",
    ),
    (CompSumLoss, {"tau": -0.5}, "loss.tau=-0.5 must be >= 0"),
    (GCELoss, {"q": 1.5}, "loss.q=1.5 must be in (0, 1]"),
    (GCELoss, {"q": 0}, "loss.q=0 must be in (0, 1]"),
    (GCELoss, {"q": "0.7"}, "loss.q='0.7' must be in (0, 1]"),
    (GCELoss, {"k": 1.0}, "loss.k=1.0 must be null or in (0, 1)"),
    (GCELoss, {"k": 0}, "loss.k=0 must be null or in (0, 1)"),
    (GCELoss, {"k": 0.5, "start": -1}, "loss.start=-1 must be >= 0"),
    (GCELoss, {"k": 0.5, "every": 0}, "loss.every=0 must be an integer >= 1"),
    (SCELoss, {"alpha": -0.1}, "loss.alpha=-0.1 must be >= 0"),
    (SCELoss, {"beta": -1.0}, "loss.beta=-1.0 must be >= 0"),
    (SCELoss, {"A": 4}, "loss.A=4 must be < 0"),
    (LDRKLLoss, {"lam": 0}, "loss.lam=0 must be > 0"),
    (LDRKLLoss, {"margin": -0.1}, "loss.margin=-0.1 must be >= 0"),
    (ALDRKLLoss, {"alpha": 1}, "loss.alpha=1 must be > 1"),
    (ALDRKLLoss, {"alpha": 0.5}, "loss.alpha=0.5 must be > 1"),
    (ALDRKLLoss, {"lam": -1.0}, "loss.lam=-1.0 must be > 0"),
    (DiceLoss, {"alpha": -0.01}, "loss.alpha=-0.01 must be >= 0"),
    (DiceLoss, {"gamma": 0}, "loss.gamma=0 must be > 0"),
    (ZLoss, {"a": 0}, "loss.a=0 must be > 0"),
    (ZLoss, {"b": float("nan")}, "loss.b=nan must be a finite number"),
    (CELogZLoss, {"coef": -1e-4}, "loss.coef=-0.0001 must be >= 0"),
    (BiasLoss, {"alpha": -0.3}, "loss.alpha=-0.3 must be >= 0"),
    (BiasLoss, {"beta": 1}, "loss.beta=1 must be < 1"),
    (BiasLoss, {"norm": "batch"}, "loss.norm='batch' must be 'local' or 'global'"),
]


@pytest.mark.parametrize(("cls", "kwargs", "message"), BAD, ids=lambda v: str(v)[:30])
def test_bad_hyperparameters_fail_at_construction(cls, kwargs, message):
    with pytest.raises(ValueError) as info:
        cls(**kwargs)
    assert str(info.value) == message


def test_bad_value_from_a_config_surfaces_as_the_root_cause():
    cfg = OmegaConf.load(LOSS_CONF / "gce.yaml")
    cfg.q = 1.5
    with pytest.raises(Exception) as info:
        instantiate(cfg)
    root = info.value
    while root.__cause__ is not None:
        root = root.__cause__
    assert isinstance(root, ValueError) and str(root) == "loss.q=1.5 must be in (0, 1]"


def test_focal_alpha_length_must_match_classes():
    logits, target = batch(0)
    with pytest.raises(ValueError, match="alpha has 3 entries but the logits have 10 classes"):
        FocalLoss(alpha=[1.0, 1.0, 1.0])(logits, target)
