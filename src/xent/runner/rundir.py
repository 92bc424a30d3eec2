"""The run directory contract: metrics.json, checkpoints, and never losing an earlier run."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omegaconf import DictConfig

METRICS_FILE = "metrics.json"
LAST_CKPT = Path("checkpoints") / "last.ckpt"
# What a finished or interrupted run leaves behind; their presence means "a run lived here".
RUN_ARTIFACTS = (METRICS_FILE, "checkpoints", ".hydra", "csv", "tensorboard", "wandb")


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> Path:
    """Write metrics.json atomically (temp file + rename): a reader never sees half a file."""
    run_dir.mkdir(parents=True, exist_ok=True)
    clean = {k: _plain(v) for k, v in metrics.items()}
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".metrics.", suffix=".json")
    target = run_dir / METRICS_FILE
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(clean, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:  # a full disk, a signal: the earlier metrics.json stays, no debris
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _plain(value: Any) -> Any:
    """Tensors and numpy scalars to floats; NaN/inf to null so the file stays valid JSON."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / METRICS_FILE
    return json.loads(path.read_text()) if path.exists() else None


def check_run_dir_writable(run_dir: Path, key: str = "hydra.run.dir") -> None:
    """The run dir (or the folder it will be made in) must take files: checked before an
    earlier run is set aside, so a path under a file or on a read-only disk fails in one line
    and leaves everything as it was. (os.access, not a test write: nothing is written.) `key`
    is the override the message names (a sweep's dir: hydra.sweep.dir)."""
    from xent.errors import ConfigError

    existing = Path(run_dir)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    what = f"{key}={run_dir}"
    if not existing.is_dir():
        raise ConfigError(f"{what}: cannot make it, {existing} is a file, not a directory")
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise ConfigError(f"{what}: {existing} is on a read-only file system")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{what}: {existing} is not writable (permission denied)")


def archive_previous_run(run_dir: Path) -> Path | None:
    """Move an earlier run's files into run_dir/archive/<stamp>/ before a fresh run reuses it."""
    present = [name for name in RUN_ARTIFACTS if (run_dir / name).exists()]
    present += [p.name for p in run_dir.glob("*.log")]
    return archive_entries(run_dir, present) if present else None


def archive_entries(directory: Path, names: list[str]) -> Path:
    """Move `names` (entries of `directory`) into directory/archive/<stamp>/, the stamp being
    the first one's modification time (`-1`, `-2`, ... when that folder is taken)."""
    first = (directory / names[0]).stat().st_mtime
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(first))
    target = directory / "archive" / stamp
    suffix = 1
    while target.exists():
        target = directory / "archive" / f"{stamp}-{suffix}"
        suffix += 1
    target.mkdir(parents=True)
    for name in names:
        shutil.move(str(directory / name), str(target / name))
    return target


