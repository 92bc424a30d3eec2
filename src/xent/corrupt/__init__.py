"""CIFAR-10-C style corruptions, generated locally, and the benchmark's on-disk layout."""

from xent.corrupt.corruptions import CORRUPTION_FUNCS, CORRUPTIONS, SEVERITIES, apply
from xent.corrupt.layout import read_corruption, write_corrupted

__all__ = [
    "CORRUPTIONS",
    "CORRUPTION_FUNCS",
    "SEVERITIES",
    "apply",
    "read_corruption",
    "write_corrupted",
]
