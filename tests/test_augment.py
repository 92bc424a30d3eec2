"""Training augmentation (src/xent/data/augment.py and its use in data/base.py): random crops
and flips drawn per sample and per batch, exactly the windows a per-sample loop would take,
applied to training batches only; validation and test batches are the plain images, bitwise."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xent.data.augment import random_crop_flip
from xent.data.base import EpochBatchSampler, InMemoryImageDataModule, Split

PAD, SIZE, CHANNELS = 2, 8, 3


def images(n: int, seed: int = 0, size: int = SIZE) -> torch.Tensor:
    """Random uint8 images: every window of one is different from the others."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, CHANNELS, size, size), generator=gen, dtype=torch.uint8)


def reference_crop_flip(batch: torch.Tensor, padding: int, hflip: bool, seed: int):
    """A per-sample loop: zero-pad, take the window at (dy, dx), mirror it when drawn.

    The draws in augment.py's order: dy, dx per sample (with padding), then the flip coins.
    Returns the images and the draws."""
    gen = torch.Generator().manual_seed(seed)
    n, _, h, w = batch.shape
    dy = dx = [0] * n  # no offsets are drawn without padding
    if padding:
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=gen).tolist()
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=gen).tolist()
    flips = (torch.rand(n, generator=gen) < 0.5).tolist() if hflip else [False] * n
    out = []
    for image, y, x, flip in zip(batch, dy, dx, flips, strict=True):
        window = F.pad(image, (padding,) * 4)[:, y : y + h, x : x + w]
        out.append(window.flip(-1) if flip else window)
    return torch.stack(out), list(zip(dy, dx, flips, strict=True))


def window_of(out: torch.Tensor, source: torch.Tensor, padding: int) -> tuple[int, int, bool]:
    """(dy, dx, flip) of the one window of `source` that `out` is."""
    h, w = source.shape[-2:]
    padded = F.pad(source, (padding,) * 4)
    found = [
        (y, x, flip)
        for y in range(2 * padding + 1)
        for x in range(2 * padding + 1)
        for flip in (False, True)
        if torch.equal(
            out,
            padded[:, y : y + h, x : x + w].flip(-1) if flip else padded[:, y : y + h, x : x + w],
        )
    ]
    assert len(found) == 1, found
    return found[0]


def test_crop_flip_is_the_per_sample_loop():
    batch = images(64)
    for padding, hflip in ((PAD, True), (PAD, False), (0, True), (1, True), (4, True)):
        expected, _ = reference_crop_flip(batch, padding, hflip, seed=11)
        out = random_crop_flip(batch, padding, hflip, torch.Generator().manual_seed(11))
        assert out.dtype == torch.uint8 and torch.equal(out, expected), (padding, hflip)


def test_offsets_and_flips_vary_across_samples():
    """Read back from the output alone: every offset occurs, and about half are flipped."""
    batch = images(200)
    out = random_crop_flip(batch, PAD, True, torch.Generator().manual_seed(0))
    windows = [window_of(o, s, PAD) for o, s in zip(out, batch, strict=True)]
    assert {y for y, _, _ in windows} == set(range(2 * PAD + 1))
    assert {x for _, x, _ in windows} == set(range(2 * PAD + 1))
    _, draws = reference_crop_flip(batch, PAD, True, seed=0)
    assert windows == draws
    assert sum(flip for _, _, flip in windows) == 101  # of 200, under seed 0


def test_no_padding_and_no_flip_is_the_identity():
    batch = images(4)
    assert random_crop_flip(batch, 0, False, torch.Generator().manual_seed(0)) is batch


class RandomImages(InMemoryImageDataModule):
    """48/16/16 random images of 4 classes; per-channel mean/std set so that the expected
    normalisation is a formula of the test's own."""

    name = "random"
    MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)

    def __init__(self, **kwargs):
        super().__init__(
            num_classes=4,
            in_channels=CHANNELS,
            image_size=SIZE,
            mean=self.MEAN,
            std=self.STD,
            **kwargs,
        )

    def load_splits(self) -> dict[str, Split]:
        return {
            split: Split(images(n, seed), torch.arange(n) % 4)
            for split, n, seed in (("train", 48, 1), ("val", 16, 2), ("test", 16, 3))
        }


def normalised(batch: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(RandomImages.MEAN).view(1, -1, 1, 1)
    std = torch.tensor(RandomImages.STD).view(1, -1, 1, 1)
    return (batch.float() / 255 - mean) / std


def module(**kwargs) -> RandomImages:
    dm = RandomImages(batch_size=16, crop_padding=PAD, hflip=True, **kwargs)
    dm.setup("fit")
    return dm


def epoch_batches(loader, epoch: int) -> list:
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_training_batches_are_augmented_with_their_batch_seed():
    dm = module(shuffle_seed=4)
    train = dm.splits["train"].images
    sampler = EpochBatchSampler(48, 16, shuffle=True, drop_last=False, seed=4)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batches = epoch_batches(dm.train_dataloader(), epoch)
        for (x, _, index), (indices, seed) in zip(batches, sampler, strict=True):
            assert torch.equal(index, indices)
            crops, _ = reference_crop_flip(train[indices], PAD, True, seed)
            torch.testing.assert_close(x, normalised(crops), rtol=1e-6, atol=1e-6)
            assert not torch.allclose(x, normalised(train[indices]))


def test_the_same_sample_is_augmented_differently_in_each_epoch():
    dm = module()
    views = []
    for epoch in range(3):
        batches = epoch_batches(dm.train_dataloader(), epoch)
        x = torch.cat([b[0] for b in batches])
        index = torch.cat([b[2] for b in batches])
        views.append(x[index.argsort()])
    for a, b in ((0, 1), (1, 2), (0, 2)):
        same = [torch.equal(u, v) for u, v in zip(views[a], views[b], strict=True)]
        assert sum(same) < 8, (a, b, sum(same))  # of 48; chance agreement is 1/50 per sample


def test_validation_and_test_batches_are_untouched_bitwise():
    dm = module()
    for split, loader in (("val", dm.val_dataloader()), ("test", dm.test_dataloader())):
        (x, y, index), *rest = list(loader)
        assert rest == [] and torch.equal(index, torch.arange(16))
        plain = dm.splits[split].images.to(torch.float32).div(255.0)
        expected = plain.sub(torch.tensor(RandomImages.MEAN).view(1, -1, 1, 1))
        expected = expected.div(torch.tensor(RandomImages.STD).view(1, -1, 1, 1))
        assert torch.equal(x, expected), split
        assert torch.equal(y, dm.splits[split].labels)


def test_augmentation_off_gives_plain_training_batches():
    dm = RandomImages(batch_size=48)
    dm.setup("fit")
    (x, _, index), *_ = list(dm.train_dataloader())
    torch.testing.assert_close(x, normalised(dm.splits["train"].images[index]), rtol=0, atol=1e-6)
