"""Every command the README shows runs as written, after the Quickstart's two commands.

The commands are read from README.md itself, so an example that breaks, or a new one that does
not run, breaks the suite. Each runs with a tiny budget appended (one epoch, one seed of an
experiment's seed axis, a one-epoch teacher or source, 32 images per domain of a TTA stream, two
Optuna trials) and must exit 0; the ones that need what this machine lacks (CIFAR files, a GPU,
SLURM) must fail in the one line the README documents for them. The `$ xent-run ...` lines of
the "Bad input" section must print the line shown under them.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cli_batch import Command, run_commands
from tests.conftest import REPO
from xent.runner.command_line import with_task_defaults

README = REPO / "README.md"
ENTRY_POINTS = {
    "xent-run": "import xent.runner.cli\nxent.runner.cli.main()\n",
    "xent-report": "import xent.runner.report\nxent.runner.report.main()\n",
    "xent-corrupt": "import xent.runner.corrupt_cli\nxent.runner.corrupt_cli.main()\n",
}
# Lines with a placeholder a reader fills in; each is covered by the test named beside it.
TEMPLATES = {
    "python scripts/plot_sweep_axis.py <sweep dir> loss.eps --metric best/val_w2 --metric test/w2 "
    "--metric test/npe": "tests/test_plot_sweep_axis.py",
    "python scripts/parity_nanogpt.py --nanogpt <nanoGPT checkout> --threads 1": (
        "tests/test_parity_nanogpt.py"
    ),
}
# What a command needs that this machine lacks, and the start of the one line it fails with then
# (in the order the preflight checks them).
FASHION_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"  # `make data` installs it (as root)
NEEDS = {
    "trainer=gpu": "xent-run: error: trainer.accelerator=gpu (trainer=gpu): no CUDA device is ",
    "data=cifar100": "xent-run: error: cifar100: train, test, meta not found under ",
    "data=cifar10_c": "xent-run: error: ",
    "data=cifar10 ": "xent-run: error: cifar10: ",
    "hydra/launcher=slurm": "xent-run: error: hydra/launcher=slurm needs SLURM's sbatch on PATH",
    "teacher.ckpt=/path/to/teacher.ckpt": "xent-run: error: teacher.ckpt=/path/to/teacher.ckpt",
}


@dataclass
class ReadmeCommand:
    """One shell line of a README code block: its environment, program and arguments."""

    line: str
    block: int
    env: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)
    expected_output: str | None = None  # the line the README prints under a `$ ` command

    @property
    def program(self) -> str:
        return self.argv[0]


def _shell_lines(block: str) -> list[str]:
    """The block's lines with continuations joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = []
    for raw in joined.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line:
            lines.append(line)
    return lines


def _parse(line: str, block: int, expected: str | None = None) -> ReadmeCommand | None:
    words = shlex.split(line)
    env = {}
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    if not words:
        return None
    script = words[0] == "python" and len(words) > 1 and words[1].startswith("scripts/")
    if words[0] not in ENTRY_POINTS and not script:
        return None
    return ReadmeCommand(line, block, env, words, expected)


def readme_commands(text: str | None = None) -> list[ReadmeCommand]:
    """Every xent-run / xent-report / xent-corrupt / scripts command in the README's code blocks,
    in order; `$ ` lines carry the output line the README shows under them."""
    text = README.read_text() if text is None else text
    commands: list[ReadmeCommand] = []
    for number, match in enumerate(re.finditer(r"```(\w*)\n(.*?)```", text, re.S)):
        lang, body = match.groups()
        if lang == "bash":
            for line in _shell_lines(body):
                if (command := _parse(line, number)) is not None:
                    commands.append(command)
        elif lang == "":
            lines = body.splitlines()
            for i, line in enumerate(lines):
                if line.startswith("$ "):
                    expected = lines[i + 1] if i + 1 < len(lines) else None
                    shell = line[2:].split(" #", 1)[0].strip()
                    if (command := _parse(shell, number, expected)) is not None:
                        commands.append(command)
    return commands


def _is_template(command: ReadmeCommand) -> bool:
    return bool(re.search(r"<[^>]+>", command.line))


