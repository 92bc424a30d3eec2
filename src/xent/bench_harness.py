"""What every `scripts/bench_<name>.py` shares: interleaved timing, the machine, the JSON.

A benchmark compares candidates side by side in one process: each repetition runs every
candidate once, in a rotating order, so drift (thermal, a neighbour's load, caches) hits all of
them alike; the reported figure is the median over repetitions, and ratios are taken between
medians measured together, never against a number from another run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / "benchmarks"


def bench_parser(doc: str | None, quick: str = "tiny sizes and repeats: a smoke test"):
    """The options every benchmark script shares: --out (default benchmarks/) and --quick."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=BENCH_DIR, help="where the JSON and README go")
    parser.add_argument("--quick", action="store_true", help=quick)
    return parser


def interleaved(
    candidates: Mapping[str, Callable[[], Any]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Wall seconds of each candidate per repetition; `warmup` untimed rounds first.

    The order rotates every repetition (a, b, c; b, c, a; ...), so no candidate always runs
    right after a particular other one.
    """
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repeats):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            started = time.perf_counter()
            candidates[name]()
            times[name].append(time.perf_counter() - started)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> dict[str, Any]:
    """Enough to tell two benchmark files' machines apart."""
    import torch

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_kernels": torch.backends.cpu.get_cpu_capability(),  # AVX2 under xent's cap
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_result(
    name: str, result: dict[str, Any], summary: str, out_dir: Path = BENCH_DIR
) -> Path:
    """`benchmarks/<name>.json` (result + machine + date) and this benchmark's line in
    `benchmarks/README.md`, replacing its earlier line; returns the JSON path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    info = machine()
    payload = {
        "benchmark": name,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": info,
        **result,
    }
    path = out_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    where = info.get("gpu") or f"{info['cpu']}, {info['cores']} cores"
    line = f"- `{name}`: {summary} ({where}; {payload['date'][:10]})"
    _set_readme_line(out_dir / "README.md", name, line)
    return path


README_HEADER = """# Benchmarks

Each line is written by its script (`python scripts/bench_<name>.py`, or all of them: `make bench`)
from the run whose JSON sits beside this file; the machine is named on the line.

"""


def _set_readme_line(readme: Path, name: str, line: str) -> None:
    """Replace `name`'s line in the first block of entry lines ("- `<name>`: ...", kept sorted);
    later sections (notes that also start with a code span) are left where they are."""
    lines = (readme.read_text() if readme.exists() else README_HEADER).splitlines()
    start = next((i for i, e in enumerate(lines) if e.startswith("- `")), len(lines))
    end = start
    while end < len(lines) and lines[end].startswith("- `"):
        end += 1
    prefix = f"- `{name}`:"
    entries = sorted([e for e in lines[start:end] if not e.startswith(prefix)] + [line])
    readme.write_text("\n".join(lines[:start] + entries + lines[end:]) + "\n")
