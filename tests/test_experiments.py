"""Every sweep file composes, and every option it sweeps over exists."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module

from tests.conftest import composed, write_cifar
from xent.corrupt.layout import write_corrupted
from xent.runner.preflight import build_parts
from xent.runner.run import run

CONF = Path(__file__).resolve().parents[1] / "src" / "xent" / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_sweeps_real_options(name):
    with initialize_config_module("xent.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={name}"], return_hydra_config=True)
    assert cfg.experiment_name == name  # the W&B group of its runs
    headline = list(cfg.headline)  # the summary's columns: metrics that runs report
    reported = ("test", "best", "teacher", "val", "train")  # task=lm: val/bpc, train/lse_mean
    assert headline and all(m.split("/")[0] in reported for m in headline)
    params = cfg.hydra.sweeper.params
    assert params, "a sweep file sweeps something"
    for key, values in params.items():
        options = [v.strip() for v in str(values).split(",")]
        if (CONF / key).is_dir():
            missing = [o for o in options if not (CONF / key / f"{o}.yaml").exists()]
            assert not missing, f"{name} sweeps {key} over missing options {missing}"
    if cfg.claim is not None:  # a comparison; a scaling sweep (lm_scaling) is one seed a size
        assert str(params.get("seed", "")).count(",") >= 2, "comparisons run over >= 3 seeds"


def test_noisy_digits_is_the_issue_protocol():
    with initialize_config_module("xent.conf", version_base="1.3"):
        cfg = compose("config", overrides=["experiment=noisy_labels_digits"])
    assert cfg.data.label_noise == 0.4 and cfg.data.image_size == 32


def sweep_jobs(name: str) -> list[list[str]]:
    """One job per combination of a sweep file's non-seed parameters (seed 0)."""
    with initialize_config_module("xent.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={name}"], return_hydra_config=True)
    axes = [
        [f"{key}={v.strip()}" for v in str(values).split(",")]
        for key, values in cfg.hydra.sweeper.params.items()
        if key != "seed"
    ]
    return [list(combo) for combo in itertools.product(*axes)]


JOBS = [(name, job) for name in EXPERIMENTS for job in sweep_jobs(name)]


@pytest.mark.slow  # seconds: keeps the fast tier under its 2-minute budget
@pytest.mark.parametrize("name,job", JOBS, ids=[f"{n}:{' '.join(j)}" for n, j in JOBS])
def test_every_sweep_job_passes_the_preflight(tmp_path, skip_cifar_checksum, name, job):
    """Each job of each sweep builds: data, model, loss, optimizer, schedule, a dry forward.
    CIFAR jobs read tiny files in the real format (no download)."""
    for variant in ("cifar10", "cifar100"):
        write_cifar(tmp_path / "data", variant)
    for variant, folder in (("cifar10", "CIFAR-10-C"), ("cifar100", "CIFAR-100-C")):
        if name.startswith(f"rmt_{variant}c"):  # a corrupted test stream in the real layout
            images = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
            write_corrupted(tmp_path / "data" / folder, images, np.arange(10))
    cfg = composed(
        tmp_path, f"experiment={name}", *job, "seed=0", f"paths.data_dir={tmp_path / 'data'}"
    )
    parts = build_parts(cfg)
    assert parts.net is not None and parts.loss is not None


@pytest.mark.slow
def test_noisy_cifar10_recipe_trains_on_cifar_files(tmp_path, skip_cifar_checksum):
    """The committed recipe (cnn8, Nesterov SGD, clipping, 40/80 decay, 40% noise) runs end to
    end on tiny CIFAR-10 files; one epoch of a few batches, for the mechanics only."""
    write_cifar(tmp_path / "data", "cifar10", n_train=500, n_test=100)
    cfg = composed(
        tmp_path,
        "experiment=noisy_labels_cifar10",
        "loss=aldr_kl",
        f"paths.data_dir={tmp_path / 'data'}",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "logger=none",
    )
    result = run(cfg)
    assert result["status"] == "ok" and result["epochs"] == 1
    assert 0.0 <= result["test/acc"] <= 1.0
