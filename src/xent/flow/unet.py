"""A small U-Net velocity net v(t, x) for flow matching on images.

The shape of the DDPM-style U-Nets behind torchcfm's CIFAR recipe (residual blocks with
GroupNorm and SiLU, the time embedding added inside every block, one self-attention at the
lowest resolution, skip connections by concatenation), scaled down so that 8x8 digits train
on a CPU: `channels=32, channel_mults=(1, 2)` is about 0.3M parameters. Written for this
project; it does not load torchcfm's `UNetModelWrapper` checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xent.checks import bad_value, integer, is_integer, number


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of t ∈ [0, 1] (scaled by 1000, so the frequencies cover the range
    that diffusion nets' integer steps do)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)
    angles = 1000.0 * t.float()[:, None] * freqs[None]
    emb = torch.cat([angles.sin(), angles.cos()], dim=1)
    return F.pad(emb, (0, dim % 2))


def _groups(channels: int) -> int:
    return math.gcd(channels, 8)


class ResBlock(nn.Module):
    """norm-SiLU-conv, plus the time embedding, then norm-SiLU-dropout-conv, added to the input."""

    def __init__(self, in_ch: int, out_ch: int, time_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time = nn.Linear(time_dim, out_ch)
        self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """One multi-head self-attention over the pixels of a (small) feature map, residual."""

    def __init__(self, channels: int, heads: int = 4) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.attn = nn.MultiheadAttention(channels, math.gcd(channels, heads), batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        seq = self.norm(x).flatten(2).transpose(1, 2)
        out, _ = self.attn(seq, seq, seq, need_weights=False)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class VelocityUNet(nn.Module):
    """v_θ(t, x) for images (B, C, H, W): a U-Net with one resolution level per channel_mults
    entry (H and W halve between levels, so they must divide by 2^(levels − 1)).

    t may be a scalar (as an ODE solver passes it) or a (B,) tensor, as for `VelocityMLP`.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 8,
        channels: int = 32,
        channel_mults: Sequence[int] = (1, 2),
        num_res_blocks: int = 1,
        attention: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("image_size", image_size),
            ("channels", channels),
            ("num_res_blocks", num_res_blocks),
        ):
            integer(f"model.{name}", value, at_least=1, error=ValueError)
        mults = list(channel_mults)
        if not mults or any(not is_integer(m) or m < 1 for m in mults):
            raise bad_value(
                "model.channel_mults", mults, "a non-empty list of ints >= 1", error=ValueError
            )
        if image_size % 2 ** (len(mults) - 1):
            raise ValueError(
                f"model.channel_mults has {len(mults)} levels, so the image size must divide by "
                f"{2 ** (len(mults) - 1)}; got image_size={image_size}"
            )
        number("model.dropout", dropout, at_least=0, below=1, error=ValueError)
        self.in_channels, self.image_size = in_channels, image_size
        self.time_dim = 4 * channels
        self.time_mlp = nn.Sequential(
            nn.Linear(channels, self.time_dim), nn.SiLU(), nn.Linear(self.time_dim, self.time_dim)
        )
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1)
        widths = [channels * m for m in mults]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skip_widths, width = [], channels
        for level, out in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(width, out, self.time_dim, dropout))
                width = out
                skip_widths.append(width)
            self.down.append(blocks)
            last = level == len(widths) - 1
            self.downsample.append(
                nn.Identity() if last else nn.Conv2d(width, width, 3, stride=2, padding=1)
            )
        self.mid1 = ResBlock(width, width, self.time_dim, dropout)
        self.mid_attn = SelfAttention(width) if attention else nn.Identity()
        self.mid2 = ResBlock(width, width, self.time_dim, dropout)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level, out in reversed(list(enumerate(widths))):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(width + skip_widths.pop(), out, self.time_dim, dropout))
                width = out
            self.up.append(blocks)
            self.upsample.append(nn.Conv2d(width, width, 3, padding=1) if level else nn.Identity())
        self.out_norm = nn.GroupNorm(_groups(width), width)
        self.out = nn.Conv2d(width, in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # v starts at 0: the first losses are E||u_t||², not noise
        nn.init.zeros_(self.out.bias)

    def forward(self, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.dim() == 0:
            t = t.expand(len(x))
        emb = self.time_mlp(time_embedding(t, self.stem.out_channels).to(x.dtype))
        h = self.stem(x)
        skips = []
        for blocks, down in zip(self.down, self.downsample, strict=True):
            for block in blocks:
                h = block(h, emb)
                skips.append(h)
            h = down(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for blocks, up in zip(self.up, self.upsample, strict=True):
            for block in blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(F.silu(self.out_norm(h)))
