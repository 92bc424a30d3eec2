"""Every loss config trains through the runner: one short fit on its task, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import composed, task_overrides_for
from xent.errors import ConfigError
from xent.runner.run import run

LOSSES = sorted(p.stem for p in (Path(__file__).parents[1] / "src/xent/conf/loss").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("loss", LOSSES)
def test_loss_trains_one_step_on_its_task(tmp_path, loss):
    cfg = composed(
        tmp_path,
        f"loss={loss}",
        *task_overrides_for(loss),
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1",
        "logger=none",
    )
    if loss == "dco":  # plain text has no answer spans: refused; data=arith has them
        with pytest.raises(ConfigError, match="^loss=dco needs answer spans: "):
            run(cfg)
        cfg = composed(
            tmp_path,
            f"loss={loss}",
            "data=arith",
            "trainer.max_steps=2",
            "data.eval_interval=2",
            "task.pass_at_k=8",
            "data.test_size=4",
            "logger=none",
        )
        result = run(cfg)
        assert result["status"] == "ok" and result["test/loss"] > 0.0
        assert set(result) >= {"test/pass@1", "test/pass@8", "test/pass@8/epoch0"}
        return
    result = run(cfg)
    assert result["status"] == "ok" and result["epochs"] == 1
    if "test/rmse" in result:
        assert result["test/rmse"] > 0.0
    elif "test/bpc" in result:  # a language model: nats per token, above zero
        assert result["test/loss"] > 0.0 and result["val/bpc"] > 0.0
    elif "test/w2" in result:  # flow matching: W2 of the ODE samples to the test target
        assert result["test/w2"] > 0.0 and result["test/nfe"] > 0
    else:
        assert 0.0 <= result["test/acc"] <= 1.0
