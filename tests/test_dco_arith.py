"""experiment=dco_arith: the addition data, pass@k, the base model and the sweep end to end."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
import yaml

from tests.conftest import composed
from xent.data.arith import ArithDataModule, question_pairs
from xent.losses.dco import DCOLoss
from xent.tasks.lm_eval import (
    PLOT_FILE,
    count_correct,
    headline,
    job_curves,
    pass_at_k,
    pass_at_k_curve,
    sweep_lines,
)


# -- pass@k ----------------------------------------------------------------------------------------
def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """The fraction of the k-subsets of n answers (c right) that hold a right one."""
    answers = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(answers, k))
    return sum(any(s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_is_the_fraction_of_k_subsets_with_a_right_answer(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_matches_the_binomials_at_n_128():
    for c, k in [(0, 1), (1, 1), (1, 64), (3, 8), (40, 64), (127, 128), (5, 128)]:
        exact = 1 - math.comb(128 - c, k) / math.comb(128, k)
        assert pass_at_k(128, c, k) == pytest.approx(exact, rel=1e-12, abs=1e-15)
    assert pass_at_k(128, 1, 64) == pytest.approx(0.5, abs=1e-15)  # half the subsets hold it
    assert pass_at_k(128, 1, 1) == pytest.approx(1 / 128, abs=1e-15)


def test_pass_at_k_refuses_impossible_counts():
    with pytest.raises(ValueError, match="0 <= c <= n and 1 <= k <= n, got n=4, c=5, k=1"):
        pass_at_k(4, 5, 1)


def test_curve_averages_questions_and_headline_picks_its_ks():
    curve = pass_at_k_curve([0, 1, 128], 128)
    assert list(curve) == list(range(1, 129))
    assert curve[1] == pytest.approx((0 + 1 / 128 + 1) / 3)
    assert curve[128] == pytest.approx(2 / 3)
    assert list(headline(curve)) == ["test/pass@1", "test/pass@8", "test/pass@64", "test/pass@128"]
    assert list(headline(pass_at_k_curve([1], 8))) == ["test/pass@1", "test/pass@8"]


# -- the data --------------------------------------------------------------------------------------
def test_splits_are_disjoint_and_seeded():
    pairs = question_pairs(2, {"train": 2000, "val": 100, "test": 100}, split_seed=0)
    seen = [{tuple(p) for p in pairs[s].tolist()} for s in ("train", "val", "test")]
    assert [len(s) for s in seen] == [2000, 100, 100]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    dm = ArithDataModule()
    dm.setup()
    assert dm.questions("test")[:3] == [("35+77=", "112"), ("89+25=", "114"), ("16+34=", "50")]


def test_rows_mask_the_prompt_and_train_the_answer_and_its_end():
    dm = ArithDataModule()
    dm.setup()
    inputs, targets = dm.rows("test")
    assert dm.decode(inputs[0].tolist()) == "35+77=112"  # the row without its last character
    trained = targets[0][targets[0] != -100].tolist()
    assert dm.decode(trained) == "112\n"
    assert targets[0][:5].tolist() == [-100] * 5  # "35+77" predicts the prompt: not trained
    assert dm.decode(inputs[2].tolist()) == "16+34=50\n"  # a shorter row, padded with END
    assert targets[2].tolist()[-1] == -100
    DCOLoss().check_targets(targets)  # the answer spans DCO needs


def test_too_many_questions_fail_in_one_line():
    with pytest.raises(Exception, match=r"= 10001 questions, but 2-digit addition has only 10000"):
        question_pairs(2, {"train": 9801, "val": 100, "test": 100}, split_seed=0)


def test_training_batches_are_passes_in_seeded_orders():
    dm = ArithDataModule(train_size=6, batch_size=4, eval_interval=3)
    dm.setup()
    batches = dm.train_dataloader().dataset
    steps = [batches.indices(s) for s in range(3)]
    first_pass = steps[0] + steps[1][:2]
    assert sorted(first_pass) == list(range(6))  # 6 questions: one pass in 1.5 steps
    assert sorted(steps[1][2:] + steps[2]) == list(range(6))
    again = ArithDataModule(train_size=6, batch_size=4, eval_interval=3)
    again.setup()
    assert [again.train_dataloader().dataset.indices(s) for s in range(3)] == steps


class Adder(torch.nn.Module):
    """A 'model' that always writes the right sum: pass@k is 1 for every k."""

    def __init__(self, dm: ArithDataModule, right: bool = True):
        super().__init__()
        self.dm, self.right = dm, right
        self.head_weight = torch.zeros(dm.vocab_size, 1)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        out = torch.full((*ids.shape, self.dm.vocab_size), -1e4)
        for row, seq in enumerate(ids.tolist()):
            text = self.dm.decode(seq)
            a, b = text.split("=")[0].split("+")
            answer = str(int(a) + int(b) + (0 if self.right else 1)) + "\n"
            written = text.split("=", 1)[1]
            out[row, -1, self.dm.encode(answer[len(written)])[0]] = 0.0
        return out


def test_count_correct_checks_whole_answers():
    dm = ArithDataModule(test_size=3)
    dm.setup()
    questions = dm.questions("test")
    assert count_correct(Adder(dm), dm, questions, n=4, seed=0) == [4, 4, 4]
    assert count_correct(Adder(dm, right=False), dm, questions, n=4, seed=0) == [0, 0, 0]


# -- the sweep -------------------------------------------------------------------------------------
def test_experiment_composes_rows_and_base(tmp_path):
    cfg = composed(tmp_path, "experiment=dco_arith", "+dco_loss=n16", "seed=0")
    assert (cfg.loss._target_, cfg.loss.n) == ("xent.losses.dco.DCOLoss", 16)
    assert cfg.task._target_ == "xent.tasks.lm.LMTask" and cfg.task.pass_at_k == 128
    assert cfg.data._target_ == cfg.base.data._target_ == "xent.data.arith.ArithDataModule"
    assert (cfg.data.train_size, cfg.base.data.train_size) == (1000, 4000)
    ce = composed(tmp_path, "experiment=dco_arith", "+dco_loss=ce", "seed=0")
    assert ce.loss._target_ == "torch.nn.CrossEntropyLoss"
    assert cfg.claim.baseline == {"dco_loss": "ce"} and cfg.claim.metric == "test/pass@64"


def test_sweep_runs_and_reports_pass_at_k(e2e_runs):
    """The sweep in miniature (tests/e2e_runs.py: a 6-step base model, 2 epochs of 2 steps, 64
    samples of 3 test questions): every job fine-tunes from the one cached base model and
    reports pass@k."""
    proc, folder = e2e_runs["dco_arith"]
    sweep = folder / "sweep"
    assert proc.returncode == 0, proc.stderr[-3000:]
    bases = list((folder / "teachers").glob("GPT-arith-*/teacher.pt"))
    assert len(bases) == 1  # trained once, for both jobs
    for job in ("0", "1"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["status"] == "ok"
        reported = {"test/pass@1", "test/pass@64", "test/pass@8/epoch0", "test/pass@64/epoch2"}
        assert reported <= set(metrics)
        assert "test/pass@128" not in metrics  # n = 64 samples: no pass@128
        curves = json.loads((sweep / job / "pass_at_k.json").read_text())
        assert [c["epoch"] for c in curves] == [0, 1, 2]
        assert all(c["n"] == 64 and c["questions"] == 3 and len(c["curve"]) == 64 for c in curves)
        assert metrics["test/pass@64"] == pytest.approx(curves[-1]["curve"]["64"])
        assert (sweep / job / PLOT_FILE).is_file()
    # epoch 0 is the base model, the same weights in both jobs: the same curve
    zero = [json.loads((sweep / j / "pass_at_k.json").read_text())[0] for j in ("0", "1")]
    assert zero[0]["curve"] == zero[1]["curve"]
    rows = job_curves(sweep)
    assert sorted(rows) == ["+dco_loss=ce", "+dco_loss=n16"]
    assert sorted(rows["+dco_loss=ce"]) == [0, 1, 2]
    lines = sweep_lines(sweep)
    assert [name for name, *_ in lines] == ["epoch 0 (base model)"] + [
        f"+dco_loss={row}, epoch {e} (1 seed)" for row in ("ce", "n16") for e in (1, 2)
    ]
    assert [colour for _, _, colour, _ in lines] == ["black", "C0", "C0", "C1", "C1"]
    assert lines[0][1] == {int(k): v for k, v in zero[0]["curve"].items()}
    assert (sweep / PLOT_FILE).is_file()
    summary = (sweep / "summary.md").read_text()
    assert "test/pass@1" in summary and "test/pass@64" in summary and "## Claim" in summary
    overrides = yaml.safe_load((sweep / "0" / ".hydra" / "overrides.yaml").read_text())
    assert "+dco_loss=ce" in overrides


def test_curves_figure_draws_a_line_per_epoch_on_a_log_k_axis():
    from xent.tasks.lm_eval import curves_figure

    curves = [pass_at_k_curve([1, 4], 8), pass_at_k_curve([2, 8], 8)]
    lines = [("epoch 0 (base model)", curves[0], "black", 1.0), ("epoch 1", curves[1], "C0", 1.0)]
    fig = curves_figure(lines, "pass@k")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("k (answers sampled per question)", "pass@k")
    assert [line.get_label() for line in ax.get_lines()] == ["epoch 0 (base model)", "epoch 1"]
    assert [line.get_linestyle() for line in ax.get_lines()] == ["--", "-"]
    x, y = ax.get_lines()[1].get_data()
    assert list(x) == list(range(1, 9)) and y[-1] == pytest.approx(1.0)
    assert y[0] == pytest.approx((2 / 8 + 1) / 2)


# -- task=lm's progress line (its run ends at max_steps; max_epochs is a ceiling) ------------------
def epoch_line(caplog, **trainer: object) -> str:
    from types import SimpleNamespace

    from xent.runner.callbacks import EpochLog

    callback = EpochLog(keys=("val/loss",))
    callback._pending = 3
    with caplog.at_level("INFO", logger="xent"):
        callback._emit(SimpleNamespace(callback_metrics={"val/loss": 1.5}, **trainer))
    return caplog.records[-1].getMessage()


def test_epoch_line_counts_steps_where_max_steps_ends_the_run(caplog):
    lm = {"max_steps": 2000, "global_step": 750, "max_epochs": 1_000_000}
    assert epoch_line(caplog, **lm) == "step 750/2000 (epoch 3) val/loss=1.5000"
    classify = {"max_steps": -1, "global_step": 750, "max_epochs": 30}
    assert epoch_line(caplog, **classify) == "epoch 3/30 val/loss=1.5000"


def test_sweep_rows_keep_the_job_order_past_job_9(tmp_path):
    """Job dirs 0..11 are read in number order (2 before 10), so the rows (and the plot's
    colours and legend) follow the sweep's order, not the dirs' text order."""
    rows = [f"+dco_loss={r}" for r in ("ce", "n1", "n16", "n64")]
    for job in range(12):
        (tmp_path / str(job) / ".hydra").mkdir(parents=True)
        overrides = [rows[job // 3], f"seed={job % 3}", "experiment=dco_arith"]
        (tmp_path / str(job) / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        curve = {"epoch": 1, "curve": {"1": job / 11}}
        (tmp_path / str(job) / "pass_at_k.json").write_text(json.dumps([curve]))
    curves = job_curves(tmp_path)
    assert list(curves) == rows
    assert [c["1"] for c in curves["+dco_loss=n64"][1]] == [9 / 11, 10 / 11, 1.0]


def test_a_checkpoint_keeps_the_pass_at_k_curves_for_a_resumed_run():
    from functools import partial

    from xent.losses.lm import TokenCE
    from xent.models.gpt import GPT
    from xent.tasks.lm import LMTask

    def task() -> LMTask:
        return LMTask(GPT(13, 16, 1, 1, 8), TokenCE(), partial(torch.optim.AdamW), pass_at_k=8)

    before = task()
    before.pass_curves = [{"epoch": 0, "step": 0, "n": 8, "questions": 3, "curve": {1: 0.25}}]
    checkpoint: dict = {}
    before.on_save_checkpoint(checkpoint)
    resumed = task()
    resumed.on_load_checkpoint(checkpoint)
    assert resumed.pass_curves == before.pass_curves
