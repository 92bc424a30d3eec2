"""Issue 20, the linear-map calibrators: `dirichlet` (Kull et al. 2019) and `ms`, both fitted by
NLL plus the ODIR penalty; unregularised `ms` against probmetrics' matrix scaling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from probmetrics.calibrators.logistic import MatrixScalingCalibrator
from probmetrics.distributions import CategoricalLogits

from tests.test_calibration import overconfident_toy
from xent.calibration import CALIBRATORS, make_calibrator
from xent.calibration.calibrators import (
    ODIR_DEFAULT,
    LinearMapScaling,
    calibrator_from_config,
    odir_penalty,
)
from xent.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "src" / "xent" / "conf" / "calibrator"

# The known miscalibration: calibrated log-probabilities mapped by A (off-diagonal entries
# included) plus c, so the calibrated answer is a Dirichlet map, and exactly one.
MAP = torch.tensor(
    [[2.0, 0.5, 0.0, 0.0], [0.0, 1.5, 0.0, 0.5], [0.3, 0.0, 2.5, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
SHIFT = torch.tensor([0.5, -0.5, 0.0, 0.3])


def dirichlet_toy(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(miscalibrated logits, labels, true logits): labels drawn from softmax(true logits)."""
    gen = torch.Generator().manual_seed(seed)
    true_logits = 2 * torch.randn(n, 4, generator=gen)
    labels = torch.multinomial(true_logits.softmax(dim=1), 1, generator=gen).squeeze(1)
    return true_logits.log_softmax(dim=1) @ MAP + SHIFT, labels, true_logits


