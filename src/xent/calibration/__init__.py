"""Post-hoc calibration of a classifier's logits (task=calibrate): calibrators and metrics."""

from xent.calibration.ca import CAConfig, ca_loss
from xent.calibration.calibrators import CALIBRATORS, Calibrator, make_calibrator
from xent.calibration.metrics import N_BINS, calibration_metrics

__all__ = [
    "CALIBRATORS",
    "CAConfig",
    "Calibrator",
    "N_BINS",
    "ca_loss",
    "calibration_metrics",
    "make_calibrator",
]
