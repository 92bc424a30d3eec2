"""Pretrained models a run needs: from a checkpoint, from the cache, or trained once and cached.

Two kinds use this one mechanism, each described by a config node: `teacher` (the frozen
teacher of `task=distill`, trained on the run's data) and `source` (the source model that
`task=tta` adapts, trained on `source.data`, the clean data behind a corrupted stream). A
node holds `model`, `recipe`, `seed`, `ckpt`, `train_if_missing` and optionally `data`.

A cached model lives in `paths.teachers/<model>-<data>-<key>/`, a run dir of its own (config,
metrics.json, checkpoints, log) plus `teacher.pt`, the plain state dict runs load. The key
hashes what determines the weights: the model, the data, the recipe and the seed. Jobs that
need the same missing model take a file lock, so it is trained once.

A missing model is trained by a `RunTrainer` the caller passes in (the runner hands
`xent.runner.run.run` to a task's `prepare`), so this module imports no runner or task code: the
tasks that need a pretrained model (`distill`, `tta`) build on it, never the reverse.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from xent.errors import ConfigError, root_message

log = logging.getLogger("xent")

WEIGHTS_FILE = "teacher.pt"
# Data keys that do not change what a teacher learns (where files live, loader workers).
_DATA_KEYS_NOT_IN_KEY = ("root", "download", "num_workers", "shuffle_seed", "eval_batch_size")
# Trains one run config into its `paths.output_dir` and returns its metrics (`xent.runner.run.run`).
RunTrainer = Callable[[DictConfig], dict[str, Any]]


def _noun(key: str) -> str:
    """How messages name the model of a node: "teacher", "source model"."""
    return "teacher" if key == "teacher" else f"{key} model"


def _model_name(cfg: DictConfig, key: str = "teacher") -> str:
    return str(cfg[key].model._target_).rsplit(".", 1)[-1]


def training_data(cfg: DictConfig, key: str = "teacher") -> DictConfig:
    """The data a pretrained model learns from: its node's `data`, else the run's."""
    node = cfg[key]
    return node.data if node.get("data") is not None else cfg.data


def _data_name(cfg: DictConfig, key: str = "teacher") -> str:
    target = str(training_data(cfg, key)._target_)
    return target.rsplit(".", 1)[-1].removesuffix("DataModule").lower()


def cache_key(cfg: DictConfig, key: str = "teacher") -> str:
    """Hash of (model, data, recipe, seed) of the `key` node, resolved."""
    data = OmegaConf.to_container(training_data(cfg, key), resolve=True)
    for name in _DATA_KEYS_NOT_IN_KEY:
        data.pop(name, None)
    identity = {
        "model": OmegaConf.to_container(cfg[key].model, resolve=True),
        "data": data,
        "recipe": OmegaConf.to_container(cfg[key].recipe, resolve=True),
        "seed": cfg[key].seed,
    }
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cache_dir(cfg: DictConfig, key: str = "teacher") -> Path:
    """Where this pretrained model is (or will be) cached."""
    name = f"{_model_name(cfg, key)}-{_data_name(cfg, key)}-{cache_key(cfg, key)}"
    return Path(cfg.paths.teachers) / name


def missing_node(key: str) -> ConfigError:
    """The error for a run that needs a `key` node (teacher, source) and has none (`~teacher`)."""
    conf = Path(__file__).parent / "conf" / key
    options = ", ".join(sorted(p.stem for p in conf.glob("*.yaml")))
    need = "the loss needs its logits" if key == "teacher" else "task=tta adapts it"
    return ConfigError(
        f"no {_noun(key)}: the config has no {key} node, but {need}; select one with "
        f"{key}=<option> (valid: {options})"
    )


def pretrained_source(cfg: DictConfig, key: str = "teacher") -> tuple[Path | None, bool]:
    """(weights file, must train first); fails in one line when no model is reachable."""
    node = cfg.get(key)
    if node is None:
        raise missing_node(key)
    model = node.get("model")
    if not isinstance(model, DictConfig) or "_target_" not in model:
        raise ConfigError(
            f"{key}.model={'null' if model is None else model}: expected a model config with a "
            f"_target_ (pick one with {key}=<option>)"
        )
    if node.ckpt:
        path = Path(str(node.ckpt)).expanduser()
        if not path.is_file():
            raise ConfigError(f"{key}.ckpt={path}: no such file")
        return path, False
    cached = cache_dir(cfg, key) / WEIGHTS_FILE
    if cached.is_file():
        return cached, False
    if not node.train_if_missing:
        raise ConfigError(
            f"no {_noun(key)}: {key}.ckpt is null and the cache has none at {cached}; pass "
            f"{key}.ckpt=PATH, or {key}.train_if_missing=true to train and cache it"
        )
    return cached, True


def build_pretrained_model(cfg: DictConfig, key: str = "teacher") -> torch.nn.Module:
    try:
        return instantiate(cfg[key].model)
    except Exception as err:  # noqa: BLE001 - reported in one line
        raise ConfigError(f"{key}.model: {root_message(err)}") from err


def read_state_dict(path: Path, key: str = "teacher") -> dict[str, torch.Tensor]:
    """Weights only (`weights_only=True`: a pickle that would run code is refused).

    Takes this runner's checkpoints (Lightning's, whose `state_dict` keys start with `net.`)
    or a plain state dict of the model, also wrapped (`{"state_dict": ...}`, `{"model": ...}`)
    or saved from DataParallel (`module.` prefixes), as RobustBench's checkpoints are.
    """
    # Here, not at the top: checkpoint_io loads Lightning, which the preflight's first checks
    # (override types) do without.
    from xent.checkpoint_io import CheckpointLoadError, load_weights_only
    from xent.models.robustbench import unwrap_state_dict

    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr
            warnings.simplefilter("ignore")
            loaded = load_weights_only(path)
    except CheckpointLoadError as err:  # refused as code, or not a whole file: say which
        raise ConfigError(f"{key}.ckpt={path}: {err.problem}") from err
    except Exception as err:  # noqa: BLE001 - reported in one line
        raise ConfigError(f"{key}.ckpt={path}: cannot load it ({root_message(err)})") from err
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        inner = loaded["state_dict"]
        if any(k.startswith("net.") for k in inner):  # a runner (Lightning) checkpoint
            loaded = {k[4:]: v for k, v in inner.items() if k.startswith("net.")}
    try:
        return unwrap_state_dict(loaded)
    except ValueError:
        raise ConfigError(f"{key}.ckpt={path}: expected a state dict (name -> tensor)") from None


def load_weights(
    model: torch.nn.Module, path: Path, cfg: DictConfig, key: str = "teacher"
) -> torch.nn.Module:
    """Load `path` into `model`; any mismatch is one line naming the path and what was expected.
    The model comes back frozen (eval mode, no gradients); unfreeze it to adapt it."""
    state = read_state_dict(path, key)
    expected = model.state_dict()
    # Constants the model keeps out of its state dict (e.g. resnext29's input mean/std, which
    # RobustBench's in-memory model saves but its released checkpoint lacks) may come along
    # in a checkpoint; equal values are dropped, different ones stay and are reported.
    constants = {name: b for name, b in model.named_buffers() if name not in expected}
    state = {
        k: v
        for k, v in state.items()
        if not (k in constants and v.shape == constants[k].shape and torch.equal(v, constants[k]))
    }
    head = getattr(model, "head", None)
    head_key = "head.weight" if isinstance(head, torch.nn.Linear) else None
    if head_key and head_key in state and state[head_key].shape != expected[head_key].shape:
        raise ConfigError(
            f"{key}.ckpt={path}: the {_noun(key)} has {state[head_key].shape[0]} classes but "
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
            f"{key}.ckpt={path} is not a state dict of {key}.model={_model_name(cfg, key)}: "
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


def trained_here(cfg: DictConfig, path: Path, key: str = "teacher") -> bool:
    """Whether the weights at `path` were trained by this runner (the cache, or a runner
    checkpoint with Lightning's `net.` keys), and so expect its data normalisation."""
    if not cfg[key].ckpt:
        return True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    inner = loaded.get("state_dict") if isinstance(loaded, dict) else None
    return isinstance(inner, dict) and any(str(k).startswith("net.") for k in inner)


def check_pretrained(cfg: DictConfig, key: str = "teacher") -> None:
    """Preflight: a model is reachable, and an existing one loads into the node's model."""
    path, must_train = pretrained_source(cfg, key)
    model = build_pretrained_model(cfg, key)
    if not must_train:
        load_weights(model, path, cfg, key)


# The run config that trains a missing model into its cache entry: (cfg, entry, key) -> config.
RunConfigBuilder = Callable[[DictConfig, Path, str], DictConfig]


def obtain_pretrained(
    cfg: DictConfig,
    key: str = "teacher",
    *,
    train: RunTrainer,
    run_config: RunConfigBuilder | None = None,
) -> tuple[torch.nn.Module, Path]:
    """The frozen model: loaded, or trained into the cache first by `train` (once, under a
    lock) on the run config `run_config` builds (default: a CE classification run,
    `pretrained_run_config`; task=lm passes its own)."""
    path, must_train = pretrained_source(cfg, key)
    if must_train:
        from filelock import FileLock

        entry = path.parent
        entry.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(entry) + ".lock"):
            if not path.is_file():  # another job may have trained it while we waited
                train_pretrained(cfg, entry, key, train, run_config)
    return load_weights(build_pretrained_model(cfg, key), path, cfg, key), path


