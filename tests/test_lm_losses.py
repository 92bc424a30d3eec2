"""Token losses of task=lm (issue 19): the head modes agree, CE/z-loss/label smoothing match
their formulas, EMO matches the emoloss package, DCO is stable and N = 1 is sequence CE."""

from __future__ import annotations

import math
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from emo import EMOLoss as reference_emo
from torch.utils._python_dispatch import TorchDispatchMode

from xent.losses import CELogZLoss, lm_head
from xent.losses.dco import DCOLoss, dco_from_log_prob
from xent.losses.emo import EMOLoss, transport_cost
from xent.losses.lm import IGNORE_INDEX, LMLoss, TokenCE, as_lm_loss

B, T, D, V = 3, 6, 16, 40


def batch(dtype=torch.float32, seed=0):
    """hidden (B, T, D), weight (V, D) requiring grad; targets with a masked prompt per row,
    one fully masked row (padding) and answers of different lengths."""
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, D, generator=gen, dtype=dtype).requires_grad_()
    weight = torch.randn(V, D, generator=gen, dtype=dtype).requires_grad_()
    target = torch.randint(V, (B, T), generator=gen)
    target[0, :2] = IGNORE_INDEX  # answer of 4 tokens
    target[1, :5] = IGNORE_INDEX  # answer of 1 token
    target[2, :] = IGNORE_INDEX  # no answer
    return hidden, weight, target


def run(loss: LMLoss, head: str, dtype=torch.float64):
    """Loss value, lse_mean and the gradients of hidden and weight."""
    hidden, weight, target = batch(dtype)
    out = loss(hidden, weight, target, head)
    out.loss.backward()
    return out.loss.detach(), out.lse_mean, hidden.grad, weight.grad


def dense_logits(hidden, weight, target):
    kept = target != IGNORE_INDEX
    return hidden[kept] @ weight.T, target[kept]


LOSSES = {
    "ce": TokenCE(),
    "label_smoothing": TokenCE(label_smoothing=0.1),
    "z_loss": TokenCE(z_coef=1e-2),
    "smoothing_and_z": TokenCE(label_smoothing=0.2, z_coef=1e-3),
    "dco": DCOLoss(n=16),
}


@pytest.fixture(params=["torch_fused", "ours"])
def chunked_impl(request, monkeypatch):
    """lm.head=chunked through torch's fused op and through our ChunkedLogSumExp fallback."""
    if request.param == "ours":
        monkeypatch.setattr(lm_head, "torch_fused_available", lambda: False)
    return request.param


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chunked_head_equals_dense(name, dtype, chunked_impl):
    loss = LOSSES[name]
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 0}
    for dense, chunked in zip(run(loss, "dense", dtype), run(loss, "chunked", dtype), strict=True):
        torch.testing.assert_close(chunked, dense, **tol)


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any op produces (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out


@pytest.mark.parametrize("loss", [TokenCE(), TokenCE(z_coef=1e-4, label_smoothing=0.1)])
@pytest.mark.parametrize("head", ["dense", "chunked"])
def test_only_dense_head_holds_the_logits(head, loss, chunked_impl):
    """N = 256 tokens, D = 16, V = 1024: the dense head makes (N, V) tensors; chunked's largest
    tensor is the weight's gradient (V, D), 1/16 of the logits (its logit chunks are 4 rows)."""
    n, vocab = 256, 1024
    hidden = torch.randn(1, n, D, requires_grad=True)
    weight = torch.randn(vocab, D, requires_grad=True)
    target = torch.randint(vocab, (1, n))
    with LargestTensor() as largest:
        loss(hidden, weight, target, head).loss.backward()
    assert largest.numel == (n * vocab if head == "dense" else vocab * D)


@pytest.mark.parametrize(
    ("is_cuda", "dtype", "bf16_gpu", "impl"),
    [
        (True, torch.bfloat16, True, "cce"),
        (True, torch.float16, True, "cce"),
        # float32 embeddings: CCE's kernel backward asserts half precision (seen on an H200)
        (True, torch.float32, True, "torch_compile"),
        (True, torch.bfloat16, False, "torch_compile"),  # pre-Ampere
        (False, torch.bfloat16, True, "torch_compile"),  # the CPU
    ],
)
def test_cce_kernels_only_for_half_precision_on_an_ampere_gpu(
    monkeypatch, is_cuda, dtype, bf16_gpu, impl
):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16_gpu)
    assert lm_head.cce_impl(SimpleNamespace(is_cuda=is_cuda, dtype=dtype)) == impl


