"""A sweep's claim in its report: summary.md's Claim section, verdicts.json, verdicts.png, the
terminal table, the end-of-sweep callback, W&B, and `xent-report DIR claim.KEY=VALUE`."""

from __future__ import annotations

import json
import logging
import shlex
import sys

import pytest
import yaml
from matplotlib.collections import PathCollection
from omegaconf import OmegaConf

from tests.conftest import REPO, assert_one_line_error, run_main, xent_run
from tests.test_report import fake_job, run_report
from tests.test_sweep_mutants import FakeWandb
from xent.errors import ConfigError
from xent.runner import report, sweep
from xent.runner.preflight import check_claim
from xent.runner.report import collect, judge_claim, verdicts_figure
from xent.runner.sweep import SweepSummary, log_summary_to_wandb
from xent.runner.verdicts import parse_claim

ACCS = {
    "ce": [0.80, 0.82, 0.84],
    "pld": [0.84, 0.85, 0.87, 0.90],  # seed 3 has no ce run to pair with
    "kd": [0.70, 0.73, 0.75],
    "dkd": [0.81, 0.80, 0.86],
}
CLAIM = {
    "source": "PLD (NeurIPS 2025), Table 1",
    "says": "PLD gives a higher top-1 than CE",
    "metric": "test/acc",
    "higher_is_better": True,
    "baseline": {"loss": "ce"},
    "min_effect": 0.0,
    "published": {"setting": "resnet32x4 -> resnet8x4", "ce": 0.7250, "pld": 0.7624, "kd": 0.74},
}
# By hand (tests/test_verdicts.py checks the formulas): Δ pld = (0.04, 0.03, 0.03), kd =
# (−0.10, −0.09, −0.09), dkd = (0.01, −0.02, 0.02); t-test p 0.00985, 0.00127, 0.808; Holm:
# kd 3 · 0.00127, pld 2 · 0.00985, dkd 0.808.
CLAIM_LINES = [
    "## Claim",
    "",
    "PLD gives a higher top-1 than CE: test/acc, higher is better, against loss=ce, smallest "
    "effect that matters 0.",
    "Source: PLD (NeurIPS 2025), Table 1; published setting: resnet32x4 -> resnet8x4.",
    "",
    "| candidate | Δ [95 % CI] | pairs | P(improvement) | p (Holm) | verdict | published Δ |",
    "|---|---|---|---|---|---|---|",
    "| loss=pld | +0.0333 [+0.0190, +0.0477] | 3 | 1.00 | 0.0197 | supported | +0.0374 (inside) |",
    "| loss=kd | -0.0933 [-0.1077, -0.0790] | 3 | 0.00 | 0.00382 | contradicted | "
    "+0.0150 (outside) |",
    "| loss=dkd | +0.0033 [-0.0484, +0.0550] | 3 | 0.67 | 0.808 | "
    "inconclusive (seeds needed: 307) | – |",
    "",
    "Δ = candidate − baseline (test/acc), paired by seed; 95 % interval: Student t under 10 "
    "pairs, BCa bootstrap from 10; p: paired t-test, Holm-corrected across 3 comparisons.",
    "loss=pld: seed(s) 3 finished on one side only (not paired)",
]


def claim_sweep(tmp_path, claim=CLAIM, accs=ACCS):
    """Jobs `experiment=x loss=L seed=S` (experiment=x shared, so not in the row labels), each
    with the claim saved in its .hydra/config.yaml as Hydra saves the composed config."""
    directory = tmp_path / "sweep"
    num = 0
    for loss, values in accs.items():
        for seed, acc in enumerate(values):
            metrics = {"status": "ok", "seed": seed, "test/acc": acc, "test/nll": 1 - acc}
            fake_job(directory, num, ["experiment=x", f"loss={loss}", f"seed={seed}"], metrics)
            config = yaml.safe_dump({"seed": seed, "claim": claim})
            (directory / str(num) / ".hydra" / "config.yaml").write_text(config)
            num += 1
    return directory


