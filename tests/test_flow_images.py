"""Flow matching on images: the U-Net velocity net, FID through torchmetrics (checked against
the Fréchet formula on a stand-in feature net; absent with one warning when Inception cannot
load), and a short run on data=digits that writes its sample grid."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from scipy import linalg

from tests.conftest import composed
from xent.flow import fid as fid_module
from xent.flow.fid import frechet_inception_distance
from xent.flow.unet import VelocityUNet
from xent.runner.run import run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMAGE_RUN = ["loss=cfm", "data=digits", "model=velocity_unet", "logger=none"]


# --- the velocity U-Net ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        ({}, (3, 1, 8, 8)),
        (
            {"in_channels": 3, "image_size": 32, "channel_mults": (1, 2, 2), "num_res_blocks": 2},
            (3, 3, 32, 32),
        ),
    ],
)
def test_unet_maps_images_to_velocities_of_the_same_shape(kwargs, shape):
    torch.manual_seed(0)
    net = VelocityUNet(**kwargs)
    torch.nn.init.normal_(net.out.weight, std=0.1)  # the zero-initialised output, opened up
    x = torch.randn(shape)
    v = net(torch.full((3,), 0.3), x)
    assert v.shape == x.shape
    assert torch.allclose(net(0.3, x), v, atol=1e-6)  # a solver's scalar t = a (B,) tensor
    assert not torch.allclose(net(0.9, x), v)  # t is used
    # the images of a batch do not mix (GroupNorm, not BatchNorm)
    assert torch.allclose(net(torch.full((1,), 0.3), x[:1]), v[:1], atol=1e-5)


def test_unet_starts_at_zero_velocity():
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(VelocityUNet()(0.5, x), torch.zeros_like(x))


def test_unet_config_reads_the_data_shape(tmp_path):
    net = instantiate(composed(tmp_path, *IMAGE_RUN).model)
    assert (net.in_channels, net.image_size) == (1, 8)
    assert 0.4e6 < sum(p.numel() for p in net.parameters()) < 0.6e6


def test_unet_rejects_an_image_size_its_levels_cannot_halve():
    with pytest.raises(ValueError, match="image size must divide by 4; got image_size=10"):
        VelocityUNet(image_size=10, channel_mults=(1, 2, 2))


# --- FID ------------------------------------------------------------------------------------------


class PixelStats(torch.nn.Module):
    """A stand-in Inception: 6 fixed features per image (channel means and stds)."""

    num_features = 6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


def frechet_reference(a: np.ndarray, b: np.ndarray) -> float:
    """||μa − μb||² + Tr(Σa + Σb − 2 (Σa Σb)^½), in float64 with scipy's sqrtm."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def test_fid_equals_the_frechet_formula_on_the_features():
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(200, 3, 8, 8, generator=gen)
    fake = (torch.rand(150, 3, 8, 8, generator=gen) * 0.7 + 0.2).clamp(0, 1)
    got = frechet_inception_distance(real, fake, feature=PixelStats(), batch_size=64)
    feats = PixelStats()
    expected = frechet_reference(feats(real).double().numpy(), feats(fake).double().numpy())
    assert got == pytest.approx(expected, rel=1e-4)
    assert expected > 0.01
    same = frechet_inception_distance(real, real, feature=PixelStats())
    assert abs(same) < 1e-4


def test_fid_feeds_grey_images_as_three_equal_channels():
    gen = torch.Generator().manual_seed(1)
    grey, other = torch.rand(64, 1, 8, 8, generator=gen), torch.rand(64, 1, 8, 8, generator=gen)
    rgb = frechet_inception_distance(
        grey.expand(-1, 3, -1, -1), other.expand(-1, 3, -1, -1), feature=PixelStats()
    )
    assert frechet_inception_distance(grey, other, feature=PixelStats()) == pytest.approx(rgb)


def test_fid_is_none_with_one_warning_when_inception_cannot_load(monkeypatch, caplog):
    import torchmetrics.image.fid as tm_fid

    def offline(*args, **kwargs):
        raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>\nmore")

    monkeypatch.setattr(tm_fid, "FrechetInceptionDistance", offline)
    monkeypatch.setattr(fid_module, "_warned", set())
    images = torch.rand(4, 1, 8, 8)
    with caplog.at_level(logging.WARNING, logger="xent"):
        assert frechet_inception_distance(images, images) is None
        assert frechet_inception_distance(images, images) is None  # said once per process
    assert [r.getMessage() for r in caplog.records] == [
        "test/fid not computed: Inception weights unavailable "
        "(<urlopen error [Errno -3] Temporary failure in name resolution>)"
    ]


# --- through the runner ---------------------------------------------------------------------------


@pytest.mark.slow
def test_cfm_on_digits_trains_and_writes_a_sample_grid(tmp_path):
    """2 epochs of 6 batches: the U-Net's samples move from noise toward the digits.

    Measured (seed 0, the first 120 test digits, normalised pixel space): W2 of the untrained
    net's samples (= its source noise: the output starts at 0) 10.10; after 12 steps 8.79;
    120 training digits, a perfect generator's floor, 4.72.
    """
    cfg = composed(
        tmp_path,
        *IMAGE_RUN,
        "trainer.max_epochs=2",
        "trainer.check_val_every_n_epoch=1",
        "+trainer.limit_train_batches=6",
        "task.max_eval_samples=120",
    )
    result = run(cfg)
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["status"] == "ok" and on_disk["epochs"] == 2
    for key in ("test/w2", "test/npe", "test/nfe", "best/val_w2"):
        assert key in on_disk, sorted(on_disk)
    assert 0 < result["test/w2"] < 9.6, result["test/w2"]
    if not _torch_fidelity_installed():  # no Inception: the run still ends ok, without FID
        assert "test/fid" not in on_disk
    for name in ("samples.png", "trajectories.png"):
        data = (tmp_path / "run" / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 3000, name


def _torch_fidelity_installed() -> bool:
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        return False
    return True
