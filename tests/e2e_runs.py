"""The fast tier's end-to-end sweeps of the language-model experiments, run once a session.

Issue 17 keeps `make test-fast` within 2 minutes and issue 19 wants a tiny end-to-end run of each
lm experiment there. Each sweep alone is a `python -m xent.runner.cli` of 10-15 s, most of it
importing torch and Lightning and running its jobs one after another. Here the sweeps are forked
from one interpreter that imported the libraries once (`tests.cli_batch`), two at a time with
one thread each, so the two cores each run one. Each test reads its own sweep's result from the
session fixture `e2e_runs`; the slow tier keeps the fuller versions of these sweeps.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli_batch import Command, run_commands

# A 16-token context, 4 windows a batch, 6 steps validated once: a second or two per job.
LM_TINY = [
    "model.block_size=16",
    "data.batch_size=4",
    "data.eval_interval=6",
    "data.eval_batches=2",
    "trainer.max_steps=6",
    "sched.warmup_steps=1",
    "task.sample_tokens=8",
    "logger=none",
]
# The DCO sweep in miniature: a 6-step base model, 2 epochs of 2 steps, 64 samples of 3
# test questions.
DCO_TINY = [
    "base.recipe.steps=6",
    "base.recipe.eval_interval=6",
    "base.data.train_size=60",
    "data.train_size=20",
    "data.batch_size=10",
    "data.eval_interval=2",
    "trainer.max_steps=4",
    "data.val_size=4",
    "data.test_size=3",
    "task.pass_at_k=64",
    "headline=[test/pass@1,test/pass@64]",
    "logger=none",
]
# Four widths: the fewest the law L = E + A/N^alpha (three parameters) can be fitted to.
SCALING_WIDTHS = "model.n_embd=16,24,32,48"


def tiny_corpus(folder: Path) -> Path:
    """A 12 KB corpus with some structure to learn (data=text)."""
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text("".join(f"line {i}: the quick brown fox jumps {i % 7}\n" for i in range(300)))
    return corpus


def lm_sweep(folder: Path, experiment: str, *extra: str) -> list[str]:
    """`-m experiment=NAME` on the tiny corpus with the LM_TINY budget, into `folder/sweep`."""
    return [
        "-m",
        f"experiment={experiment}",
        "data=text",
        f"data.path={tiny_corpus(folder)}",
        f"paths.data_dir={folder / 'data'}",
        *LM_TINY,
        *extra,
        f"hydra.sweep.dir={folder / 'sweep'}",
    ]


def dco_sweep(folder: Path) -> list[str]:
    """experiment=dco_arith for CE and DCO N=16, seed 0, its base model cached in folder."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        "-m",
        "experiment=dco_arith",
        "+dco_loss=ce,n16",
        "seed=0",
        *DCO_TINY,
        f"hydra.sweep.dir={folder / 'sweep'}",
        f"paths.teachers={folder / 'teachers'}",
    ]


# name -> the command's arguments, given the folder it runs in
SWEEPS: dict[str, Callable[[Path], list[str]]] = {
    "lm_losses": lambda folder: lm_sweep(folder, "lm_losses", "seed=0"),
    "lm_scaling": lambda folder: lm_sweep(folder, "lm_scaling", SCALING_WIDTHS),
    "dco_arith": dco_sweep,
}


@pytest.fixture(scope="session")
def e2e_runs(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Every sweep of SWEEPS, run once: name -> (its process, its folder); the sweep is in
    folder/sweep."""
    root = tmp_path_factory.mktemp("e2e")
    folders = {name: root / name for name in SWEEPS}
    # the basic launcher, whatever the default: a job at a time inside each of the two commands
    commands = [
        Command(
            args=[*make(folders[name]), "hydra/launcher=basic"],
            cwd=folders[name],
            env={"OMP_NUM_THREADS": "1"},
        )
        for name, make in SWEEPS.items()
    ]
    procs = run_commands(commands, parallel=2, threads=1)
    return {name: (proc, folders[name]) for name, proc in zip(SWEEPS, procs, strict=True)}
