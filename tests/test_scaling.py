"""`xent-report SWEEP_DIR --fit`: the scaling-law fit on sweeps whose losses come from a known law.

Each test writes a sweep's job dirs as a run leaves them (`.hydra/overrides.yaml`, metrics.json)
with `best/val_loss = law(N, D) · exp(noise)`, seeded, and checks that the fit gives the law
back, that its bootstrap intervals hold the truth, what fit.json and fit.png hold, and the
one-line errors.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.collections import PathCollection

from tests.conftest import run_main
from tests.test_report import fake_job
from xent.runner import scaling
from xent.runner.scaling import CHINCHILLA, N_LAW, Point, fit_figure, fit_law, predict

TRUTH = {"E": 1.7, "A": 400.0, "α": 0.34, "B": 410.0, "β": 0.28}
SIZES = np.geomspace(1e4, 1e7, 8)
NOISE = 0.005  # the std of log L's noise: half a percent
DROP = object()  # a key of `extra` with this value is left out of the job's metrics.json


def law(n_params: float, tokens: float | None = None) -> float:
    value = TRUTH["E"] + TRUTH["A"] * n_params ** -TRUTH["α"]
    return value + TRUTH["B"] * tokens ** -TRUTH["β"] if tokens else value


def law_sweep(tmp_path, sizes=SIZES, tokens=(None,), noise=NOISE, seed=0, extra=None):
    """A sweep dir with a job per (size, tokens): the law's loss times seeded noise."""
    rng = np.random.default_rng(seed)
    sweep = tmp_path / "sweep"
    grid = [(int(n), d) for n in sizes for d in tokens]
    for num, (n_params, d) in enumerate(grid):
        metrics = {
            "status": "ok",
            "seed": 0,
            "model/n_params": n_params,
            "best/val_loss": law(n_params, d) * float(np.exp(rng.normal(0, noise))),
        }
        if d is not None:
            metrics["train/tokens"] = d
        overrides = [f"model.hidden={num}", "seed=0"] + ([f"tokens={d:g}"] if d else [])
        metrics.update((extra or {}).get(num, {}))
        ok = {key: value for key, value in metrics.items() if value is not DROP}
        fake_job(sweep, num, overrides, ok, columns=[])
    return sweep


@pytest.fixture
def few_resamples(monkeypatch):
    """40 bootstrap resamples instead of 200: the tier's time; the intervals stay honest."""
    monkeypatch.setattr(scaling, "RESAMPLES", 40)


def fit_json(sweep):
    return json.loads((sweep / "fit.json").read_text())


def test_the_fit_recovers_the_exponent_and_e_of_a_known_law(
    tmp_path, monkeypatch, capsys, few_resamples
):
    sweep = law_sweep(tmp_path)
    code, out, err = run_main(monkeypatch, capsys, sweep, "--fit")
    assert code == 0, err
    fit = fit_json(sweep)
    assert fit["law"] == "L = E + A/N^α"
    assert fit["metric"] == "best/val_loss"
    params = fit["parameters"]
    # What seed 0's noise gives, and close to the truth.
    assert params["α"]["estimate"] == pytest.approx(0.34116, abs=1e-4)
    assert params["E"]["estimate"] == pytest.approx(1.7330, abs=1e-3)
    assert abs(params["α"]["estimate"] - TRUTH["α"]) < 0.005
    assert abs(params["E"]["estimate"] - TRUTH["E"]) < 0.05
    assert abs(params["A"]["estimate"] / TRUTH["A"] - 1) < 0.03
    for name in ("E", "A", "α"):
        assert params[name]["low"] < TRUTH[name] < params[name]["high"], name
    assert params["α"]["high"] - params["α"]["low"] < 0.03  # an interval that says something
    assert fit["bootstrap"] == {"resamples": 40, "used": 40, "seed": 0, "level": 0.95}
    assert [p["job"] for p in fit["points"]] == [str(i) for i in range(8)]
    assert fit["huber_delta"] == 1e-3 and fit["starts"] == 16
    assert "α         │   0.3412 │" in out
    assert out.strip().splitlines()[-1] == (
        f"wrote {sweep / 'summary.csv'}, summary.md; fit.json and fit.png"
    )


@pytest.mark.slow  # a bootstrap of the two-term fit
def test_the_chinchilla_form_recovers_both_exponents_when_tokens_vary(
    tmp_path, monkeypatch, capsys, few_resamples
):
    tokens = (1e8, 1e9, 1e10, 1e11)
    sweep = law_sweep(tmp_path, sizes=np.geomspace(1e4, 1e7, 5), tokens=tokens, noise=0.002)
    code, _, err = run_main(monkeypatch, capsys, sweep, "--fit")
    assert code == 0, err
    fit = fit_json(sweep)
    assert fit["law"] == "L = E + A/N^α + B/D^β"
    assert fit["variables"] == ["model/n_params", "train/tokens"]
    params = fit["parameters"]
    assert abs(params["α"]["estimate"] - TRUTH["α"]) < 0.01
    assert abs(params["β"]["estimate"] - TRUTH["β"]) < 0.02
    for name in ("E", "α", "β"):
        assert params[name]["low"] < TRUTH[name] < params[name]["high"], name