def claim_lines(directory):
    lines = (directory / "summary.md").read_text().splitlines()
    return lines[lines.index("## Claim") :] if "## Claim" in lines else []


def test_the_report_judges_the_sweeps_own_claim(tmp_path, monkeypatch, capsys):
    directory = claim_sweep(tmp_path)
    code, out, err = run_main(monkeypatch, capsys, directory)
    assert (code, err) == (0, "")
    assert claim_lines(directory) == CLAIM_LINES
    lines = (directory / "summary.md").read_text().splitlines()
    assert lines[2:7] == [  # the table above it as before, then a blank line
        "| loss=ce | 3 | 0.8200 ± 0.0200 | 0.1800 ± 0.0200 |",
        "| loss=pld | 4 | 0.8650 ± 0.0265 | 0.1350 ± 0.0265 |",
        "| loss=kd | 3 | 0.7267 ± 0.0252 | 0.2733 ± 0.0252 |",
        "| loss=dkd | 3 | 0.8233 ± 0.0321 | 0.1767 ± 0.0321 |",
        "",
    ]
    assert out.splitlines()[-1] == (
        f"wrote {directory / 'summary.csv'}, summary.md and summary.png; verdicts.json and "
        "verdicts.png"
    )
    # the terminal shows the same rows
    assert "│ loss=kd   │ -0.0933 [-0.1077, -0.0790] │     3 │" in out
    assert "inconclusive (seeds needed: 307)" in out


def test_verdicts_json_holds_every_number(tmp_path, monkeypatch, capsys):
    directory = claim_sweep(tmp_path)
    run_main(monkeypatch, capsys, directory)
    saved = json.loads((directory / "verdicts.json").read_text())
    assert saved["claim"] == {**CLAIM, "candidates": None}
    assert saved["baseline"] == "loss=ce"
    assert set(saved["tests"]) == {
        "difference",
        "interval",
        "p_improvement",
        "p_ttest",
        "p_wilcoxon",
        "correction",
        "seeds_needed",
    }
    assert "Holm" in saved["tests"]["correction"]
    pld, kd, dkd = saved["candidates"]
    assert (pld["label"], pld["name"], pld["n_pairs"], pld["seeds"]) == (
        "loss=pld",
        "pld",
        3,
        [0, 1, 2],
    )
    assert pld["unpaired_seeds"] == [3]
    assert pld["differences"] == pytest.approx([0.04, 0.03, 0.03])
    assert (pld["low"], pld["high"]) == pytest.approx((0.01899, 0.04768), abs=1e-5)
    assert (pld["interval"], pld["verdict"], pld["seeds_needed"]) == (
        "Student t",
        "supported",
        None,
    )
    assert pld["p_ttest_holm"] == pytest.approx(2 * pld["p_ttest"])
    assert kd["p_ttest_holm"] == pytest.approx(3 * kd["p_ttest"])
    assert dkd["p_ttest_holm"] == pytest.approx(dkd["p_ttest"])
    assert pld["p_wilcoxon"] is None  # 3 pairs: under 6
    assert (pld["published_delta"], pld["published_inside"]) == (pytest.approx(0.0374), True)
    assert (kd["published_inside"], dkd["published_delta"]) == (False, None)
    assert (dkd["verdict"], dkd["seeds_needed"]) == ("inconclusive", 307)


