"""Issue 20, the calibration package: metrics against probmetrics (the ECE bin convention
included), temperature scaling's fit, the CA loss against its formula, the calibrators' registry."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from probmetrics.calibrators.temperature_scaling import TemperatureScalingCalibrator
from probmetrics.distributions import CategoricalLogits
from probmetrics.metrics import BrierLoss, CalibrationError
from torchmetrics.classification import MulticlassCalibrationError

from xent.calibration import CALIBRATORS, CAConfig, ca_loss, calibration_metrics, make_calibrator
from xent.calibration.ca import view_features
from xent.calibration.calibrators import fit_log_temperature, nll_objective
from xent.calibration.evaluate import IN_DISTRIBUTION, Logits, calibrate_and_measure
from xent.calibration.metrics import adaptive_ece, bin_index, ece, mce, top1
from xent.calibration.views import image_views, view_logits
from xent.errors import ConfigError

EDGES = torch.linspace(0, 1, 16)  # float32, as torchmetrics makes them for float32 inputs


def overconfident_toy(n: int = 2000, k: int = 5, seed: int = 0):
    """Logits of a 65%-accurate classifier multiplied by 4: far too confident."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n,), generator=gen)
    logits = torch.randn(n, k, generator=gen)
    logits[torch.arange(n), labels] += 1.5
    return 4 * logits, labels


def probs_with_confidences(confidences: torch.Tensor) -> torch.Tensor:
    """Rows (c, 1 - c, 0) for c >= 0.5: the top-1 confidence is exactly c."""
    return torch.stack([confidences, 1 - confidences, torch.zeros_like(confidences)], dim=1)


def reference_ece(probs: torch.Tensor, labels: torch.Tensor, norm: str = "l1") -> float:
    return float(CalibrationError(n_bins=15, norm=norm).compute_from_labels_probs(labels, probs))


def test_ece_and_mce_match_probmetrics_on_random_predictions():
    gen = torch.Generator().manual_seed(1)
    probs = torch.randn(500, 7, generator=gen).mul(3).softmax(dim=1)
    labels = torch.randint(0, 7, (500,), generator=gen)
    confidence, correct = top1(probs, labels)
    assert ece(confidence, correct) == pytest.approx(reference_ece(probs, labels), abs=1e-7)
    assert mce(confidence, correct) == pytest.approx(reference_ece(probs, labels, "max"), abs=1e-7)


def edge_cases() -> tuple[torch.Tensor, torch.Tensor]:
    """Confidences on an edge, just below it, on two more edges and at 1.0, each alone in its
    bin; right, wrong, wrong, right, wrong (every class is some sample's label)."""
    below = torch.nextafter(EDGES[10], torch.tensor(0.0))
    confidences = torch.stack([EDGES[10], below, EDGES[12], EDGES[14], torch.tensor(1.0)])
    return probs_with_confidences(confidences), torch.tensor([0, 1, 2, 0, 2])


def test_a_confidence_on_a_bin_edge_opens_its_bin_and_1_0_has_a_bin_of_its_own():
    probs, labels = edge_cases()
    confidence, correct = top1(probs, labels)
    assert bin_index(confidence).tolist() == [10, 9, 12, 14, 15]
    gaps = [1 - EDGES[10], confidence[1], EDGES[12], 1 - EDGES[14], 1.0]
    assert ece(confidence, correct) == pytest.approx(float(sum(gaps)) / 5, abs=1e-7)
    assert ece(confidence, correct) == pytest.approx(classify_ece(probs, labels), abs=1e-7)