def test_autocast_inputs_take_the_autocast_dtype_only_under_autocast():
    hidden, weight = torch.randn(4, D), torch.randn(V, D)
    assert all(
        a is b
        for a, b in zip(lm_head.autocast_inputs(hidden, weight), (hidden, weight), strict=True)
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = lm_head.autocast_inputs(hidden, weight)
    for got, given in zip(cast, (hidden, weight), strict=True):
        assert got.dtype == torch.bfloat16 and torch.equal(got, given.to(torch.bfloat16))


def test_chunk_rows_matches_the_input_size():
    assert lm_head.chunk_rows(8192, 512, 32768) == 128  # 128 x 32768 logits = 8192 x 512
    assert lm_head.chunk_rows(8192, 512, 131072) == 32
    assert lm_head.chunk_rows(100, 512, 32768) == 1
    assert lm_head.chunk_rows(64, 512, 100) == 256  # a power of two below 64 * 512 / 100


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_token_ce_is_torch_cross_entropy(smoothing):
    """Independent reference: F.cross_entropy on the materialised logits, ignore_index=-100."""
    hidden, weight, target = batch()
    out = TokenCE(label_smoothing=smoothing)(hidden, weight, target)
    logits = hidden.reshape(-1, D) @ weight.T
    expected = F.cross_entropy(logits, target.reshape(-1), label_smoothing=smoothing)
    torch.testing.assert_close(out.loss, expected)
    kept_logits, _ = dense_logits(hidden, weight, target)
    torch.testing.assert_close(out.lse_mean, kept_logits.logsumexp(-1).mean())


def test_z_loss_adds_coef_times_mean_squared_lse():
    """PaLM: CE + z·(log Z)², averaged over trained tokens (docs/methods/lm_losses.md §2); the
    value and the gradient of t5x's custom VJP, (1 + 2·z·lse)·softmax − onehot, on the logits."""
    hidden, weight, target = batch(torch.float64)
    logits, kept_target = dense_logits(hidden, weight, target)
    logits = logits.detach().requires_grad_()
    out = TokenCE(z_coef=1e-2)(
        logits[None], torch.eye(len(logits.T), dtype=logits.dtype), kept_target[None]
    )
    lse = logits.logsumexp(-1)
    expected = F.cross_entropy(logits, kept_target) + 1e-2 * lse.square().mean()
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    t5x = (1 + 2 * 1e-2 * lse[:, None]) * logits.softmax(-1) - F.one_hot(kept_target, V)
    torch.testing.assert_close(logits.grad, t5x.detach() / len(logits))


def test_as_lm_loss_maps_the_classify_configs():
    ce = as_lm_loss(torch.nn.CrossEntropyLoss(label_smoothing=0.1))
    assert (type(ce), ce.label_smoothing, ce.z_coef, ce.name) == (TokenCE, 0.1, 0.0, "ce")
    z = as_lm_loss(CELogZLoss(coef=1e-4))
    assert (type(z), z.label_smoothing, z.z_coef, z.name) == (TokenCE, 0.0, 1e-4, "ce_logz")
    dco = DCOLoss()
    assert as_lm_loss(dco) is dco
    with pytest.raises(TypeError, match="^MSELoss is not a token loss$"):
        as_lm_loss(torch.nn.MSELoss())


# -- check_head --------------------------------------------------------------------------------
def check_head_message(loss: LMLoss, head: str) -> str:
    with pytest.raises(ValueError) as err:
        loss.check_head(head)
    return str(err.value)


def test_check_head_refuses_an_unknown_head():
    assert check_head_message(TokenCE(), "sparse") == (
        "lm.head=sparse must be one of dense, chunked, cce"
    )


@pytest.mark.parametrize("head", ["chunked", "cce"])
def test_check_head_refuses_emo_with_a_memory_lean_head(head):
    assert check_head_message(EMOLoss(), head) == (
        f"lm.head={head} must be dense with loss=emo: it needs the softmax over the whole "
        "vocabulary, which the memory-lean heads never hold"
    )
    with pytest.raises(ValueError, match=f"^lm.head={head} must be dense with loss=emo"):
        EMOLoss()(*batch(), head=head)


def test_check_head_refuses_cce_without_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "cut_cross_entropy", None)  # import raises ImportError
    assert check_head_message(TokenCE(), "cce") == (
        "lm.head=cce needs the cut-cross-entropy package, which does not import (import of "
        "cut_cross_entropy halted; None in sys.modules); install it with "
        "pip install 'xent[cce]' (the cut-cross-entropy package), or use lm.head=chunked"
    )


