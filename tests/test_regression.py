"""Regression as classification: HL-Gauss against its own formula, the tables, task=regress."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import composed
from xent.data.tabular import BreastCancerDataModule, DiabetesDataModule
from xent.errors import ConfigError
from xent.losses import HLGaussLoss, MSELoss
from xent.runner.run import run


def histogram_by_loop(y: float, v_min: float, v_max: float, bins: int, ratio: float):
    """Bin masses of N(clamp(y), σ²) over the support, one bin at a time, in float64."""
    width = (v_max - v_min) / bins
    sigma = ratio * width
    y = min(max(y, v_min), v_max)

    def cdf(z: float) -> float:
        return 0.5 * (1.0 + math.erf((z - y) / (sigma * math.sqrt(2.0))))

    edges = [v_min + i * width for i in range(bins + 1)]
    total = cdf(edges[-1]) - cdf(edges[0])
    return [(cdf(edges[i + 1]) - cdf(edges[i])) / total for i in range(bins)]


def test_hlgauss_bin_masses_match_the_paper_numbers():
    # A target at a bin centre with σ = 0.75 w: 0.495 in its bin, 0.2297 in each neighbour.
    loss = HLGaussLoss(v_min=-10.0, v_max=10.0, num_bins=101)
    centre = float(loss.centres[50])
    masses = loss.target_histogram(torch.tensor([centre]))[0]
    assert masses[50].item() == pytest.approx(0.495, abs=5e-4)
    assert masses[49].item() == pytest.approx(0.2297, abs=5e-4)
    assert masses[51].item() == pytest.approx(0.2297, abs=5e-4)
    assert int((masses > 1e-3).sum()) == 5
    assert masses.sum().item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("y,expected", [(0.123, 0.123), (9.95, 9.85)])
def test_hlgauss_reconstruction_inside_and_near_the_edge(y, expected):
    # The mean of the target histogram recovers interior targets; near the edge truncation and
    # renormalisation pull it inward (docs/methods/losses.md §10: 9.95 → 9.85 for ±10, 101 bins).
    loss = HLGaussLoss(v_min=-10.0, v_max=10.0, num_bins=101)
    hist = loss.target_histogram(torch.tensor([y]))
    assert loss.predict(hist.log()).item() == pytest.approx(expected, abs=6e-3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hlgauss_equals_cross_entropy_against_the_looped_histogram(seed):
    gen = torch.Generator().manual_seed(seed)
    loss = HLGaussLoss(v_min=-2.0, v_max=3.0, num_bins=17, sigma_ratio=0.75)
    outputs = torch.randn(8, 17, generator=gen) * 3
    target = torch.randn(8, generator=gen) * 2  # some fall outside the support: clamped
    expected = []
    for row, y in zip(outputs.double().numpy(), target.double().numpy(), strict=True):
        hist = histogram_by_loop(float(y), -2.0, 3.0, 17, 0.75)
        log_p = row - np.log(np.exp(row - row.max()).sum()) - row.max()
        expected.append(-sum(h * lp for h, lp in zip(hist, log_p, strict=True)))
    assert loss(outputs, target).item() == pytest.approx(float(np.mean(expected)), rel=1e-5)
    centres = [-2.0 + (i + 0.5) * 5.0 / 17 for i in range(17)]
    probs = outputs.double().softmax(-1).numpy()
    assert loss.predict(outputs).double().numpy() == pytest.approx(probs @ centres, abs=1e-5)


def test_hlgauss_is_finite_far_outside_the_support_and_for_huge_logits():
    loss = HLGaussLoss(v_min=-3.0, v_max=3.0, num_bins=51)
    outputs = (torch.randn(4, 51) * 1e4).requires_grad_(True)
    value = loss(outputs, torch.tensor([-1e6, 1e6, 0.0, 2.999]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(outputs.grad).all()


def test_mse_is_torch_mse_on_the_single_output():
    outputs, target = torch.randn(6, 1), torch.randn(6)
    assert MSELoss()(outputs, target).item() == pytest.approx(F.mse_loss(outputs[:, 0], target))
    assert torch.equal(MSELoss().predict(outputs), outputs[:, 0])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"v_min": 1.0, "v_max": 1.0}, r"loss.v_max=1.0 must be a number > v_min=1"),
        ({"num_bins": 1}, r"loss.num_bins=1 must be an integer >= 2"),
        ({"num_bins": 2.5}, r"loss.num_bins=2.5 must be an integer >= 2"),
        ({"sigma_ratio": 0.0}, r"loss.sigma_ratio=0.0 must be a number > 0"),
        ({"v_min": float("inf")}, r"loss.v_min=inf must be a finite number"),
    ],
)
def test_hlgauss_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HLGaussLoss(**kwargs)


def test_hlgauss_support_is_computed_in_float64_and_not_checkpointed():
    """Edges and centres are the float64 grid rounded once to fp32 (an fp32 linspace is off by
    an ulp in about half the bins); they derive from the config, so a checkpoint holds none."""
    loss = HLGaussLoss(v_min=-2.0, v_max=3.0, num_bins=17)
    width = 5.0 / 17
    edges = torch.tensor([-2.0 + i * width for i in range(18)], dtype=torch.float64)
    centres = torch.tensor([-2.0 + (i + 0.5) * width for i in range(17)], dtype=torch.float64)
    assert torch.equal(loss.edges, edges.float())
    assert torch.equal(loss.centres, centres.float())
    assert loss.state_dict() == {}
    HLGaussLoss().load_state_dict({})  # strict: nothing expected
    two = HLGaussLoss(v_min=0.0, v_max=1.0, num_bins=2)  # the smallest histogram
    assert two.centres.tolist() == [0.25, 0.75] and two.num_outputs == 2


def test_hlgauss_defaults_are_the_readme_setting():
    """51 bins over [-3, 3] standardised units, σ = 0.75 bin widths (README, conf/loss)."""
    loss = HLGaussLoss()
    assert loss.hparams() == {"v_min": -3.0, "v_max": 3.0, "num_bins": 51, "sigma_ratio": 0.75}
    assert loss.sigma == pytest.approx(0.75 * 6.0 / 51, rel=1e-12)


def test_regression_losses_reject_wrong_shapes_and_class_labels():
    with pytest.raises(ValueError, match=r"expects outputs \(B, 51\) and targets \(B,\)"):
        HLGaussLoss()(torch.randn(4, 1), torch.randn(4))
    with pytest.raises(ValueError, match="takes real-valued targets, got torch.int64"):
        MSELoss()(torch.randn(4, 1), torch.zeros(4, dtype=torch.long))


# ----- tables ----------------------------------------------------------------------------


def test_breast_cancer_is_the_real_data_with_malignant_positive():
    dm = BreastCancerDataModule(num_classes=2, input_shape=[30])
    dm.setup()
    sizes = {name: len(t.targets) for name, t in dm.splits.items()}
    assert sum(sizes.values()) == 569 and sizes["train"] == 398
    positives = sum(int(t.targets.sum()) for t in dm.splits.values())
    assert positives == 212  # malignant rows, relabelled as class 1
    for table in dm.splits.values():  # stratified: the 37% positive rate holds in every split
        assert float(table.targets.float().mean()) == pytest.approx(212 / 569, abs=0.02)
    x, y, index = dm.train_dataloader().dataset[(torch.arange(398), 0)]
    assert x.mean(0).abs().max() < 1e-4 and (x.std(0) - 1).abs().max() < 1e-3
    assert y.dtype == torch.int64 and torch.equal(index, torch.arange(398))


def test_diabetes_targets_are_standardised_on_the_train_split():
    dm = DiabetesDataModule(num_classes=1, input_shape=[10], split_seed=3)
    dm.setup()
    train = dm.splits["train"].targets
    assert dm.target_shift == pytest.approx(float(train.mean()))
    assert dm.target_scale == pytest.approx(float(train.std()))
    _, y, _ = dm.train_dataloader().dataset[(torch.arange(len(train)), 0)]
    assert float(y.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(y.std()) == pytest.approx(1.0, abs=1e-5)
    other = DiabetesDataModule(num_classes=1, input_shape=[10], split_seed=4)
    other.setup()
    assert not torch.equal(other.splits["test"].targets, dm.splits["test"].targets)


def test_table_shape_mismatch_is_one_line():
    dm = DiabetesDataModule(num_classes=1, input_shape=[12])
    with pytest.raises(ConfigError, match=r"data.input_shape=\[12\] but diabetes rows have shape"):
        dm.setup()
    with pytest.raises(ConfigError, match=r"data.val_fraction \+ data.test_fraction = 1.1"):
        DiabetesDataModule(num_classes=1, input_shape=[10], val_fraction=0.5, test_fraction=0.6)


# ----- the task --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["mse", "hlgauss"])
def test_regress_task_beats_predicting_the_mean(tmp_path, loss):
    """Predicting the train mean scores RMSE ≈ the target's std (≈ 77) on diabetes; a linear
    model about 54. Both losses must learn clearly better than the mean."""
    cfg = composed(
        tmp_path,
        "task=regress",
        "data=diabetes",
        "model=mlp",
        f"loss={loss}",
        "optim=adamw",
        "optim.lr=0.001",
        "trainer.max_epochs=40",
        "logger=none",
    )
    assert cfg.model.num_classes == (51 if loss == "hlgauss" else 1)
    result = run(cfg)
    assert result["status"] == "ok"
    assert 35.0 < result["test/rmse"] < 65.0
    assert result["test/mae"] < result["test/rmse"]
    assert result["best/val_rmse"] < 80.0
