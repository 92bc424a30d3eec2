"""Judge a sweep's claim ("PLD gives a higher top-1 than CE") from its per-seed results.

The claim is data (the `claim` block of an experiment file, docs/claims.md); this module reads
it, picks the baseline and candidate rows of the sweep, pairs their runs by seed and turns the
paired differences into an interval, p-values and a verdict. It knows nothing of files or
tables: `xent.runner.report` feeds it rows and writes what it returns. scipy loads only when
something is judged (xent-run's start-up never pays for it).

Pairing by seed: a seed fixes the data split, the label noise and the initialisation, so the
difference `d_s = candidate_s − baseline_s` cancels most of the noise two unpaired means carry.
Only seeds where both rows finished ok (and reported the metric) are paired.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import yaml

from xent.checks import flag, number
from xent.errors import ConfigError

CLAIM_KEYS = (
    "source",
    "says",
    "metric",
    "higher_is_better",
    "baseline",
    "candidates",
    "min_effect",
    "published",
)
REQUIRED_KEYS = ("metric", "higher_is_better", "baseline")
PUBLISHED_SETTING = "setting"  # the one key of `published` that is words, not a number

CONFIDENCE = 0.95
POWER = 0.8
BOOTSTRAP_FROM = 10  # pairs: from here the interval is BCa bootstrap, below it Student t
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0  # the same sweep gives the same interval every time it is judged
WILCOXON_FROM = 6  # pairs: below this the signed-rank test cannot reach p < 0.05

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
NOT_ENOUGH_SEEDS = "not enough seeds"

T_INTERVAL = "Student t"
BCA_INTERVAL = "BCa bootstrap"
POINT_INTERVAL = "point (zero spread)"

TESTS = {
    "difference": "candidate − baseline, paired by seed (seeds both finished ok)",
    "interval": f"95 % interval of the mean difference: {T_INTERVAL} for n < {BOOTSTRAP_FROM}, "
    f"{BCA_INTERVAL} (scipy.stats.bootstrap, {BOOTSTRAP_RESAMPLES} resamples, seed "
    f"{BOOTSTRAP_SEED}) from {BOOTSTRAP_FROM}; a point when every difference is the same",
    "p_improvement": "fraction of paired seeds where the candidate is better in the claimed "
    "direction, ties count half",
    "p_ttest": "paired t-test (scipy.stats.ttest_1samp on the differences), two-sided",
    "p_wilcoxon": f"Wilcoxon signed-rank test, two-sided, from n >= {WILCOXON_FROM}",
    "correction": "Holm step-down across the candidates (p_ttest_holm, p_wilcoxon_holm)",
    "seeds_needed": "normal approximation, 80 % power, two-sided 5 %: "
    "ceil(((z_.975 + z_.8) · sd / |mean − min_effect|)²), at least one more than now",
}


class Arm(Protocol):
    """A row of the sweep as the judge needs it (`xent.runner.report.Row` is one)."""

    label: str
    overrides: list[str]  # every override of its jobs but the seed, shared ones included
    results: dict[int, dict[str, float]]  # seed -> the numbers an ok job reported


@dataclass(frozen=True)
class Claim:
    """A claim as judged: the keys of docs/claims.md, checked, defaults filled in."""

    metric: str
    higher_is_better: bool
    baseline: dict[str, Any]
    candidates: list[dict[str, Any]] | None = None
    min_effect: float = 0.0
    source: str = ""
    says: str = ""
    published: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Verdict:
    """One candidate against the baseline: everything verdicts.json and the tables show."""

    label: str
    seeds: list[int]
    differences: list[float]
    unpaired_seeds: list[int]  # finished on one side only
    name: str | None = None  # its values of the baseline's keys: how `published` names it
    baseline: str = ""  # the row it is compared with
    stratum: str | None = None  # the sweep's other factors' values, where it has any
    mean: float | None = None
    low: float | None = None
    high: float | None = None
    interval: str | None = None
    p_improvement: float | None = None
    p_ttest: float | None = None
    p_wilcoxon: float | None = None
    verdict: str = NOT_ENOUGH_SEEDS
    seeds_needed: int | None = None
    p_ttest_holm: float | None = None
    p_wilcoxon_holm: float | None = None
    published_delta: float | None = None
    published_inside: bool | None = None

    @property
    def n(self) -> int:
        return len(self.differences)


@dataclass
class Judgement:
    """The claim, the baseline row and a verdict per candidate."""

    claim: Claim
    baseline: str
    verdicts: list[Verdict]

    def as_dict(self) -> dict[str, Any]:
        """What verdicts.json holds."""
        return {
            "claim": self.claim.as_dict(),
            "baseline": self.baseline,
            "tests": TESTS,
            "candidates": [{**asdict(v), "n_pairs": v.n} for v in self.verdicts],
        }


# -- the claim block ----------------------------------------------------------------------------
def parse_claim(raw: Mapping[str, Any] | None) -> Claim | None:
    """The claim block checked for structure (results are not needed for that), or None for
    no claim; a malformed block raises ConfigError naming the key and what is valid."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"claim={raw!r} must be null or a mapping of {', '.join(CLAIM_KEYS)}")
    for key in raw:
        if key not in CLAIM_KEYS:
            raise ConfigError(f"claim.{key} is not a claim key; valid: {', '.join(CLAIM_KEYS)}")
    for key in REQUIRED_KEYS:
        if raw.get(key) is None:
            raise ConfigError(f"claim.{key} is missing; a claim needs {', '.join(REQUIRED_KEYS)}")
    metric = raw["metric"]
    if not isinstance(metric, str) or not metric:
        raise ConfigError(f"claim.metric={metric!r} must be a metric name (a key of metrics.json)")
    candidates = raw.get("candidates")
    if candidates is not None and (isinstance(candidates, str | Mapping) or not candidates):
        raise ConfigError(
            f"claim.candidates={candidates!r} must be null (every other row) or a list of "
            "override mappings like claim.baseline"
        )
    return Claim(
        metric=metric,
        higher_is_better=flag("claim.higher_is_better", raw["higher_is_better"]),
        baseline=_selector("claim.baseline", raw["baseline"]),
        candidates=None
        if candidates is None
        else [_selector(f"claim.candidates[{i}]", c) for i, c in enumerate(candidates)],
        min_effect=number(
            "claim.min_effect", raw.get("min_effect", 0.0), at_least=0, what="a number >= 0"
        ),
        source=str(raw.get("source") or ""),
        says=str(raw.get("says") or ""),
        published=_published(raw.get("published")),
    )


