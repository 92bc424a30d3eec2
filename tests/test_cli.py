"""`xent-run` as a user runs it: a subprocess, a run dir, exit codes and one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import xent_run
from xent.errors import ConfigError
from xent.runner.cli import one_line
from xent.runner.command_line import check_overrides, config_groups

METRIC_KEYS = {
    "status",
    "seed",
    "train_time_s",
    "epochs",
    "test/acc",
    "test/acc5",
    "test/nll",
    "test/ece",
    "best/val_acc",
}


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def default_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The Quickstart's run: `make run` is xent-run with no arguments at all."""
    root = tmp_path_factory.mktemp("default")
    proc = xent_run(cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dirs = list((root / "outputs" / "runs").glob("*/*"))
    assert len(run_dirs) == 1, run_dirs  # outputs/runs/<date>/<time> under the working dir
    return run_dirs[0], proc


@pytest.mark.slow
def test_default_run_learns_digits_and_writes_the_run_dir(default_run):
    run_dir, proc = default_run
    result = metrics(run_dir)
    assert METRIC_KEYS <= set(result)
    assert result["status"] == "ok" and result["seed"] == 0 and result["epochs"] == 20
    assert result["test/acc"] >= 0.95
    assert 0 <= result["test/ece"] < 0.1 and result["test/nll"] < 0.3
    assert result["model/n_params"] == 65_834  # the default cnn's size: N of xent-report --fit
    # the resolved config: no interpolation left, and it names the choices
    saved = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "${" not in saved and "xent.data.digits.DigitsDataModule" in saved
    for name in (
        "checkpoints/last.ckpt",
        "checkpoints/best.ckpt",
        "csv/metrics.csv",
        "xent.log",
        ".hydra/overrides.yaml",
    ):
        assert (run_dir / name).is_file(), name
    ckpt = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["epoch"] == 19 and ckpt["best/val_acc"] == pytest.approx(result["best/val_acc"])
    # the terminal shows a result table with the run dir
    assert "test/acc" in proc.stdout and str(run_dir) in proc.stdout.replace("\n", "")
    assert "epoch 20/20" in (run_dir / "xent.log").read_text()


def quickstart_table() -> dict[str, float]:
    """The README's Quickstart table: metric -> the value it shows."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme.split("| `make run`:", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| ([a-z_/]+)(?: \([^)]*\))? \| ([0-9.]+) \|$", table, re.M)
    return {metric: float(value) for metric, value in rows}


@pytest.mark.slow
def test_the_readme_quickstart_table_is_what_make_run_prints(default_run):
    """`make run`'s numbers in the README are the default run's, to the digits shown (same
    seed, same CPU, the locked environment)."""
    run_dir, _ = default_run
    result = metrics(run_dir)
    shown = quickstart_table()
    assert set(shown) == {"test/acc", "test/nll", "test/ece", "best/val_acc"}
    assert {key: round(result[key], 4) for key in shown} == shown


@pytest.mark.slow
def test_same_seed_same_metrics_and_earlier_run_is_kept(tmp_path):
    run_dir = tmp_path / "D"
    args = (f"hydra.run.dir={run_dir}", "seed=3", "trainer.max_epochs=5")
    first = xent_run(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    first_metrics = metrics(run_dir)
    second = xent_run(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    archived = list((run_dir / "archive").glob("*/metrics.json"))
    assert len(archived) == 1 and json.loads(archived[0].read_text()) == first_metrics
    assert "moved it to" in second.stdout
    for key in ("test/acc", "test/nll", "test/ece", "best/val_acc"):
        assert metrics(run_dir)[key] == first_metrics[key], key


@pytest.mark.slow
def test_resume_auto_without_checkpoint_starts_fresh(tmp_path):
    run_dir = tmp_path / "new"  # resume=true refuses this: tests/test_resume.py
    proc = xent_run(f"hydra.run.dir={run_dir}", "resume=auto", "trainer.max_epochs=1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert metrics(run_dir)["epochs"] == 1


# The bad-input catalogue (one line, exit 2, an earlier run untouched) is test_bad_input.py.


@pytest.mark.slow
def test_a_run_that_fails_records_it(tmp_path):
    run_dir = tmp_path / "fail"
    # The Trainer itself rejects this value, after the run dir exists: a failed run, not bad input.
    proc = xent_run(f"hydra.run.dir={run_dir}", "+trainer.limit_train_batches=-3", cwd=tmp_path)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and "run failed:" in proc.stderr
    result = metrics(run_dir)
    assert result["status"] == "failed" and "limit_train_batches" in result["error"]
    assert "Traceback" in (run_dir / "error.log").read_text()


@pytest.mark.slow  # CLI subprocesses
def test_help_and_cfg_job_are_hydras_and_never_import_torch(tmp_path):
    """Speed is benchmarked (scripts/bench_startup.py); here: what keeps those paths fast."""
    helped = xent_run("--help", cwd=tmp_path)
    assert helped.returncode == 0
    assert "== Configuration groups ==" in helped.stdout
    assert re.search(r"^loss: .*\bce\b.*\bgce\b", helped.stdout, re.M)
    shown = xent_run("--cfg", "job", "loss=ce", "optim.lr=0.2", cwd=tmp_path)
    assert shown.returncode == 0 and "lr: 0.2" in shown.stdout
    for args in (["--help"], ["--cfg", "job"]):
        timed = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "xent.runner.cli", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        imported = {line.rsplit("|", 1)[-1].strip() for line in timed.stderr.splitlines()}
        assert "hydra" in imported and "torch" not in imported and "lightning" not in imported
    assert not list(tmp_path.rglob("metrics.json"))


@pytest.mark.slow  # seconds: keeps the fast tier under its 2-minute budget
def test_fast_help_prints_exactly_hydras_help(tmp_path):
    """xent.runner.quick_help patches Hydra's private group listing: the text must not change."""
    hydras_own = (
        "import sys; from xent.runner import cli; "
        "sys.argv = [cli.__file__, *sys.argv[2:]]; cli.hydra_app()"
    )
    for args in (["--help"], ["loss=gce", "--help"], ["--hydra-help"]):
        ours = xent_run(*args, cwd=tmp_path)
        plain = subprocess.run(
            [sys.executable, "-c", hydras_own, "-", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert ours.returncode == plain.returncode == 0, plain.stderr
        assert ours.stdout == plain.stdout


def test_shell_completion_is_hydras(tmp_path):
    proc = xent_run("-sc", "install=bash", cwd=tmp_path)
    assert proc.returncode == 0 and "complete" in proc.stdout


@pytest.mark.slow
def test_wandb_offline_writes_run_files(tmp_path):
    pytest.importorskip("wandb")
    run_dir = tmp_path / "wb"
    proc = xent_run(
        f"hydra.run.dir={run_dir}",
        "logger=wandb",
        "trainer.max_epochs=1",
        "tags=[ci]",
        cwd=tmp_path,
        env={"WANDB_MODE": "offline"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb")), "no offline event file"
    assert metrics(run_dir)["status"] == "ok"


@pytest.mark.slow
def test_tensorboard_and_no_logger(tmp_path):
    pytest.importorskip("tensorboard")
    tb = tmp_path / "tb"
    proc = xent_run(
        f"hydra.run.dir={tb}", "logger=tensorboard", "trainer.max_epochs=1", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list((tb / "tensorboard").glob("events.out.tfevents.*"))
    none = tmp_path / "none"
    proc = xent_run(f"hydra.run.dir={none}", "logger=none", "trainer.max_epochs=1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (none / "csv").exists() and metrics(none)["status"] == "ok"


@pytest.mark.slow
def test_sweep_with_a_bad_job_finishes_the_others(tmp_path):
    sweep = tmp_path / "sweep"
    proc = xent_run(
        "-m", "optim.lr=-1,0.05", "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "xent-run: error: optim.lr=-1 must be a number > 0"
    bad, good = metrics(sweep / "0"), metrics(sweep / "1")
    assert bad["status"] == "failed" and bad["error"] == "optim.lr=-1 must be a number > 0"
    assert good["status"] == "ok" and good["epochs"] == 1


# --- overrides checked as typed (xent.runner.command_line), before Hydra composes or writes --

LEGIT = [
    "+trainer.limit_train_batches=2",  # a new key under an existing node
    "+callbacks.kill._target_=xent.runner.callbacks.X",
    "+loss.step=3",
    "+experiment=pld_digits",  # a group, appended
    "flow_pair=gaussian-moons",
    "hydra/launcher=local",
    "hydra.sweep.dir=/x",
    "~teacher",
    "teacher.ckpt=/x.pt",
    "source.ckpt=/x.pt",
    "dkd_beta=2",  # a key a pair config adds at the top
    "tags=[a,b]",  # a list, not a sweep
    "headline=[test/acc,test/nll]",
    "paths.log_dir=/x",
]


def test_legit_overrides_pass_the_checks():
    check_overrides(LEGIT)
    check_overrides(["-m", *LEGIT, "loss=ce,sce", "seed=range(3)"])
    check_overrides(["-sc", "install=bash"])  # Hydra's own flags are Hydra's business
    check_overrides(["--cfg", "job", "loss=ce,sce"])


@pytest.mark.parametrize(
    "argv,message",
    [
        (["los=sce"], "unknown key 'los'; did you mean 'loss'?"),
        (["+los=sce"], "unknown key 'los'; did you mean 'loss'?"),
        (["++sed=1"], "unknown key 'sed'; did you mean 'seed'?"),
        (["~modle"], "unknown key 'modle'; did you mean 'model'?"),
        (["-m", "optimiser.lr=0.1,0.2"], "unknown key 'optimiser'; did you mean 'optim'?"),
        (
            ["+new.key=1"],
            "unknown key 'new'; valid top-level keys: base, calibrator, callbacks, ckpt_path, "
            "claim, data, dco_loss, eval_ckpt, experiment, experiment_name, flow_pair, headline, "
            "hparams_search, hydra, lm_loss, logger, loss, model, optim, optimized_metric, pair, "
            "paths, resume, sched, "
            "seed, source, tags, task, teacher, trainer, tta",
        ),
        (
            ["seed=0,1"],
            "seed=0,1 is a sweep: a comma list sweeps only with -m (xent-run -m seed=0,1)",
        ),
        (
            ["optim.lr=choice(0.1,0.2)"],
            "optim.lr=choice(0.1,0.2) is a sweep: choice() sweeps only with -m "
            "(xent-run -m optim.lr=choice(0.1,0.2))",
        ),
        (
            ["loss=glob(*)"],
            "loss=glob(*) is a sweep: glob() sweeps only with -m (xent-run -m loss=glob(*))",
        ),
        (
            ["optim.lr=interval(0.1,1)"],
            "optim.lr=interval(0.1,1) is a sweep: interval() sweeps only with -m "
            "(xent-run -m optim.lr=interval(0.1,1))",
        ),
    ],
)
def test_bad_overrides_are_refused_naming_the_key(argv, message):
    with pytest.raises(ConfigError) as err:
        check_overrides(argv)
    assert str(err.value) == message


@pytest.mark.parametrize(
    "key,line",
    [
        (
            "lm.head",
            "lm.head is not a key of this config ('lm' comes with task=lm): check its "
            "spelling, or select that option",
        ),
        (
            "dkd_beta",
            "dkd_beta is not a key of this config ('dkd_beta' comes with a pair option "
            "(resnet32x4-resnet8x4, resnet32x4-shufflenetv1, resnet32x4-shufflenetv2, "
            "resnet50-mobilenetv2, resnet56-resnet20, wrn_40_2-shufflenetv1, wrn_40_2-wrn_40_1)): "
            "check its spelling, or select that option",
        ),
        ("optim.lrr", "Could not override 'optim.lrr'. To append to your config use +optim.lrr=1"),
    ],
)
def test_a_key_only_some_options_add_names_them_instead_of_hydras_plus(key, line):
    """Hydra's advice, `+lm.head=...`, would train the default task with a stray key."""
    from hydra.errors import ConfigCompositionException

    error = ConfigCompositionException(
        f"Could not override '{key}'.\nTo append to your config use +{key}=1"
    )
    assert one_line(error) == line


@pytest.mark.parametrize("argv", [["-m", "los=ce,sce"], ["-m", "+los=sce", "seed=0,1"]])
def test_a_multirun_with_an_unknown_key_writes_nothing(tmp_path, argv):
    """Refused before any job starts: no outputs/, no sweep dir, no job dir."""
    proc = xent_run(*argv, "trainer.max_epochs=1", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == "xent-run: error: unknown key 'los'; did you mean 'loss'?\n"
    assert list(tmp_path.iterdir()) == []


def test_help_still_lists_the_groups_and_the_sweep_hint(tmp_path):
    proc = xent_run("--help", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == ""
    groups = proc.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    listed = {line.split(":")[0].split("/")[0] for line in groups.splitlines() if ": " in line}
    assert listed == set(config_groups()) - {"hydra"}
    assert "Sweep with -m (xent-run -m seed=0,1,2)" in proc.stdout
