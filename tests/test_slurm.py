"""A 2-job sweep submitted to a real one-node SLURM (slurmctld + slurmd + munge on localhost,
tests/slurm_cluster.py) through hydra/launcher=slurm, then summarised. Skipped, with the reason,
where SLURM cannot be installed or started (CI installs it: .ci/run)."""

from __future__ import annotations

import csv

import pytest

from tests.conftest import xent_run
from tests.slurm_cluster import LAUNCHER_ARGS, Cluster, missing_reason

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    with Cluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


def test_a_sweep_runs_on_slurm_and_is_summarised(tmp_path, cluster):
    sweep = tmp_path / "sweep"
    proc = xent_run(
        "-m",
        *LAUNCHER_ARGS,
        "loss=ce,sce",
        "trainer.max_epochs=1",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = list((sweep / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2, "two SLURM jobs ran"  # submitit's per-job logs, named by job id
    with open(sweep / "summary.csv") as handle:
        rows = {row["run"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"loss=ce", "loss=sce"}
    assert all(row["seeds"] == "1" and row["failed"] == "0" for row in rows.values())
    assert float(rows["loss=ce"]["test/acc_mean"]) > 0.3
