"""A user's own loss, model and experiment, with no edit of xent: the README's "Bring your own
loss, model or experiment" section, run as written.

The section's files (a package `mypkg` and a config folder `conf/`) are written to a temp dir from
the README itself, and its commands run there through the CLI, so the README cannot drift from
what works. The checks that refuse bad input before anything is written must see the user's
folder on `hydra.searchpath` as they see the package's own `conf/`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, assert_one_line_error, run_bad_commands, xent_run

SECTION = "### Bring your own loss, model or experiment"
SEARCH_PATH = "hydra.searchpath=[file://conf]"
# test/acc of one epoch of CE from seed 0 on digits (the Quickstart's locked environment), with
# the bundled cnn and with the section's linear model; ScaledCE at scale 1 gives the same.
CE_CNN_ACC = 0.5944
CE_LINEAR_ACC = 0.9278


def readme_section() -> str:
    """The section's text, up to the next heading (`## `; a code block's `# ` is a comment)."""
    text = (REPO / "README.md").read_text()
    start = text.index(SECTION) + len(SECTION)
    return text[start : re.compile(r"\n##+ ").search(text, start).start()]


def section_files(section: str) -> dict[str, str]:
    """path -> content of each python/yaml block, named by its comment (`# mypkg/losses.py`)."""
    blocks = re.findall(r"```(?:python|yaml)\n(.*?)```", section, re.S)
    return {re.search(r"^# (\S+\.(?:py|yaml))\b", body, re.M)[1]: body for body in blocks}


def section_commands(section: str) -> list[list[str]]:
    """The words of each line of the section's shell block."""
    (block,) = re.findall(r"```shell\n(.*?)```", section, re.S)
    return [shlex.split(line) for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory) -> Path:
    """A folder as the README's reader makes it: mypkg/ and conf/ with the section's files."""
    root = tmp_path_factory.mktemp("byo")
    for path, content in {"mypkg/__init__.py": "", **section_files(readme_section())}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(content)
    return root


