"""data=fashion_mnist / fashion_mnist32 on tiny IDX files written in the exact on-disk format.

The IDX format (Fashion-MNIST's README, LeCun's MNIST page): a big-endian header of magic
0x00000803 (uint8 images, 3 dims) or 0x00000801 (uint8 labels, 1 dim), the dimension sizes as
big-endian int32, then the bytes. Debian's dataset-fashion-mnist ships them gzipped.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import composed
from xent.data.fashion_mnist import IDX_FILES, FashionMNISTDataModule
from xent.errors import DataNotFoundError


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of uint8 data: magic (0, 0, 0x08, ndim), sizes, data."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def fake_fashion(n_train: int = 200, n_test: int = 50, seed: int = 0) -> dict[str, np.ndarray]:
    """Images whose pixels encode (class, index), so a test can tell which image went where."""
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        images = rng.integers(1, 255, (n, 28, 28)).astype(np.uint8)
        images[:, 0, 0] = labels * 20 + 1  # the class, readable back at the pixel (0, 0)
        out[f"{prefix}-images-idx3-ubyte"] = images
        out[f"{prefix}-labels-idx1-ubyte"] = labels.astype(np.uint8)
    return out


def write_idx(folder: Path, arrays: dict[str, np.ndarray], gzipped: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        data = idx_bytes(array)
        if gzipped:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


def module(root: Path, system_dir: Path, **kw) -> FashionMNISTDataModule:
    args = dict(num_classes=10, in_channels=1, image_size=28, val_size=20, download=False)
    return FashionMNISTDataModule(root=str(root), system_dir=str(system_dir), **{**args, **kw})


def test_idx_bytes_is_the_real_header():
    assert idx_bytes(np.zeros((2, 28, 28)))[:16].hex() == "00000803000000020000001c0000001c"
    assert idx_bytes(np.zeros(5))[:8].hex() == "0000080100000005"


def test_debian_gzips_are_decompressed_and_read(tmp_path):
    arrays = fake_fashion()
    system = write_idx(tmp_path / "system", arrays, gzipped=True)
    dm = module(tmp_path / "data", system)
    dm.setup()
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(IDX_FILES)  # no temp files left
    assert (raw / "t10k-labels-idx1-ubyte").read_bytes() == idx_bytes(
        arrays["t10k-labels-idx1-ubyte"]
    )
    assert oct((raw / "train-images-idx3-ubyte").stat().st_mode & 0o777) == "0o644"
    test = dm.splits["test"]
    assert test.images.shape == (50, 1, 28, 28) and test.images.dtype == torch.uint8
    assert torch.equal(test.images[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]))
    assert torch.equal(test.labels, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())
    # val_size held out of the 200 training images, stratified: 2 per class
    assert len(dm.splits["val"].labels) == 20 and len(dm.splits["train"].labels) == 180
    assert torch.bincount(dm.splits["val"].labels).tolist() == [2] * 10
    for split in dm.splits.values():  # every image keeps its own label
        assert torch.equal((split.images[:, 0, 0, 0].long() - 1) // 20, split.labels)


def test_existing_raw_files_are_used_and_never_rewritten(tmp_path):
    raw = write_idx(tmp_path / "FashionMNIST" / "raw", fake_fashion(), gzipped=False)
    before = {name: (raw / name).stat().st_mtime_ns for name in IDX_FILES}
    dm = module(tmp_path, tmp_path / "no-such-system-dir")
    dm.setup()
    assert {name: (raw / name).stat().st_mtime_ns for name in IDX_FILES} == before
    assert len(dm.splits["test"].labels) == 50


def test_split_is_fixed_by_split_seed_and_train_size_caps_it(tmp_path):
    raw_root = tmp_path
    write_idx(raw_root / "FashionMNIST" / "raw", fake_fashion(n_train=400), gzipped=False)

    def train_pixels(**kw) -> list[int]:
        dm = module(raw_root, tmp_path / "none", **kw)
        dm.setup()
        return dm.splits["train"].images[:, 0, 5, 5].tolist()

    assert train_pixels() == train_pixels()
    assert train_pixels() != train_pixels(split_seed=1)
    capped = module(raw_root, tmp_path / "none", train_size=100)
    capped.setup()
    assert torch.bincount(capped.splits["train"].labels).tolist() == [10] * 10
    assert len(capped.splits["val"].labels) == 20  # the cap leaves validation as it was


def test_32_variant_pads_and_repeats_channels(tmp_path):
    arrays = fake_fashion()
    write_idx(tmp_path / "FashionMNIST" / "raw", arrays, gzipped=False)
    dm = module(tmp_path, tmp_path / "none", in_channels=3, image_size=32)
    dm.setup()
    images = dm.splits["test"].images
    assert images.shape == (50, 3, 32, 32)
    original = torch.from_numpy(arrays["t10k-images-idx3-ubyte"])
    for channel in range(3):
        assert torch.equal(images[:, channel, 2:30, 2:30], original)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert images[:, :, border].eq(0).all()


def test_missing_files_say_both_ways_to_get_them(tmp_path):
    dm = module(tmp_path / "data", tmp_path / "empty")
    with pytest.raises(DataNotFoundError) as err:
        dm.prepare_data()
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    assert str(err.value) == (
        f"fashion_mnist: {', '.join(IDX_FILES)} not found under {raw}; install Debian's package "
        "(`make data`, or as root `apt-get install dataset-fashion-mnist`) or allow "
        "torchvision's download (data.download=true, needs internet)."
    )
    assert not raw.exists()  # nothing written


def test_failed_download_says_both_ways(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    dm = module(tmp_path, tmp_path / "empty", download=True)
    with pytest.raises(DataNotFoundError, match=r"torchvision's download failed \(OSError\); "):
        dm.prepare_data()


def test_truncated_files_name_the_folder(tmp_path):
    raw = write_idx(tmp_path / "FashionMNIST" / "raw", fake_fashion(), gzipped=False)
    data = (raw / "train-images-idx3-ubyte").read_bytes()
    (raw / "train-images-idx3-ubyte").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataNotFoundError, match=f"the IDX files under {raw} could not be read"):
        module(tmp_path, tmp_path / "none").setup()


def test_bad_gzip_is_one_error(tmp_path):
    system = write_idx(tmp_path / "system", fake_fashion(), gzipped=True)
    (system / "train-images-idx3-ubyte.gz").write_bytes(b"not a gzip")
    with pytest.raises(DataNotFoundError, match="could not decompress the IDX files in"):
        module(tmp_path / "data", system).prepare_data()


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"image_size": 30}, "data.image_size=30: fashion_mnist is 28"),
        ({"in_channels": 2}, "data.in_channels=2: use 1 (grey) or 3"),
        ({"val_size": 5}, "data.val_size=5"),
        ({"train_size": 0}, "data.train_size=0"),
    ],
)
def test_bad_settings_are_refused(tmp_path, kw, message):
    with pytest.raises(Exception, match=message.replace("(", r"\(").replace(")", r"\)")):
        module(tmp_path, tmp_path, **kw)


@pytest.mark.parametrize(
    "name,shape", [("fashion_mnist", [1, 28, 28]), ("fashion_mnist32", [3, 32, 32])]
)
def test_configs_compose_to_the_module(tmp_path, name, shape):
    cfg = composed(tmp_path, f"data={name}")
    assert cfg.data._target_ == "xent.data.fashion_mnist.FashionMNISTDataModule"
    assert list(cfg.data.input_shape) == shape
    assert cfg.data.root == str(tmp_path / "data")
    assert cfg.data.system_dir == "/usr/share/datasets/fashion-mnist"


def test_make_data_prepares_xent_data(tmp_path, monkeypatch, capsys):
    from xent.data import fashion_mnist

    system = write_idx(tmp_path / "system", fake_fashion(), gzipped=True)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", str(system))
    monkeypatch.setenv("XENT_DATA", str(tmp_path / "data"))
    fashion_mnist.main()
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    assert capsys.readouterr().out == f"fashion_mnist: {raw} has {', '.join(IDX_FILES)}\n"
    assert sorted(p.name for p in raw.iterdir()) == sorted(IDX_FILES)


def test_make_data_without_the_package_is_one_line(tmp_path, monkeypatch, capsys):
    from xent.data import fashion_mnist

    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", str(tmp_path / "absent"))
    monkeypatch.setenv("XENT_DATA", str(tmp_path / "data"))
    with pytest.raises(SystemExit) as exit_info:
        fashion_mnist.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("make data: error: fashion_mnist: ") and err.count("\n") == 1
    assert "apt-get install dataset-fashion-mnist" in err and "data.download=true" in err


def test_test_size_caps_the_test_split_stratified(tmp_path):
    write_idx(tmp_path / "FashionMNIST" / "raw", fake_fashion(n_test=100), gzipped=False)
    dm = module(tmp_path, tmp_path / "none", test_size=30)
    dm.setup()
    test = dm.splits["test"]
    assert torch.bincount(test.labels).tolist() == [3] * 10
    assert torch.equal((test.images[:, 0, 0, 0].long() - 1) // 20, test.labels)


def test_corrupted_fashion_stream_is_generated_from_the_clean_test_split(tmp_path):
    from xent.data.corrupted import CorruptedStreamDataModule

    arrays = fake_fashion(n_train=200, n_test=100)
    write_idx(tmp_path / "FashionMNIST" / "raw", arrays, gzipped=False)
    clean = {"val_size": 20, "test_size": 40, "download": False, "system_dir": str(tmp_path)}
    dm = CorruptedStreamDataModule(
        variant="fashion_mnist32",
        root=str(tmp_path),
        corruptions=["gaussian_noise", "fog"],
        batch_size=16,
        clean=clean,
    )
    dm.setup()
    assert dm.corrupted_root == tmp_path / "FASHION_MNIST32-C-seed0"
    assert dm.n_per_severity == 40
    batches = list(dm.test_dataloader())
    assert [len(y) for _, y, _ in batches] == [16, 16, 8, 16, 16, 8]  # never across a domain
    x, y, domain = batches[0]
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32
    stream_labels = torch.cat([y for _, y, d in batches if int(d[0]) == 0])
    clean_labels = dm.clean_module.splits["test"].labels
    assert sorted(stream_labels.tolist()) == sorted(clean_labels.tolist())