def resolved(node: Any) -> DictConfig:
    """A config node with its interpolations resolved, detached from the run's config."""
    return OmegaConf.create(OmegaConf.to_container(node, resolve=True))


def nested_run_config(cfg: DictConfig, entry: Path, key: str, recipe: DictConfig) -> DictConfig:
    """What every run that trains a `key` model into its cache entry shares: the run's config
    with the node's data, model and seed, the recipe's optimizer, schedule and batch size, the
    entry as its run dir, CSV logging only, a fresh run. The caller adds task, loss and length."""
    node = cfg[key]
    tcfg = cfg.copy()
    with open_dict(tcfg):
        for other in ("teacher", "source", "tta", "base"):
            tcfg.pop(other, None)
        tcfg.data = resolved(training_data(cfg, key))
        tcfg.model = resolved(node.model)
        tcfg.optim = recipe.optim
        tcfg.sched = recipe.sched
        tcfg.data.batch_size = recipe.batch_size
        tcfg.data.shuffle_seed = node.seed
        tcfg.seed = node.seed
        tcfg.paths.output_dir = str(entry)
        tcfg.logger = {"csv": cfg.logger.csv} if "csv" in (cfg.logger or {}) else {}
        tcfg.resume, tcfg.ckpt_path, tcfg.eval_ckpt = False, None, "last"
    return tcfg