@pytest.mark.parametrize("loss", [TokenCE(), DCOLoss(), EMOLoss()])
def test_check_head_accepts_what_runs(loss):
    for head in ("dense",) if loss.needs_full_logits else lm_head.HEADS:
        loss.check_head(head)


# -- EMO ---------------------------------------------------------------------------------------
def package_emo(hidden, weight, target, mode):
    """The emoloss package's EMOLoss on our (already shifted) targets: it drops the last
    logit and the first label of each row, so pad both by one position."""
    logits = hidden @ weight.T
    logits = torch.cat([logits, torch.zeros_like(logits[:, :1])], dim=1)
    labels = torch.cat([torch.full_like(target[:, :1], IGNORE_INDEX), target], dim=1)
    return reference_emo(logits, labels, weight.detach(), mode=mode)


@pytest.mark.parametrize("mode", [1, 2])
def test_emo_matches_the_emoloss_package(mode):
    """Value and gradients. The package is given the head weight detached as its cost
    embedding, so the weight's gradient agrees only if ours detaches it too."""
    ours = run(EMOLoss(mode=mode), "dense")
    hidden, weight, target = batch(torch.float64)
    package_emo(hidden, weight, target, mode).backward()
    expected = (package_emo(hidden, weight, target, mode).detach(), None, hidden.grad, weight.grad)
    for got, want in zip(ours, expected, strict=True):
        if want is not None:
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_emo_mode1_caps_the_ratio_at_three():
    """Tokens whose CE/EMO ratio exceeds 3 are where the cap acts; one token made likely
    (its hidden state along its target's embedding) stays below it."""
    hidden, weight, target = batch(torch.float64)
    with torch.no_grad():
        hidden[1, 5] = 3 * weight[target[1, 5]]
    logits, kept_target = dense_logits(hidden, weight, target)
    ce = F.cross_entropy(logits, kept_target, reduction="none")
    emo = transport_cost(logits.softmax(-1), weight.detach(), kept_target)
    assert (ce / emo > 3).any() and (ce / emo < 3).any()
    expected = (0.5 * ((ce / emo).clamp(max=3) * emo + ce)).mean()
    torch.testing.assert_close(EMOLoss()(hidden, weight, target).loss, expected)


def test_transport_cost_is_the_explicit_earth_mover_bound():
    """Σ_i Σ_j Q(i)·P(j)·C(i, j) with C = 1 − cos built as a full V × V matrix, P one-hot."""
    gen = torch.Generator().manual_seed(1)
    probs = torch.randn(5, V, generator=gen, dtype=torch.float64).softmax(-1)
    embedding = torch.randn(V, D, generator=gen, dtype=torch.float64)
    target = torch.randint(V, (5,), generator=gen)
    cost = 1 - F.cosine_similarity(embedding[:, None], embedding[None], dim=-1)
    onehot = F.one_hot(target, V).to(probs.dtype)
    expected = torch.einsum("ni,nj,ij->n", probs, onehot, cost)
    torch.testing.assert_close(transport_cost(probs, embedding, target), expected)


@pytest.mark.parametrize(("name", "value"), [("mode", 3), ("max_ratio", 0)])
def test_emo_refuses_bad_settings(name, value):
    valid = {"mode": "one of 1, 2", "max_ratio": "> 0"}[name]
    with pytest.raises(ValueError) as err:
        EMOLoss(**{name: value})
    assert str(err.value) == f"loss.{name}={value} must be {valid}"


