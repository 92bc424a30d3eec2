"""The language-model sweep files: experiment=lm_losses (CE vs label smoothing vs z-loss vs EMO,
judged against CE) and experiment=lm_scaling (a width sweep for `xent-report --fit`), run end
to end on a tiny corpus with tiny overrides (tests/e2e_runs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

CANDIDATES = ["lm_loss=ce_ls", "lm_loss=ce_logz", "lm_loss=emo"]


def job_metrics(sweep: Path) -> dict[tuple[str, int], dict]:
    """(the job's lm_loss override, seed) -> its metrics.json."""
    jobs = {}
    for overrides_file in sweep.glob("*/.hydra/overrides.yaml"):
        overrides = overrides_file.read_text()
        option = next(line.split("- ")[1] for line in overrides.splitlines() if "lm_loss=" in line)
        metrics = json.loads((overrides_file.parents[1] / "metrics.json").read_text())
        jobs[option, metrics["seed"]] = metrics
    return jobs


@pytest.mark.parametrize(
    "option,loss",
    [
        ("ce", {"_target_": "torch.nn.CrossEntropyLoss", "label_smoothing": 0.0}),
        ("ce_ls", {"_target_": "torch.nn.CrossEntropyLoss", "label_smoothing": 0.1}),
        ("ce_logz", {"_target_": "xent.losses.CELogZLoss", "coef": 1.0e-4}),
        ("emo", {"_target_": "xent.losses.emo.EMOLoss", "mode": 1, "max_ratio": 3.0}),
    ],
)
def test_each_lm_loss_option_is_a_loss_with_its_settings(option, loss):
    """One sweep axis holds CE and CE with label smoothing 0.1: each option is a loss config plus
    its settings, on task=lm's groups."""
    with initialize_config_module("xent.conf", version_base="1.3"):
        cfg = compose("config", overrides=["experiment=lm_losses", f"lm_loss={option}"])
    assert dict(cfg.loss) == loss
    assert cfg.task._target_ == "xent.tasks.lm.LMTask" and cfg.model.n_embd == 64
    assert (cfg.trainer.max_steps, cfg.data.batch_size, cfg.model.block_size) == (2000, 12, 64)


def test_lm_losses_sweep_runs_and_judges_each_loss_against_ce(e2e_runs):
    proc, folder = e2e_runs["lm_losses"]  # one seed: 4 jobs of 6 steps (tests/e2e_runs.py)
    assert proc.returncode == 0, proc.stderr
    sweep = folder / "sweep"
    jobs = job_metrics(sweep)
    assert sorted(jobs) == [(f"lm_loss={o}", 0) for o in ("ce", "ce_logz", "ce_ls", "emo")]
    # the claim's metric and every headline column are keys every job reports
    assert all({"val/bpc", "test/bpc", "train/lse_mean"} <= set(m) for m in jobs.values())
    assert all(m["status"] == "ok" and m["train/tokens"] == 6 * 4 * 16 for m in jobs.values())
    bpc = {key[0]: round(m["val/bpc"], 4) for key, m in jobs.items()}
    # seed 0's numbers: z-loss 1e-4 moves nothing in 6 steps, smoothing and EMO do
    expected = {"ce": 4.4483, "ce_ls": 4.4491, "ce_logz": 4.4483, "emo": 4.4461}
    assert bpc == {f"lm_loss={option}": value for option, value in expected.items()}

    verdicts = json.loads((sweep / "verdicts.json").read_text())
    assert verdicts["baseline"] == "lm_loss=ce"
    assert verdicts["claim"]["metric"] == "val/bpc"
    assert verdicts["claim"]["higher_is_better"] is False
    assert [c["label"] for c in verdicts["candidates"]] == CANDIDATES
    assert all(c["n_pairs"] == 1 for c in verdicts["candidates"])
    claim = (sweep / "summary.md").read_text().split("## Claim", 1)[1]
    rows = [line for line in claim.splitlines() if line.startswith("| lm_loss=")]
    assert [row.split(" | ")[0] for row in rows] == [f"| {c}" for c in CANDIDATES]
    # one pair: the difference alone, and no verdict from it (docs/claims.md §5)
    assert all(c["verdict"] == "not enough seeds" for c in verdicts["candidates"])
    assert rows[0].startswith("| lm_loss=ce_ls | +0.0008 (one seed) | 1 | 0.00 |")
    assert all(row.endswith("| not enough seeds | – |") for row in rows)


def test_lm_scaling_sweep_trains_each_width_and_the_report_fits_the_law(
    e2e_runs, monkeypatch, capsys
):
    """experiment=lm_scaling at four widths (tests/e2e_runs.py): one job a width, the parameter
    count of each (gpt_tiny: 2 blocks of 12·d² + 2·d, tied embedding, final norm), one seed, no
    claim; then `xent-report SWEEP --fit` fits L = E + A/N^α to the four points."""
    from tests.conftest import run_main
    from xent.runner import scaling

    proc, folder = e2e_runs["lm_scaling"]
    assert proc.returncode == 0, proc.stderr
    sweep = folder / "sweep"
    vocab = len(set((folder / "corpus.txt").read_text()))
    widths = {}
    for job in sorted(sweep.glob("[0-9]*")):
        metrics = json.loads((job / "metrics.json").read_text())
        config = (job / ".hydra" / "config.yaml").read_text()
        width = int(next(line for line in config.splitlines() if "n_embd:" in line).split()[-1])
        assert metrics["status"] == "ok" and metrics["seed"] == 0
        widths[width] = metrics["model/n_params"]
    assert widths == {d: vocab * d + 2 * (12 * d**2 + 2 * d) + d for d in (16, 24, 32, 48)}
    assert not (sweep / "verdicts.json").exists()  # not a comparison

    monkeypatch.setattr(scaling, "RESAMPLES", 40)
    code, out, err = run_main(monkeypatch, capsys, sweep, "--fit")
    assert code == 0, err
    fit = json.loads((sweep / "fit.json").read_text())
    assert fit["metric"] == "best/val_loss" and fit["variables"] == ["model/n_params"]
    assert sorted(p["model/n_params"] for p in fit["points"]) == sorted(widths.values())
    assert list(fit["parameters"]) == ["E", "A", "α"] and fit["bootstrap"]["resamples"] == 40
    assert (sweep / "fit.png").is_file()