def user_env(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """`PYTHONPATH=. xent-run ARGS` -> (its environment, ARGS). The README's PYTHONPATH goes
    before this process's, which is kept: it may be what makes this checkout's xent the one
    imported."""
    env = {}
    while "=" in words[0]:
        key, _, value = words.pop(0).partition("=")
        env[key] = os.pathsep.join(p for p in (value, os.environ.get(key, "")) if p)
    assert words[0] == "xent-run", words
    return env, words[1:]


def run_readme_command(index: int, user_dir: Path, *extra: str):
    env, args = user_env(section_commands(readme_section())[index])
    return xent_run(*args, *extra, cwd=user_dir, env=env)


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_section_has_the_files_and_commands():
    section = readme_section()
    assert set(section_files(section)) == {
        "mypkg/losses.py",
        "mypkg/models.py",
        "conf/loss/my_loss.yaml",
        "conf/model/my_linear.yaml",
        "conf/experiment/my_exp.yaml",
    }
    assert [" ".join(words[1:3]) for words in section_commands(section)] == [
        "xent-run loss._target_=mypkg.losses.ScaledCE",
        f"xent-run {SEARCH_PATH}",
        "xent-run -m",
    ]


@pytest.mark.slow
def test_target_override_trains_the_users_class(user_dir, tmp_path):
    """(1) `loss._target_=mypkg.losses.ScaledCE`: one epoch, exit 0; the resolved config names
    the class; at scale 1 it is CE, so the seed gives CE's accuracy."""
    run_dir = tmp_path / "run"
    proc = run_readme_command(0, user_dir, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0 and not proc.stderr, proc.stderr[-3000:]
    resolved = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert resolved["loss"] == {
        "_target_": "mypkg.losses.ScaledCE",
        "label_smoothing": 0.0,  # loss=ce's, kept
    }
    result = metrics(run_dir)
    assert result["status"] == "ok" and result["epochs"] == 1
    assert round(result["test/acc"], 4) == CE_CNN_ACC


@pytest.mark.slow
def test_user_config_folder_option(user_dir, tmp_path):
    """(2) `hydra.searchpath=[file://conf] loss=my_loss`: the user's option, picked by name."""
    run_dir = tmp_path / "run"
    proc = run_readme_command(1, user_dir, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0 and not proc.stderr, proc.stderr[-3000:]
    resolved = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert resolved["loss"] == {"_target_": "mypkg.losses.ScaledCE", "scale": 1.0}
    assert round(metrics(run_dir)["test/acc"], 4) == CE_CNN_ACC


@pytest.mark.slow
def test_user_experiment_sweeps_with_its_summary(user_dir, tmp_path):
    """(3) `-m hydra.searchpath=[file://conf] experiment=my_exp`: two jobs (ce, my_loss) on the
    user's model, one epoch from the experiment's own key, and the summary; ScaledCE at scale 1
    trains exactly as ce does."""
    sweep = tmp_path / "sweep"
    proc = run_readme_command(2, user_dir, f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0 and not proc.stderr, proc.stderr[-3000:]
    jobs = [metrics(sweep / str(i)) for i in range(2)]
    losses = ("torch.nn.CrossEntropyLoss", "mypkg.losses.ScaledCE")  # loss=ce, loss=my_loss
    for i, loss in enumerate(losses):
        resolved = yaml.safe_load((sweep / str(i) / ".hydra" / "config.yaml").read_text())
        assert resolved["loss"]["_target_"] == loss
        assert resolved["model"]["_target_"] == "mypkg.models.Linear"
        assert resolved["trainer"]["max_epochs"] == 1
        assert jobs[i]["status"] == "ok"
    without_times = [{k: v for k, v in job.items() if not k.endswith("_time_s")} for job in jobs]
    assert without_times[0] == without_times[1]
    assert round(jobs[0]["test/acc"], 4) == CE_LINEAR_ACC, jobs[0]
    lines = (sweep / "summary.md").read_text()
    assert "loss=ce" in lines and "loss=my_loss" in lines and "test/nll" in lines


def loss_options() -> list[str]:
    bundled = [p.stem for p in (REPO / "src" / "xent" / "conf" / "loss").glob("*.yaml")]
    return sorted([*bundled, "my_loss"])


@pytest.mark.slow  # seconds: keeps the fast tier under its 2-minute budget
def test_bad_input_sees_the_users_folder(user_dir, monkeypatch):
    """(4) a misspelt user option lists the user's options too; (5) a `_target_` that does not
    import fails in one line naming the key; `=null` and the experiment's own keys are checked
    against the user's folder too, and a search path folder that is not there is refused (Hydra
    only warns, and would run without it). Each before anything is written."""
    path = filter(None, [str(user_dir), os.environ.get("PYTHONPATH")])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))
    valid_losses = ", ".join(loss_options())
    bad = {
        "misspelt option": (
            [SEARCH_PATH, "loss=my_los"],
            f"loss=my_los is not an option; valid: {valid_losses}",
        ),
        "misspelt experiment": ([SEARCH_PATH, "experiment=my_ex"], ", my_exp, "),
        "no such class": (
            ["loss._target_=mypkg.Nope"],
            "loss._target_=mypkg.Nope cannot be imported (ModuleNotFoundError: No module named "
            "'mypkg.Nope'); its package must be installed or on PYTHONPATH",
        ),
        "group set to null": (
            [SEARCH_PATH, "loss=null"],
            f"loss=null: loss is a config group; pick an option ({valid_losses}) or drop it "
            "with ~loss",
        ),
        "misspelt search path folder": (
            ["hydra.searchpath=[file://confs]", "loss=my_loss"],
            f"hydra.searchpath: file://confs is not a folder; expected file://DIR (a path "
            f"absolute or relative to {user_dir}) or pkg://PACKAGE (an importable package with "
            "an __init__.py)",
        ),
        "experiment key of a wrong type": (
            [SEARCH_PATH, "experiment=my_exp", "my_epochs=abc"],
            "my_epochs=abc: expected an integer (default 1)",
        ),
    }
    problems = []
    for name, (proc, run_dir) in run_bad_commands(user_dir, bad).items():
        try:
            assert_one_line_error(proc, run_dir, bad[name][1])
        except AssertionError as err:  # every case's verdict, not just the first one's
            problems.append(f"{name}: {str(err).splitlines()[0]}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("entry", ["file://{root}/userconf", "pkg://userpkg.conf"])
def test_search_path_folders_extend_the_known_groups_and_keys(tmp_path, monkeypatch, entry):
    """A group of the user's own (`+notes=short`) and a top-level key an experiment of theirs
    adds pass the command-line check only with their folder on the search path, given as a
    file:// folder or as a pkg:// package."""
    from xent.errors import ConfigError
    from xent.runner.command_line import check_overrides

    for conf in (tmp_path / "userconf", tmp_path / "userpkg" / "conf"):
        (conf / "notes").mkdir(parents=True)
        (conf / "notes" / "short.yaml").write_text("text: hi\n")
        (conf / "experiment").mkdir()
        (conf / "experiment" / "mine.yaml").write_text("# @package _global_\nmy_width: 8\n")
    for package in ("userpkg", "userpkg/conf"):
        (tmp_path / package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    search_path = f"hydra.searchpath=[{entry.format(root=tmp_path)}]"
    check_overrides([search_path, "+notes=short", "experiment=mine", "my_width=16"])
    with pytest.raises(ConfigError, match="^unknown key 'notes'; valid top-level keys: "):
        check_overrides(["+notes=short"])
    with pytest.raises(ConfigError, match="^unknown key 'my_width'; valid top-level keys: "):
        check_overrides(["experiment=mine", "my_width=16"])
