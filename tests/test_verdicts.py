"""xent.runner.verdicts: the claim block, the paired statistics and the verdicts, against numbers
worked out by hand (closed forms, exact permutation counts), not against scipy calls."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import pytest

from xent.errors import ConfigError
from xent.runner import verdicts
from xent.runner.verdicts import (
    Claim,
    compare,
    delta_cell,
    holm,
    mean_interval,
    pair_by_seed,
    parse_claim,
    probability_of_improvement,
    published_cell,
    seeds_needed,
    t_interval,
    ttest_p,
    verdict_cell,
    wilcoxon_p,
)

# t_.975 with 2 degrees of freedom: √(2 / (1 − 0.95²) − 2) (the t(2) quantile has a closed form)
T975_DF2 = math.sqrt(2 / (1 - 0.95**2) - 2)
Z975_PLUS_Z80 = 1.959963984540054 + 0.8416212335729143  # standard normal quantiles


def claim(**changes) -> Claim:
    base = {"metric": "test/acc", "higher_is_better": True, "baseline": {"loss": "ce"}}
    return parse_claim({**base, **changes})


def test_the_t_quantile_used_by_hand_is_right():
    assert T975_DF2 == pytest.approx(4.302652729911275, rel=1e-9)


def test_differences_1_2_3_give_the_t_interval_and_p_by_hand():
    low, high = t_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, n 3
    assert low == pytest.approx(2 - T975_DF2 / math.sqrt(3), rel=1e-9)
    assert high == pytest.approx(2 + T975_DF2 / math.sqrt(3), rel=1e-9)
    # t = 2 / (1/√3) = √12 on 2 df: two-sided p = 1 − t / √(t² + 2) = 1 − √(12/14)
    assert ttest_p([1.0, 2.0, 3.0]) == pytest.approx(1 - math.sqrt(12 / 14), rel=1e-9)
    assert mean_interval([1.0, 2.0, 3.0])[2] == "Student t"


def test_holm_step_down_by_hand():
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1: 0.03, 0.06, 0.04 -> monotone 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.6, 0.7]) == [1.0, 1.0]  # capped at 1, and never below an earlier one
    assert holm([None, 0.02, None]) == [None, 0.02, None]  # untested candidates do not count
    assert holm([]) == []


def test_wilcoxon_exact_p_by_counting_sign_flips():
    # 6 positive differences: only the all-positive and all-negative of the 2⁶ sign patterns are
    # as extreme: p = 2/64
    assert wilcoxon_p([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) == pytest.approx(2 / 64)
    # rank 2 negative: W− = 2; patterns with W− <= 2: {}, {1}, {2} -> p = 2 · 3/64
    assert wilcoxon_p([1.0, -2.0, 3.0, 4.0, 5.0, 6.0]) == pytest.approx(6 / 64)
    assert wilcoxon_p([1.0, 2.0, 3.0, 4.0, 5.0]) is None  # under 6 pairs: not run
    assert wilcoxon_p([0.0] * 6) is None  # nothing to rank


def test_from_ten_pairs_the_interval_is_bca_seeded_and_not_the_t_one():
    differences = [0.02, 0.05, -0.01, 0.03, 0.04, 0.00, 0.06, 0.01, 0.02, 0.08]
    low, high, method = mean_interval(differences)
    assert method == "BCa bootstrap"
    assert low < statistics.fmean(differences) < high
    assert mean_interval(differences) == (low, high, method)  # seeded: the same every time
    assert (low, high) != pytest.approx(t_interval(differences), abs=1e-4)
    assert mean_interval(differences[:9])[2] == "Student t"


def test_zero_spread_is_a_point_interval_with_no_t_test():
    differences = [0.25, 0.25, 0.25]
    assert mean_interval(differences) == (0.25, 0.25, "point (zero spread)")
    assert ttest_p(differences) is None
    verdict = compare({0: 0.5, 1: 0.5, 2: 0.5}, {0: 0.75, 1: 0.75, 2: 0.75}, claim(), "x")
    assert (verdict.verdict, verdict.p_ttest, delta_cell(verdict)) == (
        "supported",
        None,
        "+0.2500 [+0.2500, +0.2500]",
    )
    at_min = compare({0: 0.5, 1: 0.5}, {0: 0.5, 1: 0.5}, claim(), "x")
    assert verdict_cell(at_min) == "inconclusive (seeds needed: —)"


def test_pairing_keeps_only_the_seeds_both_finished():
    seeds, differences = pair_by_seed({0: 1.0, 1: 2.0, 3: 5.0}, {1: 2.5, 0: 0.5, 2: 9.0})
    assert (seeds, differences) == ([0, 1], [-0.5, 0.5])
    verdict = compare({0: 1.0, 1: 2.0, 3: 5.0}, {1: 2.5, 0: 0.5, 2: 9.0}, claim(), "x")
    assert verdict.n == 2 and verdict.unpaired_seeds == [2, 3]


def test_each_verdict_word():
    base = {0: 0.80, 1: 0.82, 2: 0.84}
    better = compare(base, {0: 0.84, 1: 0.85, 2: 0.87}, claim(), "pld")
    worse = compare(base, {0: 0.70, 1: 0.73, 2: 0.75}, claim(), "kd")
    unsure = compare(base, {0: 0.81, 1: 0.80, 2: 0.86}, claim(), "dkd")
    one = compare(base, {0: 0.85}, claim(), "one")
    none = compare(base, {5: 0.85}, claim(), "none")
    assert [verdict_cell(v) for v in (better, worse, unsure, one, none)] == [
        "supported",
        "contradicted",
        "inconclusive (seeds needed: 307)",
        "not enough seeds",
        "not enough seeds",
    ]
    assert delta_cell(one) == "+0.0500 (one seed)"  # the difference, never "± 0"
    assert (one.low, one.high, one.p_ttest) == (None, None, None)
    assert delta_cell(none) == "–" and none.p_improvement is None
    # supported: the interval's low end must clear min_effect, not just 0
    assert compare(base, {0: 0.84, 1: 0.85, 2: 0.87}, claim(min_effect=0.02), "pld").verdict == (
        "inconclusive"
    )


def test_seeds_needed_by_hand():
    differences = [0.5, -0.5, 1.5]  # mean 0.5, sd 1
    assert seeds_needed(differences, 0.0, True) == math.ceil((Z975_PLUS_Z80 / 0.5) ** 2) == 32
    # against min_effect 0.25 the gap is 0.25
    assert seeds_needed(differences, 0.25, True) == math.ceil((Z975_PLUS_Z80 / 0.25) ** 2)
    assert seeds_needed([1.0, 2.0, 3.0], 0.0, True) == 4  # formula says 2: at least n + 1
    assert seeds_needed([1.0, 0.0, 2.0], 1.0, True) is None  # mean exactly at min_effect


def test_lower_is_better_flips_the_verdict_not_the_difference():
    base = {0: 0.20, 1: 0.18, 2: 0.16}
    lower = {0: 0.16, 1: 0.15, 2: 0.13}  # Δ about −0.033 on every seed
    nll = claim(metric="test/nll", higher_is_better=False)
    verdict = compare(base, lower, nll, "pld")
    assert verdict.mean == pytest.approx(-0.1 / 3)
    assert (verdict.verdict, verdict.p_improvement) == ("supported", 1.0)
    assert compare(base, lower, claim(), "pld").verdict == "contradicted"  # read as accuracy
    assert probability_of_improvement([-1.0, 0.0, 2.0], higher_is_better=False) == 0.5


def test_published_delta_and_whether_our_interval_holds_it():
    verdict = compare({0: 0.80, 1: 0.82}, {0: 0.84, 1: 0.85}, claim(), "pld")
    verdict.name = "pld"
    verdicts.add_published(verdict, "ce", {"ce": 0.7250, "pld": 0.7624, "setting": "x"})
    assert verdict.published_delta == pytest.approx(0.0374)
    assert published_cell(verdict) == "+0.0374 (inside)"
    verdict.low = 0.04
    verdicts.add_published(verdict, "ce", {"ce": 0.7250, "pld": 0.7624})
    assert published_cell(verdict) == "+0.0374 (outside)"
    verdicts.add_published(verdict, "kd", {"ce": 0.7250, "pld": 0.7624})  # no number for kd
    assert verdict.published_delta == pytest.approx(0.0374)  # unchanged


@dataclass
class FakeRow:
    label: str
    overrides: list[str]
    results: dict = field(default_factory=dict)


def test_rows_are_picked_on_every_override_of_their_jobs():
    rows = [
        FakeRow("loss=ce", ["experiment=x", "loss=ce", "optim.lr=0.10"]),
        FakeRow("loss=pld", ["experiment=x", "+loss=pld", "optim.lr=0.10"]),
    ]
    assert verdicts.pick_one(rows, {"loss": "pld"}, "claim.baseline") is rows[1]
    # a value written another way in the override (0.10) is the same number
    both = {"optim.lr": 0.1, "experiment": "x"}
    with pytest.raises(ConfigError) as several:
        verdicts.pick_one(rows, both, "claim.baseline")
    assert str(several.value) == (
        "claim.baseline (optim.lr=0.1 experiment=x) matches 2 rows (loss=ce, loss=pld); add a "
        "key that tells them apart"
    )
    with pytest.raises(ConfigError) as none:
        verdicts.pick_one(rows, {"loss": "gce"}, "claim.candidates[0]")
    assert str(none.value) == (
        "claim.candidates[0] (loss=gce) matches no row; rows: loss=ce, loss=pld"
    )
    assert verdicts.row_name(rows[1], ["loss", "optim.lr"]) == "pld,0.10"
    assert verdicts.row_name(rows[1], ["model"]) is None


def acc_row(loss: str, accs: list[float]) -> FakeRow:
    """A row `loss=LOSS` whose seed s reported test/acc accs[s]."""
    return FakeRow(
        f"loss={loss}", [f"loss={loss}"], {s: {"test/acc": a} for s, a in enumerate(accs)}
    )


def test_judge_holm_corrects_across_the_candidates():
    rows = [
        acc_row("ce", [0.8, 0.82, 0.84]),
        acc_row("a", [0.84, 0.85, 0.87]),
        acc_row("b", [0.81, 0.80, 0.86]),
    ]
    judgement = verdicts.judge(claim(), rows)
    assert judgement.baseline == "loss=ce"
    first, second = judgement.verdicts
    assert [first.label, second.label] == ["loss=a", "loss=b"]
    smaller, larger = sorted([first.p_ttest, second.p_ttest])
    assert first.p_ttest_holm == pytest.approx(2 * smaller)  # the smaller p, times 2
    assert second.p_ttest_holm == pytest.approx(max(2 * smaller, larger))
    listed = verdicts.judge(claim(candidates=[{"loss": "b"}]), rows)
    assert [v.label for v in listed.verdicts] == ["loss=b"]
    assert listed.verdicts[0].p_ttest_holm == listed.verdicts[0].p_ttest  # one test: unchanged


@pytest.mark.parametrize(
    "raw,message",
    [
        (
            {"mineffect": 1},
            "claim.mineffect is not a claim key; valid: source, says, metric, higher_is_better, "
            "baseline, candidates, min_effect, published",
        ),
        (
            {"metric": None},
            "claim.metric is missing; a claim needs metric, higher_is_better, baseline",
        ),
        ({"min_effect": -0.1}, "claim.min_effect=-0.1 must be a number >= 0"),
        ({"min_effect": "abc"}, "claim.min_effect='abc' must be a number >= 0"),
        ({"higher_is_better": "yes"}, "claim.higher_is_better='yes' must be true or false"),
        (
            {"baseline": "ce"},
            "claim.baseline='ce' must be a mapping of override values, e.g. {loss: ce}",
        ),
        (
            {"candidates": {"loss": "pld"}},
            "claim.candidates={'loss': 'pld'} must be null (every other row) or a list of override "
            "mappings like claim.baseline",
        ),
        (
            {"candidates": [{"loss": "pld"}, "kd"]},
            "claim.candidates[1]='kd' must be a mapping of override values, e.g. {loss: ce}",
        ),
        ({"published": {"ce": "high"}}, "claim.published.ce='high' must be a finite number"),
        (
            {"published": [0.7]},
            "claim.published=[0.7] must be a mapping of row name -> number (and an optional "
            "setting)",
        ),
    ],
)
def test_a_malformed_claim_is_one_line_naming_the_key(raw, message):
    with pytest.raises(ConfigError) as error:
        claim(**raw)
    assert str(error.value) == message


def test_a_claim_as_parsed():
    assert parse_claim(None) is None
    parsed = claim(published={"setting": "r32x4 -> r8x4", "ce": 0.725, "pld": 1}, says="s")
    assert parsed.as_dict() == {
        "metric": "test/acc",
        "higher_is_better": True,
        "baseline": {"loss": "ce"},
        "candidates": None,
        "min_effect": 0.0,
        "source": "",
        "says": "s",
        "published": {"setting": "r32x4 -> r8x4", "ce": 0.725, "pld": 1.0},
    }


def test_from_six_pairs_wilcoxon_is_run_and_holm_corrected_too():
    base = [0.80, 0.81, 0.82, 0.83, 0.84, 0.85]
    rows = [
        acc_row("ce", base),
        acc_row("a", [b + 0.01 * (i + 1) for i, b in enumerate(base)]),  # all better
        acc_row("b", [b + 0.005 * (i + 1) for i, b in enumerate(base)]),
    ]
    first, second = verdicts.judge(claim(), rows).verdicts
    assert first.p_wilcoxon == second.p_wilcoxon == pytest.approx(2 / 64)  # all 6 signs positive
    # Holm on two equal p-values: both times 2
    assert first.p_wilcoxon_holm == second.p_wilcoxon_holm == pytest.approx(4 / 64)


def test_a_claim_needs_a_candidate_other_than_the_baseline():
    rows = [acc_row("ce", [0.8]), acc_row("a", [0.9])]
    with pytest.raises(ConfigError) as itself:
        verdicts.judge(claim(candidates=[{"loss": "a"}, {"loss": "ce"}]), rows)
    assert str(itself.value) == "claim.candidates[1] (loss=ce) is the baseline row (loss=ce)"
    with pytest.raises(ConfigError) as alone:
        verdicts.judge(claim(), rows[:1])
    assert str(alone.value) == (
        "claim.candidates: the sweep has no row besides the baseline (loss=ce)"
    )


def pair_row(pair: str, loss: str, accs: list[float]) -> FakeRow:
    """A row `pair=PAIR loss=LOSS` of a sweep over losses and distillation pairs."""
    label = f"pair={pair} loss={loss}"
    return FakeRow(
        label,
        ["experiment=x", f"pair={pair}", f"loss={loss}"],
        {s: {"test/acc": a} for s, a in enumerate(accs)},
    )


def test_a_sweeps_other_factor_is_a_stratum_with_its_own_baseline_and_published_numbers():
    rows = [
        pair_row("a-b", "ce", [0.70, 0.71, 0.72]),
        pair_row("a-b", "kd", [0.72, 0.74, 0.74]),
        pair_row("c-d", "ce", [0.60, 0.61, 0.62]),
        pair_row("c-d", "kd", [0.60, 0.60, 0.63]),
    ]
    published = {
        "setting": "a table",
        "pair=a-b": {"ce": 0.70, "kd": 0.73},
        "pair=c-d": {"ce": 0.5},
    }
    judgement = verdicts.judge(claim(published=verdicts._published(published)), rows)
    assert judgement.baseline == "loss=ce in each of 2 strata"
    first, second = judgement.verdicts
    assert (first.label, first.baseline, first.stratum) == (
        "pair=a-b loss=kd",
        "pair=a-b loss=ce",
        "pair=a-b",
    )
    assert (second.label, second.baseline, second.stratum) == (
        "pair=c-d loss=kd",
        "pair=c-d loss=ce",
        "pair=c-d",
    )
    assert first.differences == pytest.approx([0.02, 0.03, 0.02])
    assert second.differences == pytest.approx([0.0, -0.01, 0.01])
    assert first.published_delta == pytest.approx(0.03)  # the a-b numbers, not c-d's
    assert second.published_delta is None  # the paper has no kd number for c-d
    smaller, larger = sorted([first.p_ttest, second.p_ttest])
    assert min(first.p_ttest_holm, second.p_ttest_holm) == pytest.approx(2 * smaller)


def test_a_stratum_without_its_baseline_is_left_out_and_a_nested_published_value_is_checked():
    rows = [
        pair_row("a-b", "ce", [0.70, 0.71]),
        pair_row("a-b", "kd", [0.72, 0.74]),
        pair_row("c-d", "kd", [0.60, 0.60]),  # its ce row has not finished a job yet
    ]
    judgement = verdicts.judge(claim(), rows)
    assert judgement.baseline == "pair=a-b loss=ce"
    assert [v.label for v in judgement.verdicts] == ["pair=a-b loss=kd"]
    with pytest.raises(ConfigError) as err:
        verdicts._published({"pair=a-b": {"ce": "high"}})
    assert str(err.value) == "claim.published.pair=a-b.ce='high' must be a finite number"
