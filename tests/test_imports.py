"""xent's import structure: the contracts in pyproject.toml hold and no module is in a circle.

A circle (a imports b imports a) makes the import order decide what works and hides which
module owns what; the layers keep the runner above the tasks, the pretrained-model cache, the
methods and the utilities, in that order.
"""

from __future__ import annotations

import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]


def import_cycle(package: str) -> list[str] | None:
    """One circle of imports among `package`'s modules (first module repeated last), or None."""
    graph = grimp.build_graph(package, cache_dir=None)
    imports = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    try:
        TopologicalSorter(imports).prepare()
    except CycleError as err:
        return list(reversed(err.args[1]))
    return None


def test_lint_imports_keeps_every_contract():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache", "--no-logo", str(REPO / "pyproject.toml")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_no_module_of_xent_imports_itself_through_others():
    assert import_cycle("xent") is None


def test_import_cycle_names_the_circle(tmp_path, monkeypatch):
    """The check above can see a circle: two modules that import each other are reported."""
    package = tmp_path / "circled"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from circled import b\n")
    (package / "b.py").write_text("from circled import a\n")
    (package / "c.py").write_text("from circled import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cycle = import_cycle("circled")
    assert cycle is not None
    assert cycle[0] == cycle[-1] and sorted(cycle[:-1]) == ["circled.a", "circled.b"]
