"""The 15 CIFAR-10-C corruptions: shapes, determinism, severity tables, and the re-derived parts
(OpenCV / ImageMagick / skimage stand-ins) against what they replace."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from xent.corrupt import corruptions as C
from xent.corrupt.corruptions import CORRUPTIONS, apply
from xent.errors import ConfigError

# corruptions that draw no random numbers: the same output for every seed
DETERMINISTIC = {
    "defocus_blur",
    "zoom_blur",
    "brightness",
    "contrast",
    "pixelate",
    "jpeg_compression",
}
# distortion (mean |corrupted - clean|) grows from severity 1 to 5
MONOTONE = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "zoom_blur",
    "fog",
    "brightness",
    "contrast",
    "pixelate",
    "jpeg_compression",
)


def textured(n: int = 4, seed: int = 0) -> np.ndarray:
    """Mid-range images with edges and texture, so every corruption has something to change."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    out = np.empty((n, 32, 32, 3), dtype=np.uint8)
    for k in range(n):
        base = 60 + 100 * (xx / 31.0)[..., None] * rng.uniform(0.3, 1.0, 3)
        checker = ((xx // (3 + k) + yy // 4) % 2)[..., None] * rng.uniform(20, 60, 3)
        noise = ndimage.gaussian_filter(rng.normal(0, 25, (32, 32, 3)), (1, 1, 0))
        out[k] = np.clip(base + checker + noise, 0, 255).astype(np.uint8)
    return out


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruption_keeps_shape_changes_image_and_is_seeded(name):
    images = textured()
    out = apply(name, images, 5, seed=3)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert mad(out, images) > 1.0
    assert np.array_equal(apply(name, images, 5, seed=3), out)
    other = apply(name, images, 5, seed=4)
    assert np.array_equal(other, out) == (name in DETERMINISTIC)
    # one image H x W x 3 through the per-image signature
    single = C.CORRUPTION_FUNCS[name](images[0], 5, np.random.default_rng(3))
    assert single.shape == (32, 32, 3) and single.dtype == np.uint8


@pytest.mark.parametrize("name", MONOTONE)
def test_severity_five_distorts_more_than_one(name):
    images = textured(6)
    low = mad(apply(name, images, 1, seed=0), images)
    high = mad(apply(name, images, 5, seed=0), images)
    assert high > 1.2 * low, (low, high)


def test_gaussian_noise_severity_five_has_std_a_tenth_of_the_range():
    grey = np.full((16, 32, 32, 3), 128, dtype=np.uint8)
    residual = apply("gaussian_noise", grey, 5, seed=0).astype(np.float64) - 128
    assert residual.std() == pytest.approx(0.10 * 255, rel=0.03)
    assert abs(residual.mean() + 0.5) < 0.5  # truncation to uint8 shifts by half a level


def test_shot_noise_severity_five_is_poisson_with_rate_fifty():
    grey = np.full((16, 32, 32, 3), 102, dtype=np.uint8)  # 0.4 of the range: rate 20
    residual = apply("shot_noise", grey, 5, seed=0).astype(np.float64) / 255 - 0.4
    assert residual.std() == pytest.approx(math.sqrt(0.4 * 50) / 50, rel=0.05)


def test_impulse_noise_flips_the_severity_fraction_to_salt_or_pepper():
    grey = np.full((16, 32, 32, 3), 128, dtype=np.uint8)
    out = apply("impulse_noise", grey, 5, seed=0)
    assert set(np.unique(out)) == {0, 128, 255}
    assert (out != 128).mean() == pytest.approx(0.07 * 0.5 + 0.07 * 0.5, abs=0.01)
    assert (out == 255).mean() == pytest.approx((out == 0).mean(), abs=0.01)


@pytest.mark.parametrize("severity", [1, 5])
def test_contrast_matches_its_formula(severity):
    images = textured(3)
    c = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]
    x = images / 255.0
    means = x.mean(axis=(1, 2), keepdims=True)  # per image and channel
    want = (np.clip((x - means) * c + means, 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(apply("contrast", images, severity), want)


def test_brightness_equals_the_hsv_round_trip():
    color = pytest.importorskip("skimage.color")
    images = textured(3)
    images[0, :4, :4] = 0  # black pixels become grey
    hsv = color.rgb2hsv(images / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + 0.3, 0, 1)
    want = (np.clip(color.hsv2rgb(hsv), 0, 1) * 255).astype(np.uint8).astype(np.float64)
    got = apply("brightness", images, 5).astype(np.float64)
    assert np.abs(got - want).max() <= 1.0  # float rounding can cross a truncation level
    assert (got == want).mean() > 0.95
    assert np.all(got[0, :4, :4] == int(0.3 * 255))


def test_pixelate_and_jpeg_match_pil():
    from io import BytesIO

    from PIL import Image

    image = textured(1)[0]
    small = Image.fromarray(image).resize((20, 20), Image.Resampling.BOX)
    want = np.asarray(small.resize((32, 32), Image.Resampling.BOX))
    assert np.array_equal(apply("pixelate", image[None], 5)[0], want)
    buffer = BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=40)
    assert np.array_equal(
        apply("jpeg_compression", image[None], 5)[0], np.asarray(Image.open(buffer))
    )


def test_glass_shuffle_equals_the_reference_loop():
    """The reference's `x[h, w], x[h', w'] = x[h', w'], x[h, w]` on numpy views, replayed."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    offsets = rng.integers(-1, 1, size=(2, 2, 30, 30))
    got = C.glass_shuffle(images, offsets, 1)
    for n in range(2):
        x = images[n].copy()
        for h in range(31, 1, -1):
            for w in range(31, 1, -1):
                dy, dx = offsets[0, n, h - 2, w - 2], offsets[1, n, h - 2, w - 2]
                x[h, w], x[h + dy, w + dx] = x[h + dy, w + dx], x[h, w]
        assert np.array_equal(got[n], x)


def test_motion_taps_follow_imagemagick():
    weights, offsets = C.motion_taps(9, 2.5, 0.0)
    assert len(weights) == 2 * 9 + 1 and weights.sum() == pytest.approx(1.0)
    assert np.all(np.diff(weights) < 0)  # one-sided: the pixel itself weighs most
    assert offsets[:, 0].tolist() == [0] * 19 and offsets[:, 1].tolist() == list(range(19))
    _, down = C.motion_taps(2, 1.0, 90.0)
    assert down[:, 0].tolist() == list(range(5)) and down[:, 1].tolist() == [0] * 5
    # out(x) = sum_i w_i in(x + i): a vertical line smears only to its left (angle 0)
    line = np.zeros((9, 9))
    line[:, 4] = 255
    out = C.motion_blur_image(line, 2, 1.0, 0.0)
    assert np.all(out[:, 5:] == 0) and np.all(out[:, 2:5] > 0)


def test_clipped_zoom_and_bilinear_equal_scipy():
    rng = np.random.default_rng(1)
    x = rng.random((2, 32, 32, 3))
    for factor in (1.0, 1.07, 1.25, 1.75, 2.25):
        size = 32
        crop = math.ceil(size / factor)
        top = (size - crop) // 2
        z = ndimage.zoom(x[:, top : top + crop, top : top + crop], (1, factor, factor, 1), order=1)
        trim = (z.shape[1] - size) // 2
        np.testing.assert_allclose(
            C._clipped_zoom(x, factor), z[:, trim : trim + size, trim : trim + size], atol=1e-12
        )
    rows, cols = rng.uniform(-6, 38, (2, 2, 32, 32))
    b, r, c, ch = np.meshgrid(*(np.arange(k) for k in x.shape), indexing="ij")
    for mode in ("mirror", "reflect"):
        coords = [
            b,
            np.broadcast_to(rows[..., None], b.shape),
            np.broadcast_to(cols[..., None], b.shape),
            ch,
        ]
        want = ndimage.map_coordinates(x, coords, order=1, mode=mode)
        np.testing.assert_allclose(C.bilinear(x, rows, cols, mode), want, atol=1e-12)


def test_defocus_kernel_is_a_normalised_symmetric_disk():
    assert C.defocus_kernel(1.5, 0.1).shape == (3, 3)  # σ=.1 leaves the 3x3 disk as is
    kernel = C.defocus_kernel(1, 0.2)  # a plus-shaped disk, blurred one pixel outward
    assert kernel.shape == (5, 5)
    assert kernel.sum() == pytest.approx(1.0)
    assert kernel[2, 2] == kernel.max() and kernel[0, 0] < 1e-9 < kernel[0, 2]
    np.testing.assert_allclose(kernel, kernel.T)
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1])


def test_plasma_fractal_and_frost_bank():
    maps = C.plasma_fractal(3, 32, 1.75, np.random.default_rng(0))
    assert maps.shape == (3, 32, 32)
    assert np.allclose(maps.min(axis=(1, 2)), 0) and np.allclose(maps.max(axis=(1, 2)), 1)
    bank = C.frost_bank()
    assert len(bank) == 5
    for texture in bank:
        assert texture.dtype == np.uint8 and texture.shape[0] > 32 and texture.shape[1] > 32
        assert 60 < texture.mean() < 200 and texture[..., 2].mean() > texture[..., 0].mean()


def test_bad_arguments_are_one_line_config_errors():
    images = textured(1)
    with pytest.raises(ConfigError) as err:
        apply("blur", images, 5)
    assert (
        str(err.value) == f"corruption='blur' is not a corruption; valid: {', '.join(CORRUPTIONS)}"
    )
    with pytest.raises(ConfigError, match=r"^severity=6 must be an integer severity in 1\.\.5$"):
        apply("fog", images, 6)
    with pytest.raises(ConfigError, match="dtype float64; corruptions need uint8"):
        apply("fog", images.astype(np.float64), 1)
    with pytest.raises(ConfigError, match=r"shape \(1, 32, 32, 4\)"):
        apply("fog", np.zeros((1, 32, 32, 4), np.uint8), 1)


@pytest.mark.slow  # every corruption at every severity
def test_all_corruptions_on_360_images_take_seconds():
    import time

    images = np.concatenate([textured(60, seed) for seed in range(6)])
    start = time.perf_counter()
    for name in CORRUPTIONS:
        apply(name, images, 5, seed=0)
    assert time.perf_counter() - start < 30
