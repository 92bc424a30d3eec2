"""One seed, one set of numbers on AVX2 and AVX-512 CPUs: xent caps torch's CPU kernels at AVX2
(src/xent/cpu_kernels.py) before torch runs anything, and keeps a cap the user set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from xent.cpu_kernels import AVX2_CAPS, cap_cpu_kernels_at_avx2, cpu_has_avx2

CAPS_ON_AVX2 = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}


def test_an_avx2_cpu_gets_all_three_caps():
    environ: dict[str, str] = {}
    added = cap_cpu_kernels_at_avx2(environ, machine="x86_64", has_avx2=True)
    assert environ == CAPS_ON_AVX2 and added == list(CAPS_ON_AVX2)


def test_a_cap_the_user_set_is_kept():
    environ = {"ATEN_CPU_CAPABILITY": "avx512", "PATH": "/bin"}
    added = cap_cpu_kernels_at_avx2(environ, machine="AMD64", has_avx2=True)
    assert added == ["ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS"]
    assert environ == {**CAPS_ON_AVX2, "ATEN_CPU_CAPABILITY": "avx512", "PATH": "/bin"}


@pytest.mark.parametrize(("machine", "has_avx2"), [("aarch64", True), ("x86_64", False)])
def test_no_cap_on_arm_or_on_a_cpu_without_avx2(machine: str, has_avx2: bool):
    """ATen takes `avx2` without checking the CPU: set there it would crash."""
    environ: dict[str, str] = {}
    assert cap_cpu_kernels_at_avx2(environ, machine=machine, has_avx2=has_avx2) == []
    assert environ == {}


def test_avx2_is_read_from_the_flags_line(tmp_path: Path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: avx2 in a name\nflags\t\t: fpu sse2 avx avx2 avx512f\n")
    assert cpu_has_avx2(cpuinfo)
    cpuinfo.write_text("model name\t: Some avx2 CPU\nflags\t\t: fpu sse2 avx avx512f\n")
    assert not cpu_has_avx2(cpuinfo)
    assert not cpu_has_avx2(tmp_path / "missing")


def test_the_names_are_the_three_libraries_variables():
    assert AVX2_CAPS == CAPS_ON_AVX2


@pytest.mark.skipif(not cpu_has_avx2(), reason="the cap applies to x86-64 CPUs with AVX2")
@pytest.mark.parametrize(
    ("user_env", "expected"),
    [
        ({}, "AVX2"),
        pytest.param({"ATEN_CPU_CAPABILITY": "default"}, "DEFAULT", marks=pytest.mark.slow),
    ],
)
def test_importing_xent_caps_torch_before_its_first_operation(user_env, expected):
    """In a fresh interpreter, as the CLI starts: torch imported first, xent next, then the first
    operation; AVX2 whatever the CPU's widest (AVX-512 here or not), unless the user chose."""
    code = "import torch, xent; torch.ones(2).sum();print(torch.backends.cpu.get_cpu_capability())"
    env = {k: v for k, v in os.environ.items() if k not in AVX2_CAPS}
    proc = subprocess.run(
        [sys.executable, "-c", code], env={**env, **user_env}, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected
