"""Distillation losses (src/xent/losses/distill.py) against independent float64 loop and numpy
references, PLD's identities, teacher isolation, extreme logits and argument checks
(docs/methods/distill.md §1, §2.1–2.4 is the spec)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xent.losses.distill import (
    DIST_EPS,
    DISTLoss,
    DKDLoss,
    KDLoss,
    NKDLoss,
    PLDLoss,
    plackett_luce_nll,
    teacher_optimal_permutation,
)

SEEDS = [0, 1, 2]
RTOL, ATOL = 1e-5, 1e-6
ALL = [KDLoss, DKDLoss, NKDLoss, DISTLoss, PLDLoss]


def triple(seed: int, n: int = 16, k: int = 10, scale: float = 3.0):
    """Student logits, labels, teacher logits; the teacher is right on most rows."""
    gen = torch.Generator().manual_seed(seed)
    student = torch.randn(n, k, generator=gen) * scale
    target = torch.randint(0, k, (n,), generator=gen)
    teacher = torch.randn(n, k, generator=gen) * scale
    teacher[torch.arange(n)[: 3 * n // 4], target[: 3 * n // 4]] += 2 * scale
    return student, target, teacher


def call(loss, student, target, teacher, epoch: int = 1):
    """Pass exactly the extra inputs the loss declares, as the task does."""
    extra = {"epoch": epoch} if "epoch" in loss.requires else {}
    return loss(student, target, teacher, **extra)


def close(actual, expected, rtol=RTOL, atol=ATOL):
    actual = float(actual)
    assert math.isclose(actual, expected, rel_tol=rtol, abs_tol=atol), (actual, expected)


# ----- independent float64 references: plain Python loops over samples -----------------------


def rows(*tensors):
    return [t.double().tolist() for t in tensors]


def log_sum_exp(xs):
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def softmax(xs, tau=1.0):
    z = [x / tau for x in xs]
    lse = log_sum_exp(z)
    return [math.exp(v - lse) for v in z]


def kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True) if pi > 0)


def cross_entropy_ref(s, y):
    return sum(log_sum_exp(row) - row[label] for row, label in zip(s, y, strict=True)) / len(s)


def pld_ref(student, target, teacher, tau):
    s, t, y = *rows(student, teacher), target.tolist()
    total = 0.0
    for row_s, row_t, label in zip(s, t, y, strict=True):
        num_classes = len(row_s)
        others = sorted((j for j in range(num_classes) if j != label), key=lambda j: -row_t[j])
        perm = [label] + others
        weights = softmax(row_t, tau)
        for k in range(num_classes):
            suffix = [row_s[perm[m]] for m in range(k, num_classes)]
            top = max(suffix)
            suffix_lse = top + math.log(sum(math.exp(v - top) for v in suffix))
            total += weights[perm[k]] * (suffix_lse - row_s[perm[k]])
    return total / len(s)


def dkd_parts_ref(student, target, teacher, tau):
    s, t, y = *rows(student, teacher), target.tolist()
    tckd = nckd = 0.0
    for row_s, row_t, label in zip(s, t, y, strict=True):
        p_s, p_t = softmax(row_s, tau), softmax(row_t, tau)
        rest_s = sum(p for j, p in enumerate(p_s) if j != label)
        rest_t = sum(p for j, p in enumerate(p_t) if j != label)
        tckd += kl([p_t[label], rest_t], [p_s[label], rest_s])
        hat_s = [p / rest_s for j, p in enumerate(p_s) if j != label]
        hat_t = [p / rest_t for j, p in enumerate(p_t) if j != label]
        nckd += kl(hat_t, hat_s)
    return tau**2 * tckd / len(s), tau**2 * nckd / len(s)


def nkd_ref(student, target, teacher, tau, gamma):
    s, t, y = *rows(student, teacher), target.tolist()
    total = 0.0
    for row_s, row_t, label in zip(s, t, y, strict=True):
        p_s, p_t = softmax(row_s), softmax(row_t)
        ce = -math.log(p_s[label])
        target_term = -p_t[label] * math.log(p_s[label])
        hat_s = softmax([v for j, v in enumerate(row_s) if j != label], tau)
        hat_t = softmax([v for j, v in enumerate(row_t) if j != label], tau)
        non_target = (
            -gamma * tau**2 * sum(a * math.log(b) for a, b in zip(hat_t, hat_s, strict=True))
        )
        total += ce + target_term + non_target
    return total / len(s)


def dist_ref(student, target, teacher, alpha, beta, gamma, tau):
    """numpy Pearson (np.corrcoef), shrunk by the loss's documented eps guard ‖a‖‖b‖/(‖a‖‖b‖+ε)."""
    s, t = student.double().numpy(), teacher.double().numpy()

    def probs(z):
        z = z / tau
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def mean_corr(a, b):
        out = []
        for ra, rb in zip(a, b, strict=True):
            norms = np.linalg.norm(ra - ra.mean()) * np.linalg.norm(rb - rb.mean())
            out.append(np.corrcoef(ra, rb)[0, 1] * norms / (norms + DIST_EPS))
        return float(np.mean(out))

    y_s, y_t = probs(s), probs(t)
    inter = 1 - mean_corr(y_s, y_t)
    intra = 1 - mean_corr(y_s.T, y_t.T)
    ce = cross_entropy_ref(s.tolist(), target.tolist())
    return alpha * ce + beta * tau**2 * inter + gamma * tau**2 * intra


