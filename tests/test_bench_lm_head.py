"""scripts/bench_lm_head.py (issue 19): the bar's arithmetic, and a --quick run whose JSON holds
every head's memory, time and loss with ratios against dense, and its README line."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.test_bench_losses_flow import readme_line, run_quick, script


def row(vocab, dense_mib, dense_s, chunked_mib, chunked_s):
    heads = {
        "dense": {"extra_peak_mib": dense_mib, "time_s": dense_s, "time_vs_dense": 1.0},
        "chunked": {
            "extra_peak_mib": chunked_mib,
            "time_s": chunked_s,
            "memory_vs_dense": chunked_mib / dense_mib,
            "time_vs_dense": chunked_s / dense_s,
        },
    }
    return {"vocab": vocab, "skipped": {}, "heads": heads}


@pytest.mark.parametrize(
    ("chunked_mib", "chunked_s", "met"),
    [(96, 1.2, True), (400, 1.2, False), (96, 1.4, False), (307.2, 1.3, True)],
)
def test_bar_is_memory_and_time_of_chunked_at_32k(chunked_mib, chunked_s, met):
    bench = script("bench_lm_head")
    verdict = bench.bar(
        [row(8192, 768, 0.25, 30, 0.3), row(32768, 3072, 1.0, chunked_mib, chunked_s)]
    )
    assert verdict["met"] is met
    assert verdict["chunked_memory_vs_dense"] == chunked_mib / 3072
    assert bench.bar([row(8192, 768, 0.25, 30, 0.3)])["met"] is None  # no V = 32k: no verdict


def test_a_stopped_run_records_what_it_measured(tmp_path):
    bench = script("bench_lm_head")
    rows = [row(8192, 768, 0.25, 30, 0.3), row(32768, 3072, 1.0, 96, 1.2)]
    line, path = bench.record(rows, 8192, 512, 2, tmp_path, pending=[131072])
    data = json.loads(path.read_text())
    assert data["not_measured"] == [131072] and data["bar"]["met"] is True
    assert line.endswith("time 1.2x (bar <= 1.3x): met; not measured: V=131072")
    assert readme_line(tmp_path, "lm_head").startswith(f"- `lm_head`: {line} (")


@pytest.mark.slow  # ~40 s: three fresh processes for the memory, each importing torch
def test_lm_head_quick(tmp_path):
    data, stdout = run_quick("bench_lm_head", tmp_path)
    bench = script("bench_lm_head")
    assert (data["tokens"], data["dim"], data["threads"]) == (256, 32, 2)
    (only,) = data["rows"]
    assert only["vocab"] == 2048 and only["skipped"] == {}
    heads = only["heads"]
    assert list(heads) == ["dense", "chunked", "chunked_ours"]
    dense = heads["dense"]
    for name, entry in heads.items():
        assert entry["memory_method"] == bench.MEMORY_METHOD, name
        assert entry["extra_peak_mib"] > 0 and entry["extra_peak_rss_mib"] >= 0, name
        assert entry["time_s"] == entry["times_s"][0] > 0
        assert math.isclose(entry["time_vs_dense"], entry["time_s"] / dense["time_s"], rel_tol=1e-2)
        assert entry["loss_diff_vs_dense"] < 1e-5 and math.isfinite(entry["loss"])
    # dense holds the (256, 2048) logits, their log-softmax and its gradient: 3 x 2 MiB at most,
    # more than either chunked head
    assert 2 <= dense["extra_peak_mib"] <= 6.5
    assert max(heads["chunked"]["extra_peak_mib"], heads["chunked_ours"]["extra_peak_mib"]) < 2
    assert data["bar"]["met"] is None and data["not_measured"] == []
    line = readme_line(tmp_path, "lm_head")
    assert "N=256, D=32" in line and line.endswith(")") and "bar not measured" in line
    assert "bar not measured" in stdout


def test_device_cuda_without_a_gpu_says_so_and_writes_nothing(tmp_path, capsys, monkeypatch):
    bench = script("bench_lm_head")
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # keep the suite's threads
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    bench.main(["--device", "cuda", "--out", str(tmp_path / "out")])
    assert capsys.readouterr().out == bench.NO_CUDA + "\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # ~30 s: cce compiles its torch path for each dtype
def test_device_mode_runs_every_head_in_both_dtypes(tmp_path, monkeypatch):
    """--cpu-smoke: the --device cuda code (in-process memory, float32 and bf16 rows, errors
    recorded per head) at the quick sizes on the CPU."""
    bench = script("bench_lm_head")
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    bench.main(["--cpu-smoke", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "lm_head_cpu_smoke.json").read_text())
    assert (data["device"], data["tokens"], data["dim"], data["repeats"]) == ("cpu", 256, 32, 2)
    assert [(row["dtype"], row["vocab"]) for row in data["rows"]] == [
        ("float32", 2048),
        ("bfloat16", 2048),
    ]
    for row in data["rows"]:
        assert row["errors"] == {}
        heads = row["heads"]
        assert list(heads) == ["dense", "chunked", "cce", "chunked_ours"]  # no compile below 32k
        tolerance = 1e-5 if row["dtype"] == "float32" else 0.05  # bf16 logits: ~3 digits
        for name, entry in heads.items():
            assert len(entry["times_s"]) == 2 and entry["time_s"] > 0, name
            assert entry["loss_diff_vs_dense"] < tolerance and math.isfinite(entry["loss"]), name
        assert heads["dense"]["extra_peak_mib"] > 2 * heads["chunked"]["extra_peak_mib"] > 0
    line = readme_line(tmp_path, "lm_head_cpu_smoke")
    assert "on cpu, N=256, D=32: float32 V=2048: dense " in line
    assert "; bfloat16 V=2048: dense " in line and "bar not measured" in line