def test_the_paired_difference_plot(tmp_path):
    rows = collect(claim_sweep(tmp_path))
    judgement = judge_claim(rows, parse_claim(CLAIM))
    ax = verdicts_figure(judgement).axes[0]
    dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(dots) == 3  # a set of per-seed dots per candidate
    assert [len(c.get_offsets()) for c in dots] == [3, 3, 3]
    assert [tuple(x for x, _ in c.get_offsets()) for c in dots][1] == pytest.approx(
        (-0.10, -0.09, -0.09)
    )
    [zero] = [line for line in ax.lines if line.get_gid() == "zero"]
    assert list(zero.get_xdata()) == [0, 0]
    published = [line for line in ax.lines if line.get_marker() == "D"]
    assert [(line.get_xdata()[0], line.get_ydata()[0]) for line in published] == [
        pytest.approx((0.0374, 0)),
        pytest.approx((0.015, 1)),
    ]  # pld on row 0, kd on row 1; dkd has no published number
    assert ax.get_xlabel() == "Δ test/acc (candidate − baseline), paired by seed"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["loss=pld", "loss=kd", "loss=dkd"]
    assert [t.get_text() for t in ax.texts] == [
        "supported",
        "contradicted",
        "inconclusive (seeds needed: 307)",
    ]
    assert ax.get_title() == "PLD gives a higher top-1 than CE (baseline loss=ce)"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(legend) == ["mean, 95 % interval", "per-seed Δ", "published Δ"]


def test_no_claim_no_claim_section_and_no_verdict_files(tmp_path, monkeypatch, capsys):
    directory = claim_sweep(tmp_path, claim=None)
    code, out, _ = run_main(monkeypatch, capsys, directory)
    assert code == 0 and out.splitlines()[-1].endswith("summary.md and summary.png")
    assert claim_lines(directory) == []
    assert not (directory / "verdicts.json").exists() and not (directory / "verdicts.png").exists()


def test_the_command_line_rejudges_an_old_sweep(tmp_path, monkeypatch, capsys):
    directory = claim_sweep(tmp_path)

    def verdict_rows(*overrides):
        assert run_main(monkeypatch, capsys, directory, *overrides)[0] == 0
        return [line for line in claim_lines(directory) if line.startswith("| loss=")]

    # a larger smallest effect: pld's interval starts at 0.019, below it
    rows = verdict_rows("claim.min_effect=0.02")
    assert rows[0] == (
        "| loss=pld | +0.0333 [+0.0190, +0.0477] | 3 | 1.00 | 0.0197 | "
        "inconclusive (seeds needed: 4) | +0.0374 (inside) |"
    )
    assert json.loads((directory / "verdicts.json").read_text())["claim"]["min_effect"] == 0.02
    # another baseline: ce becomes a candidate
    rows = verdict_rows("claim.baseline.loss=kd")
    assert [row.split(" | ")[0] for row in rows] == ["| loss=ce", "| loss=pld", "| loss=dkd"]
    assert rows[0].split(" | ")[5:7] == ["supported", "-0.0150 (outside) |"]
    # a metric where lower is better: Δ nll = −Δ acc, the same verdicts
    rows = verdict_rows("claim.metric=test/nll", "claim.higher_is_better=false")
    assert rows[0].startswith("| loss=pld | -0.0333 [-0.0477, -0.0190] | 3 | 1.00 |")
    assert [row.split(" | ")[5] for row in rows] == [
        "supported",
        "contradicted",
        "inconclusive (seeds needed: 307)",
    ]
    # only some candidates, written as a list
    rows = verdict_rows("claim.candidates=[{loss: dkd}]")
    assert len(rows) == 1 and rows[0].startswith("| loss=dkd |")
    assert claim_lines(directory)[-1].endswith("Holm-corrected across 1 comparison.")


def test_a_sweep_without_a_claim_gets_one_from_the_command_line(tmp_path, monkeypatch, capsys):
    directory = claim_sweep(tmp_path, claim=None)
    args = ["claim.metric=test/acc", "claim.higher_is_better=true", "claim.baseline={loss: ce}"]
    code, _, err = run_main(monkeypatch, capsys, directory, *args, "--metric", "test/acc")
    assert (code, err) == (0, "")
    lines = claim_lines(directory)
    assert lines[2] == (
        "claim: test/acc, higher is better, against loss=ce, smallest effect that matters 0."
    )
    assert lines[4].startswith("| candidate |")  # no source line: the claim names none
    assert lines[6].endswith("| supported | – |")
    header = (directory / "summary.md").read_text().splitlines()[0]
    assert header == "| run | seeds | test/acc |"


