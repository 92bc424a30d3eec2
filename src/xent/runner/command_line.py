"""Checks of `xent-run`'s overrides as typed, before Hydra composes or writes anything.

Hydra accepts `+los=sce` (a new top-level key nothing reads: the run trains the default loss)
and answers `los=sce` by suggesting exactly that `+`. A comma list without `-m` is refused as
"ambiguous", without saying that it is a sweep. Both are caught here, in one line each.
Light imports only: this runs before every command, `-m` sweeps included.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
from functools import cache
from pathlib import Path

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException

from xent.errors import ConfigError

CONF_DIR = Path(__file__).parents[1] / "conf"
MULTIRUN_FLAGS = {"-m", "--multirun"}
SEARCH_PATH_KEY = "hydra.searchpath"
_GLOBAL_PACKAGE = re.compile(r"^#\s*@package\s+_global_\s*$", re.M)


def is_run(argv: list[str]) -> bool:
    """A run or a sweep: overrides and -m only (no --help, --cfg, -sc, ...: Hydra's own)."""
    return all(not arg.startswith("-") or arg in MULTIRUN_FLAGS for arg in argv)


def _search_path_entries(overrides: list[Override]) -> list[str]:
    """The entries of `hydra.searchpath=[file://DIR, pkg://module]` overrides, in order."""
    entries: list[str] = []
    for override in overrides:
        if override.key_or_group != SEARCH_PATH_KEY or override.is_sweep_override():
            continue
        value = override.value()
        entries += [str(entry) for entry in (value if isinstance(value, list) else [value])]
    return entries


def conf_dirs(overrides: list[Override]) -> tuple[Path, ...]:
    """The package's conf, then each folder the search path adds: a user's own options, groups
    and experiment keys are as valid as ours."""
    found = (_search_path_folder(entry) for entry in _search_path_entries(overrides))
    return (CONF_DIR, *(folder for folder in found if folder is not None and folder.is_dir()))


def check_search_path(overrides: list[Override]) -> None:
    """A misspelt search path folder: Hydra only warns, and the run trains without the user's
    configs (or fails on an option it cannot find, far from the cause)."""
    for entry in _search_path_entries(overrides):
        if not entry.startswith(("file://", "pkg://")):
            continue  # structured:// and the like: Hydra's to check
        folder = _search_path_folder(entry)
        if folder is None or not folder.is_dir():
            raise ConfigError(
                f"{SEARCH_PATH_KEY}: {entry} is not a folder; expected file://DIR (a path "
                f"absolute or relative to {Path.cwd()}) or pkg://PACKAGE (an importable package "
                "with an __init__.py)"
            )


def conf_dirs_of(argv: list[str]) -> tuple[Path, ...]:
    """`conf_dirs` of a command line as typed; the package's conf alone where it does not parse
    (Hydra then names the bad override itself)."""
    typed = [arg for arg in argv if not arg.startswith("-")]
    try:
        return conf_dirs(OverridesParser.create().parse_overrides(typed))
    except HydraException:
        return (CONF_DIR,)


def _search_path_folder(entry: str) -> Path | None:
    """The folder of a search path entry: `file://DIR` (relative to the working directory, as
    Hydra reads it) or `pkg://module`; None for what cannot be found (Hydra's to report)."""
    scheme, _, rest = entry.partition("://")
    if scheme == "file":
        return Path(rest)
    if scheme == "pkg":
        try:  # imports the parent packages, as Hydra's own look-up will
            spec = importlib.util.find_spec(rest.replace("/", "."))
        except Exception:  # noqa: BLE001 - a package that fails to import: Hydra says so
            return None
        if spec is None or not spec.has_location:  # none, or a namespace package
            return None  # (Hydra reads configs only from a package with an __init__.py)
        locations = list(spec.submodule_search_locations or [])
        return Path(locations[0]) if locations else None
    return None


@cache
def config_groups(dirs: tuple[Path, ...] = (CONF_DIR,)) -> frozenset[str]:
    """The top-level config groups: the conf folders' folders (hydra, loss, teacher, ...)."""
    return frozenset(
        p.name
        for folder in dirs
        for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith(("_", "."))
    )


def group_options(group: str, dirs: tuple[Path, ...] = (CONF_DIR,)) -> list[str]:
    """A group's options (`loss` -> aldr_kl, ..., zloss), the user's own folders' included."""
    return sorted({p.stem for folder in dirs for p in (folder / group).glob("*.yaml")})


def _keys_of(path: Path) -> set[str]:
    return set(yaml.safe_load(path.read_text()) or {}) - {"defaults"}


@cache
def root_keys() -> frozenset[str]:
    """The root config's own keys: seed, resume, ckpt_path, tags, ..."""
    return frozenset(_keys_of(CONF_DIR / "config.yaml"))


@cache
def global_keys(dirs: tuple[Path, ...] = (CONF_DIR,)) -> frozenset[str]:
    """Top-level keys that an experiment or pair config adds (dkd_beta, crd_lr, ...): valid
    with that config selected, where Hydra itself checks them."""
    keys: set[str] = set()
    for path in (path for folder in dirs for path in folder.glob("*/*.yaml")):
        text = path.read_text()
        if _GLOBAL_PACKAGE.search(text):
            keys |= _keys_of(path)
    return frozenset(keys)


def global_key_sources(name: str, dirs: tuple[Path, ...] = (CONF_DIR,)) -> list[str]:
    """The options that add top-level key `name` (`lm` -> task=lm): a command that sets
    `lm.head` without one of them has nothing to set."""
    return sorted(
        f"{path.parent.name}={path.stem}"
        for folder in dirs
        for path in folder.glob("*/*.yaml")
        if _GLOBAL_PACKAGE.search(path.read_text()) and name in _keys_of(path)
    )


def top_level_name(override: Override) -> str:
    """`trainer.max_epochs` -> trainer, `hydra/launcher` -> hydra, `+los` -> los."""
    return re.split(r"[./]", override.key_or_group, maxsplit=1)[0]


def unknown_key_message(name: str, dirs: tuple[Path, ...] = (CONF_DIR,)) -> str:
    """The nearest valid top-level key, or the list of them when none is near."""
    known = config_groups(dirs) | root_keys() | global_keys(dirs)
    near = difflib.get_close_matches(name, sorted(known))
    if near:
        return f"unknown key '{name}'; did you mean '{near[0]}'?"
    valid = ", ".join(sorted(config_groups(dirs) | root_keys()))
    return f"unknown key '{name}'; valid top-level keys: {valid}"


def check_top_level_keys(overrides: list[Override]) -> None:
    """Every override must set, add under, pick or drop something of a known top-level key
    (the user's config folders on `hydra.searchpath` count)."""
    dirs = conf_dirs(overrides)
    known = config_groups(dirs) | root_keys() | global_keys(dirs)
    for override in overrides:
        name = top_level_name(override)
        if name not in known:
            raise ConfigError(unknown_key_message(name, dirs))


def _sweep_kind(override: Override) -> str:
    """How the sweep was written: a comma list, or one of Hydra's sweep functions."""
    value = override.value()
    if isinstance(value, ChoiceSweep) and value.simple_form:
        return "a comma list"
    functions = {ChoiceSweep: "choice()", RangeSweep: "range()", IntervalSweep: "interval()"}
    return functions.get(type(value), "glob()")


def check_sweeps_need_multirun(overrides: list[Override]) -> None:
    """`loss=ce,sce` without -m: a sweep, which only -m runs; say so instead of "ambiguous"."""
    for override in overrides:
        if override.is_sweep_override():
            line = override.input_line
            raise ConfigError(
                f"{line} is a sweep: {_sweep_kind(override)} sweeps only with -m "
                f"(xent-run -m {line})"
            )


def check_overrides(argv: list[str]) -> None:
    """Unknown top-level keys and, without -m, sweeps: refused before anything is composed.
    Overrides Hydra cannot parse are left to Hydra, whose message names the bad one."""
    if not is_run(argv):
        return
    typed = [arg for arg in argv if arg not in MULTIRUN_FLAGS]
    try:
        overrides = OverridesParser.create().parse_overrides(typed)
    except HydraException:
        return
    check_top_level_keys(overrides)
    check_search_path(overrides)
    if not MULTIRUN_FLAGS & set(argv):
        check_sweeps_need_multirun(overrides)


def _task_target(name: str, dirs: tuple[Path, ...]) -> str | None:
    """The `_target_` of task option `name` (its file's own key, or `task._target_` in a
    `_global_` file), from the last folder that has it."""
    for folder in reversed(dirs):
        path = folder / "task" / f"{name}.yaml"
        if path.is_file():
            node = yaml.safe_load(path.read_text()) or {}
            return node.get("_target_") or (node.get("task") or {}).get("_target_")
    return None


def with_task_defaults(argv: list[str]) -> list[str]:
    """`task=NAME` on the command line also selects the options its class lists in
    `group_defaults` (task=lm: data=shakespeare, model=gpt_tiny, ...) for each group the
    command leaves alone. An experiment picks its own groups: then nothing is added."""
    if not is_run(argv):
        return argv
    try:
        overrides = OverridesParser.create().parse_overrides(
            [arg for arg in argv if arg not in MULTIRUN_FLAGS]
        )
    except HydraException:
        return argv
    named = {o.key_or_group.lstrip("+~").split("@")[0] for o in overrides}
    task = [o for o in overrides if o.key_or_group == "task" and not o.is_sweep_override()]
    if not task or "experiment" in named:
        return argv
    target = _task_target(str(task[-1].value()), conf_dirs(overrides))
    if not target:
        return argv
    from hydra.utils import get_class

    try:
        defaults = getattr(get_class(target), "group_defaults", {})
    except Exception:  # noqa: BLE001 - an unimportable task is the preflight's to report
        return argv
    added = [f"{group}={option}" for group, option in defaults.items() if group not in named]
    return [*argv, *added]
