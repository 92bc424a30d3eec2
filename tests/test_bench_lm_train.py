"""scripts/bench_lm_train.py: both sides train the same windows with the same optimizer, the
JSON and README line hold the measured rates, and a folder without nanoGPT is refused.

nanoGPT itself is not shipped: a stand-in `model.py` with nanoGPT's interface (`GPTConfig`,
`GPT(config)`, `forward(idx, targets) -> (logits, loss)`) wraps xent's GPT with plain
`F.cross_entropy`, so the two sides must train to the same weights."""

from __future__ import annotations

import json
import runpy
import statistics

import pytest
import torch

from tests.conftest import REPO

bench = runpy.run_path(str(REPO / "scripts" / "bench_lm_train.py"), run_name="bench_lm_train")

STAND_IN = """
from dataclasses import dataclass

import torch.nn.functional as F

from xent.models.gpt import GPT as XentGPT


@dataclass
class GPTConfig:
    block_size: int
    vocab_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float
    bias: bool


class GPT(XentGPT):
    def __init__(self, config):
        super().__init__(**vars(config))

    def forward(self, idx, targets=None):
        logits = super().forward(idx) @ self.head_weight.T
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
"""


@pytest.fixture
def stand_in(tmp_path):
    checkout = tmp_path / "nanoGPT"
    checkout.mkdir()
    (checkout / "model.py").write_text(STAND_IN)
    return checkout


def test_both_sides_train_the_same_windows_with_the_same_step(stand_in):
    sides = bench["sides"](stand_in, steps=3)
    before = [p.detach().clone() for p in sides["xent"][0].parameters()]
    for _, run in sides.values():
        run()
    ours, theirs = (list(model.parameters()) for model, _ in sides.values())
    assert not torch.equal(ours[0], before[0])  # it trained
    for mine, other in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine, other, rtol=0, atol=1e-6)


def test_quick_run_writes_the_rates_and_their_ratio(stand_in, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # keep the suite's threads
    out = tmp_path / "out"
    bench["main"](["--nanogpt", str(stand_in), "--quick", "--out", str(out)])
    result = json.loads((out / "lm_train.json").read_text())
    steps, (batch, block) = result["steps_per_repeat"], (12, 64)
    rates = result["tokens_per_s"]
    for name, seconds in result["seconds"].items():
        assert len(seconds) == 2
        assert rates[name] == pytest.approx(steps * batch * block / statistics.median(seconds))
    assert result["ratio"] == pytest.approx(rates["xent"] / rates["nanogpt"])
    assert result["bar_met"] == (result["ratio"] >= 0.9)
    line = (out / "README.md").read_text().splitlines()[-1]
    assert line.startswith(
        "- `lm_train`: task=lm's model+loss step vs nanoGPT's (gpt_nano shape, batch 12x64, "
        f"1 thread(s)): {rates['xent']:,.0f} vs {rates['nanogpt']:,.0f} tokens/s, "
        f"{result['ratio']:.2f}x (bar >= 0.9x: "
    )


def test_a_folder_without_nanogpt_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench["main"](["--nanogpt", str(tmp_path), "--quick", "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert f"--nanogpt {tmp_path}: no model.py (a nanoGPT checkout)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_without_a_checkout_it_says_so_and_measures_nothing(tmp_path, monkeypatch, capsys):
    """`make bench` runs every script without arguments: this one must not fail it."""
    monkeypatch.delenv("NANOGPT", raising=False)
    bench["main"](["--quick", "--out", str(tmp_path / "out")])
    assert capsys.readouterr().out == (
        "lm_train: no nanoGPT checkout (--nanogpt DIR or NANOGPT=DIR); nothing measured\n"
    )
    assert not (tmp_path / "out").exists()


def test_device_cuda_without_a_gpu_says_so_and_writes_nothing(
    stand_in, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out"
    bench["main"](["--device", "cuda", "--nanogpt", str(stand_in), "--out", str(out)])
    assert capsys.readouterr().out == bench["NO_CUDA"] + "\n"
    assert not out.exists()


def test_device_mode_times_each_variant_of_both_sides(stand_in, tmp_path, capsys):
    """--cpu-smoke: the --device cuda code on the CPU (fp32 and bf16 autocast; compiling is
    left to the GPU run), its rates, ratios per variant and README line."""
    out = tmp_path / "out"
    bench["main"](["--cpu-smoke", "--nanogpt", str(stand_in), "--out", str(out)])
    result = json.loads((out / "lm_train_cpu_smoke.json").read_text())
    assert set(result["seconds"]) == {"xent_fp32", "nanogpt_fp32", "xent_bf16", "nanogpt_bf16"}
    steps, batch, block = result["steps_per_repeat"], 2, 64
    assert result["shape"]["batch"] == batch and result["shape"]["block_size"] == block
    rates = result["tokens_per_s"]
    for name, seconds in result["seconds"].items():
        assert len(seconds) == 2
        assert rates[name] == pytest.approx(steps * batch * block / statistics.median(seconds))
    for variant in ("fp32", "bf16"):
        ratio = rates[f"xent_{variant}"] / rates[f"nanogpt_{variant}"]
        assert result["ratio"][variant] == pytest.approx(ratio)
        assert result["bar_met"][variant] == (ratio >= 0.9)
    line = (out / "README.md").read_text().splitlines()[-1]
    assert line.startswith(
        "- `lm_train_cpu_smoke`: task=lm's model+loss step vs nanoGPT's on cpu (4 layers, 128 "
        f"wide, batch 2x64): fp32 {rates['xent_fp32']:,.0f} vs {rates['nanogpt_fp32']:,.0f} "
        "tokens/s, "
    )


def test_the_bf16_variant_trains_under_autocast(stand_in):
    """The bf16 trainer's forward runs under bf16 autocast: its loss is computed from bf16
    logits, so it differs from the fp32 trainer's on the same windows and weights."""
    seen = []
    sides = bench["sides"](stand_in, steps=1, bf16=True)
    model, run = sides["xent"]
    model.register_forward_hook(lambda m, args, out: seen.append(torch.is_autocast_enabled("cpu")))
    run()
    assert seen == [True]
