"""Every sweep file composes, and every option it sweeps over exists."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

CONF = Path(__file__).resolve().parents[1] / "src" / "xent" / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_sweeps_real_options(name):
    with initialize_config_module("xent.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={name}"], return_hydra_config=True)
    assert cfg.experiment_name == name  # the W&B group of its runs
    params = cfg.hydra.sweeper.params
    assert params, "a sweep file sweeps something"
    for key, values in params.items():
        options = [v.strip() for v in str(values).split(",")]
        if (CONF / key).is_dir():
            missing = [o for o in options if not (CONF / key / f"{o}.yaml").exists()]
            assert not missing, f"{name} sweeps {key} over missing options {missing}"
    assert str(params.get("seed", "")).count(",") >= 2, "comparisons run over >= 3 seeds"


def test_noisy_digits_is_the_issue_protocol():
    with initialize_config_module("xent.conf", version_base="1.3"):
        cfg = compose("config", overrides=["experiment=noisy_labels_digits"])
    assert cfg.data.label_noise == 0.4 and cfg.data.image_size == 32
