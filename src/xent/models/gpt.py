"""A nanoGPT-shaped decoder-only transformer that returns hidden states.

Token + learned position embeddings, pre-LayerNorm blocks (causal self-attention through
`F.scaled_dot_product_attention`, a 4x GELU MLP), a final LayerNorm, and an output head tied to
the token embedding. The head is not applied here: `forward` returns the final hidden states and
`head_weight` is the (V, D) matrix, so that an LM loss computes `hidden @ Wᵀ` itself, in the
memory-lean ways `lm.head=chunked|cce` allow (xent.losses.lm). Init as GPT-2: N(0, 0.02) for
weights, zero biases, and N(0, 0.02/√(2·n_layer)) for the projections into the residual stream
(docs/methods/lm.md §3).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from xent.checks import integer, number


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool):
        super().__init__()
        self.n_head, self.dropout = n_head, dropout
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, time, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        q, k, v = (t.view(batch, time, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        y = y.transpose(1, 2).contiguous().view(batch, time, width)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    def __init__(self, n_embd: int, dropout: float, bias: bool):
        super().__init__()
        self.fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LN: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, dropout, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Decoder LM: ids (B, T) -> hidden states (B, T, n_embd) after the final LayerNorm."""

    def __init__(
        self,
        vocab_size: int,
        block_size: int = 64,
        n_layer: int = 4,
        n_head: int = 4,
        n_embd: int = 128,
        dropout: float = 0.0,
        bias: bool = False,
    ):
        super().__init__()
        integer("model.vocab_size", vocab_size, at_least=1, error=ValueError)
        for key, value in (("block_size", block_size), ("n_layer", n_layer), ("n_head", n_head)):
            integer(f"model.{key}", value, at_least=1, error=ValueError)
        integer("model.n_embd", n_embd, at_least=1, error=ValueError)
        if n_embd % n_head:
            raise ValueError(f"model.n_embd={n_embd} must be a multiple of model.n_head={n_head}")
        number("model.dropout", dropout, at_least=0, below=1, error=ValueError)
        self.vocab_size, self.block_size = vocab_size, block_size
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout, bias) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, bias=bias)
        self.apply(_init_weights)
        residual_std = 0.02 / math.sqrt(2 * n_layer)
        for name, param in self.named_parameters():
            if name.endswith("proj.weight"):  # attention and MLP outputs into the residual
                nn.init.normal_(param, mean=0.0, std=residual_std)

    @property
    def head_weight(self) -> torch.Tensor:
        """The (vocab, n_embd) output matrix: the token embedding (tied)."""
        return self.wte.weight

    def n_params(self) -> int:
        """Parameters without the position embedding (nanoGPT's count; the tied head once)."""
        return sum(p.numel() for p in self.parameters()) - self.wpe.weight.numel()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        time = idx.shape[1]
        if time > self.block_size:
            raise ValueError(
                f"a sequence of {time} tokens is longer than block_size={self.block_size}"
            )
        pos = torch.arange(time, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, V): for evaluation and sampling, where T·V is small."""
        return self.forward(idx) @ self.head_weight.T


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)


@torch.no_grad()
def sample(
    model: GPT,
    prompt: list[int],
    new_tokens: int,
    *,
    temperature: float = 0.8,
    generator: torch.Generator | None = None,
) -> list[int]:
    """Continue `prompt` by `new_tokens` ids drawn at `temperature` (context cropped to the
    model's block_size), with `generator`'s draws: a fixed seed gives the same text."""
    device = model.head_weight.device
    ids = torch.tensor([prompt], dtype=torch.long, device=device)
    for _ in range(new_tokens):
        logits = model.logits(ids[:, -model.block_size :])[:, -1] / temperature
        probs = logits.float().softmax(-1).cpu()
        nxt = torch.multinomial(probs, 1, generator=generator).to(device)
        ids = torch.cat([ids, nxt], dim=1)
    return ids[0, len(prompt) :].tolist()