# ----- 1, 2: PLD ------------------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [5, 100])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tau", [4.0, 1.0])
def test_pld_matches_quadratic_loop_reference(seed, num_classes, tau):
    student, target, teacher = triple(seed, k=num_classes)
    close(PLDLoss(tau=tau)(student, target, teacher), pld_ref(student, target, teacher, tau))


def test_pld_permutation_is_label_then_teacher_descending():
    teacher = torch.tensor([[0.5, 3.0, -1.0, 2.0], [0.5, 3.0, -1.0, 2.0]])
    perm = teacher_optimal_permutation(teacher, torch.tensor([2, 1]))
    assert perm.tolist() == [[2, 1, 3, 0], [1, 3, 0, 2]]


@pytest.mark.parametrize("seed", SEEDS)
def test_pld_with_one_hot_weights_is_cross_entropy(seed):
    student, target, teacher = triple(seed)
    perm = teacher_optimal_permutation(teacher, target)
    one_hot = F.one_hot(torch.zeros_like(target), student.shape[1]).float()
    per_sample = plackett_luce_nll(student, perm, one_hot)
    torch.testing.assert_close(per_sample, F.cross_entropy(student, target, reduction="none"))
    # the same limit through the module: a dominant label logit and a tiny temperature
    teacher = teacher.clone()
    teacher[torch.arange(len(target)), target] = teacher.max() + 10
    close(PLDLoss(tau=1e-3)(student, target, teacher), float(F.cross_entropy(student, target)))


@pytest.mark.parametrize("seed", SEEDS)
def test_pld_is_shift_invariant_nonnegative_with_zero_sum_gradient(seed):
    student, target, teacher = triple(seed, k=20)
    loss = PLDLoss()
    shifts = torch.randn(len(target), 1, generator=torch.Generator().manual_seed(seed)) * 50
    close(loss(student + 7.5, target, teacher), float(loss(student, target, teacher)), 1e-5)
    close(loss(student + shifts, target, teacher), float(loss(student, target, teacher)), 1e-5)
    perm = teacher_optimal_permutation(teacher, target)
    weights = (teacher / loss.tau).softmax(dim=1).gather(1, perm)
    assert (plackett_luce_nll(student, perm, weights) >= 0).all()
    student = student.clone().requires_grad_(True)
    loss(student, target, teacher).backward()
    assert student.grad.abs().sum() > 0
    torch.testing.assert_close(student.grad.sum(dim=1), torch.zeros(len(target)), atol=1e-6, rtol=0)


def pld_app_c(student, target, teacher, tau):
    """The paper's App. C mirror image: teacher ascending, label last, forward logcumsumexp."""
    batch, num_classes = student.shape
    order = torch.argsort(teacher, dim=1)
    rest = order[order != target[:, None]].view(batch, num_classes - 1)
    perm = torch.cat([rest, target[:, None]], dim=1)
    s_perm, t_perm = student.gather(1, perm), teacher.gather(1, perm)
    weights = (t_perm / tau).softmax(dim=1)
    return (weights * (torch.logcumsumexp(s_perm, dim=1) - s_perm)).sum(dim=1).mean()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("num_classes", [5, 100])
