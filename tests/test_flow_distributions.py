"""The 2D toy distributions' parameters (src/xent/flow/distributions.py): radius, noise and
scale, checked two ways. Exactly: every point equals a float64 formula with the constants
written out here, from the same generator draws. In law: moments and the support's corners,
derived by hand from the definitions (not from the code), to sampling accuracy."""

from __future__ import annotations

import math

import pytest
import torch

from xent.data.toy2d import Toy2DDataModule, split_generator
from xent.flow.distributions import sample

N = 200_000


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reference(name: str, n: int, g: torch.Generator) -> torch.Tensor:
    """The definitions of the module docstring, in float64, drawing in the module's order."""
    if name == "gaussian":
        return torch.randn(n, 2, generator=g).double()
    if name == "8gaussians":  # radius 5, every 45°; per-coordinate std 0.1 ** 0.25
        k = torch.randint(8, (n,), generator=g).double() * math.pi / 4
        noise = torch.randn(n, 2, generator=g).double() * 0.1**0.25
        return 5 * torch.stack([k.cos(), k.sin()], 1) + noise
    if name == "moons":  # torchdyn moons, uniform diagonal shift U[0, 0.2), then * 3 - 1
        a = torch.rand(n, generator=g).double() * math.pi
        upper = torch.arange(n) < n // 2
        x = torch.where(upper, a.cos(), 1 - a.cos())
        y = torch.where(upper, a.sin(), 0.5 - a.sin())
        shift = torch.rand(n, 1, generator=g).double() * 0.2
        points = (torch.stack([x, y], 1) + shift) * 3 - 1
        return points[torch.randperm(n, generator=g)]
    # scurve: sklearn make_s_curve(noise=0.05), coordinates (x, z), times 1.5
    t = 3 * math.pi * (torch.rand(n, generator=g).double() - 0.5)
    curve = torch.stack([t.sin(), t.sign() * (t.cos() - 1)], 1)
    return (curve + 0.05 * torch.randn(n, 2, generator=g).double()) * 1.5


@pytest.mark.parametrize("name", ["gaussian", "8gaussians", "moons", "scurve"])
def test_every_point_is_the_definition(name):
    x = sample(name, 1000, gen(3))
    torch.testing.assert_close(x.double(), reference(name, 1000, gen(3)), rtol=0, atol=2e-6)


def test_8gaussians_centres_radius_and_spread():
    x = sample("8gaussians", N, gen(1)).double()
    angles = torch.arange(8, dtype=torch.float64) * math.pi / 4
    centres = 5 * torch.stack([angles.cos(), angles.sin()], 1)
    nearest = torch.cdist(x, centres).argmin(1)
    for k in range(8):
        cluster = x[nearest == k]
        assert len(cluster) / N == pytest.approx(1 / 8, abs=0.004)
        torch.testing.assert_close(cluster.mean(0), centres[k], rtol=0, atol=0.012)
        spread = (cluster - centres[k]).std(0)
        torch.testing.assert_close(
            spread, torch.full((2,), 0.1**0.25, dtype=torch.float64), rtol=0.02, atol=0
        )


def test_moons_mean_and_support():
    """u = (x + 1) / 3 is a moon point plus a shift s ~ U[0, 0.2) on both coordinates.
    E[u] = (0.5·0 + 0.5·1, 0.5·2/π + 0.5·(0.5 − 2/π)) + 0.1 = (0.6, 0.35), so E[x] = (0.8, 0.05);
    u lies in [-1, 2.2) x [-0.5, 1.2), so x in [-4, 5.6) x [-2.5, 2.6), corners all reached."""
    x = sample("moons", N, gen(2)).double()
    torch.testing.assert_close(
        x.mean(0), torch.tensor([0.8, 0.05], dtype=torch.float64), rtol=0, atol=0.02
    )
    low, high = x.min(0).values, x.max(0).values
    torch.testing.assert_close(
        low, torch.tensor([-4.0, -2.5], dtype=torch.float64), rtol=0, atol=0.03
    )
    torch.testing.assert_close(
        high, torch.tensor([5.6, 2.6], dtype=torch.float64), rtol=0, atol=0.03
    )
    assert (high < torch.tensor([5.6, 2.6], dtype=torch.float64)).all()


def test_scurve_moments():
    """t ~ U(-3π/2, 3π/2): E[sin²t] = 1/2, E[(cos t − 1)²] = 3/2 + 4/(3π); noise adds 0.05² to
    each; the scale 1.5 multiplies the variances by 2.25; both means are 0 by symmetry."""
    x = sample("scurve", N, gen(4)).double()
    var = torch.tensor([0.5 + 0.05**2, 1.5 + 4 / (3 * math.pi) + 0.05**2], dtype=torch.float64)
    torch.testing.assert_close(x.var(0), 2.25 * var, rtol=0.01, atol=0)
    torch.testing.assert_close(x.mean(0), torch.zeros(2, dtype=torch.float64), rtol=0, atol=0.01)


def test_toy2d_splits_are_the_seeded_samples_of_their_sizes():
    dm = Toy2DDataModule(
        source="moons", target="scurve", n_train=300, n_val=20, n_test=30, data_seed=5
    )
    dm.setup("fit")
    for split, n in (("train", 300), ("val", 20), ("test", 30)):
        x0, x1 = dm.splits[split]
        assert torch.equal(x0, sample("moons", n, split_generator(5, split, "source")))
        assert torch.equal(x1, sample("scurve", n, split_generator(5, split, "target")))
