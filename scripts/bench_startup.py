"""How long `xent-run` takes to start, against a bare Hydra compose and a bare torch import
(issue 8, benchmark 5).

`python scripts/bench_startup.py [--out DIR] [--quick]` writes `DIR/startup.json` and the
`startup` line of `DIR/README.md` (DIR defaults to benchmarks/).

What is timed, each candidate a fresh interpreter (`sys.executable`) started in an empty temp
dir, wall clock from just before the spawn to its exit (stdout discarded), interleaved:

- `help`: `python -m xent.runner.cli --help` (Hydra's help: composes the config, lists every group).
- `cfg_job`: `python -m xent.runner.cli --cfg job` (composes and prints the config).
- `hydra_compose` (the baseline): `python -c "<import hydra; initialize_config_module('xent.conf',
  version_base='1.3'); compose('config')>"`: the least any Hydra CLI of this config can cost.
- `import_torch`: `python -c "import torch, lightning"`: what a training run pays before it
  can do anything.
- `first_step`: the default run (`python -m xent.runner.cli`: digits, the small CNN) with
  `logger=none hydra.run.dir=<fresh temp dir>` and one extra callback added through the config
  (`+callbacks.first_step`, this module's `first_step_callback`), which stamps the wall clock
  when the first training batch starts (`on_train_batch_start`) and when its optimizer step
  has ended (`on_train_batch_end`), then ends the process. Reported: spawn -> batch start
  (`first_step.batch_start_s`) and spawn -> step end (`first_step.step_end_s`); they include
  the CLI's preflight, Hydra's job setup, torch/Lightning imports, building the parts, the
  Trainer, the data module's setup and the first batch. The candidate's own wall time (to
  the process's exit, a few ms after the step) is `median_s.first_step`.

Each figure is the median over the repetitions; ratios are between medians of this run.
Separately, `python -X importtime -m xent.runner.cli --help` (and `--cfg job`) shows which modules
those paths import: `torch_imported` records whether torch (or Lightning) was among them.

Bar: median(help) and median(cfg_job) each < 1.5x median(hydra_compose), with no torch import on
either path. A missed bar is reported (output and `"bar": {"met": false}`, with the paths'
import time and a cProfile of the slow ones under `diagnosis`), not raised.
"""

from __future__ import annotations

import json
import os
import pstats
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xent.bench_harness import bench_parser, interleaved, median, write_result

NAME = "startup"
BAR = 1.5
BASELINE = "hydra_compose"
SCRIPTS = Path(__file__).resolve().parent
STAMP_ENV = "XENT_BENCH_FIRST_STEP"

HYDRA_COMPOSE = (
    "from hydra import compose, initialize_config_module\n"
    "with initialize_config_module('xent.conf', version_base='1.3'):\n"
    "    compose('config')\n"
)
IMPORT_TORCH = "import torch, lightning"
# cProfile of one CLI invocation (argv after the script name), written as pstats to argv[1].
PROFILE_CLI = (
    "import cProfile, sys\n"
    "out, sys.argv = sys.argv[1], ['xent-run', *sys.argv[2:]]\n"
    "from xent.runner.cli import main\n"
    "profile = cProfile.Profile()\n"
    "profile.enable()\n"
    "try:\n"
    "    main()\n"
    "except SystemExit:\n"
    "    pass\n"
    "profile.disable()\n"
    "profile.dump_stats(out)\n"
)
CLI_PATHS = {"help": ["--help"], "cfg_job": ["--cfg", "job"]}


def first_step_callback(stamp_file: str) -> Any:
    """A Lightning callback (built by Hydra from `+callbacks.first_step`) that writes the wall
    clock of the first training batch's start and step end to `stamp_file`, then exits: the
    rest of the run is not what this benchmark times."""
    import lightning as L

    class FirstStep(L.Callback):
        def __init__(self) -> None:
            self.batch_start: float | None = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if self.batch_start is None:
                self.batch_start = time.time()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            step_end = time.time()
            Path(stamp_file).write_text(json.dumps([self.batch_start, step_end]))
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    return FirstStep()


def _env() -> dict[str, str]:
    """The user's environment, with this directory importable (for `first_step_callback`) and
    Hydra's own error printing left as a user gets it."""
    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SCRIPTS), env.get("PYTHONPATH")]))
    return env


