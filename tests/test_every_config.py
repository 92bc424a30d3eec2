"""Every task config composes into a Task the runner can build (README: Where does my code go).

The other groups have theirs: losses (tests/test_losses.py), models (tests/test_models.py),
data (tests/test_configs.py), experiments (tests/test_experiments.py). Compose only, no training.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from tests.conftest import composed
from xent.tasks.base import Task

CONF = Path(__file__).resolve().parents[1] / "src" / "xent" / "conf"
TASKS = sorted(p.stem for p in (CONF / "task").glob("*.yaml"))
# A task whose defaults pull in a per-data node needs data that has one (source/for_<data>).
DATA_FOR_TASK = {"tta": "digits32_c"}
# What the runner passes to every task besides the task config's own keys (xent.runner.run.run).
PASSED_BY_THE_RUNNER = {"net", "loss", "optimizer", "scheduler"}


def task_config(tmp_path: Path, name: str):
    """The composed `task` node of `xent-run task=<name>`, on the data it needs."""
    return composed(tmp_path, f"task={name}", f"data={DATA_FOR_TASK.get(name, 'digits')}").task


@pytest.mark.parametrize("name", TASKS)
def test_task_config_composes_into_a_task_the_preflight_knows(tmp_path, name):
    lines = (CONF / "task" / f"{name}.yaml").read_text().splitlines()
    first = lines[1] if lines[0].startswith("# @package") else lines[0]  # after Hydra's header
    assert first.startswith("# ") and len(first) > 20  # one-line comment: what the task does
    cfg = task_config(tmp_path, name)
    task_class = get_class(cfg._target_)
    assert issubclass(task_class, Task)
    assert task_class.trains_on, "Task.trains_on: the words messages use for its data"
    assert cfg.monitor_mode in ("min", "max")


@pytest.mark.parametrize("name", TASKS)
def test_task_config_keys_are_constructor_arguments(tmp_path, name):
    cfg = OmegaConf.to_container(task_config(tmp_path, name), resolve=False)
    keys = set(cfg) - {"_target_"}
    parameters = inspect.signature(get_class(cfg["_target_"]).__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    assert takes_any or keys <= set(parameters), f"not arguments: {keys - set(parameters)}"
    required = {
        n
        for n, p in parameters.items()
        if n != "self" and p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD
    }
    assert required <= keys | PASSED_BY_THE_RUNNER, f"never given: {required - keys}"
