"""Many `python -m xent.runner.cli` commands from one interpreter that imported the libraries once.

Each command still runs in a process of its own (a fork of the server, with its own argv,
environment, working directory, stdout and stderr), so it sees what a fresh
`python -m xent.runner.cli` would; what it saves is the ~3 s import of torch and Lightning per
command, which is most of a bad command's time. The server imports modules but runs no torch op
before forking: forking a process whose thread pools have started is not safe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# Runs in the server: read the jobs, import what every command imports, fork `parallel`
# (argv[1]) at a time.
_SERVER = r"""
import json, os, sys, traceback
jobs = json.load(sys.stdin)
import torch, torchvision, lightning.pytorch, hydra, omegaconf  # noqa: F401
import xent.runner.cli, xent.runner.run, xent.runner.preflight  # noqa: F401

def child(job):
    code = 1
    try:
        os.chdir(job["cwd"])
        os.environ.clear()
        os.environ.update(job["env"])
        sys.path[:0] = [p for p in job["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
        for fd, path in ((1, job["stdout"]), (2, job["stderr"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
        sys.argv = [xent.runner.cli.__file__, *job["args"]]
        try:
            exec(job["entry"], {"__name__": "__batch__"})
            code = 0
        except SystemExit as stop:
            if stop.code is None or isinstance(stop.code, int):
                code = stop.code or 0
            else:
                print(stop.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)

codes, running, queue = {}, {}, list(enumerate(jobs))
while queue or running:
    while queue and len(running) < int(sys.argv[1]):
        index, job = queue.pop(0)
        pid = os.fork()
        if pid == 0:
            child(job)
        running[pid] = index
    pid, status = os.waitpid(-1, 0)
    codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
print(json.dumps([codes[i] for i in range(len(jobs))]))
"""

# What `python -m xent.runner.cli` runs. Not runpy: the server has xent.runner.cli imported
# already, and runpy would warn on stderr about re-running it.
CLI_ENTRY = "import xent.runner.cli\nxent.runner.cli.main()\n"


@dataclass
class Command:
    """One CLI command: its arguments, working directory and environment changes. `entry` is
    the Python that runs it in the child (default: what `python -m xent.runner.cli` runs)."""

    args: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    entry: str = CLI_ENTRY


def base_env() -> dict[str, str]:
    """A command's environment: this one, W&B offline and quiet, Hydra's own error printing."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def run_commands(
    commands: list[Command], parallel: int = 2, timeout: int = 900, threads: int | None = None
) -> list[subprocess.CompletedProcess]:
    """Run every command (`parallel` at a time, in order) and return what each printed and its
    exit status (negative: the signal that ended it, as `subprocess` reports it). `threads`
    caps torch's threads in every command (the server imports torch, so a command's own
    OMP_NUM_THREADS comes too late): one per command where `parallel` fills the cores."""
    if not commands:
        return []
    with tempfile.TemporaryDirectory(prefix="xent-cli-batch-") as scratch:
        jobs = []
        for i, command in enumerate(commands):
            jobs.append(
                {
                    "args": [str(a) for a in command.args],
                    "cwd": str(command.cwd),
                    "env": {**base_env(), **command.env},
                    "entry": command.entry,
                    "stdout": f"{scratch}/{i}.out",
                    "stderr": f"{scratch}/{i}.err",
                }
            )
        server_env = None if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads)}
        server = subprocess.run(
            [sys.executable, "-c", _SERVER, str(parallel)],
            env=server_env,
            input=json.dumps(jobs),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if server.returncode != 0:
            raise RuntimeError(f"the CLI batch server failed:\n{server.stderr[-3000:]}")
        codes = json.loads(server.stdout.strip().splitlines()[-1])
        return [
            subprocess.CompletedProcess(
                ["xent-run", *job["args"]],
                code,
                Path(job["stdout"]).read_text(),
                Path(job["stderr"]).read_text(),
            )
            for job, code in zip(jobs, codes, strict=True)
        ]
