"""Fashion-MNIST (Zalando, MIT licence): real 28x28 images that do not saturate like digits.

The files are the original IDX ones, read by torchvision from `<root>/FashionMNIST/raw/`.
Where they are missing they come, in this order, from Debian's `dataset-fashion-mnist` package
(gzipped IDX under `system_dir`, decompressed once into the raw folder: torchvision reads only
uncompressed files, and these gzips are recompressed, so its checksums of the download would
not match them) or from torchvision's download when `download` is allowed.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from xent.checks import integer
from xent.data.base import InMemoryImageDataModule, Split
from xent.data.split import stratified_split
from xent.errors import ConfigError, DataNotFoundError

# The four IDX files, as torchvision names them once decompressed.
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"  # where dataset-fashion-mnist installs them
NATIVE_SIZE = 28
HOW_TO_GET = (
    "install Debian's package (`make data`, or as root `apt-get install dataset-fashion-mnist`) "
    "or allow torchvision's download (data.download=true, needs internet)"
)


class FashionMNISTDataModule(InMemoryImageDataModule):
    """60,000 training and 10,000 test images of 10 clothing classes.

    `val_size` training images (stratified, by `split_seed`) are held out for validation, so
    the test split stays unseen, as for digits. `train_size` caps the rest (stratified, same
    seed) for runs sized to a CPU, and `test_size` the test split (a corrupted stream generated
    from it costs time per image). `image_size` 32 zero-pads each side by 2 pixels and
    `in_channels` 3 repeats the grey channel, so that the 32x32x3 CIFAR models and corruptions
    apply (`data=fashion_mnist32`); padding keeps every original pixel, where resizing would blur.
    """

    name = "fashion_mnist"

    def __init__(
        self,
        root: str,
        download: bool = True,
        system_dir: str = SYSTEM_DIR,
        val_size: int = 5000,
        train_size: int | None = None,
        test_size: int | None = None,
        split_seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if self.image_size not in (NATIVE_SIZE, 32):
            raise ConfigError(
                f"data.image_size={self.image_size}: fashion_mnist is 28 (as stored) or 32 "
                "(zero-padded); use 28 or 32"
            )
        if self.in_channels not in (1, 3):
            raise ConfigError(f"data.in_channels={self.in_channels}: use 1 (grey) or 3 (repeated)")
        integer("data.val_size", val_size, at_least=self.num_classes)
        integer("data.train_size", train_size, at_least=self.num_classes, optional=True)
        integer("data.test_size", test_size, at_least=self.num_classes, optional=True)
        self.root, self.download, self.system_dir = Path(root), download, Path(system_dir)
        self.val_size, self.train_size, self.split_seed = val_size, train_size, split_seed
        self.test_size = test_size

    @property
    def raw_folder(self) -> Path:
        """Where torchvision's FashionMNIST looks for the decompressed IDX files."""
        return self.root / "FashionMNIST" / "raw"

    def missing_files(self) -> list[str]:
        return [name for name in IDX_FILES if not (self.raw_folder / name).is_file()]

    def prepare_data(self) -> None:
        """Get the IDX files into `raw_folder` (see module docstring), or say in one line how."""
        missing = self.missing_files()
        if not missing:
            return
        if all((self.system_dir / f"{name}.gz").is_file() for name in missing):
            try:
                decompress_into(self.system_dir, missing, self.raw_folder)
            except (OSError, EOFError) as err:  # a truncated or foreign .gz
                raise DataNotFoundError(
                    f"fashion_mnist: could not decompress the IDX files in {self.system_dir} "
                    f"into {self.raw_folder} ({type(err).__name__}: {err})"
                ) from err
            return
        hint = f"fashion_mnist: {', '.join(missing)} not found under {self.raw_folder}"
        if not self.download:
            raise DataNotFoundError(f"{hint}; {HOW_TO_GET}.")
        import torchvision

        try:
            torchvision.datasets.FashionMNIST(str(self.root), train=True, download=True)
        except Exception as err:  # noqa: BLE001 - any network/IO failure means the same to a user
            raise DataNotFoundError(
                f"{hint}, and torchvision's download failed ({type(err).__name__}); {HOW_TO_GET}."
            ) from err

    def load_splits(self) -> dict[str, Split]:
        self.prepare_data()
        train, test = (self._decode(train=flag) for flag in (True, False))
        fraction = self.val_size / len(train.labels)
        parts = stratified_split(
            train.labels, {"val": fraction, "train": 1.0 - fraction}, self.split_seed
        )
        return {
            "train": capped(train, parts["train"], self.train_size, self.split_seed),
            "val": Split(train.images[parts["val"]], train.labels[parts["val"]]),
            "test": capped(test, torch.arange(len(test.labels)), self.test_size, self.split_seed),
        }

    def _decode(self, train: bool) -> Split:
        """One split through torchvision's IDX reader, shaped to (N, in_channels, size, size)."""
        import torchvision

        try:
            dataset = torchvision.datasets.FashionMNIST(str(self.root), train=train, download=False)
        except Exception as err:  # noqa: BLE001 - a truncated or foreign file
            raise DataNotFoundError(
                f"fashion_mnist: the IDX files under {self.raw_folder} could not be read "
                f"({type(err).__name__}: {err}); delete them and run again ({HOW_TO_GET})"
            ) from err
        images = dataset.data[:, None]
        pad = (self.image_size - NATIVE_SIZE) // 2
        if pad:
            images = F.pad(images, (pad, pad, pad, pad))
        images = images.expand(-1, self.in_channels, -1, -1).contiguous()
        return Split(images, dataset.targets.to(torch.long))


def capped(split: Split, indices: torch.Tensor, size: int | None, seed: int) -> Split:
    """`split` at `indices`, or a stratified subset of `size` of them (fixed by `seed`)."""
    if size is not None and size < len(indices):
        keep = size / len(indices)
        sub = stratified_split(split.labels[indices], {"kept": keep, "rest": 1.0 - keep}, seed)
        indices = indices[sub["kept"]]
    return Split(split.images[indices], split.labels[indices])


def decompress_into(source: Path, names: list[str], folder: Path) -> None:
    """`<source>/<name>.gz` → `<folder>/<name>`, each written to a temp file and renamed into
    place, so that a concurrent run never reads half a file."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        handle, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        try:
            with os.fdopen(handle, "wb") as out, gzip.open(source / f"{name}.gz", "rb") as src:
                shutil.copyfileobj(src, out)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; the data dir is shared
            os.replace(tmp, folder / name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def main() -> None:
    """`python -m xent.data.fashion_mnist` (what `make data` runs): the IDX files into
    `$XENT_DATA/FashionMNIST/raw` (default ./data, where xent-run looks), or the one-line error."""
    import sys

    root = os.environ.get("XENT_DATA", "data")
    module = FashionMNISTDataModule(
        root=root,
        download=False,
        system_dir=SYSTEM_DIR,
        num_classes=10,
        in_channels=1,
        image_size=NATIVE_SIZE,
    )
    try:
        module.prepare_data()
    except DataNotFoundError as err:
        print(f"make data: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"fashion_mnist: {module.raw_folder} has {', '.join(IDX_FILES)}")


if __name__ == "__main__":
    main()
