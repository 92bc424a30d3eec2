"""The figures a calibration is read from: a reliability diagram per calibrator, and ECE across
the test domains with one line per calibrator. matplotlib's object API (no pyplot state), imported
only when a figure is made; sizes are the functions' own, whatever the user's matplotlibrc."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from xent.calibration.metrics import N_BINS, bin_index, ece, top1


def bin_stats(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per equal-width bin: accuracy, mean confidence and count. For the drawing only, the
    confidences of exactly 1.0 (a bin of their own in ECE) join the last bar."""
    confidence, correct = top1(logits.detach().double().softmax(dim=1), labels)
    bins = bin_index(confidence).clamp(max=N_BINS - 1)
    count = torch.bincount(bins, minlength=N_BINS).double()
    filled = count > 0
    accuracy = torch.zeros(N_BINS, dtype=torch.float64)
    mean_conf = torch.zeros(N_BINS, dtype=torch.float64)
    accuracy[filled] = torch.bincount(bins, correct, N_BINS)[filled] / count[filled]
    mean_conf[filled] = torch.bincount(bins, confidence, N_BINS)[filled] / count[filled]
    return {"accuracy": accuracy, "confidence": mean_conf, "count": count, "filled": filled}


def reliability_figure(logits: torch.Tensor, labels: torch.Tensor, name: str) -> Any:
    """Above: each non-empty bin's accuracy as a bar, its mean confidence as a dot, the
    diagonal of perfect calibration, ECE in the title. Below: how many samples each bin holds."""
    from matplotlib.figure import Figure

    stats = {key: value.numpy() for key, value in bin_stats(logits, labels).items()}
    confidence, correct = top1(logits.detach().double().softmax(dim=1), labels)
    width = 1 / N_BINS
    centres = ((torch.arange(N_BINS, dtype=torch.float64) + 0.5) * width).numpy()
    filled = stats["filled"]
    fig = Figure(figsize=(5, 6), dpi=100, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.bar(
        centres[filled],
        stats["accuracy"][filled],
        width=width,
        edgecolor="black",
        linewidth=0.5,
        label="accuracy",
    )
    top.plot(
        centres[filled],
        stats["confidence"][filled],
        "o",
        color="tab:red",
        ms=3,
        label="mean confidence",
    )
    top.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    top.set(xlim=(0, 1), ylim=(0, 1))
    top.set_ylabel("accuracy", fontsize=10)
    top.set_title(f"{name}: ECE {ece(confidence, correct):.4f}", fontsize=11)
    top.legend(fontsize=9, loc="upper left")
    bottom.bar(centres, stats["count"], width=width, edgecolor="black", linewidth=0.5)
    bottom.set_xlabel("top-1 confidence (15 equal-width bins)", fontsize=10)
    bottom.set_ylabel("samples", fontsize=10)
    for ax in (top, bottom):
        ax.tick_params(labelsize=9)
    return fig


def ece_shift_figure(ece_by_calibrator: Mapping[str, Mapping[str, float]], domains: Sequence[str]):
    """`ece_by_calibrator[name][domain]`: one line per calibrator over the domains, in order
    (the clean test split first, then each shift)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 0.6 * len(domains) + 3), 4.5), dpi=100, layout="constrained")
    ax = fig.subplots()
    xs = list(range(len(domains)))
    for name, values in ece_by_calibrator.items():
        ax.plot(xs, [values[d] for d in domains], marker="o", ms=3, label=name)
    ax.set_xticks(xs, list(domains), rotation=45, ha="right", fontsize=9)
    ax.set_xlabel("test domain", fontsize=10)
    ax.set_ylabel("ECE (15 bins)", fontsize=10)
    ax.tick_params(axis="y", labelsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(
        fontsize=9, title="calibrator", title_fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1)
    )
    ax.set_title("ECE across test domains (mean over seeds)", fontsize=11)
    return fig


def save(fig: Any, path: str | Path) -> Path:
    """Write a figure; the caller's folder must exist."""
    path = Path(path)
    fig.savefig(path)
    return path


# --- the sweep's figure -------------------------------------------------------------------------
ECE_SHIFTS_PNG = "ece_shifts.png"
CLEAN_LABEL = "clean"  # the in-distribution test split's tick


def _sweep_runs(sweep_dir: Path) -> list[dict]:
    """The metrics.json of every finished task=calibrate job of a sweep, in job order."""
    import json

    jobs = sorted(
        sweep_dir.glob("*/metrics.json"), key=lambda p: (len(p.parent.name), p.parent.name)
    )
    runs = [json.loads(path.read_text()) for path in jobs]
    return [run for run in runs if run.get("status") == "ok" and "calibrator" in run]


def sweep_ece_by_calibrator(sweep_dir: str | Path) -> tuple[dict[str, dict[str, float]], list[str]]:
    """`ece[calibrator][domain]`, each the mean over the calibrator's jobs (its seeds), and the
    domains: the clean test split, then the shifts the jobs share, in their order."""
    runs = _sweep_runs(Path(sweep_dir))
    shared = set.intersection(*(set(run.get("shifts", [])) for run in runs)) if runs else set()
    shifts = [name for name in (runs[0].get("shifts", []) if runs else []) if name in shared]
    keys = {CLEAN_LABEL: "test/ece", **{shift: f"test/ece/{shift}" for shift in shifts}}
    by_calibrator: dict[str, list[dict]] = {}
    for run in runs:
        by_calibrator.setdefault(run["calibrator"], []).append(run)
    ece = {
        name: {domain: sum(r[key] for r in mine) / len(mine) for domain, key in keys.items()}
        for name, mine in by_calibrator.items()
    }
    return ece, list(keys)


def write_sweep_ece_figure(sweep_dir: str | Path) -> Path | None:
    """`ece_shifts.png` in the sweep dir (one line per calibrator, mean over seeds); None where
    no job finished a calibration."""
    ece, domains = sweep_ece_by_calibrator(sweep_dir)
    if not ece:
        return None
    return save(ece_shift_figure(ece, domains), Path(sweep_dir) / ECE_SHIFTS_PNG)


class ECEShiftSweepPlot(Callback):
    """At the end of a multirun: `ece_shifts.png` over its task=calibrate jobs, in the sweep
    dir (an experiment names it under hydra.callbacks, as dco_arith does its pass@k plot)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        import logging

        log = logging.getLogger("xent")
        try:
            path = write_sweep_ece_figure(Path(config.hydra.sweep.dir))
        except Exception as err:  # noqa: BLE001 - a plot must never hide the jobs' results
            log.warning("no ECE-across-shifts plot: %s", err)
            return
        if path is not None:
            log.info("ECE across shifts: %s", path)
