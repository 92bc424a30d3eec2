"""`xent-report SWEEP_DIR --fit`: a scaling law fitted to a sweep over model sizes (and tokens).

Each finished job is one point: its parameter count N (`model/n_params` in metrics.json), the
tokens D it trained on (`train/tokens`, when the jobs report it) and its loss L (a metric of
metrics.json, `best/val_loss` unless `--fit-metric` says otherwise). The law is
`L = E + A/N^α`, or the Chinchilla form `L = E + A/N^α + B/D^β` when D varies across the jobs.
It is fitted as Hoffmann et al. (2022) fit theirs: in log space, `log L̂ = LSE(e, a − α log N,
b − β log D)` with E = exp(e), A = exp(a), B = exp(b), minimising the Huber loss (δ = 1e-3) of
`log L̂ − log L` with L-BFGS-B from a grid of starts, keeping the best; bootstrap intervals
(resampled jobs, refitted) give the uncertainty. docs/methods/scaling.md has the choices.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from xent.errors import ConfigError

N_KEY = "model/n_params"
D_KEY = "train/tokens"
DEFAULT_METRIC = "best/val_loss"
FIT_JSON = "fit.json"
FIT_PNG = "fit.png"
HUBER_DELTA = 1e-3
RESAMPLES = 200
SEED = 0
LEVEL = 0.95
# The grid of starts: E as a fraction of the smallest loss, and each exponent; each A (and B)
# then starts where its term carries the loss above E at the median size (`_grid`).
E_FRACTIONS = (0.05, 0.3, 0.7, 0.95)
EXPONENTS = (0.1, 0.3, 0.6, 1.0)
EXPONENT_BOUND = 5.0


@dataclass(frozen=True)
class Point:
    """One finished job: its size, its tokens (None when not reported) and its loss."""

    job: str
    n_params: float
    value: float
    tokens: float | None = None


@dataclass(frozen=True)
class Law:
    """`L = E + Σ_k A_k / X_k^α_k` over the variables X_k (N, or N and D)."""

    variables: tuple[str, ...]  # metrics.json keys of the X_k

    @property
    def formula(self) -> str:
        terms = [f"{coef}/{sym}^{exp}" for coef, sym, exp in self._symbols()]
        return "L = E + " + " + ".join(terms)

    @property
    def parameters(self) -> tuple[str, ...]:
        """The reported parameters: E, then each term's coefficient and exponent."""
        return ("E",) + tuple(name for coef, _, exp in self._symbols() for name in (coef, exp))

    def _symbols(self) -> list[tuple[str, str, str]]:
        return [("A", "N", "α"), ("B", "D", "β")][: len(self.variables)]


N_LAW = Law((N_KEY,))
CHINCHILLA = Law((N_KEY, D_KEY))


@dataclass
class Fit:
    """A fitted law: estimates, bootstrap intervals and what they were computed from."""

    law: Law
    metric: str
    points: list[Point]
    estimates: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    objective: float
    starts: int
    resamples_used: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "law": self.law.formula,
            "metric": self.metric,
            "variables": list(self.law.variables),
            "parameters": {
                name: {
                    "estimate": self.estimates[name],
                    "low": _json_number(self.intervals[name][0]),
                    "high": _json_number(self.intervals[name][1]),
                }
                for name in self.law.parameters
            },
            "loss": "huber on log L",
            "huber_delta": HUBER_DELTA,
            "objective": self.objective,
            "starts": self.starts,
            "bootstrap": {
                "resamples": RESAMPLES,
                "used": self.resamples_used,
                "seed": SEED,
                "level": LEVEL,
            },
            "points": [
                {"job": p.job, N_KEY: p.n_params, D_KEY: p.tokens, self.metric: p.value}
                for p in self.points
            ],
        }


def _json_number(value: float) -> float | None:
    """null for a NaN, as metrics.json writes one: the file stays valid JSON."""
    return value if math.isfinite(value) else None


# -- the points: one per finished job ---------------------------------------------------------
def fit_points(jobs: Sequence[Path], metric: str) -> list[Point]:
    """Every finished job's (N, D, L), from the job dirs of a sweep; ConfigError naming the job
    when one lacks a value or has one that is not positive (the fit takes logs). Failed and
    pending jobs are left out, as the summary leaves them out of its means."""
    points = []
    for job in jobs:
        path = job / "metrics.json"
        result = json.loads(path.read_text()) if path.exists() else {}
        if result.get("status") == "ok":
            points.append(_point(job, result, metric))
    return points


def _point(job: Path, result: dict[str, Any], metric: str) -> Point:
    name = _job_name(job)
    n_params = _positive(result, N_KEY, name, "the fit needs each job's parameter count")
    value = _positive(result, metric, name, "choose the loss with --fit-metric")
    tokens = _positive(result, D_KEY, name, "the tokens it trained on") if D_KEY in result else None
    return Point(job.name, n_params, value, tokens)


