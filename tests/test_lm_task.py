"""task=lm end to end: a tiny corpus written here, a few optimizer steps, the run dir it leaves."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, xent_run
from xent.losses import CELogZLoss
from xent.runner.command_line import with_task_defaults
from xent.tasks.lm import LMTask

# The keys a task=lm run writes to metrics.json (char tokeniser: bpc as well as bpb).
METRIC_KEYS = {
    "status", "seed", "epochs", "train_time_s", "test_time_s", "summary_keys",
    "model/n_params", "data/vocab_size",
    "train/loss", "train/lse_mean", "train/tokens", "train/tokens_per_s",
    "val/loss", "val/bpc", "val/bpb", "val/ppl", "val/acc",
    "test/loss", "test/bpc", "test/bpb", "test/ppl", "test/acc",
    "best/val_loss", "best/test_loss",
}  # fmt: skip
# What seed 0 gives on TINY_RUN: the exact values, so a change to the data, model, schedule or
# loss path shows here.
EXPECTED = {"val/loss": 2.6364, "best/val_loss": 2.6364, "test/loss": 2.6161}


# The tests package on the path: the resume test's SignalAt callback lives in tests/.
PYTHONPATH = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))


def tiny_corpus(folder: Path) -> Path:
    """About 12 KB of lines with some structure to learn."""
    path = folder / "corpus.txt"
    path.write_text("".join(f"line {i}: the quick brown fox jumps {i % 7}\n" for i in range(300)))
    return path


def tiny_run(folder: Path, *extra: str):
    corpus = tiny_corpus(folder)
    return xent_run(
        "task=lm",
        "data=text",
        f"data.path={corpus}",
        f"paths.data_dir={folder / 'data'}",
        "model.block_size=16",
        "data.batch_size=4",
        "data.eval_interval=10",
        "data.eval_batches=2",
        "trainer.max_steps=20",
        "sched.warmup_steps=2",
        "task.sample_tokens=40",
        f"hydra.run.dir={folder / 'run'}",
        *extra,
        cwd=folder,
        env={"PYTHONPATH": PYTHONPATH},
    )


@pytest.mark.slow  # the fast tier's lm runs are the sweeps of tests/e2e_runs.py
def test_a_tiny_lm_run_writes_its_metrics_and_samples(tmp_path):
    proc = tiny_run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == METRIC_KEYS
    assert metrics["status"] == "ok" and metrics["epochs"] == 2
    assert metrics["train/tokens"] == 20 * 4 * 16  # steps x batch x block
    vocab = len(set((tmp_path / "corpus.txt").read_text()))
    assert metrics["data/vocab_size"] == vocab
    n_embd, n_layer = 64, 2  # gpt_tiny
    per_block = 12 * n_embd**2 + 2 * n_embd  # attention + MLP matrices, two LayerNorm weights
    assert metrics["model/n_params"] == vocab * n_embd + n_layer * per_block + n_embd
    assert {k: round(metrics[k], 4) for k in EXPECTED} == EXPECTED
    assert metrics["val/bpc"] == pytest.approx(metrics["val/loss"] / 0.6931471805599453)
    assert metrics["val/bpb"] == pytest.approx(metrics["val/bpc"])  # ASCII: a byte per char
    samples = (run / "samples.txt").read_text().split("--- sample ")
    assert len(samples) == 4 and samples[0] == ""
    assert all(s.startswith(f"{i} (temperature 0.8) ---\n") for i, s in enumerate(samples[1:], 1))


@pytest.mark.slow
def test_the_z_loss_trains_tokens_with_the_chunked_head(tmp_path):
    """loss=ce_logz (a classify config) runs on tokens through as_lm_loss; lm.head reaches it."""
    proc = tiny_run(tmp_path, "loss=ce_logz", "lm.head=chunked")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["train/lse_mean"] > 0
    config = (tmp_path / "run" / ".hydra" / "config.yaml").read_text()
    assert "head: chunked" in config and "xent.losses.CELogZLoss" in config


def test_the_task_takes_the_classify_ce_losses_as_token_losses():
    assert LMTask.loss_target_kind(torch.nn.CrossEntropyLoss()) == "tokens"
    assert LMTask.loss_target_kind(CELogZLoss(coef=1e-4)) == "tokens"
    assert LMTask.loss_target_kind(torch.nn.MSELoss()) == "class"  # torch's own: not tokens


def test_task_lm_on_the_command_line_picks_its_groups():
    picked = ["data=shakespeare", "model=gpt_tiny", "optim=adamw_lm", "sched=warmup_cosine"]
    assert with_task_defaults(["task=lm"]) == ["task=lm", *picked, "trainer=lm"]
    mine = ["-m", "task=lm", "model=gpt_nano", "data=text", "+trainer.x=1", "seed=0,1"]
    added = ["optim=adamw_lm", "sched=warmup_cosine", "trainer=lm"]  # trainer.x: a key, not a pick
    assert with_task_defaults(mine) == [*mine, *added]
    for unchanged in (["task=classify"], ["loss=ce"], ["task=lm", "experiment=wcfm_2d"]):
        assert with_task_defaults(unchanged) == unchanged


@pytest.mark.slow
def test_a_finished_lm_run_resumed_is_left_as_it_was(tmp_path):
    """The preflight fills data.vocab_size in from the tokeniser; a resume compares the config
    as composed (the saved one has no vocabulary either), so it is not refused for that."""
    assert tiny_run(tmp_path).returncode == 0
    before = (tmp_path / "run" / "metrics.json").read_bytes()
    proc = tiny_run(tmp_path, "resume=true")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run" / "metrics.json").read_bytes() == before


@pytest.mark.slow
def test_an_interrupted_lm_run_resumed_ends_as_an_uninterrupted_one(tmp_path):
    """Ctrl-C after step 15 (last.ckpt: step 10), then resume=true: the same metrics as a run
    never stopped, since each training batch is seeded by its optimizer step."""
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    whole.mkdir(), cut.mkdir()
    assert tiny_run(whole).returncode == 0
    kill = [
        "+callbacks.kill._target_=tests.helpers_faults.SignalAt",
        "+callbacks.kill.step=15",
        f"+callbacks.kill.signal={int(signal.SIGINT)}",
    ]
    stopped = tiny_run(cut, *kill)
    assert stopped.returncode != 0 and "interrupted after epoch 1" in stopped.stderr
    resumed = tiny_run(cut, "resume=true")
    assert resumed.returncode == 0, resumed.stderr
    same = ("val/loss", "test/loss", "best/val_loss", "best/test_loss", "train/tokens", "epochs")
    first, second = (json.loads((d / "run" / "metrics.json").read_text()) for d in (whole, cut))
    assert {k: second[k] for k in same} == {k: first[k] for k in same}