def classify_ece(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The very metric task=classify logs as test/ece (torchmetrics)."""
    metric = MulticlassCalibrationError(num_classes=probs.shape[1], n_bins=15, norm="l1")
    return float(metric(probs, labels))


def test_every_edge_from_one_half_to_one_bins_as_task_classify_bins_it():
    confidences = EDGES[8:].repeat(3)
    labels = torch.tensor([0, 1, 2]).repeat_interleave(8)
    probs = probs_with_confidences(confidences)
    assert ece(*top1(probs, labels)) == pytest.approx(classify_ece(probs, labels), abs=1e-7)


def test_probmetrics_moves_confidences_off_the_edges_so_it_checks_away_from_them():
    """probmetrics clamps probabilities to [1e-7, 1 - 1e-7] and renormalises, which moves a
    confidence on an edge into the bin below: against it, ECE agrees on the edges' neighbours."""
    probs, labels = edge_cases()
    assert ece(*top1(probs, labels)) != pytest.approx(reference_ece(probs, labels), abs=1e-3)
    nudged = probs_with_confidences(top1(probs, labels)[0] - 1e-5)
    assert ece(*top1(nudged, labels)) == pytest.approx(reference_ece(nudged, labels), abs=1e-6)


def test_adaptive_ece_uses_equal_mass_bins():
    confidence = torch.tensor([0.9, 0.5, 0.6, 0.8], dtype=torch.float64)
    correct = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    # two bins of two after sorting: {0.5 wrong, 0.6 right}, {0.8 right, 0.9 right}
    expected = 0.5 * abs(0.5 - 0.55) + 0.5 * abs(1.0 - 0.85)
    assert adaptive_ece(confidence, correct, n_bins=2) == pytest.approx(expected, abs=1e-12)


def test_calibration_metrics_of_a_toy_match_probmetrics_and_torch():
    logits, labels = overconfident_toy()
    metrics = calibration_metrics(logits, labels)
    probs = logits.double().softmax(dim=1)
    assert set(metrics) == {"acc", "nll", "brier", "ece", "ace", "smece", "mce"}
    assert metrics["acc"] == pytest.approx(0.6505, abs=1e-12)
    assert metrics["nll"] == pytest.approx(float(F.cross_entropy(logits.double(), labels)))
    brier = BrierLoss().compute_from_labels_probs(labels, probs)
    assert metrics["brier"] == pytest.approx(float(brier), abs=1e-9)
    assert metrics["ece"] == pytest.approx(reference_ece(probs, labels), abs=1e-6)  # float32
    assert metrics["ece"] == pytest.approx(0.2000, abs=5e-5)


def test_temperature_scaling_keeps_the_argmax_and_lowers_nll_of_an_overconfident_source():
    logits, labels = overconfident_toy()
    ts = make_calibrator("ts").fit(logits, labels)
    calibrated = ts(logits)
    assert torch.equal(calibrated.argmax(dim=1), logits.argmax(dim=1))
    before, after = calibration_metrics(logits, labels), calibration_metrics(calibrated, labels)
    assert after["acc"] == before["acc"]
    assert after["nll"] < before["nll"] - 0.4  # 1.3296 -> 0.9125
    assert after["ece"] < before["ece"] / 5  # 0.2000 -> 0.0205
    assert ts.params() == {"T": pytest.approx(2.6560122, abs=1e-6)}


def test_temperature_fit_is_the_float64_optimum_of_nll_in_log_t():
    logits, labels = overconfident_toy()
    temperature = fit_log_temperature(logits.float(), labels, nll_objective)
    log_t = torch.tensor(math.log(temperature), dtype=torch.float64, requires_grad=True)
    F.cross_entropy(logits.double() / log_t.exp(), labels).backward()
    assert abs(float(log_t.grad)) < 1e-9
    assert fit_log_temperature(logits.double(), labels, nll_objective) == temperature
    # probmetrics' bisection on the inverse temperature finds the same optimum (to float32)
    reference = TemperatureScalingCalibrator().fit_torch(CategoricalLogits(logits), labels)
    assert 1 / reference.invtemp_ == pytest.approx(temperature, rel=1e-5)


def test_an_underconfident_source_gets_a_temperature_below_one():
    logits, labels = overconfident_toy()
    assert make_calibrator("ts").fit(logits / 20, labels).params()["T"] < 1


def ca_loss_by_formula(logits: torch.Tensor, correct: list[bool]) -> float:
    """docs/methods/calibrate.md §5, one sample at a time: sum w (c_hat - c)^2 / sum w."""
    accuracy = sum(correct) / len(correct)
    total = weight_sum = 0.0
    for row, right in zip(logits.tolist(), correct, strict=True):
        exps = [math.exp(v - max(row)) for v in row]
        confidence = max(exps) / sum(exps)
        weight = 1 - accuracy if right else accuracy
        total += weight * (confidence - float(right)) ** 2
        weight_sum += weight
    return total / weight_sum


def test_ca_loss_is_the_class_balanced_squared_error_of_the_formula():
    logits, labels = overconfident_toy(n=64, seed=3)
    correct = logits.argmax(dim=1) == labels
    value = ca_loss(logits.double(), correct)
    assert float(value) == pytest.approx(ca_loss_by_formula(logits, correct.tolist()), abs=1e-12)


def test_ca_loss_of_a_batch_all_right_is_the_plain_mean():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    confidences = logits.softmax(dim=1).max(dim=1).values
    value = ca_loss(logits, torch.tensor([True, True]))
    assert float(value) == pytest.approx(float(((confidences - 1) ** 2).mean()), abs=1e-12)


@pytest.mark.parametrize("n_right", [12, 16, 19])
def test_one_confidence_for_all_under_the_ca_loss_is_best_at_one_half_whatever_the_accuracy(
    n_right: int,
):
    """Why ts_ca softens an accurate source (README, calibration_fashion): when every sample has
    one confidence c, the balanced weights make the loss ((1 - c)^2 + c^2) / 2 at any accuracy."""
    classes, n = 10, 20
    grid = torch.arange(0.15, 0.995, 0.01, dtype=torch.float64)
    correct = torch.arange(n) < n_right
    losses = []
    for c in grid:
        probs = torch.full((n, classes), (1 - float(c)) / (classes - 1), dtype=torch.float64)
        probs[:, 0] = c
        losses.append(float(ca_loss(probs.log(), correct)))
        assert losses[-1] == pytest.approx(((1 - float(c)) ** 2 + float(c) ** 2) / 2, abs=1e-12)
    assert float(grid[losses.index(min(losses))]) == pytest.approx(0.5)


def test_view_features_are_each_views_probabilities_at_the_original_top_classes():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0, -1.0]])
    views = torch.stack([logits, logits.flip(1)])  # (V=2, N=1, K=5)
    features = view_features(logits, views, top_k=4)
    top = [1, 3, 2, 0]
    expected = torch.cat([views[0, 0].softmax(0)[top], views[1, 0].softmax(0)[top]])
    assert torch.equal(features, expected.unsqueeze(0))


