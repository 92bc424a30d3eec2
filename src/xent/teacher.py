"""Teachers for `task=distill`: from a checkpoint, from the cache, or trained once and cached.

A cached teacher lives in `paths.teachers/<model>-<data>-<key>/`, a run dir of its own (config,
metrics.json, checkpoints, log) plus `teacher.pt`, the plain state dict students load. The key
hashes what determines the weights: the teacher model, the data, the teacher recipe and the
teacher seed. Jobs that need the same missing teacher take a file lock, so it is trained once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from xent.errors import ConfigError

log = logging.getLogger("xent")

WEIGHTS_FILE = "teacher.pt"
# Data keys that do not change what a teacher learns (where files live, loader workers).
_DATA_KEYS_NOT_IN_KEY = ("root", "download", "num_workers", "shuffle_seed", "eval_batch_size")


def needs_teacher(loss: torch.nn.Module) -> bool:
    """Distillation losses do; `ce` under task=distill is the no-teacher baseline."""
    return "teacher_logits" in getattr(loss, "requires", ())


def _model_name(cfg: DictConfig) -> str:
    return str(cfg.teacher.model._target_).rsplit(".", 1)[-1]


def _data_name(cfg: DictConfig) -> str:
    return str(cfg.data._target_).rsplit(".", 1)[-1].removesuffix("DataModule").lower()


def cache_key(cfg: DictConfig) -> str:
    """Hash of (teacher model, data, teacher recipe, teacher seed), resolved."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    for key in _DATA_KEYS_NOT_IN_KEY:
        data.pop(key, None)
    identity = {
        "model": OmegaConf.to_container(cfg.teacher.model, resolve=True),
        "data": data,
        "recipe": OmegaConf.to_container(cfg.teacher.recipe, resolve=True),
        "seed": cfg.teacher.seed,
    }
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cache_dir(cfg: DictConfig) -> Path:
    """Where this teacher is (or will be) cached."""
    name = f"{_model_name(cfg)}-{_data_name(cfg)}-{cache_key(cfg)}"
    return Path(cfg.paths.teachers) / name


def teacher_source(cfg: DictConfig) -> tuple[Path | None, bool]:
    """(weights file, must train first); fails in one line when no teacher is reachable."""
    if cfg.teacher.ckpt:
        path = Path(str(cfg.teacher.ckpt)).expanduser()
        if not path.is_file():
            raise ConfigError(f"teacher.ckpt={path}: no such file")
        return path, False
    cached = cache_dir(cfg) / WEIGHTS_FILE
    if cached.is_file():
        return cached, False
    if not cfg.teacher.train_if_missing:
        raise ConfigError(
            f"no teacher: teacher.ckpt is null and the cache has none at {cached}; pass "
            "teacher.ckpt=PATH, or teacher.train_if_missing=true to train and cache it"
        )
    return cached, True


