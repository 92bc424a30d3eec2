"""CIFAR-10 / CIFAR-100 through torchvision's loaders, decoded once into uint8 tensors."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision

from xent.data.base import InMemoryImageDataModule, Split
from xent.data.split import stratified_split
from xent.errors import DataNotFoundError

# (path, size, mtime) of CIFAR files whose md5 matched: the preflight and the job share them.
_VERIFIED: set[tuple[str, int, int]] = set()


class CIFARDataModule(InMemoryImageDataModule):
    """CIFAR-10/100 from `root` (torchvision's on-disk layout), downloaded when allowed.

    `val_size` = 0 (the default) validates on the test split, as the CRD / distillation
    literature does, so published numbers compare; `val_size` > 0 holds out that many
    training images (stratified, by `split_seed`) instead.
    """

    variants = {
        "cifar10": (torchvision.datasets.CIFAR10, "cifar-10-python.tar.gz"),
        "cifar100": (torchvision.datasets.CIFAR100, "cifar-100-python.tar.gz"),
    }

    def __init__(
        self,
        variant: str,
        root: str,
        download: bool = True,
        val_size: int = 0,
        split_seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if variant not in self.variants:
            raise DataNotFoundError(
                f"data.variant={variant!r} is not one of {sorted(self.variants)}"
            )
        self.name, self.root, self.download = variant, Path(root), download
        self.val_size, self.split_seed = val_size, split_seed
        self.dataset_cls, self.archive = self.variants[variant]

    @property
    def folder(self) -> Path:
        return self.root / self.dataset_cls.base_folder

    def expected_files(self) -> list[Path]:
        names = [name for name, _ in self.dataset_cls.train_list + self.dataset_cls.test_list]
        return [self.folder / name for name in names + [self.dataset_cls.meta["filename"]]]

    def prepare_data(self) -> None:
        """Download when files are missing and allowed; else one line saying where they go."""
        missing = [p.name for p in self.expected_files() if not p.exists()]
        if not missing:
            self.check_files()
            return
        hint = (
            f"{self.name}: {', '.join(missing)} not found under {self.folder}. "
            f"Put the extracted {self.archive} in {self.root} (or set data.root / XENT_DATA)"
        )
        if not self.download:
            raise DataNotFoundError(hint + ", or allow data.download=true.")
        try:
            self.dataset_cls(str(self.root), train=True, download=True)
        except Exception as err:  # noqa: BLE001 - any network/IO failure means the same to a user
            raise DataNotFoundError(
                f"{hint}; download failed ({type(err).__name__}: {err})."
            ) from err

    def check_files(self) -> None:
        """Every file against torchvision's md5: a truncated or foreign file fails here, before
        a run dir is written, naming the file (torchvision's own check names none, at decode).
        A file verified once (same size and mtime) is not read again in this process."""
        import torchvision.datasets.cifar as tv_cifar  # looked up at call time: tests patch it

        cls = self.dataset_cls
        for name, md5 in [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]:
            path = self.folder / name
            stat = path.stat()
            key = (str(path), stat.st_size, stat.st_mtime_ns)
            if key in _VERIFIED:
                continue
            if not tv_cifar.check_integrity(str(path), md5):
                raise DataNotFoundError(
                    f"{self.name}: {path} failed torchvision's checksum (truncated, or not the "
                    f"original file); delete it and re-run with data.download=true"
                )
            _VERIFIED.add(key)

    def load_splits(self) -> dict[str, Split]:
        self.prepare_data()
        train, test = (self._decode(train=flag) for flag in (True, False))
        if self.val_size <= 0:
            return {"train": train, "val": test, "test": test}
        fraction = self.val_size / len(train.labels)
        parts = stratified_split(
            train.labels, {"val": fraction, "train": 1.0 - fraction}, self.split_seed
        )
        return {
            "train": Split(train.images[parts["train"]], train.labels[parts["train"]]),
            "val": Split(train.images[parts["val"]], train.labels[parts["val"]]),
            "test": test,
        }

    def _decode(self, train: bool) -> Split:
        try:
            dataset = self.dataset_cls(str(self.root), train=train, download=False)
        except RuntimeError as err:
            raise DataNotFoundError(
                f"{self.name}: files under {self.folder} failed torchvision's checksum ({err}); "
                f"delete them and re-run with data.download=true"
            ) from err
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
        return Split(images, torch.as_tensor(dataset.targets, dtype=torch.long))