def test_pld_matches_the_papers_ascending_formulation(seed, num_classes):
    student, target, teacher = triple(seed, k=num_classes)
    expected = pld_app_c(student.double(), target, teacher.double(), 4.0)
    close(PLDLoss()(student, target, teacher), float(expected))


# ----- 3-5: KD, DKD, NKD, DIST ----------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kwargs", [{}, {"ce_weight": 0.3, "kd_weight": 2.0, "tau": 2.0}])
def test_kd_is_weighted_ce_plus_tau_squared_kl(seed, kwargs):
    student, target, teacher = triple(seed)
    loss = KDLoss(**kwargs)
    tau = loss.tau
    kl_div = F.kl_div(
        F.log_softmax(student / tau, dim=1), F.softmax(teacher / tau, dim=1), reduction="batchmean"
    )
    expected = kl_div * tau**2 * loss.kd_weight + loss.ce_weight * F.cross_entropy(student, target)
    close(loss(student, target, teacher), float(expected))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tau", [4.0, 1.0])
def test_dkd_parts_match_loop_reference(seed, tau):
    student, target, teacher = triple(seed)
    student[::3, :] *= 4  # some confident student rows too
    tckd, nckd = DKDLoss(tau=tau).parts(student, target, teacher)
    tckd_ref, nckd_ref = dkd_parts_ref(student, target, teacher, tau)
    close(tckd, tckd_ref)
    close(nckd, nckd_ref)


@pytest.mark.parametrize("epoch", [1, 10, 20, 40])
def test_dkd_total_ramps_with_min_epoch_over_warmup(epoch):
    student, target, teacher = triple(0)
    loss = DKDLoss(ce_weight=0.7, alpha=0.5, beta=6.0, warmup=20)
    tckd, nckd = dkd_parts_ref(student, target, teacher, loss.tau)
    factor = min(epoch / 20, 1.0)
    ce = cross_entropy_ref(*rows(student), target.tolist())
    expected = 0.7 * ce + factor * (0.5 * tckd + 6.0 * nckd)
    close(loss(student, target, teacher, epoch=epoch), expected)
    assert loss.warmup_factor(epoch) == factor


def test_dkd_warmup_zero_means_no_ramp_and_epoch_is_one_indexed():
    student, target, teacher = triple(1)
    ramped, flat = DKDLoss(warmup=20), DKDLoss(warmup=0)
    close(
        flat(student, target, teacher, epoch=1), float(ramped(student, target, teacher, epoch=20))
    )
    for bad in (0, -1, 1.0, True):
        with pytest.raises(ValueError) as info:
            ramped(student, target, teacher, epoch=bad)
        assert str(info.value) == (
            f"DKDLoss: epoch={bad!r} must be an integer >= 1 (1-indexed, as in mdistiller; "
            "pass current_epoch + 1)"
        )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tau, gamma", [(1.0, 1.5), (3.0, 3.5)])
def test_nkd_matches_loop_reference(seed, tau, gamma):
    student, target, teacher = triple(seed)
    expected = nkd_ref(student, target, teacher, tau, gamma)
    close(NKDLoss(tau=tau, gamma=gamma)(student, target, teacher), expected)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("kwargs", [{}, {"alpha": 0.5, "beta": 1.0, "gamma": 3.0, "tau": 1.0}])
def test_dist_matches_numpy_corrcoef_reference(seed, num_classes, kwargs):
    student, target, teacher = triple(seed, k=num_classes)
    loss = DISTLoss(**kwargs)
    expected = dist_ref(student, target, teacher, loss.alpha, loss.beta, loss.gamma, loss.tau)
    close(loss(student, target, teacher), expected)


def test_dist_of_a_perfectly_correlated_student_is_its_ce():
    student, target, _ = triple(2)
    loss = DISTLoss()
    close(loss(student, target, student), float(F.cross_entropy(student, target)), atol=1e-5)


# ----- 6-8: teacher isolation, extreme logits, argument checks -------------------------------


@pytest.mark.parametrize("cls", ALL)
def test_no_gradient_reaches_the_teacher(cls):
    student, target, teacher = triple(0)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    call(cls(), student, target, teacher, epoch=30).backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0


