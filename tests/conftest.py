"""Shared fixtures: tiny datasets in their real on-disk formats, and a CLI runner."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xent  # noqa: F401  (first: caps torch's CPU kernels before a test runs a torch op)

# The fast tier's lm sweeps, run together once a session (fixture `e2e_runs`).
pytest_plugins = ["tests.e2e_runs"]

REPO = Path(__file__).resolve().parents[1]


def write_cifar(
    root: Path, variant: str, n_train: int = 50, n_test: int = 20, seed: int = 0
) -> Path:
    """Write a tiny CIFAR-10/100 in torchvision's python-pickle layout (the real format).

    The originals are Python 2 pickles whose keys read as str under torchvision's
    encoding="latin1"; str keys here give the same dict. Images are class-coloured so a model
    can learn them; checksums cannot match the real files, which is why tests that decode
    these patch torchvision's md5 check.
    """
    rng = np.random.default_rng(seed)
    classes = 10 if variant == "cifar10" else 100
    label_key = "labels" if variant == "cifar10" else "fine_labels"

    def batch(n: int) -> dict:
        labels = rng.integers(0, classes, n)
        labels[:classes] = np.arange(min(n, classes))
        images = (labels[:, None] * 7 % 256 + rng.integers(0, 30, (n, 3072))).astype(np.uint8)
        out = {"data": images, label_key: labels.tolist(), "filenames": ["x"] * n}
        if variant == "cifar100":
            out["coarse_labels"] = (labels // 5).tolist()
        return out

    if variant == "cifar10":
        folder = root / "cifar-10-batches-py"
        files = {f"data_batch_{i}": batch(n_train // 5) for i in range(1, 6)}
        files["test_batch"] = batch(n_test)
        files["batches.meta"] = {"label_names": [f"c{i}" for i in range(10)]}
    else:
        folder = root / "cifar-100-python"
        files = {"train": batch(n_train), "test": batch(n_test)}
        files["meta"] = {"fine_label_names": [f"c{i}" for i in range(100)]}
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        with open(folder / name, "wb") as handle:
            pickle.dump(content, handle, protocol=2)
    return folder


def task_overrides_for(loss: str) -> list[str]:
    """The overrides that put a loss config on the task it is made for: regression losses on
    diabetes, binary-only losses on breast cancer, distillation losses with a one-epoch
    teacher, flow-matching losses (whose config selects task=flow, data=toy2d and the
    velocity net) with the flow recipe's optimizer, the rest on the default (digits)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from xent.flow import FlowMatchingLoss

    conf = REPO / "src" / "xent" / "conf" / "loss" / f"{loss}.yaml"
    node = OmegaConf.load(conf)
    node.pop("defaults", None)  # a defaults list is Hydra's, not the loss's
    built = instantiate(node)
    if isinstance(built, FlowMatchingLoss):
        return ["optim=adamw", "sched=none"]
    if getattr(built, "target_kind", "class") == "real":
        return ["task=regress", "data=diabetes", "model=mlp"]
    if "binary_target" in getattr(built, "requires", ()):
        return ["data=breast_cancer", "model=mlp"]
    if "teacher_logits" in getattr(built, "requires", ()):
        return ["teacher.recipe.epochs=1"]  # its config selects task=distill; a quick teacher
    return []


def composed(tmp_path: Path, *overrides: str):
    """The config `xent-run OVERRIDES` would run, with its run dir under tmp_path."""
    from hydra import compose, initialize_config_module
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with initialize_config_module("xent.conf", version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path / "run")
        cfg.hydra.runtime.cwd = str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # a Hydra job sees its config without the hydra node
    return cfg


@pytest.fixture
def skip_cifar_checksum(monkeypatch):
    """torchvision verifies md5s of the real CIFAR files; tiny test files cannot match them."""
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


def xent_run(*overrides: str, cwd: Path, env: dict | None = None, timeout: int = 300):
    """Run the installed CLI in a subprocess, as a user would."""
    from tests.cli_batch import base_env

    full_env = {**base_env(), **(env or {})}
    cmd = [sys.executable, "-m", "xent.runner.cli", *overrides]
    return subprocess.run(
        cmd,
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=default_sigint,
    )


def default_sigint() -> None:
    """SIGINT as a terminal's Ctrl-C finds it: a suite started in the background (`cmd &` in a
    script, nohup) runs with SIGINT ignored, which its children would inherit, and a child
    Python keeps an ignored SIGINT ignored: the Ctrl-C tests would then never see one."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_bad_commands(root: Path, bad: dict[str, tuple[list[str], str]]) -> dict[str, tuple]:
    """Run every bad command of `bad` (name -> (overrides, expected message)) through the CLI
    (`tests.cli_batch`: a process each, the libraries imported once): name -> (process, its
    would-be run dir)."""
    from tests.cli_batch import Command, run_commands

    run_dirs = {name: root / f"run{i}" for i, name in enumerate(bad)}
    commands = [
        Command([*overrides, f"hydra.run.dir={run_dirs[name]}"], cwd=root)
        for name, (overrides, _) in bad.items()
    ]
    procs = run_commands(commands)
    return {name: (proc, run_dirs[name]) for name, proc in zip(bad, procs, strict=True)}


def assert_one_line_error(proc, run_dir: Path, message: str) -> None:
    """Exit 2, exactly one `xent-run: error:` line on stderr containing `message`, and no run
    dir: the bad input was caught before anything was written."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("xent-run: error: "), proc.stderr
    assert message in lines[0], lines[0]
    assert not run_dir.exists()


# --- the tier's time, printed at its end ---------------------------------------------------------
# `make test-fast` (-m "not slow") must stay within FAST_TIER_BUDGET_S on a quiet 2-core machine;
# the line under the results says how long this tier took against that budget.
FAST_TIER_BUDGET_S = 120
_SESSION_STARTED: list[float] = []


def pytest_sessionstart(session) -> None:
    import time

    _SESSION_STARTED.append(time.perf_counter())


def tier_line(markexpr: str, seconds: float, tests: int, whole: bool = True) -> str:
    """`fast tier: 1097 tests in 87 s (budget 120 s on a quiet 2-core machine)`, or the full
    suite's line; the tier is read from the `-m` expression pytest ran with, and `whole` says
    whether it ran the whole tests/ folder (not some files or tests of it)."""
    if not whole:
        return f"selected tests: {tests} in {seconds:.0f} s"
    if markexpr.replace(" ", "") == "notslow":
        return (
            f"fast tier: {tests} tests in {seconds:.0f} s (budget {FAST_TIER_BUDGET_S} s on a "
            "quiet 2-core machine)"
        )
    tier = "full suite" if not markexpr else f"tests selected by -m {markexpr!r}"
    return f"{tier}: {tests} tests in {seconds:.0f} s"


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    import time

    if not _SESSION_STARTED:
        return
    seconds = time.perf_counter() - _SESSION_STARTED[0]
    counted = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
    tests = sum(len(terminalreporter.stats.get(key, [])) for key in counted)
    whole = not config.args or [Path(a).resolve() for a in config.args] == [Path(__file__).parent]
    terminalreporter.write_line(tier_line(config.option.markexpr or "", seconds, tests, whole))


def run_main(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """`xent-report ARGS` in-process (so mutants are seen): its exit code, stdout and stderr.
    argv[0] is what `python -m xent.runner.report` sets; the messages still say xent-report."""
    from xent.runner import report

    monkeypatch.setattr(sys, "argv", [report.__file__, *map(str, args)])
    with pytest.raises(SystemExit) as info:
        report.main()
    out, err = capsys.readouterr()
    return info.value.code, out, err