BAD_CLAIMS = {
    "metric": (
        ["claim.metric=test/accc"],
        "claim.metric 'test/accc' is not reported by any job; valid: test/acc, test/nll",
    ),
    "no row": (
        ["claim.baseline.loss=mae"],
        "claim.baseline (loss=mae) matches no row; rows: loss=ce, loss=pld, loss=kd, loss=dkd",
    ),
    # experiment=x is on every job (so in no row label): it still matches, four times
    "several rows": (
        ["claim.baseline={experiment: x}"],
        "claim.baseline (experiment=x) matches 4 rows (loss=ce, loss=pld, loss=kd, loss=dkd); "
        "add a key that tells them apart",
    ),
    "negative": (["claim.min_effect=-0.01"], "claim.min_effect=-0.01 must be a number >= 0"),
    "not a number": (["claim.min_effect=big"], "claim.min_effect='big' must be a number >= 0"),
    "unknown key": (
        ["claim.min_efect=0.01"],
        "claim.min_efect is not a claim key; valid: source, says, metric, higher_is_better, "
        "baseline, candidates, min_effect, published",
    ),
    "published": (
        ["claim.published.pld=high"],
        "claim.published.pld='high' must be a finite number",
    ),
    "candidate": (
        ["claim.candidates=[{loss: pdl}]"],
        "claim.candidates[0] (loss=pdl) matches no row; rows: loss=ce, loss=pld, loss=kd, loss=dkd",
    ),
    "unreadable": (
        ["claim.baseline={loss: ce"],
        "claim.baseline={loss: ce: cannot read the value (while parsing a flow mapping)",
    ),
    "not a claim key": (
        ["min_effect=0.01"],
        "min_effect=0.01: expected claim.KEY=VALUE (keys: source, says, metric, "
        "higher_is_better, baseline, candidates, min_effect, published)",
    ),
}


@pytest.mark.parametrize("name", BAD_CLAIMS)
def test_a_bad_claim_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, name):
    overrides, message = BAD_CLAIMS[name]
    directory = claim_sweep(tmp_path)
    code, out, err = run_main(monkeypatch, capsys, directory, *overrides)
    assert (code, out, err) == (2, "", f"xent-report: error: {message}\n")
    assert not list(directory.glob("summary.*")) and not list(directory.glob("verdicts.*"))


@pytest.mark.slow  # the in-process tests above run the same main(); this one, the real entry
def test_xent_report_rejudges_in_a_process_of_its_own(tmp_path):
    directory = claim_sweep(tmp_path)
    proc = run_report(directory, "claim.min_effect=0.02", "--metric", "test/acc")
    assert proc.returncode == 0 and proc.stderr == ""
    assert "| inconclusive (seeds needed: 4) |" in claim_lines(directory)[7]
    bad = run_report(directory, "claim.min_effect=-1")
    assert bad.returncode == 2
    assert bad.stderr == "xent-report: error: claim.min_effect=-1 must be a number >= 0\n"


def test_the_readme_example_rejudges_a_sweep(tmp_path, monkeypatch, capsys):
    """The README's re-judge example, run on a sweep of these losses in place of its dir."""
    [line] = [
        line.split(" #")[0]
        for line in (REPO / "README.md").read_text().splitlines()
        if line.startswith("xent-report outputs/pld_digits ") and " claim." in line
    ]
    words = shlex.split(line)
    directory = claim_sweep(tmp_path, claim=None)
    code, _, err = run_main(monkeypatch, capsys, directory, *words[2:])
    assert (code, err) == (0, "")
    assert claim_lines(directory)[6].startswith("| loss=pld | +0.0333 [+0.0190, +0.0477] | 3 |")


