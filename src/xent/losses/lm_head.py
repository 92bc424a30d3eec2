"""The LM head inside the loss: `hidden @ weightᵀ` reduced to what a token loss needs.

Every token loss of task=lm is written with three per-token quantities of the logits
`s = h·Wᵀ` (one row per trained token):

    lse = logsumexp_k s_k      (the only one that needs all V logits)
    s_y = h·W_y                (the target's logit: a gather and a dot product)
    s̄  = h·mean_k W_k         (the mean logit, for label smoothing)

so `log p_y = s_y − lse`, and the head mode (`lm.head`) only decides how `lse` is computed:

- `dense`: the (N, V) logits are materialised (autograd keeps them and their softmax);
- `chunked`: torch's fused `F.linear_cross_entropy` (torch >= 2.14) with chunking options, per
  token; `lse = nll + s_y`, exact for a trained token. Where torch lacks it, `ChunkedLogSumExp`,
  our autograd function over row chunks that recomputes each chunk's logits in the backward;
- `cce`: the Cut Cross-Entropy package (apple/ml-cross-entropy, optional extra), its
  `impl="cce"` Triton kernels on an Ampere+ GPU, `impl="torch_compile"` elsewhere.

Plain token CE (no smoothing, no z-loss) has a faster path per head, `mean_token_nll`: the
fused ops' own mean reduction, which precomputes the gradient in the forward pass.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
HEADS = ("dense", "chunked", "cce")
CCE_INSTALL = "pip install 'xent[cce]' (the cut-cross-entropy package)"


def upcast(tensor: torch.Tensor) -> torch.Tensor:
    """Half-precision logits (bf16 autocast) to float32 for the softmax; fp32/fp64 as they are."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def torch_fused_available() -> bool:
    """True where the installed torch has the chunked `F.linear_cross_entropy` (2.14+)."""
    return hasattr(F, "linear_cross_entropy") and hasattr(torch.nn, "LinearCrossEntropyOptions")


def check_cce_installed() -> None:
    """Raise ValueError (one line, with the install command) where `cut_cross_entropy` does not
    import; it needs triton on Linux even on the CPU."""
    try:
        import cut_cross_entropy  # noqa: F401
    except ImportError as err:
        raise ValueError(
            f"lm.head=cce needs the cut-cross-entropy package, which does not import ({err}); "
            f"install it with {CCE_INSTALL}, or use lm.head=chunked"
        ) from None


def cce_impl(hidden: torch.Tensor) -> str:
    """CCE's Triton kernels need an Ampere+ GPU (bf16 support) and half-precision embeddings
    (their backward asserts it: float32 on an H200 failed there); elsewhere, float32 on a GPU
    included, its compiled torch path runs (the first call compiles, ~20-40 s on a small CPU)."""
    half = hidden.dtype in (torch.float16, torch.bfloat16)
    on_ampere = hidden.is_cuda and half and torch.cuda.is_bf16_supported()
    return "cce" if on_ampere else "torch_compile"


def autocast_inputs(
    hidden: torch.Tensor, weight: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden and weight in the autocast dtype where autocast is on for their device (what it
    does to the dense head's matmul; the final LayerNorm hands over float32), else as they are:
    CCE's kernels then run under bf16-mixed training instead of failing on float32 input."""
    device = hidden.device.type
    if not torch.is_autocast_enabled(device):
        return hidden, weight
    dtype = torch.get_autocast_dtype(device)
    return hidden.to(dtype), weight.to(dtype)


def target_logit(hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """s_y = h·W_y per row, (N,): the one logit CE needs besides lse."""
    return upcast((hidden * weight[target]).sum(-1))


def mean_logit(hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """s̄ = mean_k s_k = h·(mean_k W_k) per row, (N,): label smoothing's uniform term."""
    return upcast(hidden @ weight.mean(0))


def chunk_rows(rows: int, dim: int, vocab: int) -> int:
    """Rows per chunk so a chunk's (rows, V) logits are about the size of the (N, D) input
    (torch's "aspect_ratio" rule), a power of two, at least 1."""
    target = max(1, rows * dim // max(vocab, 1))
    return 1 << int(math.log2(target))


class ChunkedLogSumExp(torch.autograd.Function):
    """lse_i = logsumexp_k (h_i·W_k) over row chunks, never holding the (N, V) logits.

    The backward recomputes each chunk's logits: p = softmax = exp(s − lse), then
    dh = (g·p) W and dW = (g·p)ᵀ h. One matmul more than a dense head, memory O(chunk·V)."""

    @staticmethod
    def forward(ctx, hidden, weight, chunk):
        lse = torch.cat([upcast(h @ weight.T).logsumexp(-1) for h in hidden.split(chunk)])
        ctx.save_for_backward(hidden, weight, lse)
        ctx.chunk = chunk
        return lse

    @staticmethod
    def backward(ctx, grad_lse):
        hidden, weight, lse = ctx.saved_tensors
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros_like(weight)
        start = 0
        for h in hidden.split(ctx.chunk):
            stop = start + len(h)
            probs = (upcast(h @ weight.T) - lse[start:stop, None]).exp()
            scaled = (probs * grad_lse[start:stop, None]).to(weight.dtype)
            grad_hidden[start:stop] = scaled @ weight
            grad_weight.addmm_(scaled.T, h)
            start = stop
        return grad_hidden, grad_weight, None


def chunked_lse(hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Our own chunked lse (the fallback where torch has no fused linear cross-entropy)."""
    return ChunkedLogSumExp.apply(hidden, weight, chunk_rows(*hidden.shape, len(weight)))


def fused_nll(
    hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, head: str, reduction: str
) -> torch.Tensor:
    """Token NLL of a fused head (`chunked` with torch's op, or `cce`), `mean` or `none`."""
    if head == "cce":
        from cut_cross_entropy import linear_cross_entropy

        if hidden.is_cuda:
            hidden, weight = autocast_inputs(hidden, weight)
        return linear_cross_entropy(
            hidden, weight, target, reduction=reduction, impl=cce_impl(hidden)
        )
    options = torch.nn.LinearCrossEntropyOptions()
    return F.linear_cross_entropy(hidden, weight, target, reduction=reduction, options=options)


def token_lse(
    hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, head: str
) -> torch.Tensor:
    """Per-token lse (N,), differentiable, for trained rows only (no IGNORE_INDEX in target)."""
    if head == "dense":
        return upcast(hidden @ weight.T).logsumexp(-1)
    if head == "chunked" and not torch_fused_available():
        return chunked_lse(hidden, weight)
    nll = upcast(fused_nll(hidden, weight, target, head, "none"))
    return nll + target_logit(hidden, weight, target)


def mean_token_nll(
    hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, head: str
) -> torch.Tensor:
    """Mean NLL over trained rows (no IGNORE_INDEX in target): each head's fastest path."""
    if head == "dense":
        return F.cross_entropy(upcast(hidden @ weight.T), target)
    if head == "chunked" and not torch_fused_available():
        return (chunked_lse(hidden, weight) - target_logit(hidden, weight, target)).mean()
    return upcast(fused_nll(hidden, weight, target, head, "mean"))


def trained_rows(
    hidden: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hidden (N, D), target (N,)) of the trained positions of (B, T, D) and (B, T), and the
    (B, T) mask they came from: the heads never spend a matmul on an ignored position."""
    kept = target != IGNORE_INDEX
    return hidden[kept], target[kept], kept
