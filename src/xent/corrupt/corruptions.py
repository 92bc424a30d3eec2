"""The 15 CIFAR-10-C corruptions with the CIFAR severity tables, in numpy / SciPy / PIL only.

The Zenodo CIFAR-10/100-C archives cannot be fetched where this project runs, so the benchmark
is regenerated locally. Each function follows Hendrycks & Dietterich's `make_cifar_c.py`
(the CIFAR constants, not ImageNet-C's); the parts that script delegated to OpenCV and
ImageMagick are re-derived here, and frost's photographs are replaced by a procedural texture.
Deviations are stated in each docstring.

Every corruption takes a uint8 image H x W x 3 (or a batch N x H x W x 3), a severity 1..5 and
a `numpy.random.Generator`, and returns uint8 of the same shape. Like the reference, the float
result is truncated (not rounded) to uint8. Work is vectorised over the batch where the
reference's per-image randomness allows it, so the draws (and hence the output) depend on the
batch an image is corrupted in: `apply` is deterministic given (images, severity, seed).
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from xent.checks import integer
from xent.errors import ConfigError

CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


# -- validation ---------------------------------------------------------------------------------
def check_corruption(name: object, key: str = "corruption") -> str:
    """The name if it is one of the 15, else a one-line ConfigError listing them."""
    if not isinstance(name, str) or name not in CORRUPTIONS:
        raise ConfigError(f"{key}={name!r} is not a corruption; valid: {', '.join(CORRUPTIONS)}")
    return name


def check_severity(severity: object, key: str = "severity") -> int:
    """The severity if it is an int in 1..5, else a one-line ConfigError."""
    return integer(key, severity, at_least=1, at_most=5, what="an integer severity in 1..5")


def _check_batch(images: np.ndarray) -> None:
    if images.dtype != np.uint8:
        raise ConfigError(f"images have dtype {images.dtype}; corruptions need uint8 in 0..255")
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
        raise ConfigError(
            f"images have shape {tuple(images.shape)}; corruptions need (H, W, 3) or "
            f"(N, H, W, 3) with H == W"
        )


def _corruption(fn: Corruption) -> Corruption:
    """Accept one image (H, W, 3) or a batch (N, H, W, 3); validate once, run batched."""

    @functools.wraps(fn)
    def run(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
        arr = np.asarray(image)
        single = arr.ndim == 3
        batch = arr[None] if single else arr
        _check_batch(batch)
        out = fn(batch, check_severity(severity), rng)
        return out[0] if single else out

    return run


# -- shared helpers -----------------------------------------------------------------------------
def _unit(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float64) / 255.0


def _to_uint8(x01: np.ndarray) -> np.ndarray:
    """Clip to [0, 1], scale, truncate: `np.uint8(np.clip(x, 0, 1) * 255)` as the reference does."""
    return (np.clip(x01, 0.0, 1.0) * 255.0).astype(np.uint8)


def _gaussian(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0):
    """skimage.filters.gaussian on the spatial axes of (N, H, W[, C]) (its default mode)."""
    sigmas = (0.0, sigma, sigma) + (0.0,) * (x.ndim - 3)
    return ndimage.gaussian_filter(x, sigmas, mode=mode, truncate=truncate)


def zoom_matrix(size: int, factor: float) -> np.ndarray:
    """(size, crop) matrix of the reference's clipped zoom along one axis: crop the central
    ceil(size / factor) pixels, resize linearly to round(crop·factor) with corners aligned
    (`scipy.ndimage.zoom(order=1)`), keep the central `size`."""
    crop = int(math.ceil(size / factor))
    top = (size - crop) // 2
    out_len = int(round(crop * factor))
    coords = np.arange(out_len) * ((crop - 1) / (out_len - 1)) if out_len > 1 else np.zeros(1)
    lo = np.clip(np.floor(coords).astype(np.int64), 0, max(crop - 2, 0))
    frac = coords - lo
    matrix = np.zeros((out_len, size))
    rows = np.arange(out_len)
    matrix[rows, top + lo] += 1.0 - frac
    if crop > 1:
        matrix[rows, top + lo + 1] += frac
    trim = (out_len - size) // 2
    return matrix[trim : trim + size]


def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom the central 1/factor of (N, H, W, C) back to H x W (bilinear), as the reference;
    bilinear is separable, so it is two small matrix products."""
    matrix = zoom_matrix(x.shape[1], factor).astype(x.dtype)
    rows_done = np.matmul(matrix, x.transpose(0, 3, 1, 2))  # (N, C, H, W)
    return np.matmul(rows_done, matrix.T).transpose(0, 2, 3, 1)