@pytest.fixture
def fresh_globals(monkeypatch):
    monkeypatch.setattr(sweep, "summary_errors", [])
    monkeypatch.setattr(sweep, "failed_jobs", -1)


def sweep_config(directory, **extra):
    return OmegaConf.create({"hydra": {"sweep": {"dir": str(directory)}}, **extra})


def test_the_end_of_a_sweep_judges_its_claim(tmp_path, fresh_globals, capsys, monkeypatch):
    directory = claim_sweep(tmp_path)
    calls = []
    monkeypatch.setattr(sweep, "log_summary_to_wandb", lambda *a: calls.append(a))
    SweepSummary().on_multirun_end(sweep_config(directory, claim=CLAIM, logger={"wandb": {}}))
    assert sweep.summary_errors == [] and sweep.failed_jobs == 0
    assert claim_lines(directory) == CLAIM_LINES
    assert (directory / "verdicts.json").exists() and (directory / "verdicts.png").exists()
    [(*_, judgement)] = calls
    assert [v.verdict for v in judgement.verdicts] == ["supported", "contradicted", "inconclusive"]
    assert "PLD gives a higher top-1 than CE" in capsys.readouterr().out


def test_a_bad_claim_at_the_end_of_a_sweep_is_an_error_and_the_summary_stands(
    tmp_path, fresh_globals
):
    directory = claim_sweep(tmp_path)
    config = sweep_config(directory, claim={**CLAIM, "baseline": {"loss": "mae"}})
    SweepSummary().on_multirun_end(config)
    assert sweep.summary_errors == [
        "claim.baseline (loss=mae) matches no row; rows: loss=ce, loss=pld, loss=kd, loss=dkd"
    ]
    assert (directory / "summary.md").exists() and claim_lines(directory) == []
    assert not (directory / "verdicts.json").exists()
    assert sweep.failed_jobs == 0


