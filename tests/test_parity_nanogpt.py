"""scripts/parity_nanogpt.py: the nanoGPT side's data files and log reading, and the verdict.

Running nanoGPT itself needs its checkout (not shipped); the README's parity row was measured
with the script as committed."""

from __future__ import annotations

import pickle
import runpy

import numpy as np
import pytest

from tests.conftest import REPO

parity = runpy.run_path(str(REPO / "scripts" / "parity_nanogpt.py"), run_name="parity")


def test_dataset_files_are_nanogpts_shakespeare_char_format(tmp_path):
    corpus = tmp_path / "input.txt"
    corpus.write_text("abcabcabcd")  # 10 characters: 9 train, 1 validation
    assert parity["write_nanogpt_dataset"](corpus, tmp_path / "d") == 4
    train = np.fromfile(tmp_path / "d" / "train.bin", dtype=np.uint16)
    val = np.fromfile(tmp_path / "d" / "val.bin", dtype=np.uint16)
    assert train.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2] and val.tolist() == [3]
    meta = pickle.loads((tmp_path / "d" / "meta.pkl").read_bytes())
    assert meta == {
        "vocab_size": 4,
        "itos": {0: "a", 1: "b", 2: "c", 3: "d"},
        "stoi": {"a": 0, "b": 1, "c": 2, "d": 3},
    }


LOG = (
    """step 0: train loss 4.2000, val loss 4.1900
iter 0: loss 4.2, time 900.00ms, mfu -100.00%
"""
    + "".join(f"iter {i}: loss 2.0000, time {100 + i}.00ms, mfu 0.01%\n" for i in range(1, 20))
    + (
        "step 20: train loss 1.9000, val loss 1.8800\n"
        "iter 20: loss 1.9000, time 5000.00ms, mfu 0.01%\n"
    )
)


def test_log_gives_the_last_val_loss_and_the_steady_iterations_rate():
    result = parity["parse_nanogpt_log"](LOG, tokens_per_iter=768)
    steady_ms = np.mean([100 + i for i in range(10, 20)])  # iters 10-19; 20 ran an evaluation
    assert result["val_loss"] == 1.88 and result["iters"] == 20
    assert result["tokens_per_s"] == pytest.approx(768 / (steady_ms / 1000))


def test_log_without_numbers_is_refused():
    with pytest.raises(SystemExit, match="no val loss or iteration times"):
        parity["parse_nanogpt_log"]("nothing here", tokens_per_iter=768)


def test_verdict_against_the_bar():
    nano = {"val_loss": 1.90, "tokens_per_s": 1000.0}
    assert parity["verdict"](nano, {"val_loss": 1.94, "tokens_per_s": 950.0}) == {
        "val_loss_gap": pytest.approx(0.04),
        "tokens_per_s_ratio": pytest.approx(0.95),
        "val_within_tolerance": True,
        "speed_at_least_bar": True,
    }
    worse = parity["verdict"](nano, {"val_loss": 1.96, "tokens_per_s": 800.0})
    assert not worse["val_within_tolerance"] and not worse["speed_at_least_bar"]


def test_a_folder_without_nanogpt_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        parity["main"](["--nanogpt", str(tmp_path)])
    assert stop.value.code == 2
    files = "train.py, model.py, configurator.py, config/train_shakespeare_char.py"
    assert f"no {files} (a nanoGPT checkout)" in capsys.readouterr().err
