"""Checks of `xent-run`'s overrides as typed, before Hydra composes or writes anything.

Hydra accepts `+los=sce` (a new top-level key nothing reads: the run trains the default loss)
and answers `los=sce` by suggesting exactly that `+`. A comma list without `-m` is refused as
"ambiguous", without saying that it is a sweep. Both are caught here, in one line each.
Light imports only: this runs before every command, `-m` sweeps included.
"""

from __future__ import annotations

import difflib
import re
from functools import cache
from pathlib import Path

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException

from xent.errors import ConfigError

CONF_DIR = Path(__file__).parent / "conf"
MULTIRUN_FLAGS = {"-m", "--multirun"}
_GLOBAL_PACKAGE = re.compile(r"^#\s*@package\s+_global_\s*$", re.M)


def is_run(argv: list[str]) -> bool:
    """A run or a sweep: overrides and -m only (no --help, --cfg, -sc, ...: Hydra's own)."""
    return all(not arg.startswith("-") or arg in MULTIRUN_FLAGS for arg in argv)


@cache
def config_groups() -> frozenset[str]:
    """The top-level config groups: conf's folders (hydra, loss, teacher, flow_pair, ...)."""
    return frozenset(
        p.name for p in CONF_DIR.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))
    )


def _keys_of(path: Path) -> set[str]:
    return set(yaml.safe_load(path.read_text()) or {}) - {"defaults"}


@cache
def root_keys() -> frozenset[str]:
    """The root config's own keys: seed, resume, ckpt_path, tags, ..."""
    return frozenset(_keys_of(CONF_DIR / "config.yaml"))


@cache
def global_keys() -> frozenset[str]:
    """Top-level keys that an experiment or pair config adds (dkd_beta, crd_lr, ...): valid
    with that config selected, where Hydra itself checks them."""
    keys: set[str] = set()
    for path in CONF_DIR.glob("*/*.yaml"):
        text = path.read_text()
        if _GLOBAL_PACKAGE.search(text):
            keys |= _keys_of(path)
    return frozenset(keys)


def top_level_name(override: Override) -> str:
    """`trainer.max_epochs` -> trainer, `hydra/launcher` -> hydra, `+los` -> los."""
    return re.split(r"[./]", override.key_or_group, maxsplit=1)[0]


def unknown_key_message(name: str) -> str:
    """The nearest valid top-level key, or the list of them when none is near."""
    near = difflib.get_close_matches(name, sorted(config_groups() | root_keys() | global_keys()))
    if near:
        return f"unknown key '{name}'; did you mean '{near[0]}'?"
    valid = ", ".join(sorted(config_groups() | root_keys()))
    return f"unknown key '{name}'; valid top-level keys: {valid}"


def check_top_level_keys(overrides: list[Override]) -> None:
    """Every override must set, add under, pick or drop something of a known top-level key."""
    known = config_groups() | root_keys() | global_keys()
    for override in overrides:
        name = top_level_name(override)
        if name not in known:
            raise ConfigError(unknown_key_message(name))


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
    if not MULTIRUN_FLAGS & set(argv):
        check_sweeps_need_multirun(overrides)