def test_ts_ca_and_ca_keep_the_argmax():
    logits, labels = overconfident_toy()
    gen = torch.Generator().manual_seed(2)
    views = torch.stack([logits + torch.randn(logits.shape, generator=gen) for _ in range(3)])
    for name in ("ts_ca", "ca"):
        calibrated = make_calibrator(name).fit(logits, labels, views)(logits, views)
        assert torch.equal(calibrated.argmax(dim=1), logits.argmax(dim=1)), name


def test_ca_without_views_is_refused():
    logits, labels = overconfident_toy(n=10)
    with pytest.raises(ValueError, match="calibrator=ca needs the logits of transformed views"):
        make_calibrator("ca").fit(logits, labels)


def test_the_calibrators_and_their_parameter_counts():
    assert sorted(CALIBRATORS) == ["ca", "dirichlet", "ms", "none", "ts", "ts_ca", "vs"]
    counts = {name: make_calibrator(name).n_params(10) for name in CALIBRATORS}
    inputs, hidden = 3 * 4, 5
    ca = inputs * hidden + hidden + hidden + 1
    assert counts == {
        "none": 0,
        "ts": 1,
        "ts_ca": 1,
        "vs": 20,
        "ms": 110,
        "dirichlet": 110,
        "ca": ca,
    }
    assert CAConfig().lr == 1e-4 and CAConfig().batch_size == 1000


def test_vector_and_matrix_scaling_lower_the_nll_of_an_overconfident_source():
    logits, labels = overconfident_toy()
    before = calibration_metrics(logits, labels)["nll"]
    for name in ("vs", "ms", "dirichlet"):
        calibrated = make_calibrator(name).fit(logits, labels)(logits)
        assert calibration_metrics(calibrated, labels)["nll"] < before - 0.4, name


