"""Post-hoc calibrators: fitted on a calibration split's logits, applied to any logits.

`none` and the temperature calibrators (`ts`: NLL; `ts_ca`: the CA loss) are ours, since they
share one float64 fit of log T; `vs` comes from probmetrics (docs/methods/calibrate.md says why
that library); `ms` and `dirichlet` are one linear map fitted with the ODIR penalty, which no
library on Python 3.11 offers (§3 there); `ca` (a per-sample temperature from transformed views)
is ours, after the CA paper's released code (docs/methods/calibrate.md §5).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from xent import checks
from xent.calibration.ca import CAConfig, TemperatureNet, ca_loss, fit_temperature_net
from xent.errors import ConfigError

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
    """A probmetrics logit calibrator (`vs`: vector scaling), fitted in float64."""

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


ODIR_DEFAULT = 1.0
"""The ODIR weight of `ms` and `dirichlet` (`calibrator.odir`). Kull et al. pick it by
cross-validation; 1.0 is fixed instead, from held-out NLL: on a digits CNN's 180-sample
validation split it takes `ms` from 1.83 (no penalty) to 0.14 and `dirichlet` from 6.34 to
0.17, where 0.1 leaves 0.18 and 0.26; on 2000 samples it costs at most 0.0005 against 0.1
(docs/methods/calibrate.md §3)."""


def odir_penalty(weights: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Kull et al.'s ODIR term, weight 1: the mean square of the off-diagonal weights plus the
    mean square of the bias. The diagonal is free, so a strong penalty leaves a per-class
    scaling rather than pulling the map to zero."""
    num_classes = weights.shape[0]
    off_diagonal = weights - torch.diag(torch.diagonal(weights))
    n_off = num_classes * (num_classes - 1)
    return off_diagonal.square().sum() / n_off + bias.square().mean()


def fit_linear_map(
    features: torch.Tensor, labels: torch.Tensor, odir: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (W, b) minimising mean cross-entropy of `features @ W + b` plus `odir` times the
    ODIR penalty: L-BFGS with line search in float64 from the identity (W = I, b = 0)."""
    features = features.detach().double()
    num_classes = features.shape[1]
    weights = torch.eye(num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weights, bias],
        lr=1.0,
        max_iter=1000,
        tolerance_grad=1e-10,
        tolerance_change=1e-14,
        history_size=50,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = F.cross_entropy(features @ weights + bias, labels)
        value = value + odir * odir_penalty(weights, bias)
        value.backward()
        return value

    optimizer.step(closure)
    return weights.detach(), bias.detach()


def log_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Dirichlet calibration's input: the log-softmax, the logits up to a per-sample shift."""
    return F.log_softmax(logits, dim=1)


class LinearMapScaling(Calibrator):
    """A K x K map and a bias on `features(logits)`, fitted by NLL plus ODIR: matrix scaling
    (`ms`) on the logits themselves, Dirichlet calibration (`dirichlet`) on log-probabilities."""

    keeps_argmax = False

    def __init__(
        self,
        features: Callable[[torch.Tensor], torch.Tensor] = torch.clone,
        odir: float = ODIR_DEFAULT,
    ) -> None:
        self.features = features
        self.odir = checks.number(
            "calibrator.odir", odir, at_least=0, what="a number >= 0 (0: no penalty)"
        )
        self.weights: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None

    def n_params(self, num_classes: int) -> int:
        return num_classes * num_classes + num_classes

    def fit(self, logits, labels, view_logits=None) -> LinearMapScaling:
        features = self.features(logits.detach().double())
        self.weights, self.bias = fit_linear_map(features, labels, self.odir)
        return self

    def __call__(self, logits, view_logits=None):
        features = self.features(logits.detach().double())
        return (features @ self.weights + self.bias).to(logits.dtype)


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


def make_calibrator(name: str, **options: Any) -> Calibrator:
    """The calibrator called `name` (one of CALIBRATORS), unfitted; `options` are the keys of
    its conf/calibrator/<name>.yaml other than `name` (CALIBRATOR_OPTIONS)."""
    allowed = CALIBRATOR_OPTIONS.get(name, ())
    for key in options:
        if key not in allowed:
            valid = ", ".join(f"calibrator.{option}" for option in allowed)
            takes = f"whose options are {valid}" if valid else "which takes none"
            raise ConfigError(f"calibrator.{key} is not an option of calibrator={name}, {takes}")
    return CALIBRATORS[name](**options)


def calibrator_from_config(node: Mapping[str, Any]) -> Calibrator:
    """The calibrator a `calibrator` group node describes (`name` and its options), unfitted:
    how a task reads `calibrator.odir` and the like."""
    options = {key: value for key, value in node.items() if key != "name"}
    return make_calibrator(str(node["name"]), **options)


CALIBRATORS: dict[str, Callable[[], Calibrator]] = {
    "none": Calibrator,
    "ts": TemperatureScaling,
    "ts_ca": lambda: TemperatureScaling(ca_objective),
    "vs": lambda: ProbmetricsScaling("VectorScalingCalibrator", lambda k: 2 * k),
    "ms": LinearMapScaling,
    "dirichlet": lambda odir=ODIR_DEFAULT: LinearMapScaling(log_probabilities, odir),
    "ca": CorrectnessAware,
}

# The options each calibrator's config takes besides `name`.
CALIBRATOR_OPTIONS: dict[str, tuple[str, ...]] = {"ms": ("odir",), "dirichlet": ("odir",)}