def extreme(seed: int, n: int = 8, k: int = 10):
    gen = torch.Generator().manual_seed(seed)
    sign = lambda: torch.where(torch.rand(n, k, generator=gen) < 0.5, -1.0, 1.0)  # noqa: E731
    target = torch.randint(0, k, (n,), generator=gen)
    student, teacher = sign() * 1e4, sign() * 1e4
    student[0, target[0]] = -1e4  # a hopeless row
    teacher[1, target[1]] = 1e4  # a confident teacher
    student[2] = 1e4  # all tied at +1e4
    teacher[3] = -1e4
    return student, target, teacher


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("seed", SEEDS)
def test_extreme_logits_give_finite_loss_and_gradients(cls, seed):
    student, target, teacher = extreme(seed)
    student.requires_grad_(True)
    value = call(cls(), student, target, teacher, epoch=30)
    value.backward()
    assert torch.isfinite(value), value
    assert torch.isfinite(student.grad).all()


@pytest.mark.parametrize("cls", ALL)
def test_half_precision_is_computed_in_fp32(cls):
    student, target, teacher = triple(3)
    student, teacher = student.half(), teacher.half()
    value = call(cls(), student, target, teacher)
    assert value.dtype == torch.float32
    close(value, float(call(cls(), student.float(), target, teacher.float())), 1e-6)


@pytest.mark.parametrize("cls", ALL)
def test_teacher_shape_must_match_the_students(cls):
    student, target, teacher = triple(0)
    message = "teacher_logits must have the student logits' shape (16, 10), got (16, 11)"
    with pytest.raises(ValueError, match=re.escape(f"{cls.__name__}: {message}")):
        call(cls(), student, target, torch.cat([teacher, teacher[:, :1]], dim=1))
    with pytest.raises(ValueError, match=re.escape("got (15, 10)")):
        call(cls(), student, target, teacher[1:])