def shifted_toy(seed: int = 5) -> Logits:
    """A noisier copy of the toy: lower accuracy at the same overconfidence, a 'shift'."""
    logits, labels = overconfident_toy(n=1000, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    return Logits(logits + 6 * torch.randn(logits.shape, generator=gen), labels)


def test_metrics_per_domain_before_and_after_and_the_split_size():
    logits, labels = overconfident_toy()
    test_logits, test_labels = overconfident_toy(n=1000, seed=4)
    domains = {IN_DISTRIBUTION: Logits(test_logits, test_labels), "noise": shifted_toy()}
    metrics = calibrate_and_measure("ts", make_calibrator("ts"), Logits(logits, labels), domains)
    assert metrics["calib/n"] == 2000 and metrics["calib/T"] == pytest.approx(2.6560122)
    for metric in ("acc", "nll", "brier", "ece", "ace", "smece", "mce"):
        for key in (f"test/{metric}", f"test/{metric}_uncal"):
            assert key in metrics and f"{key}/noise" in metrics
    assert len(metrics) == 2 + 3 * 2 * 7  # the clean split, noise and their mean: shift_mean
    assert metrics["test/ece/shift_mean"] == metrics["test/ece/noise"]  # the one shifted set
    assert metrics["test/acc/noise"] == metrics["test/acc_uncal/noise"]
    assert metrics["test/ece"] < metrics["test/ece_uncal"]
    assert metrics["test/nll/noise"] < metrics["test/nll_uncal/noise"]


@pytest.mark.parametrize("name", ["ts", "ts_ca", "vs", "ms", "dirichlet", "ca"])
def test_test_logits_never_touch_the_fit(name: str):
    """The fit reads the calibration split only: whatever the test domains (the clean test
    split and the shifted sets) hold, the fitted calibrator maps the calibration split's logits
    to exactly the same values."""
    logits, labels = overconfident_toy()
    gen = torch.Generator().manual_seed(7)
    views = torch.stack([logits + torch.randn(logits.shape, generator=gen) for _ in range(3)])
    calib = Logits(logits, labels, views)
    outputs = []
    for seed in (4, 6):
        test_logits, test_labels = overconfident_toy(n=300, seed=seed)
        test_views = torch.stack([test_logits] * 3)
        shifted = torch.randn(test_logits.shape, generator=gen) * seed
        domains = {
            IN_DISTRIBUTION: Logits(test_logits, test_labels, test_views),
            "fog": Logits(shifted, test_labels.flip(0), torch.stack([shifted] * 3)),
        }
        calibrator = make_calibrator(name)
        calibrate_and_measure(name, calibrator, calib, domains)
        outputs.append(calibrator(logits, views))
    assert torch.equal(outputs[0], outputs[1])


def test_each_shifted_set_has_its_keys_and_their_mean_is_shift_mean():
    """`test/<metric>/<shift>` per shifted set, before and after, and `/shift_mean` their mean;
    the clean split's keys carry no suffix and stay out of the mean."""
    logits, labels = overconfident_toy()
    domains = {
        IN_DISTRIBUTION: Logits(*overconfident_toy(n=300, seed=4)),
        "fog": Logits(*overconfident_toy(n=200, seed=5)),
        "snow": Logits(*overconfident_toy(n=100, seed=6)),
    }
    metrics = calibrate_and_measure("ts", make_calibrator("ts"), Logits(logits, labels), domains)
    for metric in ("ece", "ece_uncal", "acc", "nll"):
        fog, snow = metrics[f"test/{metric}/fog"], metrics[f"test/{metric}/snow"]
        assert metrics[f"test/{metric}/shift_mean"] == (fog + snow) / 2
        assert metrics[f"test/{metric}"] not in (fog, snow)
    assert len(metrics) == 2 + 14 * 4  # calib/n, calib/T; 7 metrics x 2 per domain and the mean


def test_a_calibration_split_too_small_for_the_calibrator_is_refused_in_one_line():
    logits, labels = overconfident_toy(n=100)  # K = 5: ms has 30 parameters, fits; K = 10 not
    wide = torch.cat([logits, logits], dim=1)
    with pytest.raises(ConfigError) as err:
        calibrate_and_measure("ms", make_calibrator("ms"), Logits(wide[:100], labels), {})
    assert str(err.value) == (
        "calibrator=ms has 110 parameters with 10 classes, more than the 100 samples of the "
        "calibration split (the source's validation split); pick calibrator=ts or ts_ca "
        "(1 parameter) or a source with a larger validation split"
    )
    metrics = calibrate_and_measure("ms", make_calibrator("ms"), Logits(logits, labels), {})
    assert metrics == {"calib/n": 100}


def test_one_channel_views_are_a_rotation_a_flip_and_an_affine_jitter():
    images = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    rotated, flipped, shifted = image_views(images)
    assert torch.equal(flipped, images.flip(-1))
    assert not torch.equal(rotated, images) and not torch.equal(shifted, images)
    assert rotated.shape == shifted.shape == images.shape
    assert len(image_views(images)) == CAConfig().n_views


def test_colour_views_are_a_rotation_a_greyscale_and_a_jitter():
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    _, grey, jittered = image_views(images)
    luma = 0.2989 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]
    for channel in range(3):
        assert torch.allclose(grey[:, channel], luma, atol=1e-3)
    assert not torch.equal(jittered, images)


def test_view_logits_stack_the_net_on_each_view():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    images = torch.rand(5, 1, 8, 8)
    logits = view_logits(net, images)
    assert logits.shape == (3, 5, 4)
    assert torch.equal(logits[1], net(images.flip(-1)).detach())
