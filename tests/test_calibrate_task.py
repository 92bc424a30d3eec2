"""Issue 20, task=calibrate end to end: a finished classify run calibrated from its run dir, and a
source trained on demand into the cache. Slow tier: each run trains or tests a small CNN."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import xent_run
from xent.calibration.plots import sweep_ece_by_calibrator

pytestmark = pytest.mark.slow
# experiment=calibration_digits32's calibrators
SWEPT = ("none", "ts", "ts_ca", "vs", "ms", "dirichlet", "ca")


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Path:
    """A digits CNN after 2 epochs of CE: under-confident (its ECE is about 0.29)."""
    root = tmp_path_factory.mktemp("calibrate")
    proc = xent_run("trainer.max_epochs=2", f"hydra.run.dir={root / 'source'}", cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root / "source"


def test_ts_from_a_run_dir_keeps_accuracy_and_lowers_nll_and_ece(source_run):
    root = source_run.parent
    run = root / "ts"
    overrides = ("task=calibrate", f"source.run_dir={source_run}", f"hydra.run.dir={run}")
    proc = xent_run(*overrides, cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    source, metrics = metrics_of(source_run), metrics_of(run)
    assert metrics["status"] == "ok" and metrics["source"] == str(
        source_run / "checkpoints/last.ckpt"
    )
    assert metrics["calib/n"] == 180  # digits' validation split: 10 % of 1,797
    # before calibration, the run's own test metrics, as task=classify measured them
    assert metrics["test/ece_uncal"] == pytest.approx(source["test/ece"], abs=1e-6)
    assert metrics["test/acc_uncal"] == pytest.approx(source["test/acc"], abs=1e-6)
    assert metrics["test/acc"] == metrics["test/acc_uncal"]
    assert metrics["test/nll"] < metrics["test/nll_uncal"]
    assert metrics["test/ece"] < metrics["test/ece_uncal"] / 3
    assert metrics["calib/T"] < 1  # under-confident: sharpened
    logits = torch.load(run / "logits.pt", weights_only=True)
    assert logits["calib"]["logits"].shape == (180, 10)
    assert logits["test"]["logits"].shape == (360, 10)
    assert (run / "reliability.png").stat().st_size > 10_000


def test_a_run_dir_of_another_task_is_refused_before_anything_is_written(source_run):
    root = source_run.parent
    config = source_run / ".hydra" / "config.yaml"
    other = root / "other"
    (other / ".hydra").mkdir(parents=True)
    text = config.read_text().replace("xent.tasks.classify.ClassifyTask", "xent.tasks.tta.TTATask")
    (other / ".hydra" / "config.yaml").write_text(text)
    run = root / "refused"
    proc = xent_run("task=calibrate", f"source.run_dir={other}", f"hydra.run.dir={run}", cwd=root)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0] == (
        f"xent-run: error: source.run_dir={other} is a task=tta run; pass the run dir of a "
        "finished task=classify run"
    )
    assert not run.exists()


def source_entries(teachers: Path) -> list[Path]:
    """The cached source models (run dirs), not the logits cache beside them."""
    return [p for p in teachers.iterdir() if p.is_dir() and p.name != "calibrate_logits"]


def test_without_a_run_dir_the_source_is_trained_once_into_the_cache(tmp_path):
    teachers = tmp_path / "teachers"
    common = ("task=calibrate", "source.recipe.epochs=1", f"paths.teachers={teachers}")
    first = xent_run(*common, f"hydra.run.dir={tmp_path / 'a'}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    (entry,) = source_entries(teachers)
    assert metrics_of(tmp_path / "a")["source"] == str(entry / "teacher.pt")
    assert metrics_of(entry)["status"] == "ok"  # the cache entry is a classify run of its own
    second = xent_run(*common, "calibrator=none", f"hydra.run.dir={tmp_path / 'b'}", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    assert source_entries(teachers) == [entry]  # not trained again
    again, first_metrics = metrics_of(tmp_path / "b"), metrics_of(tmp_path / "a")
    assert again["test/ece"] == again["test/ece_uncal"]  # calibrator=none changes nothing
    # the second calibrator of the source read the first one's logits instead of computing them
    assert again["logits_cache"] == first_metrics["logits_cache"]
    assert list((teachers / "calibrate_logits").iterdir()) == [Path(again["logits_cache"])]
    assert "the source's logits from" in (tmp_path / "b" / "xent.log").read_text()
    assert again["test/ece_uncal"] == first_metrics["test/ece_uncal"]


def test_the_digits32_sweep_calibrates_one_source_per_seed_and_judges_the_claim(tmp_path):
    """experiment=calibration_digits32 with one-epoch sources: 7 calibrators x 3 seeds, each
    seed's calibrators on the same cached source, every corruption a shifted set (50 images
    each here), a verdict for CA and TS-CA against TS, and the sweep's ECE-across-shifts figure."""
    sweep = tmp_path / "sweep"
    proc = xent_run(
        "-m", "experiment=calibration_digits32", "source.recipe.epochs=1", "task.shift_samples=50",
        f"paths.teachers={tmp_path / 'teachers'}", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(source_entries(tmp_path / "teachers")) == 3
    assert len(list((tmp_path / "teachers" / "calibrate_logits").iterdir())) == 6  # ca's own
    runs = [metrics_of(job) for job in sorted(sweep.iterdir()) if (job / "metrics.json").is_file()]
    assert len(runs) == 21 and {run["status"] for run in runs} == {"ok"}
    for seed in (0, 1, 2):
        mine = [run for run in runs if run["seed"] == seed]
        assert len({run["source"] for run in mine}) == 1  # one source per seed
        assert len({round(run["test/ece_uncal"], 9) for run in mine}) == 1
        assert len({round(run["test/ece_uncal/fog"], 9) for run in mine}) == 1
    assert all(len(run["shifts"]) == 15 and "test/ece/shift_mean" in run for run in runs)
    table = (sweep / "summary.md").read_text()
    for name in SWEPT:
        assert f"| calibrator={name} | 3 |" in table
    verdicts = json.loads((sweep / "verdicts.json").read_text())
    assert verdicts["baseline"] == "calibrator=ts"
    labels = [candidate["label"] for candidate in verdicts["candidates"]]
    assert labels == ["calibrator=ca", "calibrator=ts_ca"]
    ece, domains = sweep_ece_by_calibrator(sweep)
    assert domains == ["clean", *runs[0]["shifts"]] and sorted(ece) == sorted(SWEPT)
    assert (sweep / "ece_shifts.png").is_file()
