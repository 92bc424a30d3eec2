"""scripts/bench_runner_overhead.py and bench_data_pipeline.py (--quick), and data=synthetic_cifar
they train on."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from tests.conftest import REPO, composed

SCRIPTS = REPO / "scripts"
SMALL = ("data.train_size=60", "data.val_size=20", "data.test_size=12")


def test_synthetic_cifar_is_seeded_and_has_the_declared_shapes(tmp_path):
    node = composed(tmp_path, "data=synthetic_cifar", *SMALL).data

    def built(**changes):
        datamodule = instantiate(node, **changes)
        datamodule.setup("fit")
        return datamodule

    first, again = built(), built(shuffle_seed=7)  # the run seed: order, not the images
    other, resized = built(data_seed=1), built(train_size=80)
    for name, n in {"train": 60, "val": 20, "test": 12}.items():
        split = first.splits[name]
        assert split.images.shape == (n, 3, 32, 32) and split.images.dtype == torch.uint8
        assert split.labels.shape == (n,) and split.labels.dtype == torch.int64
        assert torch.equal(split.images, again.splits[name].images)
        assert torch.equal(split.labels, again.splits[name].labels)
        assert not torch.equal(split.images, other.splits[name].images)
    assert torch.equal(first.splits["train"].labels.unique(), torch.arange(10))
    assert torch.equal(first.splits["val"].images, resized.splits["val"].images)
    x, y, index = next(iter(first.train_dataloader()))
    assert x.shape == (60, 3, 32, 32) and x.dtype == torch.float32 and len(y) == len(index) == 60


def test_synthetic_cifar_rejects_a_train_split_smaller_than_the_classes():
    from xent.data.synthetic import SyntheticImageDataModule
    from xent.errors import ConfigError

    shape = {"num_classes": 10, "in_channels": 3, "image_size": 32}
    with pytest.raises(ConfigError, match="data.train_size=5 must be at least"):
        SyntheticImageDataModule(train_size=5, **shape)
    with pytest.raises(ConfigError, match="data.val_size=0 must be a positive integer"):
        SyntheticImageDataModule(val_size=0, **shape)


def _run_script(name: str, out: Path) -> subprocess.CompletedProcess:
    # One torch thread: on a busy 2-core machine two threads per process wait on each other
    # at every op, and a smoke test should not take minutes there.
    script = str(SCRIPTS / f"bench_{name}.py")
    cmd = [sys.executable, script, "--quick", "--threads", "1", "--out", str(out)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Both scripts' --quick runs, side by side (each is mostly interpreter and import time)."""
    out = tmp_path_factory.mktemp("bench")
    names = ("runner_overhead", "data_pipeline")
    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = dict(zip(names, pool.map(lambda n: _run_script(n, out), names), strict=True))
    return {name: (proc, out) for name, proc in procs.items()}


def _result(quick_runs, name: str) -> tuple[dict, str, str]:
    proc, out = quick_runs[name]
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / f"{name}.json").read_text())
    lines = (out / "README.md").read_text().splitlines()
    line = next(entry for entry in lines if entry.startswith(f"- `{name}`:"))
    return data, line, proc.stdout


def _check_bar(data: dict, stdout: str) -> None:
    assert isinstance(data["bar"]["met"], bool)
    assert ("bar met" if data["bar"]["met"] else "bar missed") in stdout


@pytest.mark.slow
def test_runner_overhead_quick_writes_its_json_and_line(quick_runs):
    data, line, stdout = _result(quick_runs, "runner_overhead")
    assert data["benchmark"] == "runner_overhead" and data["machine"]["cores"]
    ips = data["images_per_s"]
    assert set(ips) == {"xent", "hand"} and all(v > 0 for v in ips.values())
    assert data["ratio"] == pytest.approx(ips["xent"] / ips["hand"])
    assert data["settings"]["torch_threads_in_xent_fit"] == data["settings"]["torch_threads"]
    per_repeat = data["images_per_s_per_repeat"].values()
    assert all(len(v) == data["settings"]["repeats"] for v in per_repeat)
    _check_bar(data, stdout)
    assert "images/s" in line and data["machine"]["cpu"] in line


@pytest.mark.slow
def test_data_pipeline_quick_writes_its_json_and_line(quick_runs):
    data, line, stdout = _result(quick_runs, "data_pipeline")
    assert data["benchmark"] == "data_pipeline"
    per_w = data["num_workers"]
    assert set(per_w) == {"0", "2"}
    for entry in per_w.values():
        ips = entry["images_per_s"]
        assert set(ips) == {"xent", "torchvision"} and all(v > 0 for v in ips.values())
        assert entry["ratio"] == pytest.approx(ips["xent"] / ips["torchvision"])
    assert data["ratio"] == pytest.approx(min(e["ratio"] for e in per_w.values()))
    _check_bar(data, stdout)
    assert "W=0" in line and "W=2" in line and data["machine"]["cpu"] in line