def build_teacher_model(cfg: DictConfig) -> torch.nn.Module:
    try:
        return instantiate(cfg.teacher.model)
    except Exception as err:  # noqa: BLE001 - reported in one line
        from xent.preflight import root_message

        raise ConfigError(f"teacher.model: {root_message(err)}") from err


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Weights only (`weights_only=True`: a pickle that would run code is refused).

    Takes this runner's checkpoints (Lightning's, whose `state_dict` keys start with `net.`)
    or a plain state dict of the model.
    """
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr
            warnings.simplefilter("ignore")
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        text = " ".join(str(err).split())
        detail = re.search(r"WeightsUnpickler error: ([^.]*)", text)
        reason = detail.group(1) if detail else text[:120]
        raise ConfigError(
            f"teacher.ckpt={path}: not a weights-only checkpoint, refused ({reason})"
        ) from err
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = {k[4:]: v for k, v in loaded["state_dict"].items() if k.startswith("net.")}
    if not isinstance(loaded, dict) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise ConfigError(f"teacher.ckpt={path}: expected a state dict (name -> tensor)")
    return loaded


def load_weights(model: torch.nn.Module, path: Path, cfg: DictConfig) -> torch.nn.Module:
    """Load `path` into `model`; any mismatch is one line naming the path and what was expected."""
    state = read_state_dict(path)
    expected = model.state_dict()
    head = getattr(model, "head", None)
    head_key = "head.weight" if isinstance(head, torch.nn.Linear) else None
    if head_key and head_key in state and state[head_key].shape != expected[head_key].shape:
        raise ConfigError(
            f"teacher.ckpt={path}: the teacher has {state[head_key].shape[0]} classes but "
            f"the data has {expected[head_key].shape[0]}"
        )
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        problems = []
        for what, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", wrong),
        ):
            if keys:
                problems.append(f"{len(keys)} {what} (e.g. {keys[0]})")
        raise ConfigError(
            f"teacher.ckpt={path} is not a state dict of teacher.model={_model_name(cfg)}: "
            + ", ".join(problems)
        )
    model.load_state_dict(state)
    return freeze(model)


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode, no gradients: the teacher only ever produces logits."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def check_teacher(cfg: DictConfig) -> None:
    """Preflight: a teacher is reachable, and an existing one loads into the teacher model."""
    path, must_train = teacher_source(cfg)
    model = build_teacher_model(cfg)
    if not must_train:
        load_weights(model, path, cfg)


def obtain_teacher(cfg: DictConfig) -> tuple[torch.nn.Module, Path]:
    """The frozen teacher: loaded, or trained into the cache first (once, under a lock)."""
    path, must_train = teacher_source(cfg)
    if must_train:
        from filelock import FileLock

        entry = path.parent
        entry.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(entry) + ".lock"):
            if not path.is_file():  # another job may have trained it while we waited
                train_teacher(cfg, entry)
    return load_weights(build_teacher_model(cfg), path, cfg), path


def teacher_run_config(cfg: DictConfig, entry: Path) -> DictConfig:
    """The student's config turned into a plain CE run of the teacher, in the cache entry."""
    recipe = OmegaConf.create(OmegaConf.to_container(cfg.teacher.recipe, resolve=True))
    tcfg = cfg.copy()
    with open_dict(tcfg):
        tcfg.task = {
            "_target_": "xent.tasks.classify.ClassifyTask",
            "monitor": "val/acc",
            "monitor_mode": "max",
            "num_classes": "${data.num_classes}",
        }
        tcfg.model = cfg.teacher.model
        tcfg.loss = {"_target_": "torch.nn.CrossEntropyLoss"}
        tcfg.optim = recipe.optim
        tcfg.sched = recipe.sched
        tcfg.trainer.max_epochs = recipe.epochs
        tcfg.data.batch_size = recipe.batch_size
        tcfg.data.shuffle_seed = cfg.teacher.seed
        tcfg.seed = cfg.teacher.seed
        tcfg.paths.output_dir = str(entry)
        tcfg.logger = {"csv": cfg.logger.csv} if "csv" in (cfg.logger or {}) else {}
        tcfg.resume, tcfg.ckpt_path, tcfg.eval_ckpt = False, None, "last"
        del tcfg["teacher"]
    return tcfg


def train_teacher(cfg: DictConfig, entry: Path) -> dict[str, Any]:
    """Train the teacher with CE and its own recipe; write `teacher.pt` last (atomically)."""
    from xent.run import run

    log.info("training teacher %s into the cache: %s", _model_name(cfg), entry)
    metrics = run(teacher_run_config(cfg, entry))
    weights = read_state_dict(entry / "checkpoints" / "last.ckpt")
    tmp = entry / (WEIGHTS_FILE + ".tmp")
    torch.save(weights, tmp)
    tmp.replace(entry / WEIGHTS_FILE)
    log.info("teacher cached: test/acc=%.4f", metrics.get("test/acc", float("nan")))
    return metrics