def finished_run(run_dir: Path) -> dict[str, Any] | None:
    """The metrics of a run that already ended ok in `run_dir`, else None."""
    try:
        metrics = json.loads((Path(run_dir) / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) and metrics.get("status") == "ok" else None


def resume_checkpoint(run_dir: Path, resume: bool, ckpt_path: str | None) -> str | None:
    """The checkpoint to continue from: an explicit ckpt_path wins, else last.ckpt on resume
    (never best.ckpt: last.ckpt is the end of the latest epoch, where training stopped)."""
    if ckpt_path:
        return str(ckpt_path)
    last = run_dir / LAST_CKPT
    if resume and last.exists():
        return str(last)
    return None


# --- resume=false | true | auto --------------------------------------------------------------

RESUME_MODES = ("false", "true", "auto")
SAVED_CONFIG = Path(".hydra") / "config.yaml"
# What resume=... makes of a run dir (resume_plan's answers).
FRESH, CONTINUE, FINISHED = "fresh", "continue", "finished"
# The config keys a resume must keep as saved: they decide the model, its data and what it is
# trained on, so a checkpoint of other values either fails to load (a state-dict mismatch) or
# trains on silently as something else (Lightning restores the optimizer's own lr). Everything
# else may change: trainer.* (trainer.max_epochs extends a run), logger, callbacks, paths,
# eval_ckpt, tags; so may any value derived from those (sched.T_max: ${trainer.max_epochs},
# data paths: ${paths.data_dir}).
# A task adds the nodes of its own that do so (`Task.resume_keys`: a teacher, a TTA method).
RESUME_MUST_MATCH = ("seed", "task", "data", "model", "loss", "optim", "sched")
_SHOWN_DIFFERENCES = 6
_REFERENCE = re.compile(r"\$\{([^}]*)\}")


def hydra_output_subdir(resume: Any) -> str | None:
    """hydra.output_subdir for a run: Hydra writes .hydra/ into the run dir before the job
    starts, so under resume (whose run dir may hold a finished run, or one whose config is
    refused) it writes nothing and the job saves its .hydra files once it starts."""
    return None if resume is True or resume == "auto" else ".hydra"


def register_resolvers() -> None:
    """The OmegaConf resolvers xent's configs use (`${xent.hydra_output_subdir:...}`)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("xent.hydra_output_subdir"):
        OmegaConf.register_new_resolver("xent.hydra_output_subdir", hydra_output_subdir)


def resume_mode(value: Any) -> str:
    """`resume` as one of RESUME_MODES; anything else is refused, naming the valid values."""
    from xent.errors import ConfigError

    if value is False or value is None:
        return "false"
    if value is True:
        return "true"
    if value == "auto":
        return "auto"
    raise ConfigError(
        f"resume={value}: expected false, true or auto (auto: resume if the run dir holds "
        "checkpoints/last.ckpt, else start fresh)"
    )


def resume_plan(cfg: DictConfig, run_dir: Path) -> str:
    """What `cfg.resume` makes of `run_dir`, decided before anything is written: FRESH (train
    from scratch), CONTINUE (from checkpoints/last.ckpt) or FINISHED (ended ok: leave it as it
    is). A resume that cannot be done raises ConfigError, and nothing has been touched."""
    from xent.errors import ConfigError

    mode = resume_mode(cfg.get("resume"))
    if mode == "false" or cfg.get("ckpt_path"):
        return FRESH
    run_dir = Path(run_dir)
    last = run_dir / LAST_CKPT
    finished = finished_run(run_dir) is not None
    if not finished and not last.is_file():
        if mode == "auto":
            return FRESH
        raise ConfigError(
            f"resume=true: nothing to resume in {run_dir} (no {LAST_CKPT}); drop resume to "
            "start a fresh run, or use resume=auto (resume where there is a checkpoint, else "
            "start fresh)"
        )
    saved = _saved_config(run_dir)
    if saved is None:
        raise ConfigError(
            f"resume={mode}: {run_dir / SAVED_CONFIG} is missing or unreadable, so the config "
            f"cannot be checked against the run's; continue without the check with "
            f"ckpt_path={last}, or drop resume to start afresh"
        )
    differences = config_differences(cfg, saved)
    if differences:
        shown = ", ".join(differences[:_SHOWN_DIFFERENCES])
        more = len(differences) - _SHOWN_DIFFERENCES
        shown += f" and {more} more" if more > 0 else ""
        raise ConfigError(
            f"resume={mode}: the config differs from the run's {run_dir / SAVED_CONFIG} in "
            f"{shown}; a resume must keep {', '.join(must_match(cfg))} as saved: use the "
            "saved values, or drop resume to start afresh (the earlier run is moved to archive/)"
        )
    if finished and not (_extends(cfg, saved) and last.is_file()):
        return FINISHED
    return CONTINUE


def finished_line(run_dir: Path) -> str:
    """What a resume of a finished run prints (stdout: it is not an error) instead of running."""
    return (
        f"xent-run: {run_dir} already finished (metrics.json status ok); left as it is. "
        "Raise trainer.max_epochs to train it further, or drop resume to start afresh"
    )


def preflight_resume(cfg: DictConfig, run_dir: Path) -> bool:
    """The resume check of a single run, before anything is written: True when the run starts
    fresh (so an earlier run there is set aside). A finished run ends the command here, with
    its line on stdout and exit 0: a rerun with resume=true has nothing left to do."""
    plan = resume_plan(cfg, run_dir)
    if plan == FINISHED:
        print(finished_line(run_dir), flush=True)
        raise SystemExit(0)
    return plan == FRESH


def _saved_config(run_dir: Path) -> DictConfig | None:
    """The resolved config the run saved (.hydra/config.yaml); None if absent or unreadable."""
    from omegaconf import DictConfig, OmegaConf

    try:
        saved = OmegaConf.load(run_dir / SAVED_CONFIG)
    except Exception:  # noqa: BLE001 - missing, unreadable, not YAML: all "cannot check"
        return None
    return saved if isinstance(saved, DictConfig) else None


def _extends(cfg: DictConfig, saved: DictConfig) -> bool:
    """Whether `cfg` asks for more epochs than the saved run trained towards."""
    from omegaconf import OmegaConf

    wanted = OmegaConf.select(cfg, "trainer.max_epochs", default=None)
    before = OmegaConf.select(saved, "trainer.max_epochs", default=None)
    return isinstance(wanted, int) and isinstance(before, int) and wanted > before


def must_match(cfg: DictConfig) -> tuple[str, ...]:
    """RESUME_MUST_MATCH and the task's own `resume_keys` (none when the task's class cannot
    be imported: the preflight reports that in its own line)."""
    from xent.checks import task_class

    try:
        extra = tuple(task_class(cfg).resume_keys)
    except Exception:  # noqa: BLE001 - a bad task._target_ is the preflight's to report
        extra = ()
    return RESUME_MUST_MATCH + tuple(k for k in extra if k not in RESUME_MUST_MATCH)


def config_differences(cfg: DictConfig, saved: DictConfig) -> list[str]:
    """`key (saved -> now)` for every key of `must_match` whose value differs, is new or is
    gone; values `cfg` derives from other keys (paths, trainer) or the environment are skipped."""
    from omegaconf import OmegaConf

    roots = must_match(cfg)
    raw, saved_raw = OmegaConf.to_container(cfg), OmegaConf.to_container(saved)
    now_raw, now, before = {}, {}, {}
    for root in roots:
        if root in cfg:
            now_raw.update(_flat(raw[root], root))
            now.update(_flat(_resolved(cfg[root]), root))
        if root in saved:
            before.update(_flat(saved_raw[root], root))
    missing = "(none)"
    differing = [
        key
        for key in sorted(set(now) | set(before))
        if not _derived_elsewhere(now_raw.get(key), roots)
        and now.get(key, missing) != before.get(key, missing)
    ]
    return [f"{key} ({before.get(key, missing)} -> {now.get(key, missing)})" for key in differing]


def _resolved(value: Any) -> Any:
    """A config value (a node or a leaf, read through its parent) as plain resolved Python."""
    from omegaconf import Container, OmegaConf

    return OmegaConf.to_container(value, resolve=True) if isinstance(value, Container) else value


def _flat(node: Any, prefix: str) -> dict[str, Any]:
    """A nested dict/list config as {dotted.key: leaf}."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(_flat(value, f"{prefix}.{key}"))
    return flat or {prefix: node}