def _job_name(job: Path) -> str:
    """`job 3 (model.hidden=64 seed=0)`: the job dir and its overrides, for an error line."""
    overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
    return f"job {job.name} ({' '.join(overrides)})" if overrides else f"job {job.name}"


def _positive(result: dict[str, Any], key: str, job: str, hint: str) -> float:
    """result[key] as a float; ConfigError when it is missing, null (how metrics.json writes a
    NaN or an infinity: a diverged run) or not positive."""
    value = result.get(key)
    if key in result and value is None:
        shown: Any = "null (NaN or infinite)"
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value) and value > 0:
            return float(value)
        shown = value
    else:
        raise ConfigError(f"--fit: {job} has no '{key}' in its metrics.json ({hint})")
    raise ConfigError(f"--fit: {job} has {key}={shown}; the fit takes logs, so it must be positive")


def choose_law(points: Sequence[Point]) -> Law:
    """The Chinchilla form when the jobs trained on different numbers of tokens, else the law
    in N alone; ConfigError when too few points or sizes for its parameters."""
    with_tokens = [p for p in points if p.tokens is not None]
    if with_tokens and len(with_tokens) < len(points):
        missing = next(p for p in points if p.tokens is None)
        raise ConfigError(
            f"--fit: job {missing.job} has no '{D_KEY}' while {len(with_tokens)} other job(s) "
            "do; the fit needs it from every job or from none"
        )
    law = CHINCHILLA if len({p.tokens for p in with_tokens}) > 1 else N_LAW
    needed = len(law.parameters) + 1
    if len(points) < needed:
        raise ConfigError(
            f"--fit: {len(points)} finished job(s); {law.formula} has "
            f"{len(law.parameters)} parameters, so the fit needs at least {needed}"
        )
    if len({p.n_params for p in points}) < 2:
        raise ConfigError(
            f"--fit: every job has {N_KEY}={points[0].n_params:g}; "
            "the fit needs a sweep over model sizes"
        )
    return law