# -- DCO ---------------------------------------------------------------------------------------
def test_dco_with_n_1_is_sequence_level_ce():
    """N = 1: the sum of each answer's token NLLs, averaged over the rows that have an answer
    (2 here; the padding row does not count) = token CE × trained tokens / answers."""
    loss, lse_mean, grad_h, grad_w = run(DCOLoss(n=1), "dense")
    hidden, weight, target = batch(torch.float64)
    logits, kept_target = dense_logits(hidden, weight, target)
    nll_sum = F.cross_entropy(logits, kept_target, reduction="sum")
    (nll_sum / 2).backward()
    torch.testing.assert_close(loss, nll_sum.detach() / 2)
    torch.testing.assert_close((grad_h, grad_w), (hidden.grad, weight.grad))
    token_ce = run(TokenCE(), "dense")[0]
    torch.testing.assert_close(loss, token_ce * 5 / 2)  # 5 trained tokens, 2 answers
    torch.testing.assert_close(lse_mean, logits.logsumexp(-1).mean().detach())


def naive_dco(log_p: torch.Tensor, n: int) -> torch.Tensor:
    return -torch.log(1 - (1 - log_p.exp()) ** n)


@pytest.mark.parametrize("n", [1, 2, 16, 64, 256])
def test_dco_matches_the_formula_where_it_is_representable(n):
    log_p = torch.linspace(-12, -1e-3, 200, dtype=torch.float64)
    torch.testing.assert_close(dco_from_log_prob(log_p, n), naive_dco(log_p, n))


def coverage_weight(n: int, p: float) -> float:
    """F(N, p) = ∂ℓ_N/∂ℓ_CE, by autograd through the log-space formula."""
    log_p = torch.tensor(math.log(p), dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(dco_from_log_prob(log_p, n), log_p)
    return -grad.item()


def test_dco_gradient_is_the_coverage_weight():
    """docs/methods/lm_losses.md §4: F(16, 0.1) = 0.404, F(256, 0.01) = 0.214, F(16, 0.5) ≈ 2e-4."""
    assert round(coverage_weight(16, 0.1), 3) == 0.404
    assert round(coverage_weight(256, 0.01), 3) == 0.214
    assert coverage_weight(16, 0.5) == pytest.approx(16 * 0.5**16 / (1 - 0.5**16))
    assert coverage_weight(1, 0.3) == pytest.approx(1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 16, 64])
def test_dco_is_stable_for_very_unlikely_answers(n, dtype):
    """log p = −200 (p = e^−200 underflows float32; (1 − p)^N rounds to 1): ℓ = 200 − log N to
    float precision (−log(1 − (1 − p)^N) = −log(Np) + O(Np)), gradient −1 (F → 1)."""
    log_p = torch.tensor([-200.0, -1e4], dtype=dtype, requires_grad=True)
    value = dco_from_log_prob(log_p, n)
    value.sum().backward()
    expected = torch.tensor([200.0, 1e4], dtype=dtype) - math.log(n)
    torch.testing.assert_close(value.detach(), expected)
    torch.testing.assert_close(log_p.grad, torch.tensor([-1.0, -1.0], dtype=dtype))


def test_dco_of_a_certain_answer_is_zero_with_zero_gradient():
    log_p = torch.tensor([0.0, -1e-30], requires_grad=True)
    value = dco_from_log_prob(log_p, 16)
    value.sum().backward()
    assert value.tolist() == [0.0, 0.0] and log_p.grad.tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    ("fill", "what"), [(0, "every target is trained"), (IGNORE_INDEX, "no target is trained")]
)
def test_dco_refuses_targets_without_answer_spans(fill, what):
    hidden, weight, _ = batch()
    target = torch.full((B, T), fill)
    message = (
        f"loss=dco needs answer spans: {what}, so no sequence has a prompt masked with -100 and "
        "an answer after it; use data with prompt/answer pairs (experiment=dco_arith)"
    )
    for call in (
        lambda: DCOLoss().check_targets(target),
        lambda: DCOLoss()(hidden, weight, target),
    ):
        with pytest.raises(ValueError) as err:
            call()
        assert str(err.value) == message
    DCOLoss().check_targets(batch()[2])  # prompts masked, answers trained: fine


def test_dco_refuses_n_below_one():
    with pytest.raises(ValueError) as err:
        DCOLoss(n=0)
    assert str(err.value) == "loss.n=0 must be an integer >= 1"


# -- Cut Cross-Entropy (compiles ~20-40 s on a CPU: slow tier) ---------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["ce", "smoothing_and_z", "dco"])
def test_cce_head_equals_dense(name):
    loss = LOSSES[name]
    dense, cce = run(loss, "dense", torch.float32), run(loss, "cce", torch.float32)
    for want, got in zip(dense, cce, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
