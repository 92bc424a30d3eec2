"""scripts/bench_startup.py and scripts/bench_gpu_throughput.py, run as `make bench` runs them
(a subprocess each), in their quick and smoke modes: the JSON they write and how they report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPTS = REPO / "scripts"


def bench(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_startup_quick_times_every_path_against_the_compose_baseline(tmp_path):
    proc = bench("bench_startup.py", "--quick", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("bar met" in proc.stdout) != ("bar missed" in proc.stdout), proc.stdout
    result = json.loads((tmp_path / "startup.json").read_text())
    medians = result["median_s"]
    assert set(medians) == {"help", "cfg_job", "hydra_compose", "import_torch", "first_step"}
    assert all(value > 0 for value in medians.values())
    for path in ("help", "cfg_job"):
        expected = medians[path] / medians["hydra_compose"]
        assert result["ratio_to_baseline"][path] == pytest.approx(expected)
        assert result["bar"][f"{path}_ratio"] == pytest.approx(expected)
    # the claim of cli.py: neither path imports torch (or Lightning)
    assert result["torch_imported"] == {"help": False, "cfg_job": False}
    assert result["bar"]["no_torch_import"] is True
    met = all(result["ratio_to_baseline"][p] < 1.5 for p in ("help", "cfg_job"))
    assert result["bar"]["met"] is met
    assert ("diagnosis" in result) is not met
    # the first step is stamped inside the run, after startup and before the process ends
    step = result["first_step"]
    assert 0 < step["batch_start_s"] <= step["step_end_s"] <= medians["first_step"] * 1.01
    line = next(
        line
        for line in (tmp_path / "README.md").read_text().splitlines()
        if line.startswith("- `startup`:")
    )
    assert "hydra+compose" in line and "cores" in line


@pytest.mark.slow  # a benchmark script in a subprocess
def test_gpu_throughput_without_cuda_measures_nothing(tmp_path):
    out = tmp_path / "out"
    proc = bench("bench_gpu_throughput.py", "--out", str(out), env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines() == [
        "gpu_throughput: no CUDA device here; nothing measured"
    ]
    assert not out.exists()


@pytest.mark.slow
def test_gpu_throughput_cpu_smoke_runs_both_loops(tmp_path):
    proc = bench(
        "bench_gpu_throughput.py",
        "--cpu-smoke",
        "--out",
        str(tmp_path),
        env={"CUDA_VISIBLE_DEVICES": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_throughput.json").read_text())
    assert result["smoke"] is True and result["setup"]["device"] == "cpu"
    candidates = result["candidates"]
    assert set(candidates) == {"xent", "hand"}
    for values in candidates.values():
        assert values["images_per_s"] > 0 and values["end_to_end_images_per_s"] > 0
        assert len(values["window_s"]) == result["setup"]["repeats"]
    ratio = candidates["xent"]["images_per_s"] / candidates["hand"]["images_per_s"]
    assert result["ratio_xent_to_hand"]["eager"] == pytest.approx(ratio)
    assert result["bar"]["met"] is (ratio >= 0.95)
    assert "CPU smoke" in (tmp_path / "README.md").read_text()
