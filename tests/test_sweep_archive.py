"""A sweep never overwrites an earlier sweep: a fresh multirun into a sweep dir that holds one
moves it to archive/<stamp>/ first (xent.runner.sweep_archive), byte for byte; a resume rerun moves
nothing; a sweep dir that cannot be written fails in one line with nothing moved."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import xent_run
from tests.test_bad_input import mount_tmpfs
from tests.test_resume import snapshot
from xent.runner.sweep_archive import earlier_sweep_entries, sweep_starts_fresh

SWEEP = ["-m", "seed=0,1", "trainer.max_epochs=1", "logger=none"]
JOB_FILES = [
    ".hydra/config.yaml",
    ".hydra/hydra.yaml",
    ".hydra/overrides.yaml",
    "checkpoints/best.ckpt",
    "checkpoints/last.ckpt",
    "metrics.json",
    "xent.log",
]
SWEEP_FILES = sorted(
    [f"{job}/{name}" for job in ("0", "1") for name in JOB_FILES]
    + ["multirun.yaml", "summary.csv", "summary.md", "summary.png"]
)


def outside_archive(files: dict) -> dict:
    return {name: value for name, value in files.items() if not name.startswith("archive/")}


@pytest.fixture(scope="module")
def two_sweeps(tmp_path_factory) -> dict:
    """The same tiny sweep twice into one sweep dir D, D's files after each, and the second's
    start time (ns)."""
    root = tmp_path_factory.mktemp("twice")
    sweep = root / "D"
    first = xent_run(*SWEEP, f"hydra.sweep.dir={sweep}", cwd=root)
    assert first.returncode == 0, first.stderr[-3000:]
    before = snapshot(sweep)
    stamp = time.strftime(
        "%Y%m%d-%H%M%S", time.localtime((sweep / "multirun.yaml").stat().st_mtime)
    )
    started_ns = time.time_ns()
    second = xent_run(*SWEEP, f"hydra.sweep.dir={sweep}", cwd=root)
    assert second.returncode == 0, second.stderr[-3000:]
    return {
        "sweep": sweep,
        "stamp": stamp,
        "before": before,
        "after": snapshot(sweep),
        "second": second,
        "started_ns": started_ns,
    }


@pytest.mark.slow
def test_a_second_fresh_sweep_moves_the_first_to_archive_byte_for_byte(two_sweeps):
    sweep, stamp, before, after = (two_sweeps[k] for k in ("sweep", "stamp", "before", "after"))
    assert sorted(before) == SWEEP_FILES
    archived = {
        name.removeprefix(f"archive/{stamp}/"): value
        for name, value in after.items()
        if name.startswith("archive/")
    }
    assert archived == before  # every file of the first sweep: same bytes, same mtime
    current = outside_archive(after)
    assert sorted(current) == SWEEP_FILES  # the second sweep's own files, in D
    assert all(mtime >= two_sweeps["started_ns"] for _, mtime in current.values())
    notice = f"xent-run: {sweep} held an earlier sweep; moved it to {sweep / 'archive' / stamp}"
    assert notice in two_sweeps["second"].stdout.splitlines()
    assert two_sweeps["second"].stderr == ""


@pytest.mark.slow
def test_a_resume_rerun_of_the_sweep_archives_nothing(two_sweeps):
    sweep, after = two_sweeps["sweep"], two_sweeps["after"]
    rerun = xent_run(*SWEEP, f"hydra.sweep.dir={sweep}", "resume=true", cwd=sweep.parent)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.stderr == ""
    assert "held an earlier sweep" not in rerun.stdout
    for job in ("0", "1"):
        line = f"xent-run: {sweep / job} already finished (metrics.json status ok); left as it is."
        assert line in rerun.stdout
    now = snapshot(sweep)
    # Any multirun writes its multirun.yaml (Hydra's launcher) and summary (at its end) anew.
    rewritten = {"multirun.yaml", "summary.csv", "summary.md", "summary.png"}
    assert {k: v for k, v in now.items() if k not in rewritten} == {
        k: v for k, v in after.items() if k not in rewritten
    }


def test_a_sweep_dir_on_a_read_only_disk_fails_in_one_line_and_moves_nothing(tmp_path):
    folder = tmp_path / "ro"
    reason = mount_tmpfs(folder, "1m")
    if reason:
        pytest.skip(reason)
    try:
        sweep = folder / "D"
        (sweep / "0").mkdir(parents=True)
        (sweep / "0" / "metrics.json").write_text('{"status": "ok"}\n')
        (sweep / "multirun.yaml").write_text("hydra: {}\n")
        before = snapshot(sweep)
        remount = subprocess.run(
            ["mount", "-o", "remount,ro", str(folder)], capture_output=True, text=True
        )
        if remount.returncode != 0:
            pytest.skip(f"cannot remount a tmpfs read-only: {remount.stderr.strip()}")
        proc = xent_run(*SWEEP, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert proc.stderr.splitlines() == [
            f"xent-run: error: hydra.sweep.dir={sweep}: {sweep} is on a read-only file system"
        ]
        assert snapshot(sweep) == before
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def earlier_sweep(sweep: Path, *, last_ckpt: bool = False, finished: bool = False) -> None:
    """The files an earlier two-job sweep leaves (job 1 with a last.ckpt or a finished run
    when asked), plus a file of the user's that is not the sweep's."""
    for job in ("0", "1"):
        (sweep / job / ".hydra").mkdir(parents=True)
        (sweep / job / "metrics.json").write_text('{"status": "failed"}\n')
    if last_ckpt:
        (sweep / "1" / "checkpoints").mkdir()
        (sweep / "1" / "checkpoints" / "last.ckpt").write_bytes(b"ckpt")
    if finished:
        (sweep / "1" / "metrics.json").write_text('{"status": "ok"}\n')
    for name in ("multirun.yaml", "summary.csv", "summary.md", "summary.txt", "notes.txt"):
        (sweep / name).write_text("x\n")
    (sweep / ".submitit").mkdir()
    (sweep / "archive" / "20260101-000000" / "0" / ".hydra").mkdir(parents=True)
    (sweep / "outputs" / "runs" / "x" / ".hydra").mkdir(parents=True)  # not one of its jobs


def test_the_earlier_sweep_is_its_own_files_and_job_dirs_only(tmp_path):
    earlier_sweep(tmp_path)
    assert earlier_sweep_entries(tmp_path) == [
        "multirun.yaml",
        ".submitit",
        "summary.csv",
        "summary.md",
        "0",
        "1",
    ]
    assert earlier_sweep_entries(tmp_path / "missing") == []


@pytest.mark.parametrize(
    ("resume", "last_ckpt", "finished", "fresh"),
    [
        (False, True, True, True),
        (True, False, False, False),
        ("auto", False, False, True),  # nothing to resume: a fresh sweep, the earlier archived
        ("auto", True, False, False),  # job 1 continues from its last.ckpt
        ("auto", False, True, False),  # job 1 finished: left as it is
    ],
)
def test_which_sweeps_start_fresh(tmp_path, resume, last_ckpt, finished, fresh):
    earlier_sweep(tmp_path, last_ckpt=last_ckpt, finished=finished)
    cfg = OmegaConf.create({"resume": resume, "ckpt_path": None})
    assert sweep_starts_fresh(cfg, tmp_path) is fresh
