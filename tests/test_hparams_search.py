"""hparams_search=<name>: a real Optuna study through Hydra's sweeper, whose best trial is the
best of the job files, and whose objective key is checked before anything trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from tests.conftest import xent_run
from xent.errors import ConfigError
from xent.runner.preflight import check_optimized_metric

CONF = Path(__file__).resolve().parents[1] / "src" / "xent" / "conf"
SEARCHES = {  # name -> (searched key, objective, direction)
    "pld_tau": ("loss.tau", "best/val_acc", "maximize"),
    "wcfm_eps": ("loss.eps", "best/val_w2", "minimize"),
}


def test_every_search_file_is_listed_here():
    assert sorted(p.stem for p in (CONF / "hparams_search").glob("*.yaml")) == sorted(SEARCHES)


@pytest.mark.parametrize("name", list(SEARCHES))
def test_search_composes_to_an_optuna_study_on_a_validation_metric(name):
    key, objective, direction = SEARCHES[name]
    with initialize_config_module("xent.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"hparams_search={name}"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    assert sweeper.direction == direction and sweeper.sampler.seed == 0
    assert list(sweeper.params) == [key]
    assert str(sweeper.params[key]).startswith("tag(log, interval(")
    assert OmegaConf.select(cfg, key) is not None  # the searched key exists in the loss config
    assert cfg.optimized_metric == objective and not objective.startswith("test/")
    check_optimized_metric(cfg)  # the objective is a metric this task reports


def test_a_misspelt_objective_names_the_valid_ones():
    with initialize_config_module("xent.conf", version_base="1.3"):
        cfg = compose("config", overrides=["hparams_search=pld_tau", "optimized_metric=val_acc"])
    with pytest.raises(ConfigError) as err:
        check_optimized_metric(cfg)
    assert str(err.value).startswith(
        "optimized_metric=val_acc is not a metric of this task; valid: test/acc, test/acc5,"
    )
    assert "best/val_acc" in str(err.value)


FAST_FLOW = ["trainer.max_epochs=2", "trainer.check_val_every_n_epoch=1", "logger=none"]


@pytest.mark.slow
def test_optuna_study_reports_the_best_job(tmp_path):
    """Three W-CFM trials: each eps proposed inside the searched range, and Optuna's best trial
    is the job whose metrics.json has the lowest best/val_w2."""
    sweep = tmp_path / "sweep"
    proc = xent_run(
        "-m",
        "hparams_search=wcfm_eps",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=2",
        *FAST_FLOW,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    trials = {}
    for job in sorted(sweep.glob("*/metrics.json")):
        overrides = yaml.safe_load((job.parent / ".hydra" / "overrides.yaml").read_text())
        eps = float(next(o.split("=")[1] for o in overrides if o.startswith("loss.eps=")))
        trials[eps] = json.loads(job.read_text())["best/val_w2"]
    assert len(trials) == 3 and all(0.5 <= eps <= 20 for eps in trials)
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best_eps = min(trials, key=trials.get)
    assert result["best_params"]["loss.eps"] == pytest.approx(best_eps)
    assert result["best_value"] == pytest.approx(trials[best_eps])
    summary = (sweep / "summary.md").read_text().splitlines()
    assert summary[0] == "| run | seeds | best/val_w2 | test/w2 | test/npe | test/nfe |"
    assert len(summary) == 2 + 3  # a row per trial


@pytest.mark.slow
def test_misspelt_objective_fails_every_trial_before_training_in_one_line(tmp_path):
    sweep = tmp_path / "sweep"
    proc = xent_run(
        "-m",
        "hparams_search=wcfm_eps",
        "hydra.sweeper.n_trials=2",
        "optimized_metric=best/val_W2",
        *FAST_FLOW,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert lines == [
        "xent-run: error: optimized_metric=best/val_W2 is not a metric of this task; valid: "
        "test/w2, test/npe, test/nfe, test/pe, test/w2_euler, test/fid, best/val_w2, "
        "best/test_w2, best/test_npe"
    ], proc.stderr
    assert not list(sweep.glob("*/checkpoints/*.ckpt"))  # nothing trained


@pytest.mark.slow  # seconds: keeps the fast tier under its 2-minute budget
def test_unknown_search_lists_the_valid_ones(tmp_path):
    proc = xent_run("-m", "hparams_search=nope", f"hydra.sweep.dir={tmp_path / 's'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "xent-run: error: hparams_search=nope is not an option; valid: pld_tau, wcfm_eps"
    )
