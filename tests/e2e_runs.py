"""The fast tier's end-to-end runs of the lm experiments and task=calibrate, run once a session.

Issue 17 keeps `make test-fast` within 2 minutes with a tiny end-to-end run of each task there,
and issue 19 wants one of each lm experiment. Each alone is a `python -m xent.runner.cli` of
10-15 s, most of it importing torch and Lightning and running jobs one after another. Here
they are forked from one interpreter that imported the libraries once (`tests.cli_batch`), two
at a time with one thread each, so the two cores each run one. Each test reads its own run's
result from the session fixture `e2e_runs`; the slow tier keeps fuller versions of the sweeps.
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


def calibrate_run(folder: Path) -> list[str]:
    """task=calibrate on digits32: a 1-epoch MLP source trained into the cache, calibrated by
    temperature scaling, tested on the clean split and a 20-image stand-in of each corruption."""
    from tests.test_calibrate_shifts import write_small_digits32_c

    write_small_digits32_c(folder / "data")
    return [
        "task=calibrate", "data=digits32", "model=mlp", "source.recipe.epochs=1",
        f"paths.teachers={folder / 'teachers'}", f"paths.data_dir={folder / 'data'}",
        f"hydra.run.dir={folder / 'run'}",
    ]  # fmt: skip


# name -> the command's arguments, given the folder it runs in; the longest first
SWEEPS: dict[str, Callable[[Path], list[str]]] = {
    "dco_arith": dco_sweep,
    "lm_losses": lambda folder: lm_sweep(folder, "lm_losses", "seed=0"),
    "lm_scaling": lambda folder: lm_sweep(folder, "lm_scaling", SCALING_WIDTHS),
    "calibrate": calibrate_run,
}


SWEEP_NAMES = {"dco_arith", "lm_losses", "lm_scaling"}  # multiruns: they take a launcher


@pytest.fixture(scope="session")
def e2e_runs(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Every sweep of SWEEPS, run once: name -> (its process, its folder); the sweep is in
    folder/sweep."""
    root = tmp_path_factory.mktemp("e2e")
    folders = {name: root / name for name in SWEEPS}
    # the basic launcher, whatever the default: a job at a time inside each of the two commands
    commands = [
        Command(
            args=[*make(folders[name]), *(["hydra/launcher=basic"] if name in SWEEP_NAMES else [])],
            cwd=folders[name],
            env={"OMP_NUM_THREADS": "1"},
        )
        for name, make in SWEEPS.items()
    ]
    procs = run_commands(commands, parallel=2, threads=1)
    return {name: (proc, folders[name]) for name, proc in zip(SWEEPS, procs, strict=True)}
