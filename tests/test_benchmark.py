"""xent.bench_harness: the rotation of interleaved timing, and the JSON + README line it writes."""

from __future__ import annotations

import json

import torch

from xent.bench_harness import interleaved, write_result


def test_interleaved_rotates_the_order_and_times_every_repetition():
    calls: list[str] = []
    candidates = {name: (lambda n=name: calls.append(n)) for name in "abc"}
    times = interleaved(candidates, repeats=3, warmup=1)
    assert calls == list("abcabcbcacab")  # warm-up, then a rotated order each time
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(t >= 0 for v in times.values() for t in v)


def test_write_result_keeps_one_line_per_benchmark_and_the_notes(tmp_path):
    write_result("zeta", {"ratio": 1.0}, "first", out_dir=tmp_path)
    readme = tmp_path / "README.md"
    notes = ["", "## Notes", "", "- `--help`: before/after of a fix"]  # a bullet, not an entry
    readme.write_text(readme.read_text() + "\n".join(notes) + "\n")
    write_result("alpha", {"ratio": 2.0}, "a", out_dir=tmp_path)
    path = write_result("zeta", {"ratio": 3.0}, "second", out_dir=tmp_path)
    data = json.loads(path.read_text())
    assert data["benchmark"] == "zeta" and data["ratio"] == 3.0 and data["machine"]["cores"]
    # the kernels torch picked (xent caps them at AVX2 on x86-64): the same process's answer
    assert data["machine"]["cpu_kernels"] == torch.backends.cpu.get_cpu_capability()
    lines = readme.read_text().splitlines()
    entries = [line for line in lines if line.startswith("- `")]
    assert [e.split(":")[0] for e in entries] == ["- `alpha`", "- `zeta`", "- `--help`"]
    assert entries[1].startswith("- `zeta`: second (")
    assert lines[-len(notes) :] == notes