def test_failed_and_pending_jobs_are_left_out_of_the_fit(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(scaling, "RESAMPLES", 10)
    sweep = law_sweep(tmp_path, sizes=SIZES[:5])
    fake_job(sweep, 5, ["model.hidden=5", "seed=0"], {"status": "failed"})
    fake_job(sweep, 6, ["model.hidden=6", "seed=0"], None)  # still running
    code, _, err = run_main(monkeypatch, capsys, sweep, "--fit")
    assert code == 1, err  # a failed job: the report's exit code says so, the fit stands
    assert [p["job"] for p in fit_json(sweep)["points"]] == ["0", "1", "2", "3", "4"]


def test_the_plot_shows_the_points_the_curve_and_e_on_log_log_axes(few_resamples):
    rng = np.random.default_rng(1)
    points = [Point(str(i), n, law(n) * np.exp(rng.normal(0, NOISE))) for i, n in enumerate(SIZES)]
    fit = fit_law(points, "best/val_loss")
    ax = fit_figure(fit).axes[0]
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert ax.get_xlabel() == "parameters N (model/n_params)"
    assert ax.get_ylabel() == "best/val_loss"
    assert ax.get_title().startswith("L = E + A/N^α\nE = ")
    assert "α = 0.34" in ax.get_title()
    (dots,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    np.testing.assert_allclose(dots.get_offsets(), [[p.n_params, p.value] for p in points])
    curve, e_line = ax.get_lines()
    np.testing.assert_allclose(curve.get_ydata(), predict(fit, curve.get_xdata()))
    assert curve.get_xdata().min() < SIZES.min() and curve.get_xdata().max() > SIZES.max()
    assert list(e_line.get_ydata()) == [fit.estimates["E"]] * 2
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["jobs (n=8)", "fit", f"E = {fit.estimates['E']:.3g}"]


@pytest.mark.slow  # the fit of a law with no floor takes seconds to converge
def test_an_e_far_below_the_points_does_not_stretch_the_axis(few_resamples):
    """A pure power law (the points find no floor: E fits to about 0) keeps the points readable:
    the y axis spans the losses, and E is named in the legend, not drawn decades below."""
    points = [Point(str(i), n, 4.4 * n**-0.054) for i, n in enumerate(SIZES)]
    fit = fit_law(points, "best/val_loss")
    assert fit.estimates["E"] < 0.1
    fig = fit_figure(fit)
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert low > min(p.value for p in points) / 2 and high < max(p.value for p in points) * 2
    fig.canvas.draw()
    shown = [t.get_text() for t in ax.get_yticklabels() if low <= t.get_position()[1] <= high]
    assert len(shown) >= 3 and all(shown)  # a range inside a decade still has labelled ticks
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["jobs (n=8)", "fit", f"E = {fit.estimates['E']:.3g} (below the axis)"]


@pytest.mark.slow  # a bootstrap of the two-term fit
def test_the_chinchilla_plot_has_a_curve_per_token_count(few_resamples):
    tokens = (1e8, 1e9, 1e10)
    points = [Point("x", n, law(n, d), d) for n in SIZES[::2] for d in tokens]
    fit = fit_law(points, "best/val_loss")
    assert fit.law == CHINCHILLA
    ax = fit_figure(fit).axes[0]
    dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [len(c.get_offsets()) for c in dots] == [4, 4, 4]
    *curves, e_line = ax.get_lines()
    assert len(curves) == 3
    for curve, d in zip(curves, tokens, strict=True):
        np.testing.assert_allclose(curve.get_ydata(), predict(fit, curve.get_xdata(), d))
    assert ax.get_legend_handles_labels()[1][:2] == ["jobs (n=4), D = 1e+08", "fit, D = 1e+08"]


def test_the_gradient_is_the_objectives():
    """The analytic gradient L-BFGS-B is given matches finite differences, for both laws."""
    from scipy.optimize import approx_fprime

    rng = np.random.default_rng(2)
    log_x = np.log(np.column_stack([SIZES, np.geomspace(1e8, 1e11, len(SIZES))]))
    log_y = np.log([law(n, d) for n, d in np.exp(log_x)]) + rng.normal(0, 0.01, len(SIZES))

    def value(theta, x):
        return scaling.objective(theta, x, log_y)[0]

    for variables, theta in ((1, [0.4, 6.0, 0.3]), (2, [0.4, 6.0, 0.3, 6.2, 0.25])):
        x, theta = log_x[:, :variables], np.array(theta)
        _, grad = scaling.objective(theta, x, log_y)
        numeric = approx_fprime(theta, value, 1e-7, x)
        np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6)


def test_no_usable_resample_leaves_the_intervals_empty(monkeypatch):
    """No resample to refit (here: none drawn): no interval, and fit.json stays valid JSON."""
    monkeypatch.setattr(scaling, "RESAMPLES", 0)
    points = [Point(str(i), n, law(n)) for i, n in enumerate(SIZES[:4])]
    fit = fit_law(points, "best/val_loss")
    assert fit.resamples_used == 0
    assert fit.as_dict()["parameters"]["α"] == {
        "estimate": pytest.approx(TRUTH["α"], abs=1e-3),
        "low": None,
        "high": None,
    }
    assert fit.estimates["E"] == pytest.approx(TRUTH["E"], abs=1e-3)


def test_a_law_in_n_alone_when_every_job_trained_on_the_same_tokens():
    points = [Point(str(i), n, law(n), 1e9) for i, n in enumerate(SIZES[:4])]
    assert scaling.choose_law(points) == N_LAW


def test_fit_metric_picks_another_loss(tmp_path, monkeypatch, capsys, few_resamples):
    extra = {i: {"test/loss": law(n) + 0.1} for i, n in enumerate(SIZES.astype(int))}
    sweep = law_sweep(tmp_path, noise=0.0, extra=extra)
    code, _, err = run_main(monkeypatch, capsys, sweep, "--fit-metric", "test/loss")
    assert code == 0, err
    fit = fit_json(sweep)
    assert fit["metric"] == "test/loss"
    assert fit["parameters"]["E"]["estimate"] == pytest.approx(TRUTH["E"] + 0.1, abs=1e-3)
    assert fit["parameters"]["α"]["estimate"] == pytest.approx(TRUTH["α"], abs=1e-3)


HEAD = "xent-report: error: --fit: "
BAD_SWEEPS = {
    "too few points": (
        dict(sizes=SIZES[:3]),
        [],
        HEAD + "3 finished job(s); L = E + A/N^α has 3 parameters, so the fit needs at least 4",
    ),
    "too few for chinchilla": (
        dict(sizes=SIZES[:2], tokens=(1e8, 1e9)),
        [],
        HEAD + "4 finished job(s); L = E + A/N^α + B/D^β has 5 parameters, "
        "so the fit needs at least 6",
    ),
    "no n_params": (
        dict(extra={2: {"model/n_params": DROP}}),
        [],
        HEAD + "job 2 (model.hidden=2 seed=0) has no 'model/n_params' in its metrics.json "
        "(the fit needs each job's parameter count)",
    ),
    "no metric in one job": (
        dict(extra={3: {"best/val_loss": DROP}}),
        [],
        HEAD + "job 3 (model.hidden=3 seed=0) has no 'best/val_loss' in its metrics.json "
        "(choose the loss with --fit-metric)",
    ),
    "zero parameters": (
        dict(extra={1: {"model/n_params": 0}}),
        [],
        HEAD + "job 1 (model.hidden=1 seed=0) has model/n_params=0; the fit takes logs, so it "
        "must be positive",
    ),
    "negative loss": (
        dict(extra={4: {"best/val_loss": -0.5}}),
        [],
        HEAD + "job 4 (model.hidden=4 seed=0) has best/val_loss=-0.5; the fit takes logs, so it "
        "must be positive",
    ),
    "diverged": (
        dict(extra={6: {"best/val_loss": None}}),  # a NaN, as metrics.json writes it
        [],
        HEAD + "job 6 (model.hidden=6 seed=0) has best/val_loss=null (NaN or infinite); the fit "
        "takes logs, so it must be positive",
    ),
    "zero tokens": (
        dict(tokens=(1e9,), extra={0: {"train/tokens": 0}}),
        [],
        HEAD + "job 0 (model.hidden=0 seed=0 tokens=1e+09) has train/tokens=0; the fit takes "
        "logs, so it must be positive",
    ),
    "one size": (
        dict(sizes=[1000] * 4),
        [],
        HEAD + "every job has model/n_params=1000; the fit needs a sweep over model sizes",
    ),
    "tokens in some jobs only": (
        dict(tokens=(1e9,), extra={5: {"train/tokens": DROP}}),
        [],
        HEAD + "job 5 has no 'train/tokens' while 7 other job(s) do; the fit needs it from "
        "every job or from none",
    ),
    "unreported metric": (
        dict(),
        ["--fit-metric", "val/bpc"],
        "xent-report: error: --fit-metric 'val/bpc' is not reported by any job; valid: "
        "best/val_loss, model/n_params",
    ),
}


@pytest.mark.parametrize("name", BAD_SWEEPS)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, name):
    sweep_args, args, message = BAD_SWEEPS[name]
    sweep = law_sweep(tmp_path, **sweep_args)
    code, out, err = run_main(monkeypatch, capsys, sweep, "--fit", *args)
    assert (code, err.splitlines()) == (2, [message])
    assert out == ""
    assert sorted(p.name for p in sweep.iterdir() if not p.is_dir()) == []
