"""The line each test tier prints at its end (tests/conftest.py): its time against its budget."""

from __future__ import annotations

from tests.conftest import tier_line


def test_the_fast_tier_says_its_time_and_budget():
    assert tier_line("not slow", 86.6, 1097) == (
        "fast tier: 1097 tests in 87 s (budget 120 s on a quiet 2-core machine)"
    )
    assert tier_line("not  slow", 5, 3).startswith("fast tier: 3 tests in 5 s")


def test_other_tiers_say_their_time():
    assert tier_line("", 2040.2, 1310) == "full suite: 1310 tests in 2040 s"
    assert tier_line("slurm", 61, 2) == "tests selected by -m 'slurm': 2 tests in 61 s"
    assert tier_line("not slow", 3, 2, whole=False) == "selected tests: 2 in 3 s"
