"""The loss zoo's shared machinery (src/xent/losses/_common.py) and the details of focal,
LDR-KL / ALDR-KL that tests/test_losses.py leaves open: exact error messages, float64 inputs
computed in float64, state across devices and checkpoints, the documented defaults.

Every loss here is built inside its test (mutation testing runs the test body, not the module
import)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class
from omegaconf import ListConfig, OmegaConf

from xent.losses import (
    ALDRKLLoss,
    BiasLoss,
    CELogZLoss,
    CompSumLoss,
    DiceLoss,
    FocalLoss,
    GCELoss,
    HLGaussLoss,
    LDRKLLoss,
    MAELoss,
    SCELoss,
    ZLoss,
)
from xent.losses._common import (
    EXP_CLAMP,
    Loss,
    clamped_expm1,
    log1m_softmax,
    log1m_target_prob,
    target_log_prob,
)

LOSS_CONF = Path(__file__).resolve().parents[1] / "src" / "xent" / "conf" / "loss"
K = 10


def batch(seed: int, n: int = 16, k: int = K, scale: float = 3.0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, k, generator=gen) * scale).to(dtype)
    target = torch.randint(0, k, (n,), generator=gen)
    return logits, target


def log_softmax_row(row: list[float]) -> list[float]:
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


# ----- the shared helpers against float64 loops -----------------------------------------


def test_log_prob_helpers_match_float64_loops():
    logits, target = batch(0, dtype=torch.float64)
    logits[0, target[0]] += 40.0  # p_y within 1e-17 of 1: 1 − p_y only survives in log space
    log_py = target_log_prob(logits, target)
    log1m = log1m_target_prob(logits, target)
    every = log1m_softmax(logits)
    for i, (row, y) in enumerate(zip(logits.tolist(), target.tolist(), strict=True)):
        logp = log_softmax_row(row)
        assert log_py[i].item() == pytest.approx(logp[y], rel=1e-12, abs=1e-13)
        # log(1 − p_y) = logsumexp_{k≠y} s_k − logsumexp_k s_k
        m = max(v for k, v in enumerate(row) if k != y)
        lse_others = m + math.log(sum(math.exp(v - m) for k, v in enumerate(row) if k != y))
        expected = lse_others - (row[0] - logp[0])
        assert log1m[i].item() == pytest.approx(expected, rel=1e-12)
        for k in range(K):
            m = max(v for j, v in enumerate(row) if j != k)
            lse_k = m + math.log(sum(math.exp(v - m) for j, v in enumerate(row) if j != k))
            assert every[i, k].item() == pytest.approx(lse_k - (row[0] - logp[0]), rel=1e-12)
    assert math.isfinite(log1m[0].item()) and log1m[0].item() < -30  # not log(0)


def test_clamped_expm1_is_exact_below_and_linear_beyond_the_clamp():
    # (not at e = EXP_CLAMP itself: torch's clamp has a zero gradient exactly at its bound)
    points = [-3.0, 0.5, EXP_CLAMP - 1, EXP_CLAMP - 1e-9, EXP_CLAMP + 1e-9, EXP_CLAMP + 2, 1e4]
    e = torch.tensor(points, dtype=torch.float64)
    e.requires_grad_(True)
    value = clamped_expm1(e)
    value.sum().backward()
    slope = math.exp(EXP_CLAMP)
    for v, x, g in zip(value.tolist(), e.tolist(), e.grad.tolist(), strict=True):
        if x <= EXP_CLAMP:
            assert v == pytest.approx(math.expm1(x), rel=1e-14)
            assert g == pytest.approx(math.exp(x), rel=1e-14)
        else:
            assert v == pytest.approx(math.expm1(EXP_CLAMP) + slope * (x - EXP_CLAMP), rel=1e-14)
            assert g == pytest.approx(slope, rel=1e-14)


# ----- Loss.prepare: the (logits, target) checks ------------------------------------------


@pytest.mark.parametrize(
    ("logits", "target", "message"),
    [
        (
            torch.zeros(4),
            torch.zeros(4, dtype=torch.long),
            "FocalLoss expects logits (B, K) and integer targets (B,), got (4,) and (4,)",
        ),
        (
            torch.zeros(4, 3),
            torch.zeros(4, 1, dtype=torch.long),
            "FocalLoss expects logits (B, K) and integer targets (B,), got (4, 3) and (4, 1)",
        ),
        (
            torch.zeros(4, 3),
            torch.zeros(5, dtype=torch.long),
            "FocalLoss expects logits (B, K) and integer targets (B,), got (4, 3) and (5,)",
        ),
        (
            torch.zeros(4, 1),
            torch.zeros(4, dtype=torch.long),
            "FocalLoss needs at least 2 classes, got 1",
        ),
        (
            torch.zeros(4, 3),
            torch.zeros(4),
            "FocalLoss takes hard integer labels, got torch.float32",
        ),
    ],
)
def test_prepare_rejects_bad_pairs_with_one_line(logits, target, message):
    with pytest.raises(ValueError) as info:
        FocalLoss()(logits, target)
    assert str(info.value) == message


def test_prepare_accepts_two_classes_and_upcasts_only_half_precision():
    loss = FocalLoss(gamma=0)
    target = torch.tensor([0, 1, 1])
    two = torch.tensor([[1.0, -1.0], [0.5, 0.25], [-2.0, 3.0]])
    expected = torch.nn.functional.cross_entropy(two, target)
    close = dict(rel=1e-6)
    assert loss(two, target).item() == pytest.approx(expected.item(), **close)
    for half in (torch.float16, torch.bfloat16):
        value = loss(two.to(half), target)
        assert value.dtype == torch.float32
        assert value.item() == pytest.approx(loss(two.to(half).float(), target).item(), **close)
    assert loss(two.double(), target).dtype == torch.float64
    prepared = Loss().prepare(two.double(), target)
    assert prepared.dtype == torch.float64 and torch.equal(prepared, two.double())
    assert Loss().prepare(two.half(), target).dtype == torch.float32


def test_repr_lists_the_hyperparameters():
    assert repr(FocalLoss(gamma=0.5)) == "FocalLoss(gamma=0.5, alpha=None)"
    assert repr(LDRKLLoss(margin=0.25, lam=2)) == "LDRKLLoss(margin=0.25, lam=2.0)"
    assert repr(Loss()) == "Loss()" and Loss().hparams() == {}
    assert Loss().loss_name == "Loss" and ALDRKLLoss().loss_name == "ALDRKLLoss"


# ----- number / integer: the construction checks ------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: FocalLoss(gamma=True), "loss.gamma=True must be >= 0"),
        (lambda: FocalLoss(gamma=float("inf")), "loss.gamma=inf must be >= 0"),
        (lambda: FocalLoss(gamma=None), "loss.gamma=None must be >= 0"),
        (lambda: HLGaussLoss(num_bins=True), "loss.num_bins=True must be an integer >= 2"),
        (lambda: HLGaussLoss(num_bins=3.0), "loss.num_bins=3.0 must be an integer >= 2"),
        (lambda: HLGaussLoss(v_min=float("nan")), "loss.v_min=nan must be a finite number"),
        (lambda: HLGaussLoss(v_min="0"), "loss.v_min='0' must be a finite number"),
        (
            lambda: FocalLoss(alpha="0.25"),
            "loss.alpha='0.25' must be null or a list of per-class weights >= 0",
        ),
        (
            lambda: FocalLoss(alpha=0.25),
            "loss.alpha=0.25 must be null or a list of per-class weights >= 0",
        ),
        (
            lambda: FocalLoss(alpha=[]),
            "loss.alpha=[] must be null or a list of per-class weights >= 0",
        ),
        (
            lambda: FocalLoss(alpha=[1.0, float("nan")]),
            "loss.alpha=[1.0, nan] must be null or a list of per-class weights >= 0",
        ),
        (lambda: ALDRKLLoss(margin=-0.1), "loss.margin=-0.1 must be >= 0"),
        (lambda: ALDRKLLoss(lam=0), "loss.lam=0 must be > 0"),
        (lambda: LDRKLLoss(lam=-2.0), "loss.lam=-2.0 must be > 0"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_values_raise_the_one_line_error(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert str(info.value) == message


def test_boundary_values_are_accepted_and_stored_as_plain_numbers():
    focal = FocalLoss(gamma=0, alpha=[0, 0.5, 2])
    assert type(focal.gamma) is float and focal.gamma == 0.0
    assert focal.hparams() == {"gamma": 0.0, "alpha": [0.0, 0.5, 2.0]}
    aldr = ALDRKLLoss(margin=0, lam=1, alpha=1.5)
    assert aldr.hparams() == {"margin": 0.0, "lam": 1.0, "alpha": 1.5}
    assert all(type(v) is float for v in aldr.hparams().values())
    hl = HLGaussLoss(v_min=-1, v_max=1, num_bins=2)
    assert hl.num_bins == 2 and type(hl.num_bins) is int and type(hl.v_min) is float
    assert LDRKLLoss(margin=0).margin == 0.0


def test_every_loss_config_is_the_class_defaults():
    """A loss built without arguments is its config (the paper / reference-code defaults the
    configs document), and hparams() names the constructor arguments."""
    checked = 0
    for path in sorted(LOSS_CONF.glob("*.yaml")):
        cfg = OmegaConf.load(path)
        cfg.pop("defaults", None)
        values = OmegaConf.to_container(cfg, resolve=True)
        target = values.pop("_target_")
        if not target.startswith("xent.losses."):
            continue
        cls = get_class(target)
        assert cls().hparams() == values, path.stem
        assert cls(**values).hparams() == values, path.stem
        checked += 1
    assert checked >= 18


# ----- focal ------------------------------------------------------------------------------


def ref_focal_mean(logits, target, gamma, alpha=None):
    total = 0.0
    for row, y in zip(logits.double().tolist(), target.tolist(), strict=True):
        logp = log_softmax_row(row)[y]
        a = 1.0 if alpha is None else alpha[y]
        total += -a * (1 - math.exp(logp)) ** gamma * logp
    return total / len(target)


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0, 0.25])
def test_focal_matches_float64_reference_for_every_gamma(gamma):
    logits, target = batch(1, dtype=torch.float64)
    alpha = [k / 8 for k in range(K)]  # exact in fp32: the float64 result stays exact
    for a in (None, alpha):
        value = FocalLoss(gamma=gamma, alpha=a)(logits, target)
        assert value.dtype == torch.float64
        assert value.item() == pytest.approx(ref_focal_mean(logits, target, gamma, a), rel=1e-12)


def test_focal_alpha_is_not_checkpointed_and_accepts_config_lists():
    loss = FocalLoss(alpha=ListConfig([0.25, 0.5, 1.0]))
    assert loss.hparams()["alpha"] == [0.25, 0.5, 1.0]
    assert loss.state_dict() == {}  # derived from the config: not part of a checkpoint
    assert FocalLoss(alpha=(1.0, 2.0)).hparams()["alpha"] == [1.0, 2.0]
    assert FocalLoss().state_dict() == {}
    FocalLoss(alpha=[0.25, 0.5, 1.0]).load_state_dict({})  # strict: nothing expected


def test_focal_alpha_follows_the_logits_device():
    logits, target = batch(2, k=4)
    loss = FocalLoss(alpha=[0.25, 0.5, 1.0, 2.0])  # its buffer stays on the CPU
    value = loss(logits.to("meta"), target.to("meta"))
    assert value.device.type == "meta" and value.shape == ()


# ----- float64 in, float64 out ------------------------------------------------------------


def ref_ldr_mean(logits, target, margin, lam):
    total = 0.0
    for row, y in zip(logits.double().tolist(), target.tolist(), strict=True):
        terms = [
            math.exp(((margin if k != y else 0.0) + v - row[y]) / lam) for k, v in enumerate(row)
        ]
        total += lam * math.log(sum(terms) / len(row))
    return total / len(target)


def test_float64_logits_are_computed_in_float64():
    logits, target = batch(3, dtype=torch.float64)
    for margin, lam in [(0.1, 10.0), (2.0, 1.0), (0.3, 0.7)]:
        value = LDRKLLoss(margin=margin, lam=lam)(logits, target)
        assert value.dtype == torch.float64
        assert value.item() == pytest.approx(ref_ldr_mean(logits, target, margin, lam), rel=1e-12)
    others = [
        CompSumLoss(tau=0.5),
        GCELoss(q=0.7),
        MAELoss(),
        SCELoss(),
        DiceLoss(),
        ZLoss(),
        CELogZLoss(),
    ]
    for loss in others:
        value = loss(logits, target)
        assert value.dtype == torch.float64
        assert value.item() == pytest.approx(loss(logits.float(), target).item(), rel=1e-5)
    assert BiasLoss()(logits, target, features=logits.abs()).dtype == torch.float64


# ----- per-sample state (PerSampleState through ALDR-KL) ----------------------------------


@pytest.mark.parametrize("bad", [0, -3, True, 2.0, "8", None])
def test_setup_samples_needs_a_positive_int(bad):
    loss = ALDRKLLoss()
    with pytest.raises(ValueError) as info:
        loss.setup_samples(bad)
    assert str(info.value) == f"ALDRKLLoss.setup_samples: num_samples={bad!r} < 1"


def test_setup_samples_allocates_at_the_size_and_keeps_the_device():
    loss = ALDRKLLoss(lam=3.0)
    assert loss.num_samples is None and loss.lam_i is None
    loss.setup_samples(1)
    assert loss.num_samples == 1 and torch.equal(loss.lam_i, torch.tensor([3.0]))
    loss.to("meta")
    loss.setup_samples(5)  # reallocated where the state already lives
    assert loss.lam_i.device.type == "meta" and loss.lam_i.shape == (5,)
    assert loss.num_samples == 5


def test_state_index_messages_and_device_moves():
    loss = ALDRKLLoss()
    logits = torch.zeros(3, K)
    with pytest.raises(ValueError) as info:
        loss.state_index(None, logits)
    assert str(info.value) == (
        "ALDRKLLoss needs 'index' (the batch's dataset indices) to look up its per-sample "
        "state; the task must pass index=..."
    )
    with pytest.raises(RuntimeError) as info:
        loss.state_index(torch.arange(3), logits)
    assert str(info.value) == (
        "ALDRKLLoss got 'index' before setup_samples(num_samples) was called with the "
        "training-set size"
    )
    loss.setup_samples(6)
    for index in (torch.arange(2), torch.arange(3)[:, None]):
        with pytest.raises(ValueError) as info:
            loss.state_index(index, logits)
        assert str(info.value) == (
            f"ALDRKLLoss: index must have shape (3,), got {tuple(index.shape)}"
        )
    index = loss.state_index(torch.tensor([5, 0, 2], dtype=torch.int32), logits)
    assert index.dtype == torch.long and index.tolist() == [5, 0, 2]
    state = loss.lam_i
    assert loss.state_index(torch.arange(3), logits).device.type == "cpu"
    assert loss.lam_i is state  # same device: left alone
    index = loss.state_index(torch.arange(3), logits.to("meta"))
    assert index.device.type == "meta" and index.dtype == torch.long
    assert loss.lam_i.device.type == "meta" and loss.lam_i.shape == (6,)


def test_loading_a_checkpoint_sizes_fresh_state_and_rejects_a_mismatch():
    loss = ALDRKLLoss(lam=1.0)
    loss.setup_samples(20)
    logits, target = batch(4)
    loss(logits, target, index=torch.arange(16))
    saved = {k: v.clone() for k, v in loss.state_dict().items()}
    wrapped = torch.nn.Sequential(ALDRKLLoss(lam=1.0))  # under a prefix, as in a task
    wrapped.load_state_dict({"0." + k: v for k, v in saved.items()})
    assert wrapped[0].num_samples == 20 and torch.equal(wrapped[0].lam_i, saved["lam_i"])
    other = ALDRKLLoss(lam=1.0)
    other.setup_samples(30)  # a different training set: the checkpoint does not fit
    with pytest.raises(RuntimeError, match="size mismatch"):
        other.load_state_dict(saved)
    assert other.num_samples == 30 and other.lam_i.shape == (30,)
    empty = ALDRKLLoss()
    empty.load_state_dict({}, strict=False)  # nothing saved: stays un-setup
    assert empty.lam_i is None and empty.num_samples is None


# ----- ALDR-KL's λ range and penalty ------------------------------------------------------


def test_aldr_kl_lambda_stays_in_its_documented_range_despite_rounding():
    """λ_i ∈ [λ₀(1 − 1/α), λ₀] exactly: fp32 rounding of the KL would step just outside it
    (one-hot row, K = 10: below the bound; uniform row, K = 7: above λ₀)."""
    loss = ALDRKLLoss(lam=1.0, alpha=1.5)
    loss.setup_samples(2)
    peaked = torch.full((1, 10), -1e4)
    peaked[0, 3] = 1e4
    loss(peaked, torch.tensor([3]), index=torch.tensor([0]))
    loss(torch.zeros(1, 7), torch.tensor([0]), index=torch.tensor([1]))
    low, high = 1.0 * (1 - 1 / 1.5), 1.0
    assert bool((loss.lam_i >= low).all()) and bool((loss.lam_i <= high).all())
    assert loss.lam_i.tolist() == pytest.approx([low, high], rel=1e-6)


@pytest.mark.parametrize(("lam0", "alpha"), [(0.5, 3.0), (4.0, 1.5)])
def test_aldr_kl_value_with_lambda_not_one(lam0, alpha):
    """The penalty −(α·log K/(2λ₀))(λ − λ₀)² at λ₀ ≠ 1, and the stored λ after a visit."""
    logits, target = batch(5, dtype=torch.float64)
    loss = ALDRKLLoss(margin=0.2, lam=lam0, alpha=alpha)
    loss.setup_samples(16)
    total, lams = 0.0, []
    for row, y in zip(logits.tolist(), target.tolist(), strict=True):
        q = [math.exp(v) for v in log_softmax_row([v / lam0 for v in row])]
        kl = sum(qk * math.log(qk * K) for qk in q if qk > 0)
        lam = lam0 - lam0 * kl / (alpha * math.log(K))
        terms = [math.exp(((0.2 if k != y else 0.0) + v - row[y]) / lam) for k, v in enumerate(row)]
        ldr = lam * math.log(sum(terms) / K)
        total += ldr - alpha * math.log(K) / (2 * lam0) * (lam - lam0) ** 2
        lams.append(lam)
    value = loss(logits, target, index=torch.arange(16))
    assert value.item() == pytest.approx(total / 16, rel=1e-6)
    assert loss.lam_i.tolist() == pytest.approx(lams, rel=1e-6)
    assert max(lams) - min(lams) > 0.01 * lam0  # the adaptation is visible


# ----- bias, GCE, SCE: boundaries the reference tests do not reach -------------------------


def test_bias_loss_alpha_zero_is_scaled_ce_and_features_are_checked():
    logits, target = batch(6)
    feats = torch.randn(16, 4, 3, 3)
    ce = torch.nn.functional.cross_entropy(logits, target).item()
    assert BiasLoss(alpha=0, beta=0)(logits, target, features=feats).item() == pytest.approx(ce)
    value = BiasLoss(alpha=0, beta=-0.5)(logits, target, features=feats).item()
    assert value == pytest.approx(1.5 * ce, rel=1e-6)
    with pytest.raises(ValueError) as info:
        BiasLoss()(logits, target)
    assert str(info.value) == (
        "BiasLoss needs 'features' (the last conv feature map, (B, C, H, W) or (B, D)); "
        "the task must pass features=..."
    )
    for bad in (torch.randn(16), torch.randn(8, 4)):
        with pytest.raises(ValueError) as info:
            BiasLoss()(logits, target, features=bad)
        assert str(info.value) == (
            f"BiasLoss: features must be (B, ...) with B = 16, got {tuple(bad.shape)}"
        )


def test_truncated_gce_prunes_a_sample_exactly_at_k():
    """The rule is w = 1[p_y > k]: p_y = k exactly (two equal logits, k = 1/2) is pruned."""
    loss = GCELoss(k=0.5, start=0, every=1)
    loss.setup_samples(2)
    logits = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    loss(logits, torch.tensor([0, 0]), index=torch.arange(2))
    assert loss.weight.tolist() == [0.0, 1.0]
    fresh = GCELoss(k=0.5)
    fresh.setup_samples(2)
    fresh.prune(logits, torch.tensor([0, 0]), torch.arange(2))
    assert fresh.weight.tolist() == [0.0, 1.0]


@pytest.mark.parametrize("bad", [0, 0.0, 0.5])
def test_sce_a_must_be_negative(bad):
    with pytest.raises(ValueError) as info:
        SCELoss(A=bad)
    assert str(info.value) == f"loss.A={bad!r} must be < 0"


@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.0])
def test_dice_matches_float64_reference_for_integer_alpha(alpha):
    """p̃_k = (1 − p_k)^α p_k; α = 1 is no special case (only α = 0 skips the log1m term)."""
    logits, target = batch(7, dtype=torch.float64)
    total = 0.0
    for row, y in zip(logits.tolist(), target.tolist(), strict=True):
        p = [math.exp(v) for v in log_softmax_row(row)]
        for k, pk in enumerate(p):
            pt, yk = (1 - pk) ** alpha * pk, 1.0 if k == y else 0.0
            total += 1 - (2 * pt * yk + 1.0) / (pt * pt + yk * yk + 1.0)
    value = DiceLoss(alpha=alpha, gamma=1.0)(logits, target)
    assert value.item() == pytest.approx(total / len(target), rel=1e-12)


def test_truncated_gce_start_none_leaves_pruning_to_the_task():
    logits, target = batch(8)
    loss = GCELoss(k=0.5, start=None)
    assert loss.hparams() == {"q": 0.7, "k": 0.5, "start": None, "every": 10}
    loss.setup_samples(16)
    for _ in range(3):
        loss(logits, target, index=torch.arange(16))
    assert bool((loss.weight == 1).all()) and loss.visits.tolist() == [3] * 16
    loss.prune(logits, target, torch.arange(16))
    p_y = logits.softmax(-1).gather(1, target[:, None]).squeeze(1)
    assert torch.equal(loss.weight, (p_y > 0.5).float())
