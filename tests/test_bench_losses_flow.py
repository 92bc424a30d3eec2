"""scripts/bench_loss_cost.py and scripts/bench_flow_coupling.py (issue 8): each runs with
--quick into a temporary folder, and its JSON covers every loss config it should, with
consistent times and ratios, a fitted exponent, and its README line."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
LOSS_CONF = REPO / "src" / "xent" / "conf" / "loss"
# Not classification losses on class logits, so loss_cost leaves them out (its docstring says
# why); any other config in conf/loss must be benchmarked.
NOT_CLASSIFICATION = {"mse", "hlgauss", "cfm", "otcfm", "wcfm"}
BINARY_ONLY = {"anyloss"}


def script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_quick(name: str, out: Path) -> tuple[dict, str]:
    """Run scripts/<name>.py --quick --out OUT as a user would; its JSON and stdout."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / f"{name}.py"), "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    bench = name.removeprefix("bench_")
    return json.loads((out / f"{bench}.json").read_text()), proc.stdout


def readme_line(out: Path, bench: str) -> str:
    lines = [e for e in (out / "README.md").read_text().splitlines() if e.startswith("- `")]
    assert len(lines) == 1
    assert lines[0].startswith(f"- `{bench}`: ")
    return lines[0]


def expected_losses() -> set[str]:
    return {p.stem for p in LOSS_CONF.glob("*.yaml")} - NOT_CLASSIFICATION


def test_loss_cost_benchmarks_every_classification_config():
    kept, excluded = script("bench_loss_cost").loss_configs()
    assert set(kept) == expected_losses()
    assert set(excluded) == NOT_CLASSIFICATION


def test_fit_power_recovers_an_exponent():
    fit = script("bench_flow_coupling").fit_power(
        [256, 1024, 4096], [3e-3 * b**1.7 for b in [1, 4, 16]]
    )
    assert math.isclose(fit["k"], 1.7, rel_tol=1e-9)
    assert math.isclose(fit["a_ms"], 3e-3 / 256**1.7 * 1e3, rel_tol=1e-6)


@pytest.mark.slow  # seconds: keeps the fast tier under its 2-minute budget
def test_loss_cost_quick(tmp_path):  # ~3 s: a subprocess that imports torch and Hydra
    data, stdout = run_quick("bench_loss_cost", tmp_path)
    results = data["results"]
    assert set(results) == expected_losses()
    assert set(data["excluded"]) == NOT_CLASSIFICATION
    assert data["torch_threads"] == 1 and data["machine"]["cores"] >= 1
    grid = [str(c) for c in data["classes"]]
    binary = str(data["binary_classes"])
    for name, by_classes in results.items():
        wanted = {binary} if name in BINARY_ONLY else set(grid)
        if name == data["baseline"]:
            wanted = {binary, *grid}
        assert set(by_classes) == wanted, name
        for classes, entry in by_classes.items():
            ce = results["ce"][classes]["ms"]
            assert entry["ms"] > 0
            assert math.isclose(entry["ratio"], entry["ms"] / ce, rel_tol=1e-12), (name, classes)
    bar = data["bar"]
    assert bar["pld_ratio_at_100_classes"] == results["pld"]["100"]["ratio"]
    assert 0 < bar["pld_sort_only_ratio_at_100_classes"] and "pld_sort_only" not in results
    above = {n for n, v in results.items() if any(e["ratio"] > bar["limit"] for e in v.values())}
    assert set(bar["above_limit"]) == above
    assert bar["met"] == (bar["pld_met"] and not bar["unexplained_above_limit"])
    assert ("bar missed" in stdout) == (not bar["met"])
    assert "PLD" in readme_line(tmp_path, "loss_cost")


@pytest.mark.slow
def test_flow_coupling_quick(tmp_path):
    data, stdout = run_quick("bench_flow_coupling", tmp_path)
    assert len(data["batches"]) == 3 and data["torch_threads"] == 1
    for batch in data["batches"]:
        result = data["results"][str(batch)]
        for name in ("cfm", "wcfm", "otcfm"):
            assert result[name]["ms"] > 0 and result[name]["inner_steps"] >= 1
        ot = result["otcfm"]
        assert 0 < ot["coupling_ms"] <= ot["ms"]
        base = result["cfm"]["ms"]
        assert math.isclose(result["wcfm_over_icfm"], result["wcfm"]["ms"] / base, rel_tol=1e-12)
        assert math.isclose(result["otcfm_over_icfm"], ot["ms"] / base, rel_tol=1e-12)
    for key in ("otcfm_step", "otcfm_coupling"):
        assert math.isfinite(data["fit"][key]["k"]) and data["fit"][key]["a_ms"] > 0
    bar = data["bar"]
    assert bar["otcfm_exponent_step"] == data["fit"]["otcfm_step"]["k"]
    assert bar["otcfm_exponent_coupling"] == data["fit"]["otcfm_coupling"]["k"]
    ratios = [data["results"][str(b)]["wcfm_over_icfm"] for b in data["batches"]]
    assert bar["met"] == all(r <= bar["wcfm_over_icfm_max"] for r in ratios)
    assert ("bar missed" in stdout) == (not bar["met"])
    assert "B^" in readme_line(tmp_path, "flow_coupling")