@pytest.mark.parametrize(
    "cls, kwargs, message",
    [
        (KDLoss, {"tau": 0}, "loss.tau=0 must be > 0"),
        (KDLoss, {"ce_weight": -0.1}, "loss.ce_weight=-0.1 must be >= 0"),
        (KDLoss, {"kd_weight": float("nan")}, "loss.kd_weight=nan must be >= 0"),
        (DKDLoss, {"beta": -1}, "loss.beta=-1 must be >= 0"),
        (DKDLoss, {"ce_weight": -2.0}, "loss.ce_weight=-2.0 must be >= 0"),
        (DKDLoss, {"alpha": "1"}, "loss.alpha='1' must be >= 0"),
        (DKDLoss, {"tau": -4.0}, "loss.tau=-4.0 must be > 0"),
        (DKDLoss, {"warmup": -1}, "loss.warmup=-1 must be an integer >= 0 (0: no warm-up)"),
        (DKDLoss, {"warmup": 2.5}, "loss.warmup=2.5 must be an integer >= 0 (0: no warm-up)"),
        (NKDLoss, {"gamma": -0.5}, "loss.gamma=-0.5 must be >= 0"),
        (NKDLoss, {"tau": 0.0}, "loss.tau=0.0 must be > 0"),
        (DISTLoss, {"gamma": -2}, "loss.gamma=-2 must be >= 0"),
        (DISTLoss, {"alpha": -1.0}, "loss.alpha=-1.0 must be >= 0"),
        (DISTLoss, {"beta": -0.5}, "loss.beta=-0.5 must be >= 0"),
        (DISTLoss, {"tau": float("inf")}, "loss.tau=inf must be > 0"),
        (PLDLoss, {"tau": None}, "loss.tau=None must be > 0"),
    ],
)
def test_bad_hyperparameters_fail_at_construction(cls, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        cls(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize("cls", ALL)
def test_requires_and_hparams_round_trip(cls):
    loss = cls()
    expected = ("teacher_logits", "epoch") if cls is DKDLoss else ("teacher_logits",)
    assert loss.requires == expected
    assert cls(**loss.hparams()).hparams() == loss.hparams()


# ----- PLD's fast paths (found by scripts/bench_loss_cost.py) equal the plain definitions -----


@pytest.mark.parametrize("num_classes", [2, 10, 100, 1000])
def test_pld_packed_key_sort_is_the_stable_teacher_order(num_classes):
    from xent.losses.distill import teacher_optimal_permutation

    gen = torch.Generator().manual_seed(num_classes)
    teacher = (torch.randn(32, num_classes, generator=gen) * 3).round()  # many ties
    teacher[0] = 0.0
    teacher[1, ::2] = -0.0  # ties with +0.0, as torch compares them
    teacher[2, 0] = float("inf")
    target = torch.randint(0, num_classes, (32,), generator=gen)
    order = torch.argsort(teacher, dim=1, descending=True, stable=True)
    rest = order[order != target[:, None]].view(32, num_classes - 1)
    expected = torch.cat([target[:, None], rest], dim=1)
    assert torch.equal(teacher_optimal_permutation(teacher, target), expected)  # numpy path
    assert torch.equal(teacher_optimal_permutation(teacher.double(), target), expected)


def test_pld_packed_key_sort_orders_tiny_distinct_logits():
    """Logits of size 1e-7 differ only in their low bits: the order is still by value."""
    gen = torch.Generator().manual_seed(5)
    teacher = torch.randn(8, 10, generator=gen) * 1e-7
    target = torch.randint(0, 10, (8,), generator=gen)
    order = torch.argsort(teacher, dim=1, descending=True, stable=True)
    rest = order[order != target[:, None]].view(8, 9)
    expected = torch.cat([target[:, None], rest], dim=1)
    assert torch.equal(teacher_optimal_permutation(teacher, target), expected)


def test_pld_nll_falls_back_to_log_space_before_subnormals():
    """A suffix sum of one exp(−95) term is subnormal in fp32 (~1e-5 relative error in its
    log): such a row must take the log-space path and match float64 to fp32 rounding."""
    for gap in (-60.0, -95.0, -200.0):
        logits = torch.tensor([[0.0, -1.0, -2.0, gap]])
        perm, weights = torch.arange(4)[None], torch.ones(1, 4)
        ref = plackett_luce_nll(logits.double(), perm, weights.double()).item()
        assert plackett_luce_nll(logits, perm, weights).item() == pytest.approx(ref, abs=1e-6)


def test_kl_from_logs_skips_zero_probability_entries():
    from xent.losses.distill import kl_from_logs

    log_p = torch.tensor(
        [[0.0, float("-inf"), float("-inf")], [math.log(0.25), math.log(0.75), float("-inf")]]
    )
    log_q = torch.tensor([[-1.0, -2.0, -3.0], [math.log(0.5), math.log(0.25), math.log(0.25)]])
    expected = [1.0, 0.25 * math.log(0.5) + 0.75 * math.log(3.0)]
    assert kl_from_logs(log_p, log_q).tolist() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("scale", [3.0, 1e4])  # 1e4: beyond float64's range, the fallback
def test_pld_linear_space_nll_matches_the_logcumsumexp_reference(scale):
    from xent.losses.distill import _plackett_luce_nll_logspace, plackett_luce_nll

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 100, generator=gen, dtype=torch.float64) * scale
    perm = torch.argsort(torch.rand(16, 100, generator=gen), dim=1)
    weights = torch.rand(16, 100, generator=gen, dtype=torch.float64)
    grad = torch.randn(16, generator=gen, dtype=torch.float64)
    found, expected = [], []
    for fn, out in ((plackett_luce_nll, found), (_plackett_luce_nll_logspace, expected)):
        x, w = logits.clone().requires_grad_(True), weights.clone().requires_grad_(True)
        value = fn(x, perm, w)
        (value * grad).sum().backward()
        out += [value, x.grad, w.grad]
    for a, b in zip(found, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * scale)
    small = torch.argsort(torch.rand(3, 6, generator=gen), dim=1)
    inputs = (
        (logits[:3, :6] / scale).requires_grad_(True),
        small,
        weights[:3, :6].requires_grad_(True),
    )
    assert torch.autograd.gradcheck(plackett_luce_nll, inputs)


@pytest.mark.parametrize(
    ("cls", "defaults"),
    [
        (PLDLoss, {"tau": 4.0}),
        (KDLoss, {"ce_weight": 0.1, "kd_weight": 0.9, "tau": 4.0}),
        (DKDLoss, {"ce_weight": 1.0, "alpha": 1.0, "beta": 8.0, "tau": 4.0, "warmup": 20}),
        (NKDLoss, {"tau": 1.0, "gamma": 1.5}),
        (DISTLoss, {"alpha": 1.0, "beta": 2.0, "gamma": 2.0, "tau": 4.0}),
    ],
)
def test_class_defaults_are_the_papers(cls, defaults):
    """The loss classes' own defaults (docs/methods/distill.md §2), not only their YAML
    files'."""
    assert cls().hparams() == defaults