def _extend(index: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Integer indices outside 0..size-1 folded back: 'mirror' repeats no edge (d c b | a b c d),
    'reflect' repeats it (b a | a b c d), as scipy.ndimage names them."""
    if size == 1:
        return np.zeros_like(index)
    if mode == "mirror":
        period = 2 * size - 2
        index = np.abs(index) % period
        return np.where(index >= size, period - index, index)
    period = 2 * size
    index = index % period
    return np.where(index >= size, period - 1 - index, index)


def bilinear(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, mode: str) -> np.ndarray:
    """Sample (N, H, W, C) at float (rows, cols) of shape (N, H, W), all channels alike;
    equals `scipy.ndimage.map_coordinates(order=1)` with that mode, without its 4-D cost."""
    n, height, width = x.shape[:3]
    r0, c0 = np.floor(rows), np.floor(cols)
    fr, fc = (rows - r0)[..., None], (cols - c0)[..., None]
    r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
    ra, rb = _extend(r0, height, mode), _extend(r0 + 1, height, mode)
    ca, cb = _extend(c0, width, mode), _extend(c0 + 1, width, mode)
    b = np.arange(n)[:, None, None]
    top = x[b, ra, ca] * (1 - fc) + x[b, ra, cb] * fc
    bottom = x[b, rb, ca] * (1 - fc) + x[b, rb, cb] * fc
    return top * (1 - fr) + bottom * fr


def plasma_fractal(n: int, mapsize: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """n diamond-square height maps (n, mapsize, mapsize) on a torus, each scaled to [0, 1].

    The reference perturbs each new point by `wibble * U(-wibble, wibble)`, i.e. an amplitude of
    wibble² that shrinks by decay² per level; that quirk is kept because it sets fog's texture.
    """
    if mapsize & (mapsize - 1):
        raise ConfigError(f"plasma_fractal mapsize={mapsize} must be a power of two")
    grid = np.zeros((n, mapsize, mapsize))
    step, wibble = mapsize, 100.0

    def noisy_mean(total: np.ndarray) -> np.ndarray:
        return total / 4.0 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = grid[:, ::step, ::step]
        square = corners + np.roll(corners, -1, axis=1)
        grid[:, half::step, half::step] = noisy_mean(square + np.roll(square, -1, axis=2))
        corners, centres = grid[:, ::step, ::step], grid[:, half::step, half::step]
        left = corners + np.roll(corners, -1, axis=1) + centres + np.roll(centres, 1, axis=2)
        top = corners + np.roll(corners, -1, axis=2) + centres + np.roll(centres, 1, axis=1)
        grid[:, half::step, ::step] = noisy_mean(left)
        grid[:, ::step, half::step] = noisy_mean(top)
        step, wibble = half, wibble / decay
    grid -= grid.min(axis=(1, 2), keepdims=True)
    return grid / np.maximum(grid.max(axis=(1, 2), keepdims=True), 1e-12)


def motion_taps(radius: float, sigma: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights (T,) and integer (dy, dx) offsets (T, 2) of a one-sided line blur.

    Re-derived from ImageMagick's MotionBlurImage, which the reference called through Wand:
    T = 2·ceil(radius) + 1 taps at distances i = 0..T-1 along `angle` (degrees, y down),
    weights exp(-i² / 2σ²) normalised, offsets rounded half down.
    """
    taps = 2 * int(math.ceil(radius)) + 1
    i = np.arange(taps, dtype=np.float64)
    weights = np.exp(-(i**2) / (2.0 * sigma**2))
    theta = math.radians(angle)
    dx = np.ceil(i * math.cos(theta) - 0.5).astype(np.int64)
    dy = np.ceil(i * math.sin(theta) - 0.5).astype(np.int64)
    return weights / weights.sum(), np.stack([dy, dx], axis=1)


def motion_blur_image(image: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """Blur one float image (H, W[, C]) along a line; the edge pixels extend outward
    (ImageMagick's default virtual-pixel method). Returns float, not rounded."""
    weights, offsets = motion_taps(radius, sigma, angle)
    pad = len(weights)
    height, width = image.shape[:2]
    padding = ((pad, pad), (pad, pad)) + ((0, 0),) * (image.ndim - 2)
    padded = np.pad(image, padding, mode="edge")
    out = np.zeros(image.shape, dtype=np.float64)
    for weight, (dy, dx) in zip(weights, offsets, strict=True):
        out += weight * padded[pad + dy : pad + dy + height, pad + dx : pad + dx + width]
    return out


# -- the 15 corruptions -------------------------------------------------------------------------
@_corruption
def gaussian_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Additive N(0, c²) on [0, 1]; c = .04, .06, .08, .09, .10."""
    c = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]
    x = _unit(image)
    return _to_uint8(x + rng.normal(0.0, c, size=x.shape))


@_corruption
def shot_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson photon noise Poisson(x·c)/c; c = 500, 250, 100, 75, 50."""
    c = (500, 250, 100, 75, 50)[severity - 1]
    return _to_uint8(rng.poisson(_unit(image) * c) / c)


@_corruption
def impulse_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Salt and pepper on a fraction c of the values (each channel on its own, as skimage's
    `random_noise(mode='s&p')` does), half salt; c = .01, .02, .03, .05, .07."""
    c = (0.01, 0.02, 0.03, 0.05, 0.07)[severity - 1]
    x = _unit(image)
    flipped = rng.random(x.shape) <= c
    salted = rng.random(x.shape) <= 0.5
    x[flipped & salted] = 1.0
    x[flipped & ~salted] = 0.0
    return _to_uint8(x)


def defocus_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """A disk of `radius` on the reference's 17 x 17 grid, normalised, smoothed by a 3 x 3
    Gaussian of σ `alias_blur` (OpenCV's GaussianBlur), cropped to its non-zero support."""
    grid = np.arange(-8, 9)
    xs, ys = np.meshgrid(grid, grid)
    disk = (xs**2 + ys**2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    g = np.exp(-(np.arange(-1, 2) ** 2) / (2.0 * alias_blur**2))
    g /= g.sum()
    padded = np.pad(disk, 1)
    kernel = sum(
        g[i] * g[j] * padded[i : i + disk.shape[0], j : j + disk.shape[1]]
        for i in range(3)
        for j in range(3)
    )
    rows, cols = np.nonzero(kernel > 1e-12 * kernel.max())  # weights below that change nothing
    return kernel[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


@_corruption
def defocus_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Correlate with an anti-aliased disk; (radius, alias σ) = (.3, .4), (.4, .5), (.5, .6),
    (1, .2), (1.5, .1). Borders reflect without repeating the edge (OpenCV's default)."""
    radius, alias = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))[severity - 1]
    kernel = defocus_kernel(radius, alias)
    return _to_uint8(ndimage.correlate(_unit(image), kernel[None, :, :, None], mode="mirror"))


def glass_shuffle(images: np.ndarray, offsets: np.ndarray, max_delta: int) -> np.ndarray:
    """One pass of the reference's local pixel "swaps" on uint8 (N, H, W, 3).

    The reference swaps rows of a numpy array with `a[p], a[q] = a[q], a[p]`; because the right
    side holds views, this copies pixel q into p and leaves q unchanged. Scanning p from the
    bottom-right with q = p + (dy, dx), dy, dx in [-max_delta, max_delta), every q read for
    max_delta = 1 (the only CIFAR value) is still original, so the pass is one gather:
    out[p] = in[p + offset[p]]. `offsets` (2, N, n, n) holds (dy, dx) for p in
    [max_delta + 1, H - max_delta]², in increasing order.
    """
    size = images.shape[1]
    positions = np.arange(max_delta + 1, size - max_delta + 1)
    rows, cols = np.meshgrid(positions, positions, indexing="ij")
    batch = np.arange(images.shape[0])[:, None, None]
    out = images.copy()
    out[batch, rows, cols] = images[batch, rows + offsets[0], cols + offsets[1]]
    return out


@_corruption
def glass_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur, local pixel shuffles, blur again; (σ, max_delta, iterations) =
    (.05, 1, 1), (.25, 1, 1), (.4, 1, 1), (.25, 1, 2), (.4, 1, 2). The shuffle is the
    reference's copy-not-swap behaviour (see `glass_shuffle`), vectorised."""
    sigma, delta, iterations = (
        (0.05, 1, 1),
        (0.25, 1, 1),
        (0.4, 1, 1),
        (0.25, 1, 2),
        (0.4, 1, 2),
    )[severity - 1]
    x = (_gaussian(_unit(image), sigma) * 255.0).astype(np.uint8)
    span = image.shape[1] - 2 * delta
    for _ in range(iterations):
        offsets = rng.integers(-delta, delta, size=(2, image.shape[0], span, span))
        x = glass_shuffle(x, offsets, delta)
    return _to_uint8(_gaussian(_unit(x), sigma))


@_corruption
def motion_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A line blur at an angle U(-45°, 45°) per image; (radius, σ) = (6, 1), (6, 1.5), (6, 2),
    (8, 2), (9, 2.5). ImageMagick's blur is re-derived (`motion_taps`); its 8-bit output is
    rounded, as the reference's PNG round trip does."""
    radius, sigma = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))[severity - 1]
    angles = rng.uniform(-45.0, 45.0, size=image.shape[0])
    x = image.astype(np.float64)
    out = np.stack(
        [motion_blur_image(img, radius, sigma, a) for img, a in zip(x, angles, strict=True)]
    )
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@_corruption
def zoom_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Mean of the image and its central zooms by 1, 1.01, ... up to 1.06, 1.11, 1.16, 1.21,
    1.26 (exclusive, step .01), as np.arange in the reference."""
    stop = (1.06, 1.11, 1.16, 1.21, 1.26)[severity - 1]
    factors = np.arange(1.0, stop, 0.01)
    x = _unit(image).astype(np.float32)
    total = np.zeros_like(x)
    for factor in factors:
        total += _clipped_zoom(x, float(factor))
    return _to_uint8((x + total) / (len(factors) + 1))


@_corruption
def snow(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Zoomed Gaussian flakes, thresholded, motion-blurred at U(-135°, -45°), added twice
    (once rotated 180°) over a whitened image. (loc, scale, zoom, threshold, blur radius,
    blur σ, image weight) = (.1,.2,1,.6,8,3,.95), (.1,.2,1,.5,10,4,.9), (.15,.3,1.75,.55,10,4,.9),
    (.25,.3,2.25,.6,12,6,.85), (.3,.3,1.25,.65,14,12,.8)."""
    loc, scale, zoom, threshold, radius, sigma, keep = (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    )[severity - 1]
    n, size = image.shape[:2]
    x = image.astype(np.float32) / 255.0
    flakes = rng.normal(loc, scale, size=(n, size, size, 1))
    flakes = _clipped_zoom(flakes, zoom)[..., 0]
    flakes[flakes < threshold] = 0.0
    flakes = (np.clip(flakes, 0.0, 1.0) * 255.0).astype(np.uint8).astype(np.float64)
    angles = rng.uniform(-135.0, -45.0, size=n)
    blurred = np.stack(
        [motion_blur_image(f, radius, sigma, a) for f, a in zip(flakes, angles, strict=True)]
    )
    layer = (np.clip(np.rint(blurred), 0, 255) / 255.0)[..., None]
    grey = (x @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    x = keep * x + (1.0 - keep) * np.maximum(x, grey * 1.5 + 0.5)
    return _to_uint8(x + layer + np.rot90(layer, k=2, axes=(1, 2)))


_FROST_SHAPES = ((72, 96), (96, 80), (80, 112), (112, 72), (88, 88))


def _frost_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A frost-on-glass texture (height, width, 3) uint8: faint cloudy haze plus bright ice
    needles with 60° side branches, drawn at 2x and box-downsampled (the reference's frost
    photographs were downsampled 5x, so their crystals are 1-2 px wide)."""
    h2, w2 = 2 * height, 2 * width
    mapsize = 1 << max(h2, w2).bit_length()
    haze = plasma_fractal(1, mapsize, 2.0, rng)[0, :h2, :w2]
    n_main = h2 * w2 // 40
    starts = rng.uniform((0, 0), (h2, w2), size=(n_main, 2))
    angles = rng.uniform(0.0, 2.0 * math.pi, n_main)
    lengths = rng.uniform(4.0, 22.0, n_main)
    strength = rng.uniform(0.25, 0.7, n_main)
    # side branches: from a point along each needle, at +-60 degrees, shorter and fainter
    n_side = 3 * n_main
    parent = rng.integers(0, n_main, n_side)
    along = rng.uniform(0.2, 0.9, n_side) * lengths[parent]
    direction = np.stack([np.sin(angles[parent]), np.cos(angles[parent])], axis=1)
    side_starts = starts[parent] + along[:, None] * direction
    side_angles = angles[parent] + rng.choice([-math.pi / 3, math.pi / 3], n_side)
    side_lengths = rng.uniform(0.15, 0.45, n_side) * lengths[parent]
    all_starts = np.concatenate([starts, side_starts])
    all_angles = np.concatenate([angles, side_angles])
    all_lengths = np.concatenate([lengths, side_lengths])
    all_strength = np.concatenate([strength, 0.7 * strength[parent]])
    steps = np.arange(0.0, 22.0, 0.5)
    mask = steps[None, :] <= all_lengths[:, None]
    ys = all_starts[:, :1] + steps[None, :] * np.sin(all_angles)[:, None]
    xs = all_starts[:, 1:] + steps[None, :] * np.cos(all_angles)[:, None]
    fade = 1.0 - 0.6 * steps[None, :] / np.maximum(all_lengths[:, None], 1e-6)
    weights = (all_strength[:, None] * fade)[mask]
    flat = (np.rint(ys[mask]).astype(np.int64) % h2) * w2 + np.rint(xs[mask]).astype(np.int64) % w2
    needles = np.bincount(flat, weights=weights, minlength=h2 * w2).reshape(h2, w2)
    needles = np.clip(ndimage.gaussian_filter(needles, 0.6, mode="wrap") * 1.6, 0.0, 1.0)
    tone = np.clip(0.1 + 0.35 * haze + 0.75 * needles, 0.0, 1.0)
    rgb = tone[..., None] * np.array([0.86, 0.93, 1.0])
    small = rgb.reshape(height, 2, width, 2, 3).mean(axis=(1, 3))
    return (small * 255.0).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def frost_bank() -> tuple[np.ndarray, ...]:
    """Five fixed procedural frost textures, standing in for the reference's frost1-5 photos."""
    rng = np.random.default_rng(20_190_503)
    return tuple(_frost_texture(rng, h, w) for h, w in _FROST_SHAPES)


@_corruption
def frost(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """c_img·x + c_frost·(a random crop of one of five frost textures), on 0..255;
    (c_img, c_frost) = (1, .2), (1, .3), (.9, .4), (.85, .4), (.75, .45).

    Deviation: the reference's frost photographs are not available offline, so `frost_bank`
    synthesises five textures; the texture choice, crop and blend follow the reference.
    """
    c_img, c_frost = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))[severity - 1]
    bank = frost_bank()
    n, size = image.shape[:2]
    which = rng.integers(0, len(bank), size=n)
    layers = np.empty(image.shape, dtype=np.float64)
    for k, idx in enumerate(which):
        texture = bank[idx]
        top = rng.integers(0, texture.shape[0] - size)
        left = rng.integers(0, texture.shape[1] - size)
        layers[k] = texture[top : top + size, left : left + size]
    return np.clip(c_img * image + c_frost * layers, 0, 255).astype(np.uint8)


@_corruption
def fog(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Add c·plasma fractal (wibble decay d), rescale by max/(max + c); (c, d) = (.2, 3),
    (.5, 3), (.75, 2.5), (1, 2), (1.5, 1.75); the fractal is 32 x 32 (next power of two ≥ H)."""
    c, decay = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))[severity - 1]
    n, size = image.shape[:2]
    x = _unit(image)
    top = x.max(axis=(1, 2, 3), keepdims=True)
    mapsize = max(32, 1 << (size - 1).bit_length())
    x = x + c * plasma_fractal(n, mapsize, decay, rng)[:, :size, :size, None]
    return _to_uint8(x * top / (top + c))


@_corruption
def brightness(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """HSV value + c (clipped to 1); c = .05, .1, .15, .2, .3.

    With hue and saturation fixed, RGB is linear in V, so the HSV round trip is a per-pixel
    scale V'/V (black pixels become grey V'); this equals skimage's rgb2hsv/hsv2rgb up to
    float rounding without the conversion.
    """
    c = (0.05, 0.1, 0.15, 0.2, 0.3)[severity - 1]
    x = _unit(image)
    value = x.max(axis=-1, keepdims=True)
    new_value = np.minimum(value + c, 1.0)
    scale = np.divide(new_value, value, out=np.zeros_like(value), where=value > 0)
    return _to_uint8(np.where(value > 0, x * scale, new_value))


@_corruption
def contrast(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """(x − per-channel mean)·c + mean; c = .75, .5, .4, .3, .15."""
    c = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]
    x = _unit(image)
    means = x.mean(axis=(1, 2), keepdims=True)
    return _to_uint8((x - means) * c + means)


@_corruption
def elastic_transform(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A random affine (three control points jittered by U(±a)), then a smooth random
    displacement field (uniform noise, Gaussian σ, scaled by α); (α, σ, a) = H·(0, 0, .08),
    H·(.05, .2, .07), H·(.08, .06, .06), H·(.1, .04, .05), H·(.1, .03, .03).

    The affine is OpenCV's warpAffine re-derived (bilinear, reflect-101 borders) with exact
    rather than 1/32-pixel-quantised coordinates. Severities 1-4 are from memory of the
    reference table and less certain than severity 5.
    """
    n, size = image.shape[:2]
    alpha, sigma, jitter = (
        np.array(
            (
                (0, 0, 0.08),
                (0.05, 0.2, 0.07),
                (0.08, 0.06, 0.06),
                (0.1, 0.04, 0.05),
                (0.1, 0.03, 0.03),
            )
        )[severity - 1]
        * size
    )
    x = image.astype(np.float32) / 255.0
    centre, half = float(size // 2), float(size // 3)
    src = np.array(
        [[centre + half, centre + half], [centre + half, centre - half], [centre - half] * 2]
    )
    dst = src[None] + rng.uniform(-jitter, jitter, size=(n, 3, 2))
    # the map from output (x, y, 1) back to input (x, y): solve [dst | 1] @ A = src
    inverse = np.linalg.solve(np.concatenate([dst, np.ones((n, 3, 1))], axis=2), src[None])
    r, c = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    a = inverse[:, None, None, :, :]
    src_x = c * a[..., 0, 0] + r * a[..., 1, 0] + a[..., 2, 0]
    src_y = c * a[..., 0, 1] + r * a[..., 1, 1] + a[..., 2, 1]
    x = bilinear(x, src_y, src_x, "mirror")
    shift_x = _gaussian(rng.uniform(-1, 1, (n, size, size)), sigma, "reflect", 3.0) * alpha
    shift_y = _gaussian(rng.uniform(-1, 1, (n, size, size)), sigma, "reflect", 3.0) * alpha
    return _to_uint8(bilinear(x, r + shift_y, c + shift_x, "reflect"))


@_corruption
def pixelate(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Box-downsample to int(H·c), box-upsample back (PIL); c = .95, .9, .85, .75, .65."""
    c = (0.95, 0.9, 0.85, 0.75, 0.65)[severity - 1]
    size = image.shape[1]
    small = int(size * c)

    def one(img: np.ndarray) -> np.ndarray:
        pil = Image.fromarray(img).resize((small, small), Image.Resampling.BOX)
        return np.asarray(pil.resize((size, size), Image.Resampling.BOX))

    return np.stack([one(img) for img in image])


@_corruption
def jpeg_compression(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A PIL JPEG round trip at quality 80, 65, 58, 50, 40."""
    quality = (80, 65, 58, 50, 40)[severity - 1]

    def one(img: np.ndarray) -> np.ndarray:
        buffer = io.BytesIO()
        Image.fromarray(img).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        return np.asarray(Image.open(buffer).convert("RGB"))

    return np.stack([one(img) for img in image])


CORRUPTION_FUNCS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}
assert tuple(CORRUPTION_FUNCS) == CORRUPTIONS


def corruption_seed(seed: int, name: str, severity: int, chunk: int = 0) -> list[int]:
    """The entropy `write_corrupted` gives `apply` for one (corruption, severity, chunk), so
    every block has its own stream and a subset of corruptions writes the same bytes."""
    return [int(seed), CORRUPTIONS.index(check_corruption(name)), check_severity(severity), chunk]


def apply(
    name: str, images: np.ndarray, severity: int, seed: int | Sequence[int] = 0
) -> np.ndarray:
    """Corrupt a uint8 batch (N, H, W, 3) with `name` at `severity`; deterministic per seed."""
    fn = CORRUPTION_FUNCS[check_corruption(name)]
    images = np.asarray(images)
    if images.ndim != 4:
        raise ConfigError(f"apply: images have shape {tuple(images.shape)}; need (N, H, W, 3)")
    return fn(images, severity, np.random.default_rng(seed))
