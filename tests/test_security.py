"""Issue 9, security: checkpoints are data, not code, and the runner's configs only name code in
xent and the libraries it is built on."""

from __future__ import annotations

import ast
import builtins
import contextlib
import json
import pickle
import re
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from tests.conftest import REPO, composed, run_bad_commands
from xent.checkpoint_io import (
    AtomicCheckpointIO,
    CorruptCheckpointError,
    UnsafeCheckpointError,
    load_weights_only,
)
from xent.pretrained import WEIGHTS_FILE, cache_dir

CONF = REPO / "src" / "xent" / "conf"
# Where a `_target_` of the runner's own configs may point. The one Hydra plugin target is xent's
# own launcher (hydra/launcher=cores: Hydra takes launchers only from the hydra_plugins
# namespace); the other launchers and sweepers are chosen through Hydra's defaults lists, and
# their `_target_`s live in the plugins' own packages.
TRUSTED_TARGETS = (
    "xent.",
    "hydra_plugins.xent_cores.",
    "torch.",
    "torchvision.",
    "lightning.",
    "torchmetrics.",
)


class CreatesFile:
    """Unpickling this creates `marker`: a stand-in for any code a crafted checkpoint runs."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def crafted_checkpoint(path: Path, marker: Path, zip_format: bool = True) -> Path:
    """A file that looks like a Lightning checkpoint; loading it unsafely creates `marker`."""
    payload = {"epoch": 0, "global_step": 0, "state_dict": {}, "hooks": CreatesFile(marker)}
    path.parent.mkdir(parents=True, exist_ok=True)
    if zip_format:
        torch.save(payload, path)
    else:  # the legacy (pre-1.6) format: a bare pickle stream
        with open(path, "wb") as handle:
            pickle.dump(payload, handle, protocol=2)
    return path


@pytest.mark.parametrize("zip_format", [True, False])
def test_the_crafted_checkpoint_is_live_but_refused(tmp_path, monkeypatch, zip_format):
    armed = crafted_checkpoint(tmp_path / "armed.ckpt", tmp_path / "proof", zip_format)
    # What an unsafe loader does: the code runs (a bare pickle then fails torch's format check,
    # too late).
    with contextlib.suppress(RuntimeError):
        torch.load(armed, weights_only=False)
    assert (tmp_path / "proof").exists()

    marker = tmp_path / "marker"
    evil = crafted_checkpoint(tmp_path / "evil.ckpt", marker, zip_format)
    # Neither a caller's weights_only=False nor the environment's override turns the check off.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(UnsafeCheckpointError, match="is not a weights-only checkpoint; refused"):
        AtomicCheckpointIO().load_checkpoint(str(evil), weights_only=False)
    with pytest.raises(pickle.UnpicklingError, match=r"it would import (builtins|io)\.open"):
        load_weights_only(evil)
    assert not marker.exists()


@pytest.mark.parametrize("zip_format", [True, False])
@pytest.mark.parametrize("keep", [0, 1, 10, 0.5, -1])
def test_a_cut_checkpoint_is_called_corrupt_not_unsafe(tmp_path, zip_format, keep):
    """A copy that stopped (an empty file, a few bytes, half, all but the last byte) is
    reported as damaged, with its path and size: "unsafe" would send the user the wrong way."""
    whole = tmp_path / "whole.ckpt"
    torch.save({"state_dict": {"w": torch.ones(64, 64)}}, whole, **_format(zip_format))
    data = whole.read_bytes()
    size = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[:size])
    with pytest.raises(CorruptCheckpointError) as err:
        load_weights_only(cut)
    assert str(err.value) == (
        f"{cut} is corrupt or truncated ({size:,} bytes), not a whole checkpoint; "
        "save or copy it again"
    )
    assert load_weights_only(whole)["state_dict"]["w"].sum() == 64 * 64


def test_a_cut_crafted_checkpoint_runs_nothing(tmp_path):
    """Cut or whole, a crafted pickle's code never runs."""
    marker = tmp_path / "marker"
    data = crafted_checkpoint(tmp_path / "evil.ckpt", marker, zip_format=False).read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(pickle.UnpicklingError):
        load_weights_only(cut)
    assert not marker.exists()


def _format(zip_format: bool) -> dict:
    return {} if zip_format else {"_use_new_zipfile_serialization": False}


def _torch_load_calls(root: Path):
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = ast.unparse(func)
            if name in ("torch.load", "load") or name.endswith(".torch.load"):
                if name == "load" and not _imports_torch_load(path):
                    continue
                yield path, node


def _imports_torch_load(path: Path) -> bool:
    return "from torch import load" in path.read_text()