def claim_from_config(value: Any) -> Claim | None:
    """The `claim` key of a composed config (an OmegaConf node, plain data or None), parsed."""
    from omegaconf import OmegaConf

    return parse_claim(
        OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    )


def _selector(key: str, value: Any) -> dict[str, Any]:
    """Override values that pick a row: a non-empty mapping of key -> scalar."""
    scalars = isinstance(value, Mapping) and all(
        isinstance(v, str | int | float | bool) for v in value.values()
    )
    if not scalars or not value:
        raise ConfigError(
            f"{key}={value!r} must be a mapping of override values, e.g. {{loss: ce}}"
        )
    return {str(k): v for k, v in value.items()}


def _published(value: Any) -> dict[str, Any]:
    """The paper's numbers by row name, plus the words of its `setting`. In a sweep with other
    factors (strata), a key may name a stratum (`pair=resnet56-resnet20`) and hold that
    stratum's numbers by row name."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"claim.published={value!r} must be a mapping of row name -> number "
            f"(and an optional {PUBLISHED_SETTING})"
        )
    published: dict[str, Any] = {}
    for name, paper_value in value.items():
        if name == PUBLISHED_SETTING:
            published[name] = str(paper_value)
        elif isinstance(paper_value, Mapping):
            published[str(name)] = {
                str(row): number(f"claim.published.{name}.{row}", number_value)
                for row, number_value in paper_value.items()
            }
        else:
            published[str(name)] = number(f"claim.published.{name}", paper_value)
    return published


# -- picking the rows ---------------------------------------------------------------------------
def override_value(overrides: Sequence[str], key: str) -> str | None:
    """The value `overrides` set `key` to (`+key=`, `++key=` too), or None."""
    for override in overrides:
        name, _, value = override.partition("=")
        if name.lstrip("+") == key:
            return value
    return None


def same_value(text: str, wanted: Any) -> bool:
    """An override's text against a claim's value: `lr=0.10` is `{lr: 0.1}`, `ce` is `ce`."""
    if text == str(wanted):
        return True
    try:
        return yaml.safe_load(text) == wanted
    except yaml.YAMLError:
        return False


def selects(overrides: Sequence[str], selector: Mapping[str, Any]) -> bool:
    """Whether a row's jobs ran with every value of `selector`."""
    for key, wanted in selector.items():
        text = override_value(overrides, key)
        if text is None or not same_value(text, wanted):
            return False
    return True


