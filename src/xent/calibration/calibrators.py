"""Post-hoc calibrators: fitted on a calibration split's logits, applied to any logits.

`none` and the temperature calibrators (`ts`: NLL; `ts_ca`: the CA loss) are ours, since they
share one float64 fit of log T; `vs` and `ms` come from probmetrics (docs/methods/calibrate.md
says why that library); `ca` (a per-sample temperature from transformed views) is ours, after the
CA paper's released code (docs/methods/calibrate.md §5).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from xent.calibration.ca import CAConfig, TemperatureNet, ca_loss, fit_temperature_net

Objective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class Calibrator:
    """Maps logits to calibrated logits. `view_logits` (V, N, K): the source's logits on V
    transformed views of the same N inputs; only `ca` reads them."""

    keeps_argmax = True

    def n_params(self, num_classes: int) -> int:
        """How many numbers the fit sets (the calibration split must be larger)."""
        return 0

    def fit(
        self, logits: torch.Tensor, labels: torch.Tensor, view_logits: torch.Tensor | None = None
    ) -> Calibrator:
        return self

    def __call__(self, logits: torch.Tensor, view_logits: torch.Tensor | None = None):
        return logits

    def params(self) -> dict[str, float]:
        """Fitted scalars for metrics.json (`calib/<name>`)."""
        return {}


def nll_objective(scaled: torch.Tensor, original: torch.Tensor, labels: torch.Tensor):
    """Cross-entropy of the scaled logits (classic temperature scaling)."""
    return F.cross_entropy(scaled, labels)


def ca_objective(scaled: torch.Tensor, original: torch.Tensor, labels: torch.Tensor):
    """The CA loss: calibrated confidence against the original prediction's correctness."""
    return ca_loss(scaled, original.argmax(dim=1) == labels)


def fit_log_temperature(logits: torch.Tensor, labels: torch.Tensor, objective: Objective) -> float:
    """The T minimising `objective(logits / T)`: L-BFGS with line search on log T, in float64
    (positive T for free; NLL is convex in 1/T, and log T keeps the steps well scaled)."""
    logits = logits.detach().double()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [log_t],
        lr=1.0,
        max_iter=200,
        tolerance_grad=1e-12,
        tolerance_change=1e-14,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = objective(logits / log_t.exp(), logits, labels)
        value.backward()
        return value

    optimizer.step(closure)
    return float(log_t.detach().exp())


class TemperatureScaling(Calibrator):
    """One temperature for every sample, fitted by `objective` (NLL for `ts`, CA for `ts_ca`)."""

    def __init__(self, objective: Objective = nll_objective) -> None:
        self.objective = objective
        self.temperature = 1.0

    def n_params(self, num_classes: int) -> int:
        return 1

    def fit(self, logits, labels, view_logits=None) -> TemperatureScaling:
        self.temperature = fit_log_temperature(logits, labels, self.objective)
        return self

    def __call__(self, logits, view_logits=None):
        return logits / self.temperature

    def params(self) -> dict[str, float]:
        return {"T": self.temperature}


def _probmetrics() -> Any:
    """probmetrics, imported when a calibrator of it is fitted: its import warns on stderr
    (torch.jit.script's deprecation), which every other run would print for nothing."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from probmetrics import distributions
        from probmetrics.calibrators import logistic
    return logistic, distributions


class ProbmetricsScaling(Calibrator):
    """A probmetrics logit calibrator (vector or matrix scaling), fitted in float64."""

    keeps_argmax = False

    def __init__(self, class_name: str, params_per_class: Callable[[int], int]):
        self.class_name = class_name
        self.params_per_class = params_per_class
        self.fitted = None

    def n_params(self, num_classes: int) -> int:
        return self.params_per_class(num_classes)

    def fit(self, logits, labels, view_logits=None) -> ProbmetricsScaling:
        logistic, distributions = _probmetrics()
        logits = distributions.CategoricalLogits(logits.detach().double())
        self.fitted = getattr(logistic, self.class_name)().fit_torch(logits, labels)
        return self

    def __call__(self, logits, view_logits=None):
        _, distributions = _probmetrics()
        as_distribution = distributions.CategoricalLogits(logits.detach().double())
        calibrated = self.fitted.predict_proba_torch(as_distribution)
        return calibrated.get_logits().to(logits.dtype)


class CorrectnessAware(Calibrator):
    """Per-sample temperature T(x) in [0.1, 10] from the views' probabilities at the original
    top classes, trained with the CA loss (Liu et al. 2024)."""

    def __init__(self, config: CAConfig | None = None) -> None:
        self.config = config or CAConfig()
        self.net: TemperatureNet | None = None

    def n_params(self, num_classes: int) -> int:
        return TemperatureNet.n_params_for(self.config)

    def fit(self, logits, labels, view_logits=None) -> CorrectnessAware:
        self.net = fit_temperature_net(logits, labels, _needs_views(view_logits), self.config)
        return self

    def __call__(self, logits, view_logits=None):
        with torch.no_grad():
            temperature = self.net(logits.double(), _needs_views(view_logits).double())
        return (logits.double() / temperature.unsqueeze(1)).to(logits.dtype)


def _needs_views(view_logits: torch.Tensor | None) -> torch.Tensor:
    if view_logits is None:
        raise ValueError("calibrator=ca needs the logits of transformed views")
    return view_logits


def make_calibrator(name: str) -> Calibrator:
    """The calibrator called `name` (one of CALIBRATORS), unfitted."""
    return CALIBRATORS[name]()


CALIBRATORS: dict[str, Callable[[], Calibrator]] = {
    "none": Calibrator,
    "ts": TemperatureScaling,
    "ts_ca": lambda: TemperatureScaling(ca_objective),
    "vs": lambda: ProbmetricsScaling("VectorScalingCalibrator", lambda k: 2 * k),
    "ms": lambda: ProbmetricsScaling("MatrixScalingCalibrator", lambda k: k * k + k),
    "ca": CorrectnessAware,
}
