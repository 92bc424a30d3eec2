"""Same seed, same numbers on every x86-64 CPU with AVX2, AVX-512 ones included.

torch's CPU code picks its kernels by the widest vector instructions the CPU has, in three
places: ATen's own kernels, oneDNN's (convolutions) and MKL's (matrix products). AVX-512 kernels
sum in another order than AVX2 ones, so one seed gives other last digits on an AVX-512 machine:
the Quickstart run's test/nll was 0.0202 there against 0.0198 on an AVX2 machine, and the exact
values the tests pin moved with it. Capping all three at AVX2 before torch runs its first
operation gives the AVX2 numbers on both kinds of machine (measured: the Quickstart table exactly,
in the same training time). A variable the user has set is kept, so
`ATEN_CPU_CAPABILITY=avx512 ONEDNN_MAX_CPU_ISA=AVX512_CORE MKL_ENABLE_INSTRUCTIONS=AVX512 xent-run`
still gets the wider kernels, with their own last digits.

The libraries read these variables once, at their first operation: importing `xent` before any
torch operation (the CLI, the tests and the scripts all do) is what makes the cap hold.
"""

from __future__ import annotations

import os
import platform
from collections.abc import MutableMapping
from pathlib import Path

AVX2_CAPS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}


def cpu_has_avx2(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU lists AVX2 among its flags (Linux; elsewhere: unknown, so False). ATen
    takes `avx2` without checking, and would crash on a CPU without it."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    return any(
        line.startswith("flags") and "avx2" in line.split(":", 1)[-1].split()
        for line in text.splitlines()
    )


def cap_cpu_kernels_at_avx2(
    environ: MutableMapping[str, str] = os.environ,
    machine: str | None = None,
    has_avx2: bool | None = None,
) -> list[str]:
    """Set the AVX2 caps the user has not set, on an x86-64 CPU with AVX2; the names it set."""
    machine = platform.machine() if machine is None else machine
    if machine.lower() not in {"x86_64", "amd64"}:
        return []
    if not (cpu_has_avx2() if has_avx2 is None else has_avx2):
        return []
    added = [name for name in AVX2_CAPS if name not in environ]
    for name in added:
        environ[name] = AVX2_CAPS[name]
    return added
