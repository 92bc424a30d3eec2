"""Fit a calibrator on the calibration split only, then measure every test domain before and
after: the core of task=calibrate, free of any run dir or data module.

metrics keys: `test/<metric>` on the in-distribution test split and `test/<metric>/<shift>` on
each shifted one, after calibration; `test/<metric>_uncal[/<shift>]` the same before;
`test/<metric>[_uncal]/shift_mean` the mean over the shifted sets, when there are any; `calib/n`
the calibration split's size and `calib/<param>` the fitted scalars (`calib/T` for ts and ts_ca).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xent.calibration.calibrators import Calibrator
from xent.calibration.metrics import calibration_metrics
from xent.errors import ConfigError

IN_DISTRIBUTION = ""  # the domain name of the clean test split: its keys carry no suffix
SHIFT_MEAN = "shift_mean"  # the mean over the shifted sets, as a domain name


@dataclass(frozen=True)
class Logits:
    """A split's logits (N, K), labels (N,) and, for calibrator=ca, its views' logits (V, N, K)."""

    logits: torch.Tensor
    labels: torch.Tensor
    view_logits: torch.Tensor | None = None


def check_split_size(name: str, calibrator: Calibrator, n_samples: int, num_classes: int) -> None:
    """A calibration split no larger than the calibrator's parameter count cannot fit it: say so
    in one line, naming the calibrators that would fit."""
    n_params = calibrator.n_params(num_classes)
    if n_samples > n_params:
        return
    raise ConfigError(
        f"calibrator={name} has {n_params} parameters with {num_classes} classes, more than the "
        f"{n_samples} samples of the calibration split (the source's validation split); pick "
        f"calibrator=ts or ts_ca (1 parameter) or a source with a larger validation split"
    )


def domain_key(metric: str, domain: str) -> str:
    """`test/metric` for the in-distribution test split, `test/metric/domain` for a shift."""
    return f"test/{metric}" if domain == IN_DISTRIBUTION else f"test/{metric}/{domain}"


def calibrate_and_measure(
    name: str, calibrator: Calibrator, calib: Logits, domains: dict[str, Logits]
) -> dict[str, float]:
    """Fit `calibrator` on `calib` alone (the domains are read only after the fit), then
    measure each domain's logits before and after it."""
    check_split_size(name, calibrator, len(calib.labels), calib.logits.shape[1])
    calibrator.fit(calib.logits, calib.labels, calib.view_logits)
    metrics: dict[str, float] = {"calib/n": len(calib.labels)}
    metrics.update({f"calib/{key}": value for key, value in calibrator.params().items()})
    per_domain = {domain: _measure(calibrator, split) for domain, split in domains.items()}
    shifted = [values for domain, values in per_domain.items() if domain != IN_DISTRIBUTION]
    if shifted:
        per_domain[SHIFT_MEAN] = {k: sum(v[k] for v in shifted) / len(shifted) for k in shifted[0]}
    for domain, values in per_domain.items():
        metrics.update({domain_key(metric, domain): value for metric, value in values.items()})
    return metrics


def _measure(calibrator: Calibrator, split: Logits) -> dict[str, float]:
    """Every metric of one domain, before (`<metric>_uncal`) and after (`<metric>`)."""
    calibrated = calibrator(split.logits, split.view_logits)
    values: dict[str, float] = {}
    for suffix, logits in (("_uncal", split.logits), ("", calibrated)):
        for metric, value in calibration_metrics(logits, split.labels).items():
            values[metric + suffix] = value
    return values