def test_every_torch_load_in_src_and_scripts_is_weights_only():
    calls = [c for root in ("src", "scripts") for c in _torch_load_calls(REPO / root)]
    assert calls, "no torch.load calls found: the scan is broken"
    for path, node in calls:
        keywords = {k.arg: k.value for k in node.keywords}
        where = f"{path.relative_to(REPO)}:{node.lineno}"
        assert "weights_only" in keywords, f"{where}: torch.load without weights_only=True"
        value = keywords["weights_only"]
        assert isinstance(value, ast.Constant) and value.value is True, where
    # The other unpicklers have no place in the runner either.
    for root in ("src", "scripts"):
        for path in sorted((REPO / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call):
                    name = ast.unparse(node.func)
                    where = f"{path.relative_to(REPO)}:{node.lineno}"
                    assert name not in ("pickle.load", "pickle.loads", "yaml.load"), where
                    assert name not in ("yaml.unsafe_load", "dill.load", "joblib.load"), where
                    if name in ("np.load", "numpy.load"):
                        pickles = {k.arg: k.value for k in node.keywords}.get("allow_pickle")
                        assert pickles is None or (
                            isinstance(pickles, ast.Constant) and pickles.value is False
                        ), where


def _targets(node, where: str):
    """Every `_target_` value in a YAML tree (nested mappings and lists), with its key path."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_" or str(key).endswith("._target_"):
                yield f"{where}.{key}", value
            else:
                yield from _targets(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _targets(value, f"{where}[{i}]")


def test_the_runners_configs_only_point_inside_xent_and_its_libraries():
    files = sorted(CONF.rglob("*.yaml"))
    assert len(files) > 100  # every group, not just the top
    found = 0
    for path in files:
        for where, target in _targets(yaml.safe_load(path.read_text()), ""):
            found += 1
            name = f"{path.relative_to(CONF)}{where}"
            if target is None:  # `_target_: null` (sched=none): nothing is built
                continue
            assert isinstance(target, str) and target.startswith(TRUSTED_TARGETS), (name, target)
    assert found > 50


# --- through the CLI: a teacher, a cached teacher, a TTA source, resume and ckpt_path ----------


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
    """Every way a checkpoint reaches the runner, each pointing at a crafted one; run two at a
    time. name -> (process, its run dir, its marker)."""
    root = tmp_path_factory.mktemp("refused")
    markers = {name: root / f"marker-{name}" for name in CASES}
    evil = {name: crafted_checkpoint(root / f"{name}.pt", markers[name]) for name in CASES}
    # the teacher cache entry a distillation run would load
    teachers = root / "teachers"
    entry = cache_dir(composed(root, "loss=kd", f"paths.teachers={teachers}"))
    crafted_checkpoint(entry / WEIGHTS_FILE, markers["cached_teacher"])
    # a run dir whose last.ckpt resume=true continues from
    resumed = root / "run4"  # run_bad_commands' run dir of the 5th case
    crafted_checkpoint(resumed / "checkpoints" / "last.ckpt", markers["resume"])
    saved = OmegaConf.to_yaml(composed(root, "logger=none"), resolve=True)  # what resume checks
    (resumed / ".hydra").mkdir()
    (resumed / ".hydra" / "config.yaml").write_text(saved)
    commands = {
        "teacher_ckpt": (["loss=kd", f"teacher.ckpt={evil['teacher_ckpt']}"], ""),
        "cached_teacher": (["loss=kd", f"paths.teachers={teachers}"], ""),
        "source_ckpt": (
            [
                "tta=norm",
                "model=resnet8",
                f"source.ckpt={evil['source_ckpt']}",
                f"paths.data_dir={root / 'data'}",
            ],
            "",
        ),
        "ckpt_path": ([f"ckpt_path={evil['ckpt_path']}", "logger=none"], ""),
        "resume": (["resume=true", "logger=none"], ""),
    }
    assert list(commands) == list(CASES)
    results = run_bad_commands(root, commands)
    return {name: (*results[name], markers[name]) for name in CASES}


# name -> (exit code, what the one stderr line says)
CASES = {
    # Weights the run needs before it starts: refused by the preflight, nothing written (exit 2).
    "teacher_ckpt": (2, r"xent-run: error: .*teacher_ckpt.pt.*not a weights-only"),
    "cached_teacher": (2, r"xent-run: error: .*teacher.pt.*not a weights-only"),
    "source_ckpt": (2, r"xent-run: error: .*source_ckpt.pt.*not a weights-only"),
    "ckpt_path": (2, r"xent-run: error: ckpt_path=.*ckpt_path.pt: not a weights-only"),
    # The checkpoint the Trainer resumes from once the run has started: a failed run (exit 1,
    # metrics.json).
    "resume": (1, r"xent-run: run failed: UnsafeCheckpointError: .*last.ckpt is not a"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_a_crafted_checkpoint_is_refused_in_one_line_and_runs_nothing(refused, name):
    proc, run_dir, marker = refused[name]
    code, message = CASES[name]
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, proc.stderr[-3000:]
    assert len(lines) == 1 and re.match(message, lines[0]), proc.stderr
    assert "refused" in lines[0]
    assert not marker.exists(), "the crafted pickle ran"
    if code == 2:
        assert not run_dir.exists()
    else:
        result = json.loads((run_dir / "metrics.json").read_text())
        assert result["status"] == "failed" and "not a weights-only checkpoint" in result["error"]