def selector_words(selector: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in selector.items())


def pick_one(arms: Sequence[Arm], selector: Mapping[str, Any], key: str) -> Arm:
    """The one row `selector` matches; else an error listing the rows."""
    matched = [arm for arm in arms if selects(arm.overrides, selector)]
    if len(matched) == 1:
        return matched[0]
    if matched:
        problem = f"matches {len(matched)} rows ({', '.join(a.label for a in matched)})"
        hint = "add a key that tells them apart"
    else:
        problem, hint = "matches no row", "rows: " + ", ".join(a.label for a in arms)
    raise ConfigError(f"{key} ({selector_words(selector)}) {problem}; {hint}")


def pick_rows(claim: Claim, arms: Sequence[Arm]) -> tuple[Arm, list[Arm]]:
    """The baseline and the candidates: those listed, or every other row. A candidate that is
    the baseline row, or no candidate at all, is an error: there would be nothing to compare."""
    baseline = pick_one(arms, claim.baseline, "claim.baseline")
    if claim.candidates is None:
        candidates = [arm for arm in arms if arm is not baseline]
        if not candidates:
            raise ConfigError(
                f"claim.candidates: the sweep has no row besides the baseline ({baseline.label})"
            )
        return baseline, candidates
    candidates = []
    for i, selector in enumerate(claim.candidates):
        key = f"claim.candidates[{i}]"
        candidate = pick_one(arms, selector, key)
        if candidate is baseline:
            raise ConfigError(
                f"{key} ({selector_words(selector)}) is the baseline row ({baseline.label})"
            )
        candidates.append(candidate)
    return baseline, candidates


def override_key(override: str) -> str:
    return override.partition("=")[0].lstrip("+")


def stratum_keys(claim: Claim, arms: Sequence[Arm]) -> list[str]:
    """The sweep's other factors: keys whose value differs between rows and that neither the
    baseline nor a candidate selector names (`pair` in a sweep of losses over pairs). Each
    combination of their values is a stratum, judged against its own baseline row."""
    named = set(claim.baseline).union(*(claim.candidates or []))
    values: dict[str, set[str | None]] = {}
    keys = dict.fromkeys(override_key(o) for arm in arms for o in arm.overrides)
    for key in keys:
        values[key] = {override_value(arm.overrides, key) for arm in arms}
    return [key for key in keys if key not in named and len(values[key]) > 1]


def stratum_of(arm: Arm, keys: Sequence[str]) -> str | None:
    """`pair=resnet56-resnet20`: a row's values of the stratum keys, or None without strata."""
    if not keys:
        return None
    return " ".join(f"{key}={override_value(arm.overrides, key)}" for key in keys)