def test_the_verdicts_are_a_second_wandb_table(tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    rows = collect(claim_sweep(tmp_path))
    judgement = judge_claim(rows, parse_claim(CLAIM))
    log_summary_to_wandb(rows, ["test/acc"], {"project": "p"}, tmp_path, judgement)
    [logged] = fake.logged
    assert list(logged) == ["summary", "verdicts"]
    table = logged["verdicts"]
    assert table.columns == [
        "candidate",
        "Δ [95 % CI]",
        "pairs",
        "P(improvement)",
        "p (Holm)",
        "verdict",
        "published Δ",
    ]
    assert [row[0] for row in table.data] == ["loss=pld", "loss=kd", "loss=dkd"]
    assert table.data[1][5] == "contradicted"
    log_summary_to_wandb(rows, ["test/acc"], {"project": "p"}, tmp_path)
    assert list(fake.logged[-1]) == ["summary"]  # no claim: the summary table alone


def test_the_preflight_checks_the_claims_structure(tmp_path):
    check_claim(OmegaConf.create({"claim": None}))
    check_claim(OmegaConf.create({"claim": CLAIM}))
    with pytest.raises(ConfigError, match=r"^claim.min_effect=-1 must be a number >= 0$"):
        check_claim(OmegaConf.create({"claim": {**CLAIM, "min_effect": -1}}))


@pytest.mark.slow  # an xent-run process: the check above, seen from the command line
def test_xent_run_refuses_a_malformed_claim_before_writing(tmp_path):
    run_dir = tmp_path / "run"
    proc = xent_run(
        "claim={metric: test/acc, higher_is_better: true, baseline: {loss: ce}, mineffect: 1}",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert_one_line_error(proc, run_dir, "claim.mineffect is not a claim key; valid: source,")


def test_a_sweep_with_a_malformed_claim_stops_before_any_job(tmp_path, capsys):
    bad = sweep_config(tmp_path / "sweep", claim={**CLAIM, "min_effect": "big"})
    with pytest.raises(SystemExit) as stop:
        SweepSummary().on_multirun_start(bad)
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        "xent-run: error: claim.min_effect='big' must be a number >= 0\n"
    )
    SweepSummary().on_multirun_start(sweep_config(tmp_path, claim=CLAIM))  # a good one passes
    SweepSummary().on_multirun_start(sweep_config(tmp_path))  # and no claim


@pytest.mark.slow  # an xent-run -m process
def test_a_malformed_claim_leaves_an_earlier_sweep_in_its_dir_as_it_was(tmp_path):
    # an earlier sweep in the dir stays as it is: the claim is checked before it is archived
    directory = claim_sweep(tmp_path, accs={"ce": [0.8]})
    (directory / "multirun.yaml").write_text("earlier")
    before = sorted(p.relative_to(directory) for p in directory.rglob("*"))
    proc = xent_run(
        "-m",
        "seed=0,1",
        "claim={metric: test/acc, higher_is_better: true, baseline: {loss: ce}, mineffect: 1}",
        f"hydra.sweep.dir={directory}",
        cwd=tmp_path,
    )
    assert (proc.returncode, proc.stderr) == (
        2,
        "xent-run: error: claim.mineffect is not a claim key; valid: source, says, metric, "
        "higher_is_better, baseline, candidates, min_effect, published\n",
    )
    assert sorted(p.relative_to(directory) for p in directory.rglob("*")) == before


def test_a_claim_for_rows_no_job_finished_is_judged_with_no_pairs(tmp_path, capsys):
    directory = tmp_path / "sweep"
    fake_job(directory, 0, ["loss=ce", "seed=0"], None)  # still running
    fake_job(directory, 1, ["loss=pld", "seed=0"], {"status": "failed", "seed": 0})
    judgement = judge_claim(collect(directory), parse_claim(CLAIM))
    [verdict] = judgement.verdicts
    assert (verdict.n, verdict.verdict) == (0, "not enough seeds")
    (directory / "summary.md").write_text("")
    report.report_claim(directory, judgement)
    # no pair, so no interval for the paper's Δ to fall in: shown alone
    assert "| loss=pld | – | 0 | – | — | not enough seeds | +0.0374 |" in claim_lines(directory)


def test_a_fresh_sweep_sets_the_earlier_verdicts_aside(tmp_path):
    """A later sweep into the same dir must not be shown the earlier sweep's verdicts."""
    from xent.runner.sweep_archive import earlier_sweep_entries

    directory = claim_sweep(tmp_path)
    (directory / "verdicts.json").write_text("{}")
    (directory / "verdicts.png").write_text("png")
    assert {"verdicts.json", "verdicts.png"} <= set(earlier_sweep_entries(directory))


def test_verdicts_that_cannot_be_written_are_a_warning_and_the_count_stands(
    tmp_path, fresh_globals, monkeypatch, caplog
):
    directory = claim_sweep(tmp_path)
    fake_job(directory, 20, ["experiment=x", "loss=ce", "seed=9"], {"status": "failed"})

    def full_disk(*args):
        raise OSError("No space left on device")

    monkeypatch.setattr(sweep, "report_claim", full_disk)
    with caplog.at_level(logging.WARNING, logger="xent"):
        SweepSummary().on_multirun_end(sweep_config(directory, claim=CLAIM))
    assert [r.getMessage() for r in caplog.records] == ["no verdicts: No space left on device"]
    assert sweep.failed_jobs == 1 and sweep.summary_errors == []
    assert (directory / "summary.md").exists()


def test_a_long_claim_wraps_in_the_plot_title(tmp_path):
    says = "noise-robust losses give a higher test accuracy than CE at 40 % symmetric label noise"
    rows = collect(claim_sweep(tmp_path))
    judgement = judge_claim(rows, parse_claim({**CLAIM, "says": says}))
    title = verdicts_figure(judgement).axes[0].get_title()
    assert title == (
        "noise-robust losses give a higher test accuracy than CE at 40 % symmetric label noise\n"
        "(baseline loss=ce)"
    )
