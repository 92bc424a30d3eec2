"""xent.tasks.base.FewThreads: a task's fit/test runs with its thread count, restored after."""

from __future__ import annotations

import torch

from xent.tasks.base import FewThreads
from xent.tasks.flow import FlowTask
from xent.tasks.lm import LMTask


class Hooks(FewThreads):
    def __init__(self, num_threads):
        self.num_threads = num_threads


def test_setup_sets_the_count_and_teardown_restores_it():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        hooks = Hooks(1)
        hooks.setup("fit")
        assert torch.get_num_threads() == 1
        hooks.setup("test")  # a second stage keeps the count it saved first
        hooks.teardown("test")
        assert torch.get_num_threads() == 2
        Hooks(None).setup("fit")  # None: torch's own count, untouched
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_small_model_tasks_use_it():
    assert issubclass(LMTask, FewThreads) and issubclass(FlowTask, FewThreads)