def nll(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float(F.cross_entropy(logits.double(), labels))


def test_odir_penalises_the_off_diagonal_and_the_bias_not_the_diagonal():
    weights = torch.tensor([[5.0, 1.0, 2.0], [3.0, -7.0, 0.0], [0.0, 4.0, 9.0]])
    bias = torch.tensor([1.0, -2.0, 2.0])
    expected = (1 + 4 + 9 + 0 + 0 + 16) / 6 + (1 + 4 + 4) / 3
    assert float(odir_penalty(weights, bias)) == pytest.approx(expected)


def test_unregularised_ms_is_probmetrics_matrix_scaling():
    """The same optimum: probmetrics' BFGS stops at a gradient of 1e-5, ours goes further, so
    the probabilities agree to 1e-3 and the fitted NLL to 1e-7, ours never the higher."""
    logits, labels = overconfident_toy(n=1000, k=4)
    ours = make_calibrator("ms", odir=0.0).fit(logits, labels)(logits).double()
    as_distribution = CategoricalLogits(logits.double())
    reference = MatrixScalingCalibrator().fit_torch(as_distribution, labels)
    theirs = reference.predict_proba_torch(as_distribution).get_logits()
    assert torch.allclose(ours.softmax(dim=1), theirs.softmax(dim=1), atol=1e-3)
    assert nll(ours, labels) == pytest.approx(nll(theirs, labels), abs=1e-7)
    assert nll(ours, labels) <= nll(theirs, labels)


def test_dirichlet_recovers_a_known_dirichlet_miscalibration_where_ts_cannot():
    logits, labels, _ = dirichlet_toy(2000, seed=0)
    test_logits, test_labels, true_test_logits = dirichlet_toy(5000, seed=1)
    held_out = {
        name: nll(make_calibrator(name).fit(logits, labels)(test_logits), test_labels)
        for name in ("none", "ts", "dirichlet")
    }
    oracle = nll(true_test_logits, test_labels)
    assert oracle == pytest.approx(0.7651111, abs=1e-6)
    assert held_out == pytest.approx(
        {"none": 1.0244501, "ts": 0.8665271, "dirichlet": 0.7734254}, abs=1e-6
    )
    assert oracle < held_out["dirichlet"] < oracle + 0.01 < held_out["ts"] - 0.09


def test_dirichlet_is_nearly_the_identity_on_calibrated_log_probabilities():
    """Already calibrated: the map stays within 0.07 of W = I, b = 0 (sampling noise of 2000
    labels), and the held-out NLL within 0.004 of the true probabilities'."""
    _, labels, true_logits = dirichlet_toy(2000, seed=0)
    _, test_labels, true_test_logits = dirichlet_toy(5000, seed=1)
    calibrator = make_calibrator("dirichlet").fit(true_logits, labels)
    assert (calibrator.weights - torch.eye(4)).abs().max() < 0.07
    assert calibrator.bias.abs().max() < 0.01
    held_out = nll(calibrator(true_test_logits), test_labels)
    assert held_out == pytest.approx(0.7681226, abs=1e-6)
    assert held_out - nll(true_test_logits, test_labels) < 0.004


def test_dirichlet_reads_log_probabilities_so_a_per_sample_shift_changes_nothing():
    logits, labels, _ = dirichlet_toy(500, seed=2)
    shift = torch.randn(500, 1, generator=torch.Generator().manual_seed(3))
    plain = make_calibrator("dirichlet").fit(logits, labels)
    shifted = make_calibrator("dirichlet").fit(logits + shift, labels)
    assert torch.allclose(plain(logits).softmax(1), shifted(logits + shift).softmax(1), atol=1e-6)


def test_odir_lowers_the_held_out_nll_of_ms_fitted_on_a_small_split():
    logits, labels = overconfident_toy(n=200, k=10, seed=0)
    test_logits, test_labels = overconfident_toy(n=2000, k=10, seed=1)
    held_out = {
        odir: nll(make_calibrator("ms", odir=odir).fit(logits, labels)(test_logits), test_labels)
        for odir in (0.0, ODIR_DEFAULT)
    }
    assert ODIR_DEFAULT == 1.0
    assert held_out == pytest.approx({0.0: 1.8484245, 1.0: 1.6790104}, abs=1e-6)


def test_every_calibrator_config_makes_its_calibrator_and_ms_and_dirichlet_read_odir():
    configs = {path.stem: OmegaConf.load(path) for path in CONF.glob("*.yaml")}
    assert sorted(configs) == sorted(CALIBRATORS)
    made = {name: calibrator_from_config(node) for name, node in configs.items()}
    for name in ("ms", "dirichlet"):
        assert configs[name].odir == ODIR_DEFAULT and made[name].odir == ODIR_DEFAULT
        assert isinstance(made[name], LinearMapScaling)
    override = OmegaConf.merge(configs["dirichlet"], {"odir": 0.5})
    assert calibrator_from_config(override).odir == 0.5


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("ms", {"odir": -1}, "calibrator.odir=-1 must be a number >= 0 (0: no penalty)"),
        ("dirichlet", {"odir": "x"}, "calibrator.odir='x' must be a number >= 0 (0: no penalty)"),
        (
            "ts",
            {"odir": 0.1},
            "calibrator.odir is not an option of calibrator=ts, which takes none",
        ),
        (
            "dirichlet",
            {"lam": 1},
            "calibrator.lam is not an option of calibrator=dirichlet, whose options are "
            "calibrator.odir",
        ),
    ],
)
def test_a_bad_calibrator_option_is_refused_in_one_line(name, options, message):
    with pytest.raises(ConfigError) as err:
        make_calibrator(name, **options)
    assert str(err.value) == message


@pytest.mark.parametrize("name", ["ms", "dirichlet"])
def test_calibrator_odir_on_the_command_line_reaches_the_task(tmp_path, name):
    """`calibrator.odir=0.25` is the penalty the task fits with (not the class default), and a
    negative one is refused by the task's check in one line."""
    from hydra.utils import instantiate
    from torch import nn

    from tests.conftest import composed
    from xent.tasks.calibrate import CalibrateTask

    cfg = composed(tmp_path, "task=calibrate", f"calibrator={name}", "calibrator.odir=0.25")
    task = instantiate(cfg.task, net=nn.Linear(2, 10), loss=nn.CrossEntropyLoss(), optimizer=None)
    assert task.calibrator.odir == 0.25
    bad = composed(tmp_path, "task=calibrate", f"calibrator={name}", "calibrator.odir=-1")
    with pytest.raises(ConfigError) as err:
        net = instantiate(bad.model)
        CalibrateTask.check(bad, net, nn.CrossEntropyLoss(), load_pretrained=False)
    assert str(err.value) == "calibrator.odir=-1 must be a number >= 0 (0: no penalty)"