def row_name(arm: Arm, keys: Sequence[str]) -> str | None:
    """A row's values of the baseline's keys, joined by ",": its key in `published`."""
    values = [override_value(arm.overrides, key) for key in keys]
    return None if None in values else ",".join(str(v) for v in values)


# -- statistics on paired differences -----------------------------------------------------------
def pair_by_seed(
    baseline: Mapping[int, float], candidate: Mapping[int, float]
) -> tuple[list[int], list[float]]:
    """The seeds both sides have, sorted, and the differences candidate − baseline there."""
    seeds = sorted(set(baseline) & set(candidate))
    return seeds, [candidate[s] - baseline[s] for s in seeds]


def t_interval(differences: Sequence[float]) -> tuple[float, float]:
    """mean ± t_.975(n − 1) · sd / √n."""
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    half = stats.t.ppf((1 + CONFIDENCE) / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    return float(d.mean() - half), float(d.mean() + half)


def bca_interval(differences: Sequence[float]) -> tuple[float, float]:
    """BCa bootstrap interval of the mean, seeded: the same data give the same interval."""
    from scipy import stats

    result = stats.bootstrap(
        (np.asarray(differences, dtype=float),),
        np.mean,
        confidence_level=CONFIDENCE,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="BCa",
        random_state=np.random.default_rng(BOOTSTRAP_SEED),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def mean_interval(differences: Sequence[float]) -> tuple[float, float, str]:
    """The 95 % interval of the mean difference and how it was made (n >= 2).

    Zero spread (every difference the same) has no sampling error to show: the interval is the
    point itself, and the verdict is read from it. A BCa interval that comes out undefined
    (too few distinct values to resample) falls back to Student t.
    """
    if np.ptp(differences) == 0:
        mean = float(np.mean(differences))
        return mean, mean, POINT_INTERVAL
    if len(differences) >= BOOTSTRAP_FROM:
        low, high = bca_interval(differences)
        if math.isfinite(low) and math.isfinite(high):
            return low, high, BCA_INTERVAL
    return (*t_interval(differences), T_INTERVAL)


def probability_of_improvement(differences: Sequence[float], higher_is_better: bool) -> float:
    """Fraction of paired seeds where the candidate is better, ties counting half (the paired
    form of rliable's probability of improvement, which compares every run with every run)."""
    sign = 1.0 if higher_is_better else -1.0
    scores = [1.0 if sign * d > 0 else 0.5 if d == 0 else 0.0 for d in differences]
    return sum(scores) / len(scores)


def ttest_p(differences: Sequence[float]) -> float | None:
    """Two-sided paired t-test p (a one-sample test on the differences); None for zero spread,
    where the t statistic divides by zero."""
    from scipy import stats

    if np.ptp(differences) == 0:
        return None
    return float(stats.ttest_1samp(differences, 0.0).pvalue)


def wilcoxon_p(differences: Sequence[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p from WILCOXON_FROM pairs; None below, or when every
    difference is 0 (nothing to rank)."""
    from scipy import stats

    if len(differences) < WILCOXON_FROM or not any(differences):
        return None
    return float(stats.wilcoxon(differences).pvalue)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment: the i-th smallest of m p-values times (m − i + 1), made
    monotone and capped at 1. None (no test) stays None and does not count in m."""
    order = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, index) in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p))
        adjusted[index] = running
    return adjusted


def verdict_word(low: float, high: float, min_effect: float, higher_is_better: bool) -> str:
    """The verdict from the interval of candidate − baseline, read in the claimed direction."""
    if not higher_is_better:
        low, high = -high, -low
    if low > min_effect:
        return SUPPORTED
    if high < 0:
        return CONTRADICTED
    return INCONCLUSIVE


def seeds_needed(
    differences: Sequence[float], min_effect: float, higher_is_better: bool
) -> int | None:
    """Paired seeds that would resolve an effect of the measured size and spread against
    min_effect at 80 % power (normal approximation), at least one more than now; None where the
    mean is exactly min_effect or the spread is zero (no size or no spread to plan with)."""
    from scipy import stats

    sign = 1.0 if higher_is_better else -1.0
    gap = abs(sign * float(np.mean(differences)) - min_effect)
    spread = float(np.std(differences, ddof=1))
    if gap == 0 or spread == 0:
        return None
    z = stats.norm.ppf((1 + CONFIDENCE) / 2) + stats.norm.ppf(POWER)
    return max(math.ceil((z * spread / gap) ** 2), len(differences) + 1)


def compare(
    baseline: Mapping[int, float], candidate: Mapping[int, float], claim: Claim, label: str
) -> Verdict:
    """One candidate against the baseline (p-values not yet corrected). Under two pairs there
    is no interval: the verdict is `not enough seeds`, with the one difference where there is
    one."""
    seeds, differences = pair_by_seed(baseline, candidate)
    verdict = Verdict(label, seeds, differences, sorted(set(baseline) ^ set(candidate)))
    if not differences:
        return verdict
    verdict.mean = float(np.mean(differences))
    verdict.p_improvement = probability_of_improvement(differences, claim.higher_is_better)
    if len(differences) < 2:
        return verdict
    verdict.low, verdict.high, verdict.interval = mean_interval(differences)
    verdict.verdict = verdict_word(
        verdict.low, verdict.high, claim.min_effect, claim.higher_is_better
    )
    if verdict.verdict == INCONCLUSIVE:
        verdict.seeds_needed = seeds_needed(differences, claim.min_effect, claim.higher_is_better)
    verdict.p_ttest = ttest_p(differences)
    verdict.p_wilcoxon = wilcoxon_p(differences)
    return verdict


def add_published(verdict: Verdict, base_name: str | None, published: Mapping[str, Any]) -> None:
    """The paper's Δ for this pair, where it reports both rows, and whether our interval
    holds it."""
    numbers = {k: v for k, v in published.items() if isinstance(v, int | float)}
    if base_name not in numbers or verdict.name not in numbers:
        return
    verdict.published_delta = published[verdict.name] - published[base_name]
    if verdict.low is not None and verdict.high is not None:
        verdict.published_inside = verdict.low <= verdict.published_delta <= verdict.high


def strata(claim: Claim, arms: Sequence[Arm]) -> list[tuple[str | None, list[Arm]]]:
    """The rows grouped by stratum, in the sweep's row order, keeping the strata that hold a
    baseline row and something to compare it with (a sweep still running may lack some). No
    such stratum: the rows as one group (labelled None), whose baseline must then be one row."""
    keys = stratum_keys(claim, arms)
    groups: dict[str | None, list[Arm]] = {}
    for arm in arms:
        groups.setdefault(stratum_of(arm, keys), []).append(arm)
    judged = [
        (stratum, group)
        for stratum, group in groups.items()
        if len(group) > 1 and any(selects(arm.overrides, claim.baseline) for arm in group)
    ]
    return judged if len(groups) > 1 and judged else [(None, list(arms))]


def judge(claim: Claim, arms: Sequence[Arm]) -> Judgement:
    """Every candidate against its stratum's baseline (see `stratum_keys`), with p-values
    Holm-corrected across all the comparisons."""
    keys = list(claim.baseline)
    verdicts, baselines = [], []
    for stratum, group in strata(claim, arms):
        baseline, candidates = pick_rows(claim, group)
        baselines.append(baseline.label)
        published = claim.published
        if stratum is not None and isinstance(published.get(stratum), Mapping):
            published = published[stratum]
        base_values = metric_by_seed(baseline, claim.metric)
        for arm in candidates:
            verdict = compare(base_values, metric_by_seed(arm, claim.metric), claim, arm.label)
            verdict.name, verdict.baseline = row_name(arm, keys), baseline.label
            verdict.stratum = stratum
            add_published(verdict, row_name(baseline, keys), published)
            verdicts.append(verdict)
    for verdict, p in zip(verdicts, holm([v.p_ttest for v in verdicts]), strict=True):
        verdict.p_ttest_holm = p
    for verdict, p in zip(verdicts, holm([v.p_wilcoxon for v in verdicts]), strict=True):
        verdict.p_wilcoxon_holm = p
    if len(baselines) == 1:
        return Judgement(claim, baselines[0], verdicts)
    each = f"{selector_words(claim.baseline)} in each of {len(baselines)} strata"
    return Judgement(claim, each, verdicts)


def metric_by_seed(arm: Arm, metric: str) -> dict[int, float]:
    """The metric per seed of a row's ok jobs (a job that reported it as null is left out)."""
    return {seed: values[metric] for seed, values in arm.results.items() if metric in values}


# -- words --------------------------------------------------------------------------------------
def signed(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:+.{digits}f}"


def delta_cell(verdict: Verdict) -> str:
    """`+0.0374 [+0.0200, +0.0548]`; one pair: the difference alone, never "± 0"."""
    if verdict.mean is None:
        return "–"
    if verdict.low is None:
        return f"{signed(verdict.mean)} (one seed)"
    return f"{signed(verdict.mean)} [{signed(verdict.low)}, {signed(verdict.high)}]"


def p_cell(p: float | None) -> str:
    return "—" if p is None else f"{p:.3g}"


def verdict_cell(verdict: Verdict) -> str:
    """The verdict; an inconclusive one says how many seeds would resolve it."""
    if verdict.verdict != INCONCLUSIVE:
        return verdict.verdict
    needed = "—" if verdict.seeds_needed is None else str(verdict.seeds_needed)
    return f"{INCONCLUSIVE} (seeds needed: {needed})"


def published_cell(verdict: Verdict) -> str:
    """The paper's Δ and whether it falls inside our interval."""
    if verdict.published_delta is None:
        return "–"
    if verdict.published_inside is None:
        return signed(verdict.published_delta)
    where = "inside" if verdict.published_inside else "outside"
    return f"{signed(verdict.published_delta)} ({where})"


VERDICT_COLUMNS = (
    "candidate",
    "Δ [95 % CI]",
    "pairs",
    "P(improvement)",
    "p (Holm)",
    "verdict",
    "published Δ",
)


def verdict_cells(verdict: Verdict) -> list[str]:
    """One candidate's row of the Claim table, as VERDICT_COLUMNS name them."""
    p_improvement = "–" if verdict.p_improvement is None else f"{verdict.p_improvement:.2f}"
    return [
        verdict.label,
        delta_cell(verdict),
        str(verdict.n),
        p_improvement,
        p_cell(verdict.p_ttest_holm),
        verdict_cell(verdict),
        published_cell(verdict),
    ]


def claim_words(judgement: Judgement) -> list[str]:
    """The claim in words: what it says, how it is measured, where it comes from."""
    claim = judgement.claim
    direction = "higher" if claim.higher_is_better else "lower"
    lines = [
        f"{claim.says or 'claim'}: {claim.metric}, {direction} is better, against "
        f"{judgement.baseline}, smallest effect that matters {claim.min_effect:g}."
    ]
    source = [claim.source] if claim.source else []
    if setting := claim.published.get(PUBLISHED_SETTING):
        source.append(f"published setting: {setting}")
    if source:
        lines.append("Source: " + "; ".join(source) + ".")
    return lines


def method_note(judgement: Judgement) -> str:
    """The line under the Claim table: what Δ, the interval and p are."""
    count = len(judgement.verdicts)
    return (
        f"Δ = candidate − baseline ({judgement.claim.metric}), paired by seed; 95 % interval: "
        f"{T_INTERVAL} under {BOOTSTRAP_FROM} pairs, {BCA_INTERVAL} from {BOOTSTRAP_FROM}; "
        f"p: paired t-test, Holm-corrected across {count} comparison{'s' * (count != 1)}."
    )
