"""trainer=ddp: Lightning DDP with 2 CPU processes (gloo) on digits, against one process."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import xent_run
from xent.data.base import EpochBatchSampler

COMMON = ["trainer.max_epochs=4", "logger=none", "trainer.accelerator=cpu", "seed=0"]


def test_each_process_takes_every_world_th_sample_of_the_global_batch(monkeypatch):
    import xent.data.base as base

    sampler = EpochBatchSampler(10, 4, shuffle=True, drop_last=False, seed=3)
    single = [(b.tolist(), s) for b, s in sampler]
    shards = []
    for rank in (0, 1):
        monkeypatch.setattr(base, "distributed_rank", lambda rank=rank: (rank, 2))
        shards.append([(b.tolist(), s) for b, s in sampler])
    for (batch, seed), (b0, s0), (b1, s1) in zip(single, *shards, strict=True):
        assert b0 == batch[0::2] and b1 == batch[1::2] and s0 == s1 == seed
        assert sorted(b0 + b1) == sorted(batch)


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_two_gloo_processes_match_one_process_on_digits(tmp_path):
    """Same seed, same global batches: the DDP run's test accuracy is within 0.03 of the
    single-process run's (BatchNorm sees 32 samples per process instead of 64, so the runs are
    close, not equal). Only rank 0 writes the run dir."""
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    one = xent_run(*COMMON, f"hydra.run.dir={single}", cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    two = xent_run(
        *COMMON, "trainer=ddp", "trainer.devices=2", f"hydra.run.dir={ddp}", cwd=tmp_path
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a = json.loads((single / "metrics.json").read_text())
    b = json.loads((ddp / "metrics.json").read_text())
    assert a["status"] == b["status"] == "ok" and b["epochs"] == 4
    assert abs(a["test/acc"] - b["test/acc"]) <= 0.03, (a["test/acc"], b["test/acc"])
    assert b["test/acc"] > 0.9
    assert not (ddp / "archive").exists()  # the second process did not set rank 0's run aside


@pytest.mark.slow
def test_ddp_in_a_local_multirun_is_refused_in_one_line(tmp_path):
    sweep = tmp_path / "sweep"
    proc = xent_run("-m", "trainer=ddp", "seed=0", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("xent-run: error: trainer=ddp in a local multirun would start")
