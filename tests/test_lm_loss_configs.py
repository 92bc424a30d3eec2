"""loss=emo and loss=dco select task=lm, and task=lm refuses what a token loss cannot run.

Needs the lm task (`conf/task/lm.yaml`, `xent.tasks.lm`: the lmcore branch of issue 19) and its
preflight calling `LMLoss.check_head` and, for DCO, `LMLoss.check_targets` on a real batch."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from tests.conftest import assert_one_line_error, composed, run_bad_commands
from xent.losses.dco import DCOLoss
from xent.losses.emo import EMOLoss


@pytest.mark.parametrize("loss", ["emo", "dco"])
def test_token_loss_config_selects_task_lm(tmp_path, loss):
    assert composed(tmp_path, f"loss={loss}").task == composed(tmp_path, "task=lm").task


def test_token_loss_configs_build_their_defaults(tmp_path):
    emo = instantiate(composed(tmp_path, "loss=emo").loss)
    dco = instantiate(composed(tmp_path, "loss=dco").loss)
    assert (type(emo), emo.mode, emo.max_ratio) == (EMOLoss, 1, 3.0)
    assert (type(dco), dco.n) == (DCOLoss, 16)


BAD = {
    "unknown_head": (
        ["task=lm", "lm.head=sparse"],
        "lm.head='sparse' must be one of dense, chunked, cce",
    ),
    "emo_chunked": (
        ["loss=emo", "lm.head=chunked"],
        "lm.head=chunked must be dense with loss=emo: it needs the softmax over the whole "
        "vocabulary, which the memory-lean heads never hold",
    ),
    "dco_plain_text": (
        ["loss=dco"],
        "loss=dco needs answer spans: every target is trained, so no sequence has a prompt "
        "masked with -100 and an answer after it; use data with prompt/answer pairs "
        "(experiment=dco_arith)",
    ),
}


@pytest.mark.slow  # five CLI processes, ~18 s
def test_task_lm_refuses_what_its_loss_cannot_run(tmp_path):
    for name, (proc, run_dir) in run_bad_commands(tmp_path, BAD).items():
        assert_one_line_error(proc, run_dir, BAD[name][1]), name