def _derived_elsewhere(raw: Any, roots: tuple[str, ...]) -> bool:
    """An interpolation whose every reference lies outside `roots` (`${paths.x}`,
    `${trainer.max_epochs}`) or is a resolver (`${oc.env:...}`, `${hydra:...}`)."""
    if not isinstance(raw, str):
        return False
    references = _REFERENCE.findall(raw)
    return bool(references) and all(
        ":" in ref or ref.split(".")[0] not in roots for ref in references
    )


# --- Ctrl-C --------------------------------------------------------------------------------

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a process Ctrl-C ended
# Arguments the continue command sets itself (the run's dir and resume), or that would make it
# continue from somewhere other than the run's own last.ckpt.
_RESTATED = ("hydra.run.dir=", "hydra.sweep.dir=", "resume=", "+resume=", "ckpt_path=")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) ended a run; the message is the CLI's one line, with the command that
    continues it. A KeyboardInterrupt, so that a sweep stops too instead of starting its next
    job."""


def is_interrupt(err: BaseException) -> bool:
    """Ctrl-C, as it reaches the run: a KeyboardInterrupt, or the SystemExit(1) that Lightning
    raises in its place once it has run its on_exception hooks and torn the Trainer down."""
    if isinstance(err, KeyboardInterrupt):
        return True
    return isinstance(err, SystemExit) and isinstance(err.__context__, KeyboardInterrupt)


def continue_command(argv: list[str], run_dir: Path, sweep_dir: Path | None) -> str:
    """The command that continues an interrupted run: its own arguments, with its run dir (or
    a sweep's dir) and resume=true, or resume=auto where no last.ckpt was written yet (a sweep
    always: its jobs that never started have none)."""
    import shlex

    kept = [arg for arg in argv if not arg.startswith(_RESTATED)]
    if sweep_dir is not None:
        return shlex.join(["xent-run", *kept, f"hydra.sweep.dir={sweep_dir}", "resume=auto"])
    resume = "true" if (Path(run_dir) / LAST_CKPT).is_file() else "auto"
    return shlex.join(["xent-run", *kept, f"hydra.run.dir={run_dir}", f"resume={resume}"])


def interrupted_line(err: BaseException) -> str:
    """The one stderr line of an interrupted `xent-run`."""
    if isinstance(err, Interrupted) and str(err):
        return str(err)
    return "xent-run: interrupted"
