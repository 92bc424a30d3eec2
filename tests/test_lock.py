"""requirements.lock is the environment: it covers pyproject.toml, and it is what is installed.

A README number is only reproducible if a fresh clone installs the versions it was measured with;
these tests fail when the lock drifts from pyproject.toml's ranges or from the installed venv.
"""

from __future__ import annotations

import re
import subprocess
from importlib import metadata

import tomllib
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

LOCK = REPO / "requirements.lock"


def locked() -> dict[str, tuple[str, Requirement]]:
    """name -> (pinned version, the requirement line), for the lines whose markers hold here."""
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"not an exact pin: {line}"
        pins[canonicalize_name(req.name)] = (specs[0].version, req)
    return pins


def declared() -> list[Requirement]:
    """pyproject.toml's dependencies and its dev extra (what `make` installs)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + project["optional-dependencies"]["dev"]
    return [Requirement(line) for line in lines]


def test_every_declared_dependency_is_pinned_within_its_range():
    pins = locked()
    problems = []
    for req in declared():
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req.name}: not in requirements.lock")
        elif not req.specifier.contains(pins[name][0], prereleases=True):
            problems.append(f"{req.name}: locked {pins[name][0]} is outside {req.specifier}")
    assert not problems, "run `make lock`: " + "; ".join(problems)


def test_the_installed_environment_is_the_locked_one():
    env = default_environment()
    problems = []
    for name, (version, req) in locked().items():
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name}: locked {version}, not installed")
            continue
        if installed != version:
            problems.append(f"{name}: locked {version}, installed {installed}")
    assert not problems, "reinstall from the lock (rm -rf .venv; make test): " + "; ".join(problems)


def test_make_installs_from_the_lock():
    """`make run` / `make test` / CI (which calls `make test`) build the venv from the lock, and
    xent itself without resolving dependencies of its own."""
    dry = subprocess.run(
        ["make", "-n", "-B", "install"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert re.search(r"pip install .*-r requirements\.lock", dry), dry
    assert re.search(r"pip install .*--no-deps -e \.", dry), dry
    assert "'.[dev]'" not in dry
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_job_logs_of_slurm_are_not_tracked():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [path for path in tracked if re.fullmatch(r"(.*/)?slurm-\d+\.out", path)]
    for path in ("slurm-1.out", "scripts/slurm-42.out"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0, path
