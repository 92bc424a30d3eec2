"""`xent-corrupt`: write a CIFAR-10-C style benchmark from a clean test split, offline.

    xent-corrupt --source {cifar10,cifar100,digits32} --root DATA_DIR [--out OUT_DIR]
                 [--corruptions a,b] [--seed 0] [--limit N]

All five severities are always written (the layout addresses severities by row block). `--out`
defaults to where the data configs look: DATA_DIR/CIFAR-10-C, CIFAR-100-C or
DIGITS32-C-seed<seed>. Errors are one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xent.corrupt.corruptions import CORRUPTIONS, check_corruption
from xent.corrupt.layout import layout_dir, write_corrupted
from xent.errors import ConfigError, DataNotFoundError, XentError

SOURCES = ("cifar10", "cifar100", "digits32")


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="xent-corrupt",
        description="Write CIFAR-10-C style corrupted test sets (15 corruptions x 5 severities).",
    )
    parser.add_argument("--source", required=True, choices=SOURCES)
    parser.add_argument("--root", help="data dir holding the clean CIFAR (unused for digits32)")
    parser.add_argument("--out", help="output folder (default: where data=<source>_c looks)")
    parser.add_argument("--corruptions", help="comma-separated subset (default: all 15)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="only the first N test images")
    return parser


def load_test_split(source: str, root: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The clean test split as uint8 (N, 32, 32, 3) and int64 labels."""
    if source == "digits32":
        from xent.data.digits import DigitsDataModule

        test = DigitsDataModule(
            num_classes=10, in_channels=3, image_size=32, upsample=4
        ).load_splits()["test"]
        return test.images.permute(0, 2, 3, 1).contiguous().numpy(), test.labels.numpy()
    if root is None:
        raise ConfigError(f"--root is required for --source {source} (the clean CIFAR's data dir)")
    import torchvision

    cls = torchvision.datasets.CIFAR10 if source == "cifar10" else torchvision.datasets.CIFAR100
    try:
        data = cls(root, train=False, download=False)
    except RuntimeError as err:
        raise DataNotFoundError(
            f"{source} test set not found under {Path(root) / cls.base_folder} ({err}); "
            f"put the extracted archive there or run xent-run data={source} once to download it"
        ) from err
    return np.asarray(data.data, dtype=np.uint8), np.asarray(data.targets, dtype=np.int64)


def run(argv: Sequence[str] | None = None) -> str:
    """Parse, generate, and return the summary line."""
    args = _parser().parse_args(argv)
    if args.corruptions is None:
        corruptions = list(CORRUPTIONS)
    else:
        corruptions = [
            check_corruption(c.strip(), "--corruptions") for c in args.corruptions.split(",")
        ]
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit={args.limit} must be a positive number of images")
    images, labels = load_test_split(args.source, args.root)
    if args.limit is not None:
        images, labels = images[: args.limit], labels[: args.limit]
    out = Path(args.out) if args.out else layout_dir(args.root or "data", args.source, args.seed)
    start = time.perf_counter()
    write_corrupted(out, images, labels, corruptions, seed=args.seed)
    seconds = time.perf_counter() - start
    return (
        f"xent-corrupt: wrote {len(corruptions)} corruptions x 5 severities x {len(images)} "
        f"{args.source} test images to {out} in {seconds:.1f}s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        line = run(argv)
    except _UsageError as err:
        print(f"xent-corrupt: error: {err}", file=sys.stderr)
        return 2
    except XentError as err:
        print(f"xent-corrupt: error: {err}", file=sys.stderr)
        return 2
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
