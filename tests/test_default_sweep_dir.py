"""`xent-run -m ...` without `hydra.sweep.dir=`, as the README's examples run it: the jobs and
the summary land in outputs/multiruns/<date>/<time>/ under the working dir, for every launcher
and for Optuna. (The default sweep dir interpolates `${hydra:runtime.cwd}`, which Hydra could
not resolve before the first job started.)"""

from __future__ import annotations

import csv
import json
import re
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tests.conftest import xent_run

pytestmark = pytest.mark.slow

TINY = ("trainer.max_epochs=1", "logger=none")
STAMP = re.compile(r"^\d{2}-\d{2}-\d{2}-\d{6}$")  # <time>: %H-%M-%S-%f


def the_sweep_dir(cwd: Path, started: datetime) -> Path:
    """The one sweep dir under cwd: outputs/multiruns/<date the sweep started>/<time>."""
    sweeps = list((cwd / "outputs" / "multiruns").glob("*/*"))
    assert len(sweeps) == 1, sweeps
    (sweep,) = sweeps
    assert sweep.parent.name == started.strftime("%Y-%m-%d")
    assert STAMP.match(sweep.name), sweep.name
    assert sweep.name >= started.strftime("%H-%M-%S"), (sweep.name, started)
    return sweep


def job_overrides(job: Path) -> list[str]:
    return yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())


def summary_rows(sweep: Path) -> dict[str, dict]:
    with open(sweep / "summary.csv") as handle:
        return {row["run"]: row for row in csv.DictReader(handle)}


def run_sweep(tmp_path: Path, *overrides: str, timeout: int = 300, quiet: bool = True) -> Path:
    """The multirun, from tmp_path, without hydra.sweep.dir; its sweep dir. `quiet`: stderr
    is empty (not so on the test's SLURM cluster, which has no accounting: submitit warns on
    stderr that `sacct` failed each time it polls)."""
    started = datetime.now()
    proc = xent_run("-m", *overrides, *TINY, cwd=tmp_path, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.strip() == "" or not quiet, proc.stderr[-3000:]
    return the_sweep_dir(tmp_path, started)


def assert_jobs_summarised(sweep: Path, losses: list[str]) -> None:
    """Jobs 0..n-1 in sweep/<n>, one per loss, each summarised with its own test/acc."""
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert jobs == [str(n) for n in range(len(losses))]
    rows = summary_rows(sweep)
    assert set(rows) == {f"loss={loss}" for loss in losses}
    for n, loss in enumerate(losses):
        job = sweep / str(n)
        assert f"loss={loss}" in job_overrides(job)
        result = json.loads((job / "metrics.json").read_text())
        assert result["status"] == "ok" and result["epochs"] == 1
        row = rows[f"loss={loss}"]
        assert row["seeds"] == "1" and float(row["test/acc_mean"]) == pytest.approx(
            result["test/acc"]
        )
    assert (sweep / "summary.md").is_file() and (sweep / "summary.png").is_file()


@pytest.mark.parametrize("launcher", ["cores", "local"])
def test_a_sweep_without_a_sweep_dir_lands_in_outputs_multiruns(tmp_path, launcher):
    """xent's default launcher (cores: a worker process per core) and submitit's local one (a
    process per job)."""
    choice = () if launcher == "cores" else ("hydra/launcher=local",)
    sweep = run_sweep(tmp_path, *choice, "loss=ce,sce")
    assert_jobs_summarised(sweep, ["ce", "sce"])
    if launcher == "local":
        assert list((sweep / ".submitit").glob("*/*_log.out"))  # submitit's folder is there too
    else:
        assert (sweep / "multirun.yaml").is_file()


def test_an_optuna_search_without_a_sweep_dir_lands_in_outputs_multiruns(tmp_path):
    sweep = run_sweep(
        tmp_path,
        "hparams_search=wcfm_eps",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=2",
        "trainer.check_val_every_n_epoch=1",  # W-CFM validates every few epochs by default
    )
    trials = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in trials] == ["0", "1"]
    values = [json.loads((t / "metrics.json").read_text())["best/val_w2"] for t in trials]
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert result["best_value"] == pytest.approx(min(values))
    assert len(summary_rows(sweep)) == 2  # a row per trial


@pytest.mark.slurm
def test_a_slurm_sweep_without_a_sweep_dir_lands_in_outputs_multiruns(tmp_path):
    from tests.slurm_cluster import LAUNCHER_ARGS, Cluster, missing_reason

    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    with Cluster(tmp_path / "slurm"):
        work = tmp_path / "work"
        work.mkdir()
        sweep = run_sweep(
            work,
            *LAUNCHER_ARGS,
            "loss=ce,sce",
            timeout=600,
            quiet=False,
        )
    assert_jobs_summarised(sweep, ["ce", "sce"])
    assert len(list((sweep / ".submitit").glob("*/*_log.out"))) == 2