def _needs(command: ReadmeCommand) -> str | None:
    """The documented failure line's start for a command that needs what is missing here."""
    import torch

    padded = command.line + " "
    if "fashion" in command.line and not Path(FASHION_SYSTEM_DIR).is_dir():
        # No Debian package (and no network): the run says how to get the data, and the
        # report of its sweep finds no job.
        if command.program == "xent-report":
            return "xent-report: error: no job dirs"
        return "xent-run: error: fashion_mnist: "
    for need, line in NEEDS.items():
        if need == "trainer=gpu" and torch.cuda.is_available():
            continue  # checked before the data: where a GPU is, the data line comes instead
        if need in padded:
            return line
    return None


def _first_of_sweep(override: str) -> str:
    """`seed=0,1,2` as its first job sees it (compose takes one value, not a sweep)."""
    key, _, value = override.partition("=")
    if "," in value and not value.startswith(("[", "{", "'", '"')):
        return f"{key}={value.split(',')[0]}"
    return override


def _compose(argv: list[str]):
    """The config the command would run (Hydra's compose, nothing written; `task=lm` picks its
    groups as the CLI does)."""
    from hydra import compose, initialize_config_module

    overrides = [_first_of_sweep(a) for a in with_task_defaults(argv) if not a.startswith("-")]
    with initialize_config_module("xent.conf", version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


TINY_SPLIT = 2000  # images a capped dataset keeps per split under the tiny budget
TINY_STEPS = 50  # optimizer steps of a task=lm run under the tiny budget


def tiny_budget(argv: list[str]) -> list[str]:
    """Overrides that make the command's run(s) take seconds without changing what they run:
    one epoch (task=lm: 50 steps), the first seed of an experiment's seed axis, a one-epoch
    teacher or source model (task=lm's base model: 50 steps), 32 images per domain of a
    corruption stream (and of task=calibrate's shifted sets), at most 2,000 training and test
    images where the dataset takes a cap, two Optuna trials. Only keys the composed config has
    are added."""
    if argv[0] != "xent-run":
        return []
    args = argv[1:]
    cfg = _compose(args)
    given = {a.split("=", 1)[0] for a in args}
    extra = ["trainer.max_epochs=1"] if "trainer" in cfg else []
    if "teacher" in cfg and "recipe" in cfg.teacher:
        extra.append("teacher.recipe.epochs=1")
    if "source" in cfg and "recipe" in cfg.source:
        extra.append("source.recipe.epochs=1")
    if "base" in cfg and "recipe" in cfg.base:  # task=lm's base model: 50 steps, validated once
        extra += [f"base.recipe.steps={TINY_STEPS}", f"base.recipe.eval_interval={TINY_STEPS}"]
    for split in ("train_size", "test_size"):
        size = cfg.get("data", {}).get(split, 0)
        if size is None or size > TINY_SPLIT:
            extra.append(f"data.{split}={TINY_SPLIT}")
    if "n_per_domain" in cfg.get("data", {}) and "data.n_per_domain" not in given:
        extra.append("data.n_per_domain=32")
    if "shift_samples" in cfg.get("task", {}) and "task.shift_samples" not in given:
        extra.append("task.shift_samples=32")  # task=calibrate's shifted test sets
    if "eval_interval" in cfg.get("data", {}):  # task=lm counts steps: 50, validated at the end
        extra += [f"data.eval_interval={TINY_STEPS}", f"trainer.max_steps={TINY_STEPS}"]
    if (cfg.get("trainer", {}).get("check_val_every_n_epoch") or 1) > 1:
        extra.append("trainer.check_val_every_n_epoch=1")  # the one epoch is validated too
    sweeper = cfg.hydra.sweeper
    if "n_trials" in sweeper:
        extra.append("hydra.sweeper.n_trials=2")
    params = sweeper.get("params") or {}
    if "seed" in params and "seed" not in given:
        extra.append(f"seed={str(params.seed).split(',')[0]}")
    return extra


def _batch_command(command: ReadmeCommand, cwd: Path) -> Command:
    env = dict(command.env)
    args = command.argv[1:]
    if command.program in ENTRY_POINTS:
        entry = ENTRY_POINTS[command.program]
        if command.expected_output is None and _needs(command) is None:
            args = [*args, *tiny_budget(command.argv)]  # the failing ones run exactly as shown
    else:  # python scripts/NAME.py ...: run the script as `python` would
        script = REPO / command.argv[1]
        entry = f"import runpy\nrunpy.run_path({str(script)!r}, run_name='__main__')\n"
        args = command.argv[2:]
    if "hydra/launcher=slurm" in command.line:
        # A machine without SLURM: no sbatch on PATH (CI installs slurm-wlm for test_slurm.py).
        env["PATH"] = str(Path(sys.executable).parent)
    return Command(args, cwd=cwd, env=env, entry=entry)


def test_readme_commands_are_found():
    """The parser sees the README as a reader does: the Quickstart's neighbours, the sweeps, a
    continued line, an env prefix and the Bad input examples with their output lines."""
    commands = readme_commands()
    lines = [c.line for c in commands]
    assert "xent-run -m loss=ce,sce seed=0,1,2 headline=[test/acc,test/ece]" in lines
    slurm = next(c for c in commands if "hydra/launcher=slurm" in c.line)
    assert slurm.argv[-1] == "hydra.launcher.array_parallelism=8"
    wandb = next(c for c in commands if "WANDB_MODE" in c.env)
    assert wandb.env == {"WANDB_MODE": "offline"} and wandb.program == "xent-run"
    one_thread = next(c for c in commands if "OMP_NUM_THREADS" in c.env)
    assert one_thread.env == {"OMP_NUM_THREADS": "1"} and one_thread.program == "xent-run"
    shown = [c for c in commands if c.expected_output]
    assert {"xent-run loss=nope", "xent-run los=sce"} <= {c.line for c in shown}
    assert all(c.expected_output.startswith("xent-run: error: ") for c in shown)
    assert len(commands) >= 30


def test_parser_reads_a_small_readme():
    text = (
        "intro\n```bash\nmake run\nxent-run a=1   # why\n# a comment\nX_Y=2 xent-report d \\\n"
        "    --metric m\npython scripts/s.py d k\npip install x\n```\n"
        "```\n$ xent-run bad   # why\nxent-run: error: bad\n```\n"
    )
    commands = readme_commands(text)
    assert [(c.env, c.argv, c.expected_output) for c in commands] == [
        ({}, ["xent-run", "a=1"], None),
        ({"X_Y": "2"}, ["xent-report", "d", "--metric", "m"], None),
        ({}, ["python", "scripts/s.py", "d", "k"], None),
        ({}, ["xent-run", "bad"], "xent-run: error: bad"),
    ]


def test_templates_are_known():
    """A line with a <placeholder> cannot run as written: each one is listed with its test."""
    templates = {c.line for c in readme_commands() if _is_template(c)}
    assert templates == set(TEMPLATES)
    assert all((REPO / test).is_file() for test in TEMPLATES.values())


def test_tiny_budget_only_adds_keys_the_config_has():
    assert tiny_budget(["xent-run", "-m", "experiment=noisy_labels_digits"]) == [
        "trainer.max_epochs=1",
        "seed=0",
    ]
    assert tiny_budget(["xent-run", "-m", "hparams_search=pld_tau"]) == [
        "trainer.max_epochs=1",
        "teacher.recipe.epochs=1",
        "hydra.sweeper.n_trials=2",
    ]
    assert tiny_budget(["xent-run", "tta=rmt"]) == [
        "trainer.max_epochs=1",
        "source.recipe.epochs=1",
        "data.n_per_domain=32",
    ]
    assert tiny_budget(["xent-run", "-m", "experiment=noisy_labels_fashion"]) == [
        "trainer.max_epochs=1",
        "data.train_size=2000",
        "data.test_size=2000",
        "seed=0",
    ]
    assert tiny_budget(["xent-run", "task=lm", "model=gpt_nano"]) == [
        "trainer.max_epochs=1",
        "data.eval_interval=50",
        "trainer.max_steps=50",
    ]
    assert tiny_budget(["xent-run", "-m", "experiment=dco_arith"]) == [
        "trainer.max_epochs=1",
        "base.recipe.steps=50",
        "base.recipe.eval_interval=50",
        "data.eval_interval=50",
        "trainer.max_steps=50",
        "seed=0",
    ]
    assert tiny_budget(["xent-report", "outputs/x"]) == []


def _expected_line(command: ReadmeCommand, cwd: Path) -> re.Pattern:
    """The README's output line as a pattern: `...` stands for anything, and the example's home
    (/home/me/xent) for the directory the command runs in."""
    shown = command.expected_output.replace("/home/me/xent", str(cwd))
    parts = [re.escape(part) for part in shown.split("...")]
    return re.compile(".*".join(parts))


@pytest.mark.slow
def test_every_readme_command_runs_as_written(tmp_path):
    """Each README code block runs in a fresh directory of its own (a block's commands in order,
    so `xent-report outputs/x` reads the sweep the line above wrote)."""
    runnable = [c for c in readme_commands() if not _is_template(c)]
    commands = []
    for command in runnable:
        cwd = tmp_path / f"block{command.block}"
        cwd.mkdir(exist_ok=True)
        commands.append(_batch_command(command, cwd))
    # Blocks run side by side; the commands of one block must run in order: one batch per rank.
    procs = _run_blocks_in_order(commands)
    failures = []
    for command, batch, proc in zip(runnable, commands, procs, strict=True):
        problem = _check(command, batch.cwd, proc)
        if problem:
            failures.append(f"{command.line}\n    -> {problem}")
    assert not failures, "README commands that do not run as written:\n" + "\n".join(failures)


def _run_blocks_in_order(commands: list[Command]) -> list:
    """Run the i-th command of every block together, then the (i+1)-th: blocks in parallel, each
    block's commands in order."""
    by_block: dict[Path, list[int]] = {}
    for index, command in enumerate(commands):
        by_block.setdefault(command.cwd, []).append(index)
    results: dict[int, object] = {}
    rank = 0
    while True:
        wave = [indices[rank] for indices in by_block.values() if rank < len(indices)]
        if not wave:
            break
        # A wave holds one command per block (20 and more): its time limit grows with it.
        timeout = max(900, 150 * len(wave))
        batch = run_commands([commands[i] for i in wave], timeout=timeout)
        for index, proc in zip(wave, batch, strict=True):
            results[index] = proc
        rank += 1
    return [results[i] for i in range(len(commands))]


def _check(command: ReadmeCommand, cwd: Path, proc) -> str | None:
    """What is wrong with how the command ended, or None."""
    stderr = proc.stderr.strip().splitlines()
    if command.expected_output is not None:
        pattern = _expected_line(command, cwd)
        if proc.returncode != 2 or len(stderr) != 1 or not pattern.fullmatch(stderr[0]):
            return f"exit {proc.returncode}, stderr {stderr!r}; README shows {pattern.pattern!r}"
        return None
    need = _needs(command)
    if need is not None:
        if proc.returncode != 2 or len(stderr) != 1 or not stderr[0].startswith(need):
            return f"exit {proc.returncode}, stderr {stderr!r}; expected one line {need!r}..."
        return None
    if proc.returncode != 0 or stderr:
        return f"exit {proc.returncode}, stderr {stderr[-3:]!r}"
    return None


def test_the_groups_table_names_every_option_of_its_groups():
    """README "Choosing the pieces": each group's row names all its config files (a `for_<data>`
    pattern covers the per-data-set ones), so a new option cannot ship unlisted."""
    import re

    section = README.read_text().split("## Choosing the pieces")[1].split("\n## ")[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| `")]
    assert len(rows) >= 10
    conf = REPO / "src" / "xent" / "conf"
    for group_cell, options_cell, *_ in rows:
        group = group_cell.strip("| `")
        named = set(re.findall(r"`([^`]+)`", options_cell))
        for path in (conf / group).glob("*.yaml"):
            if path.stem.startswith("for_") and "for_<data>" in named:
                continue
            assert path.stem in named, f"{group}={path.stem} is missing from the README's table"