def _spawn(args: list[str], cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")


def candidates(work: Path, env: dict[str, str], stamps: list[tuple[float, float]]):
    """The five subprocess candidates; `first_step` appends (batch start, step end) seconds
    after its spawn to `stamps`."""
    runs = iter(range(10**9))

    def cli(*args: str) -> Callable[[], None]:
        return lambda: _spawn(["-m", "xent.runner.cli", *args], work, env)

    def code(source: str) -> Callable[[], None]:
        return lambda: _spawn(["-c", source], work, env)

    def first_step() -> None:
        i = next(runs)
        stamp = work / f"first_step_{i}.json"
        overrides = [
            f"hydra.run.dir={work / f'run_{i}'}",
            "logger=none",
            f"+callbacks.first_step._target_={Path(__file__).stem}.first_step_callback",
            f"+callbacks.first_step.stamp_file={stamp}",
        ]
        spawned = time.time()
        _spawn(["-m", "xent.runner.cli", *overrides], work, env)
        batch_start, step_end = json.loads(stamp.read_text())
        stamps.append((batch_start - spawned, step_end - spawned))

    return {
        "help": cli(*CLI_PATHS["help"]),
        "cfg_job": cli(*CLI_PATHS["cfg_job"]),
        BASELINE: code(HYDRA_COMPOSE),
        "import_torch": code(IMPORT_TORCH),
        "first_step": first_step,
    }


def import_record(args: list[str], work: Path, env: dict[str, str]) -> dict[str, Any]:
    """What `python -X importtime -m xent.runner.cli ARGS` imports: whether torch or Lightning
    is among it, the total import time, and the costliest top-level imports."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "xent.runner.cli", *args],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    modules: list[str] = []
    top: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        _self, cumulative, name = line.split("|")
        module = name.strip()
        modules.append(module)
        if not name.startswith("  "):  # " name": imported at top level, not by another module
            top[module] = int(cumulative) / 1e6
    heavy = ("torch", "lightning", "pytorch_lightning", "torchvision")
    loaded = sorted({m.split(".")[0] for m in modules if m.split(".")[0] in heavy})
    costliest = dict(sorted(top.items(), key=lambda kv: -kv[1])[:8])
    return {
        "torch_imported": "torch" in loaded,
        "heavy_imports": loaded,
        "modules": len(modules),
        "import_s": sum(top.values()),
        "top_imports_s": costliest,
    }


def profile(args: list[str], work: Path, env: dict[str, str], top: int = 12) -> list[dict]:
    """The functions with the most cumulative time in one `xent-run ARGS` (under cProfile,
    which slows Python code ~2-3x: read the fractions)."""
    out = work / f"profile_{'_'.join(a.strip('-') for a in args)}.pstats"
    _spawn(["-c", PROFILE_CLI, str(out), *args], work, env)
    stats = pstats.Stats(str(out)).stats  # type: ignore[attr-defined]
    total = max(ct for (_cc, _nc, _tt, ct, _callers) in stats.values())
    rows = sorted(stats.items(), key=lambda kv: -kv[1][3])[:top]
    return [
        {
            "function": f"{_short(file)}:{line}({func})",
            "calls": nc,
            "cum_fraction": round(ct / total, 3),
        }
        for (file, line, func), (_cc, nc, _tt, ct, _callers) in rows
    ]


def _short(file: str) -> str:
    """A profiled function's file, relative to site-packages, src/ or the standard library."""
    stdlib = sysconfig.get_paths()["stdlib"] + os.sep
    for marker in ("site-packages/", "src/", stdlib):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def run(out: Path, quick: bool, repeats: int | None) -> dict[str, Any]:
    repeats = repeats or (1 if quick else 7)
    warmup = 0 if quick else 1
    env = _env()
    with tempfile.TemporaryDirectory(prefix="xent_bench_startup_") as tmp:
        work = Path(tmp)
        stamps: list[tuple[float, float]] = []
        times = interleaved(candidates(work, env, stamps), repeats=repeats, warmup=warmup)
        stamps = stamps[warmup:]  # the warm-up round's stamps are not reported
        imports = {name: import_record(args, work, env) for name, args in CLI_PATHS.items()}
        medians = {name: median(values) for name, values in times.items()}
        ratios = {name: medians[name] / medians[BASELINE] for name in CLI_PATHS}
        no_torch = not any(imports[name]["torch_imported"] for name in CLI_PATHS)
        met = all(ratio < BAR for ratio in ratios.values()) and no_torch
        missed = [name for name in CLI_PATHS if ratios[name] >= BAR]
        diagnosis = {name: profile(CLI_PATHS[name], work, env) for name in missed}

    first_step = {
        "batch_start_s": median([s[0] for s in stamps]),
        "step_end_s": median([s[1] for s in stamps]),
        "batch_start_all_s": [s[0] for s in stamps],
        "step_end_all_s": [s[1] for s in stamps],
    }
    result: dict[str, Any] = {
        "what": {
            "help": "python -m xent.runner.cli --help, spawn to exit",
            "cfg_job": "python -m xent.runner.cli --cfg job, spawn to exit",
            BASELINE: "python -c: import hydra, initialize_config_module('xent.conf'), "
            "compose('config'); spawn to exit",
            "import_torch": "python -c 'import torch, lightning', spawn to exit",
            "first_step": "python -m xent.runner.cli logger=none hydra.run.dir=<tmp> (default run: "
            "digits, cnn) + a callback that stamps the first training batch's start and step "
            "end, then exits; median_s.first_step is spawn to exit, first_step.* are spawn to "
            "the stamps",
        },
        "repeats": repeats,
        "warmup": warmup,
        "median_s": medians,
        "times_s": times,
        "first_step": first_step,
        "ratio_to_baseline": ratios,
        "first_step_minus_import_torch_s": first_step["batch_start_s"] - medians["import_torch"],
        "torch_imported": {name: imports[name]["torch_imported"] for name in CLI_PATHS},
        "imports": imports,
        "bar": {
            "limit": f"help and cfg_job < {BAR}x {BASELINE}, no torch import on either",
            "help_ratio": ratios["help"],
            "cfg_job_ratio": ratios["cfg_job"],
            "no_torch_import": no_torch,
            "met": met,
        },
    }
    if diagnosis:
        result["diagnosis"] = {
            "note": "cProfile (cumulative, fraction of the whole run) of each path over the bar",
            **diagnosis,
        }
    report(result)
    summary = (
        f"`--help` {medians['help']:.2f} s ({ratios['help']:.2f}x), `--cfg job` "
        f"{medians['cfg_job']:.2f} s ({ratios['cfg_job']:.2f}x) vs hydra+compose "
        f"{medians[BASELINE]:.2f} s, {'no ' if no_torch else ''}torch import "
        f"(bar < {BAR}x: {'met' if met else 'missed'}); first training step at "
        f"{first_step['batch_start_s']:.1f} s vs `import torch, lightning` "
        f"{medians['import_torch']:.1f} s"
    )
    write_result(NAME, result, summary, out_dir=out)
    return result


def report(result: dict[str, Any]) -> None:
    """The table on the terminal."""
    medians, ratios = result["median_s"], result["ratio_to_baseline"]
    print(f"startup: median of {result['repeats']} interleaved repetitions")
    print(f"  {'candidate':<16} {'median s':>9} {'x baseline':>11}")
    for name, value in medians.items():
        ratio = f"{value / medians[BASELINE]:.2f}"
        print(f"  {name:<16} {value:>9.3f} {ratio:>11}")
    step = result["first_step"]
    print(
        f"  first training batch starts {step['batch_start_s']:.2f} s after the spawn, its "
        f"step ends at {step['step_end_s']:.2f} s"
    )
    for name, imports in result["imports"].items():
        heavy = ", ".join(imports["heavy_imports"]) or "none"
        print(
            f"  {name}: {imports['modules']} modules imported in {imports['import_s']:.3f} s; "
            f"torch/lightning: {heavy}"
        )
    bar = result["bar"]
    verdict = "bar met" if bar["met"] else "bar missed"
    print(
        f"  {verdict}: help {ratios['help']:.2f}x, cfg_job {ratios['cfg_job']:.2f}x "
        f"(< {BAR}x), torch import: {'no' if bar['no_torch_import'] else 'YES'}"
    )
    for name, rows in result.get("diagnosis", {}).items():
        if name == "note":
            continue
        print(f"  where {name} spends its time (cProfile, cumulative fraction):")
        for row in rows:
            print(f"    {row['cum_fraction']:6.1%} {row['calls']:>6}x {row['function']}")


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "one repetition, no warm-up")
    parser.add_argument("--repeats", type=int, default=None, help="override the repetitions")
    args = parser.parse_args(argv)
    run(args.out, args.quick, args.repeats)


if __name__ == "__main__":
    main()