def pretrained_run_config(cfg: DictConfig, entry: Path, key: str = "teacher") -> DictConfig:
    """The run's config turned into a plain CE classification run of the `key` model (on its
    training data, with its recipe), in the cache entry."""
    recipe = resolved(cfg[key].recipe)
    tcfg = nested_run_config(cfg, entry, key, recipe)
    with open_dict(tcfg):
        tcfg.task = {
            "_target_": "xent.tasks.classify.ClassifyTask",
            "monitor": "val/acc",
            "monitor_mode": "max",
            "num_classes": "${data.num_classes}",
        }
        tcfg.loss = {"_target_": "torch.nn.CrossEntropyLoss"}
        tcfg.trainer.max_epochs = recipe.epochs
    return tcfg


def train_pretrained(
    cfg: DictConfig,
    entry: Path,
    key: str,
    train: RunTrainer,
    run_config: RunConfigBuilder | None = None,
) -> dict[str, Any]:
    """Train the model with CE and its own recipe (through `train`); write `teacher.pt` last
    (atomically: temp file, fsync, rename)."""
    log.info("training %s model %s into the cache: %s", key, _model_name(cfg, key), entry)
    metrics = train((run_config or pretrained_run_config)(cfg, entry, key))
    weights = read_state_dict(entry / "checkpoints" / "last.ckpt", key)
    from xent.checkpoint_io import atomic_torch_save

    atomic_torch_save(weights, entry / WEIGHTS_FILE)
    log.info("%s model cached: test/acc=%.4f", key, metrics.get("test/acc", float("nan")))
    return metrics