# -- the fit: Huber loss on log L, L-BFGS-B from a grid of starts -------------------------------
def log_prediction(theta: np.ndarray, log_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log L̂ for each point (the log-sum-exp of the law's terms in log space) and each term's
    share of L̂ (the softmax weights: the gradient of the log-sum-exp).

    theta = (e, a_1, α_1, a_2, α_2, ...); log_x is (points, variables)."""
    coefs, exponents = theta[1::2], theta[2::2]
    terms = np.column_stack([np.full(len(log_x), theta[0]), coefs - exponents * log_x])
    top = terms.max(axis=1, keepdims=True)
    exp = np.exp(terms - top)
    total = exp.sum(axis=1, keepdims=True)
    return (top + np.log(total))[:, 0], exp / total


def objective(theta: np.ndarray, log_x: np.ndarray, log_y: np.ndarray) -> tuple[float, np.ndarray]:
    """Σ Huber_δ(log L̂ − log L) / δ and its gradient. Dividing by δ does not move the minimum;
    it puts the values near 1, where L-BFGS-B's tolerances are meant to work."""
    predicted, weights = log_prediction(theta, log_x)
    residual = predicted - log_y
    small = np.abs(residual) <= HUBER_DELTA
    huber = np.where(small, 0.5 * residual**2, HUBER_DELTA * (np.abs(residual) - 0.5 * HUBER_DELTA))
    slope = np.clip(residual, -HUBER_DELTA, HUBER_DELTA) / HUBER_DELTA
    grad = np.empty_like(theta)
    grad[0] = slope @ weights[:, 0]
    grad[1::2] = slope @ weights[:, 1:]
    grad[2::2] = -(slope[:, None] * weights[:, 1:] * log_x).sum(axis=0)
    return float(huber.sum() / HUBER_DELTA), grad


def _grid(log_x: np.ndarray, log_y: np.ndarray) -> list[np.ndarray]:
    """Starts: E at a few fractions of the smallest loss, each exponent from EXPONENTS, and each
    coefficient set so its term carries an equal share of the median loss above E at the
    median of its variable."""
    lowest, middle = float(np.exp(log_y.min())), float(np.exp(np.median(log_y)))
    centres = np.median(log_x, axis=0)
    starts = []
    for fraction in E_FRACTIONS:
        e = math.log(fraction * lowest)
        share = math.log(max(middle - fraction * lowest, 1e-12) / log_x.shape[1])
        for exponents in itertools.product(EXPONENTS, repeat=log_x.shape[1]):
            theta = [e]
            for exponent, centre in zip(exponents, centres, strict=True):
                theta += [share + exponent * centre, exponent]
            starts.append(np.array(theta))
    return starts


def _minimise(starts: Sequence[np.ndarray], log_x: np.ndarray, log_y: np.ndarray) -> Any:
    """L-BFGS-B from each start; the result with the lowest objective."""
    from scipy.optimize import minimize

    bounds = [(None, None)] + [(None, None), (0.0, EXPONENT_BOUND)] * log_x.shape[1]
    options = {"maxiter": 1000, "ftol": 1e-10, "gtol": 1e-6}
    best = None
    for start in starts:
        result = minimize(
            objective, start, args=(log_x, log_y), jac=True, method="L-BFGS-B",
            bounds=bounds, options=options,
        )  # fmt: skip
        if best is None or result.fun < best.fun:
            best = result
    return best


def _best_start(starts: list[np.ndarray], log_x: np.ndarray, log_y: np.ndarray) -> np.ndarray:
    """The start of the grid with the lowest objective on these points."""
    return min(starts, key=lambda theta: objective(theta, log_x, log_y)[0])


def natural(law: Law, theta: np.ndarray) -> dict[str, float]:
    """(e, a, α, ...) → {E: exp(e), A: exp(a), α, ...}, named as the law names them."""
    values = [math.exp(theta[0])]
    for coef, exponent in zip(theta[1::2], theta[2::2], strict=True):
        values += [math.exp(coef), float(exponent)]
    return dict(zip(law.parameters, values, strict=True))


def _design(law: Law, points: Sequence[Point]) -> tuple[np.ndarray, np.ndarray]:
    columns = [[p.n_params, p.tokens][: len(law.variables)] for p in points]
    return np.log(np.array(columns, dtype=float)), np.log([p.value for p in points])


def fit_law(points: Sequence[Point], metric: str, law: Law | None = None) -> Fit:
    """The law (chosen from the points unless given) fitted from every start of the grid, then
    refitted on RESAMPLES bootstrap resamples of the points (seeded) for its intervals."""
    import scipy.optimize  # noqa: F401  (loaded first, so the limit below reaches its BLAS)
    from threadpoolctl import threadpool_limits

    law = law or choose_law(points)
    log_x, log_y = _design(law, points)
    starts = _grid(log_x, log_y)
    # L-BFGS-B calls LAPACK on 5×5 matrices: a BLAS thread pool only adds wake-ups (4× slower).
    with threadpool_limits(limits=1, user_api="blas"):
        best = _minimise(starts, log_x, log_y)
        refit_starts = [best.x, _best_start(starts, log_x, log_y)]
        samples = _bootstrap(law, refit_starts, log_x, log_y)
    intervals = {name: _interval_of(samples[:, i]) for i, name in enumerate(law.parameters)}
    return Fit(
        law, metric, list(points), natural(law, best.x), intervals, float(best.fun),
        len(starts), len(samples),
    )  # fmt: skip


def _interval_of(refits: np.ndarray) -> tuple[float, float]:
    """The central LEVEL quantiles of one parameter's refits; NaN when no resample was usable."""
    if not len(refits):
        return math.nan, math.nan
    low, high = np.quantile(refits, ((1 - LEVEL) / 2, (1 + LEVEL) / 2))
    return float(low), float(high)


def _bootstrap(
    law: Law, starts: list[np.ndarray], log_x: np.ndarray, log_y: np.ndarray
) -> np.ndarray:
    """The law's parameters refitted on each resample (rows), from `starts` (the full fit's
    optimum and the grid's best start); resamples with fewer distinct points than parameters
    are skipped (their fit is not determined)."""
    rng = np.random.default_rng(SEED)
    rows = []
    for _ in range(RESAMPLES):
        index = rng.integers(0, len(log_y), len(log_y))
        if len(np.unique(index)) < len(law.parameters):
            continue
        x, y = log_x[index], log_y[index]
        refit = _minimise(starts, x, y)
        rows.append(list(natural(law, refit.x).values()))
    return np.array(rows).reshape(-1, len(law.parameters))


# -- the output: fit.json, fit.png, a table ---------------------------------------------------
def predict(fit: Fit, n_params: np.ndarray, tokens: float | None = None) -> np.ndarray:
    """L̂ at these sizes (and this many tokens, for the Chinchilla form)."""
    e = fit.estimates
    value = e["E"] + e["A"] * n_params ** -e["α"]
    return value + e["B"] * tokens ** -e["β"] if "B" in e else value


def fit_figure(fit: Fit) -> Any:
    """fit.png: the jobs' points and the fitted curve (one per token count for the Chinchilla
    form) on log-log axes, E as a dotted line; the title gives the exponents and intervals."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.8), dpi=100, layout="constrained")
    ax = fig.subplots()
    sizes = np.array([p.n_params for p in fit.points])
    grid = np.geomspace(sizes.min() / 1.5, sizes.max() * 1.5, 200)
    groups = sorted({p.tokens for p in fit.points}, key=lambda t: -1 if t is None else t)
    colors = [f"C{i % 10}" for i in range(len(groups))]
    for tokens, color in zip(groups, colors, strict=True):
        members = [p for p in fit.points if p.tokens == tokens]
        suffix = "" if "B" not in fit.estimates else f", D = {tokens:.3g}"
        ax.scatter(
            [p.n_params for p in members], [p.value for p in members], color=color, zorder=3,
            label=f"jobs (n={len(members)}){suffix}",
        )  # fmt: skip
        ax.plot(grid, predict(fit, grid, tokens), color=color, label=f"fit{suffix}")
    _draw_e(ax, fit.estimates["E"], min(p.value for p in fit.points))
    _log_axes(ax)
    _ticks_within_a_decade(ax)
    ax.set_xlabel(f"parameters N ({N_KEY})")
    ax.set_ylabel(fit.metric)
    ax.set_title(f"{fit.law.formula}\n{exponent_words(fit)}", fontsize=10)
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _draw_e(ax: Any, e: float, lowest_loss: float) -> None:
    """E as a dotted line; an E under a tenth of every point (a fit that finds no floor, E → 0)
    is named in the legend only, or its line would stretch the log axis over decades and flatten
    the points and the curve into one line."""
    label = f"E = {e:.3g}"
    if e < lowest_loss / 10:
        ax.plot([], [], color="gray", linestyle=":", label=f"{label} (below the axis)")
    else:
        ax.axhline(e, color="gray", linestyle=":", label=label)


def _log_axes(ax: Any) -> None:
    """Log-log axes with plain tick labels (10k, 1M; 2, 3), which read better than powers of
    ten for parameter counts and need no mathtext fonts."""
    from matplotlib.ticker import EngFormatter, FuncFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.3g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(_minor_label))


def _ticks_within_a_decade(ax: Any) -> None:
    """A y range inside one decade (2.1 to 2.7) may hold no log tick at all: give it about five
    plain ones, as a linear axis would place them."""
    from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

    low, high = ax.get_ylim()
    if high / low < 10:
        ticks = [t for t in MaxNLocator(5).tick_values(low, high) if low <= t <= high]
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_minor_locator(NullLocator())


def _minor_label(value: float, _: Any) -> str:
    """2, 3 and 5 times a power of ten are labelled, the other minor ticks not (they crowd)."""
    mantissa = round(value / 10 ** math.floor(math.log10(value)), 6) if value > 0 else 0
    return f"{value:.3g}" if mantissa in (2, 3, 5) else ""


def exponent_words(fit: Fit) -> str:
    """`α = 0.340 [0.321, 0.362], E = 1.70 [1.69, 1.71] (95 %, 200 resamples)`."""
    shown = [name for name in fit.law.parameters if name in ("E", "α", "β")]
    parts = [f"{name} = {fit.estimates[name]:.3g} {_interval(fit, name)}" for name in shown]
    return ", ".join(parts) + f" ({LEVEL:.0%} bootstrap)"


def _interval(fit: Fit, name: str) -> str:
    low, high = fit.intervals[name]
    return f"[{low:.3g}, {high:.3g}]"


def print_fit(fit: Fit) -> None:
    """The estimates and intervals as a table on the terminal."""
    from rich.table import Table

    from xent.runner.console import stdout_console

    table = Table(title=f"scaling fit: {fit.law.formula}", title_style="bold")
    table.add_column("parameter")
    table.add_column("estimate", justify="right")
    table.add_column(f"{LEVEL:.0%} interval", justify="right")
    for name in fit.law.parameters:
        table.add_row(name, f"{fit.estimates[name]:.4g}", _interval(fit, name))
    console = stdout_console()
    console.print(table)
    console.print(
        f"L = {fit.metric}, N = {N_KEY}"
        + (f", D = {D_KEY}" if len(fit.law.variables) > 1 else "")
        + f"; {len(fit.points)} jobs, Huber loss (δ = {HUBER_DELTA:g}) on log L, L-BFGS-B from "
        f"{fit.starts} starts; intervals from {fit.resamples_used} of {RESAMPLES} bootstrap "
        f"resamples (seed {SEED})",
        soft_wrap=True,
        highlight=False,
    )


def report_fit(sweep_dir: Path, points: Sequence[Point], metric: str) -> Fit:
    """Fit, then fit.json, fit.png and the table."""
    fit = fit_law(points, metric)
    (sweep_dir / FIT_JSON).write_text(json.dumps(fit.as_dict(), indent=2, ensure_ascii=False))
    try:
        fit_figure(fit).savefig(sweep_dir / FIT_PNG)
    except ImportError:
        pass  # matplotlib is an optional extra: the table and fit.json stand alone
    print_fit(fit)
    return fit
