"""2D toy distributions of the flow-matching protocol (Tong et al.), as seeded torch samplers.

Definitions follow torchcfm 1.0.7 (`torchcfm/utils.py`) where it has one and the Tong et al.
runner otherwise, but every sampler is vectorised and draws only from the `torch.Generator` it
is given, so a seed fixes the data without touching numpy's or torch's global RNG:

- `gaussian`: N(0, I_2), the source of the Tong et al. tasks (`torch.randn` in torchcfm).
- `8gaussians`: torchcfm `sample_8gaussians`: 8 centres on a circle of radius 5; torchcfm passes
  sqrt(var) = sqrt(0.1) as the *covariance*, so each coordinate has std 0.1**0.25 ≈ 0.562.
- `moons`: torchcfm `sample_moons` = torchdyn `generate_moons(noise=0.2)` * 3 − 1. torchdyn's
  "noise" is one U[0, 0.2) draw per point added to *both* coordinates (a shift along the
  diagonal, not Gaussian noise); kept. torchdyn puts the points on an evenly spaced angle grid,
  n//2 on the upper moon first; here the angles are uniform draws (same limit distribution),
  the split is the same n//2 / n − n//2, and the points come in random order.
- `scurve`: the runner's `SKLearnDataModule("scurve")` (torchcfm itself has none): sklearn
  `make_s_curve(noise=0.05)`, coordinates (x, z), times 1.5.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from xent.checks import integer

Sampler = Callable[[int, torch.Generator], torch.Tensor]

EIGHT_GAUSSIANS_RADIUS = 5.0
EIGHT_GAUSSIANS_STD = 0.1**0.25  # torchcfm: covariance sqrt(0.1) * I
MOONS_NOISE = 0.2
SCURVE_NOISE = 0.05
SCURVE_SCALE = 1.5


def _gaussian(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(n, 2, generator=generator)


def eight_gaussian_centres() -> torch.Tensor:
    """The 8 centres (radius 5, every 45°), in float32 like the samples."""
    angles = torch.arange(8, dtype=torch.float64) * (math.pi / 4)
    centres = EIGHT_GAUSSIANS_RADIUS * torch.stack([angles.cos(), angles.sin()], dim=1)
    return centres.float()


def _eight_gaussians(n: int, generator: torch.Generator) -> torch.Tensor:
    index = torch.randint(8, (n,), generator=generator)
    noise = torch.randn(n, 2, generator=generator) * EIGHT_GAUSSIANS_STD
    return eight_gaussian_centres()[index] + noise


def _moons(n: int, generator: torch.Generator) -> torch.Tensor:
    angle = torch.rand(n, generator=generator) * math.pi
    upper = torch.arange(n) < n // 2
    x = torch.where(upper, angle.cos(), 1 - angle.cos())
    y = torch.where(upper, angle.sin(), 0.5 - angle.sin())
    shift = torch.rand(n, 1, generator=generator) * MOONS_NOISE
    points = torch.stack([x, y], dim=1) + shift
    return (points * 3 - 1)[torch.randperm(n, generator=generator)]


def _scurve(n: int, generator: torch.Generator) -> torch.Tensor:
    t = 3 * math.pi * (torch.rand(n, generator=generator) - 0.5)
    points = torch.stack([t.sin(), t.sign() * (t.cos() - 1)], dim=1)
    points = points + SCURVE_NOISE * torch.randn(n, 2, generator=generator)
    return points * SCURVE_SCALE


SAMPLERS: dict[str, Sampler] = {
    "8gaussians": _eight_gaussians,
    "gaussian": _gaussian,
    "moons": _moons,
    "scurve": _scurve,
}
DISTRIBUTIONS: tuple[str, ...] = tuple(sorted(SAMPLERS))


def check_name(name: str, key: str = "distribution") -> str:
    """`name` if it is a known distribution, else the one-line error naming the config key."""
    if name not in SAMPLERS:
        raise ValueError(f"{key}={name!r} is not a distribution; valid: {', '.join(DISTRIBUTIONS)}")
    return name


def sample(
    name: str, n: int, generator: torch.Generator, *, key: str = "distribution"
) -> torch.Tensor:
    """Draw `n` float32 points of shape (n, 2) on the CPU from the distribution `name`.

    The generator is required (not defaulted to the global RNG) so that data sets are fixed by
    their own seed, independent of how much randomness training consumed before. `key` is the
    config key shown in the error for an unknown name (e.g. "data.source").
    """
    check_name(name, key)
    integer("n", n, at_least=0, error=ValueError)
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise ValueError(f"sample() needs a CPU torch.Generator (seeded), got {generator!r}")
    return SAMPLERS[name](n, generator).float()
