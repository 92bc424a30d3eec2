"""Language modelling (task=lm): a decoder LM trained on token windows with a token loss.

The model returns hidden states; the loss applies the tied head itself (`lm.head=dense|chunked|
cce`, xent.losses.lm). Training counts optimizer steps as nanoGPT counts iterations: an epoch is
`data.eval_interval` steps, validation runs after each on a fixed set of windows, and the run
ends at `trainer.max_steps`. Evaluation reports plain next-token cross-entropy (nats per token)
whatever loss trains, so runs with different losses compare on one scale
(docs/methods/lm.md §4, §5).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from xent.checks import choice_name, integer, one_of
from xent.errors import ConfigError, root_message
from xent.losses.lm import HEADS, IGNORE_INDEX, LMLoss, as_lm_loss
from xent.pretrained import check_pretrained, nested_run_config, obtain_pretrained, resolved
from xent.tasks import lm_eval
from xent.tasks.base import FewThreads, Prepared, RunTrainer, Task
from xent.tasks.probes import check_data_fits, data_kind, loss_kind

EVAL_SUMS = ("nll", "correct", "tokens", "bytes")


def check_steps(cfg: DictConfig) -> None:
    """The run counts optimizer steps and ends validated: `trainer.max_steps` is a multiple of
    `data.eval_interval` (Lightning does not validate an epoch that max_steps cuts short)."""
    steps = OmegaConf.select(cfg, "trainer.max_steps", default=None)
    if steps is None:
        raise ConfigError(
            f"{choice_name(cfg, 'trainer')} has no max_steps, but task=lm counts optimizer steps: "
            "use trainer=lm"
        )
    integer("trainer.max_steps", steps, at_least=1)
    interval = int(cfg.data.eval_interval)
    if steps % interval:
        raise ConfigError(
            f"trainer.max_steps={steps} must be a multiple of data.eval_interval={interval} "
            "(validation runs every eval_interval steps, and so at the end)"
        )


class LMTask(FewThreads, Task):
    """Next-token prediction on windows of a text corpus (xent.data.text)."""

    target_kind = "tokens"
    trains_on = "token sequences"
    loss_hint = "a token loss (ce, ce_logz, or an LM loss such as emo)"
    reported = tuple(
        f"{stage}/{name}"
        for stage in ("val", "test")
        for name in ("loss", "bpc", "bpb", "ppl", "acc")
    ) + ("train/tokens_per_s", "train/lse_mean", "train/tokens", "train/loss")
    reported += tuple(f"test/pass@{k}" for k in lm_eval.HEADLINE_KS)
    best_key = "best/val_loss"
    best_test_keys = {"test/loss": "best/test_loss"}
    summary_keys = ("val/loss", "best/val_loss", "val/bpb", "test/loss", "train/tokens_per_s")
    group_defaults = {
        "data": "shakespeare",
        "model": "gpt_tiny",
        "optim": "adamw_lm",
        "sched": "warmup_cosine",
        "trainer": "lm",
    }

    @classmethod
    def loss_target_kind(cls, loss: nn.Module) -> str:
        """The kind a loss trains on, as this task sees it: the classify CE losses (ce,
        ce_logz) run on tokens through `as_lm_loss`."""
        try:
            as_lm_loss(loss)
        except TypeError:
            return loss_kind(loss)
        return cls.target_kind

    @classmethod
    def check_data(cls, cfg: DictConfig) -> None:
        """The data is a token corpus; its vocabulary size (known once it is tokenised) goes
        into `data.vocab_size`, which the model config reads."""
        if data_kind(cfg) != cls.target_kind:
            check_data_fits(cfg, cls, instead="data=shakespeare or data=text data.path=FILE")
        if "vocab_size" not in cfg.model:
            raise ConfigError(
                f"{choice_name(cfg, 'model')} is not a language model (it takes no vocab_size): "
                "use model=gpt_tiny or model=gpt_nano"
            )
        from hydra.utils import instantiate

        datamodule = instantiate(cfg.data)
        datamodule.prepare_data()
        with open_dict(cfg):
            cfg.data.vocab_size = datamodule.vocab_size

    @classmethod
    def check(
        cls, cfg: DictConfig, net: nn.Module, loss: nn.Module, *, load_pretrained: bool = True
    ) -> None:
        """lm.head suits the loss; the model runs on a window and the loss gives a scalar."""
        check_steps(cfg)
        head = cfg.task.head
        one_of("lm.head", head, HEADS)
        lm_loss = as_lm_loss(loss)
        try:
            lm_loss.check_head(head)
        except ValueError as err:
            raise ConfigError(f"{choice_name(cfg, 'loss')}: {root_message(err)}") from err
        block = int(cfg.data.block_size)
        if getattr(net, "block_size", block) < block:
            raise ConfigError(
                f"data.block_size={block} is longer than the model's block_size={net.block_size}"
            )
        ids = torch.zeros(2, block, dtype=torch.long)
        targets = ids
        if lm_loss.needs_answer_spans:  # a probe of unmasked zeros has no answer: a real batch
            ids, targets = first_training_batch(cfg)
            try:
                lm_loss.check_targets(targets)
            except ValueError as err:
                raise ConfigError(str(err)) from err
        try:
            with torch.no_grad():
                hidden = net(ids)
                value = lm_loss(hidden, net.head_weight, targets, head=head).loss
        except Exception as err:  # noqa: BLE001
            raise ConfigError(
                f"{choice_name(cfg, 'model')} with {choice_name(cfg, 'loss')} fails on a window "
                f"of {block} tokens: {root_message(err)}"
            ) from err
        if value.ndim != 0 or not torch.isfinite(value):
            raise ConfigError(f"{choice_name(cfg, 'loss')} gives {value} on a zero window")
        if cfg.get("base") is not None and load_pretrained:  # a job loads it once, in `prepare`
            check_pretrained(cfg, "base")

    @classmethod
    def prepare(
        cls, cfg: DictConfig, net: nn.Module, loss: nn.Module, *, train: RunTrainer
    ) -> Prepared:
        n_params = net.n_params() if hasattr(net, "n_params") else None
        if cfg.get("base") is not None:  # fine-tuning: start from the base model's weights
            base, _ = obtain_pretrained(cfg, "base", train=train, run_config=base_run_config)
            net.load_state_dict(base.state_dict())
        return Prepared(
            net, metrics={"model/n_params": n_params, "data/vocab_size": int(cfg.data.vocab_size)}
        )

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        head: str = "dense",
        monitor: str = "val/loss",
        monitor_mode: str = "min",
        samples_dir: str | None = None,
        samples: int = 3,
        sample_tokens: int = 200,
        sample_prompt: str = "\n",
        temperature: float = 0.8,
        sample_seed: int = 0,
        num_threads: int | None = 1,
        pass_at_k: int = 0,
    ):
        super().__init__(net, loss, optimizer, scheduler, monitor, monitor_mode)
        self.lm_loss: LMLoss = as_lm_loss(loss)
        self.head = head
        self.samples_dir = samples_dir
        self.samples, self.sample_tokens, self.sample_prompt = samples, sample_tokens, sample_prompt
        self.temperature, self.sample_seed = temperature, sample_seed
        self.best_value = math.inf
        self.tokens_seen = 0
        self.train_seconds = 0.0
        self._batch_started = 0.0
        self.eval_sums: dict[str, torch.Tensor] = {}
        self.num_threads = num_threads  # FewThreads applies it
        # pass@k: answers sampled per test question at each evaluation (0: none; data=arith)
        self.pass_at_k = integer("task.pass_at_k", pass_at_k, at_least=0)
        self.pass_curves: list[dict[str, Any]] = []

    # -- training ---------------------------------------------------------------------------------

    scheduler_interval = "step"  # warm-up + cosine per optimizer step, as nanoGPT

    def optimizer_params(self) -> list[dict]:
        """AdamW's usual split: matrices (weights, embeddings) decay; biases and norms do not."""
        params = [p for p in self.net.parameters() if p.requires_grad]
        return [
            {"params": [p for p in params if p.dim() >= 2]},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self._batch_started = time.perf_counter()

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        out = self.lm_loss(self.net(x), self.net.head_weight, y, head=self.head)
        self.log("train/loss", out.loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/lse_mean", out.lse_mean, on_step=False, on_epoch=True)
        self.tokens_seen += y.numel()
        return out.loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.train_seconds += time.perf_counter() - self._batch_started

    def on_train_epoch_end(self) -> None:
        self.log("train/tokens", float(self.tokens_seen))
        rate = self.tokens_seen / self.train_seconds if self.train_seconds else 0.0
        self.log("train/tokens_per_s", rate)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["lm/tokens_seen"] = self.tokens_seen
        checkpoint["lm/train_seconds"] = self.train_seconds  # a resumed run's tokens/s stays true
        checkpoint["lm/pass_curves"] = self.pass_curves  # a resumed run keeps its earlier epochs

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.tokens_seen = checkpoint.get("lm/tokens_seen", self.tokens_seen)
        self.train_seconds = checkpoint.get("lm/train_seconds", self.train_seconds)
        self.pass_curves = checkpoint.get("lm/pass_curves", self.pass_curves)

    # -- evaluation -------------------------------------------------------------------------------

    def _evaluate(self, batch) -> None:
        """Sums of next-token NLL, correct top-1 guesses, tokens and their UTF-8 bytes."""
        x, y = batch
        logits = self.net.logits(x).float()
        nll = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")
        token_bytes = self.trainer.datamodule.token_bytes.to(y.device)
        kept = y != IGNORE_INDEX  # masked prompts and padding (data=arith) are not evaluated
        sums = {
            "nll": nll.double(),
            "correct": (logits.argmax(-1) == y)[kept].sum().double(),
            "tokens": kept.sum().double(),
            "bytes": token_bytes[y[kept]].sum().double(),
        }
        for key, value in sums.items():
            self.eval_sums[key] = self.eval_sums.get(key, 0.0) + value.cpu()

    def _log_eval(self, stage: str) -> dict[str, float]:
        sums, self.eval_sums = self.eval_sums, {}
        loss = float(sums["nll"] / sums["tokens"])
        values = {
            f"{stage}/loss": loss,
            f"{stage}/ppl": math.exp(min(loss, 700.0)),
            f"{stage}/acc": float(sums["correct"] / sums["tokens"]),
            f"{stage}/bpb": float(sums["nll"] / sums["bytes"]) / math.log(2),
        }
        if self.trainer.datamodule.tokenizer.kind == "char":
            values[f"{stage}/bpc"] = loss / math.log(2)
        self.log_dict(values, prog_bar=stage == "val")
        return values

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch)

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch)

    def on_validation_epoch_start(self) -> None:
        self.eval_sums = {}

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_epoch_end(self) -> None:
        values = self._log_eval("val")
        if not self.trainer.sanity_checking:
            self.best_value = min(self.best_value, values["val/loss"])
            self.record_pass_at_k(self.current_epoch + 1)
        self.log(self.best_key, self.best_value)

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")
        if self.measures_pass_at_k():
            self.log_pass_at_k()

    # -- pass@k (data=arith) -----------------------------------------------------------------------

    def measures_pass_at_k(self) -> bool:
        return bool(self.pass_at_k) and hasattr(self.trainer.datamodule, "questions")

    def on_train_start(self) -> None:
        if self.trainer.global_step == 0:  # the starting point (the base model) is epoch 0
            self.record_pass_at_k(0)

    def record_pass_at_k(self, epoch: int) -> None:
        """The pass@k curve of the current weights on the test questions, kept as `epoch`'s:
        the curve across fine-tuning epochs is what the DCO claim is about."""
        if not self.measures_pass_at_k() or self.global_rank != 0:
            return
        datamodule = self.trainer.datamodule
        questions = datamodule.questions("test")
        correct = lm_eval.count_correct(
            self.net, datamodule, questions, self.pass_at_k, self.sample_seed
        )
        curve = lm_eval.pass_at_k_curve(correct, self.pass_at_k)
        entry = {"epoch": epoch, "step": self.trainer.global_step, "n": self.pass_at_k}
        self.pass_curves.append({**entry, "questions": len(questions), "curve": curve})

    def log_pass_at_k(self) -> None:
        """test/pass@k of the tested weights (the last epoch's curve when they are its
        weights), `test/pass@k/epochE` per recorded epoch, and the run dir's files."""
        if not self.pass_curves or self.pass_curves[-1]["step"] != self.trainer.global_step:
            self.record_pass_at_k(self.current_epoch)
        values = lm_eval.headline(self.pass_curves[-1]["curve"])
        for entry in self.pass_curves:
            for key, value in lm_eval.headline(entry["curve"]).items():
                values[f"{key}/epoch{entry['epoch']}"] = value
        self.log_dict(values)
        self.reported = type(self).reported + tuple(values)
        if self.samples_dir is not None and self.global_rank == 0:
            lm_eval.write_curves(Path(self.samples_dir), self.pass_curves)

    # -- samples ----------------------------------------------------------------------------------

    def on_fit_end(self) -> None:
        if self.samples_dir is None or not self.samples or self.global_rank != 0:
            return
        path = Path(self.samples_dir) / "samples.txt"
        path.write_text(self.sample_text())

    def sample_text(self) -> str:
        """`samples` continuations of the prompt at `temperature`, from a fixed seed."""
        from xent.models.gpt import sample

        datamodule = self.trainer.datamodule
        prompt = datamodule.encode(self.sample_prompt) or [0]
        generator = torch.Generator().manual_seed(self.sample_seed)
        was_training = self.net.training
        self.net.eval()
        pieces = []
        for i in range(self.samples):
            ids = sample(
                self.net,
                prompt,
                self.sample_tokens,
                temperature=self.temperature,
                generator=generator,
            )
            pieces.append(
                f"--- sample {i + 1} (temperature {self.temperature}) ---\n"
                f"{self.sample_prompt}{datamodule.decode(ids)}\n"
            )
        self.net.train(was_training)
        return "\n".join(pieces)


def first_training_batch(cfg: DictConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The first (inputs, targets) batch the run would train on: what a loss that needs
    answer spans (DCO) is checked against before anything is written."""
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return next(iter(datamodule.train_dataloader()))


def base_run_config(cfg: DictConfig, entry: Path, key: str = "base") -> DictConfig:
    """The run that pre-trains the base model experiment=dco_arith fine-tunes: token CE on the
    base node's data for its recipe's `steps`, validated every `eval_interval` steps, written
    into the cache entry `entry` (xent.pretrained)."""
    recipe = resolved(cfg[key].recipe)
    tcfg = nested_run_config(cfg, entry, key, recipe)
    with open_dict(tcfg):
        tcfg.loss = {"_target_": "torch.nn.CrossEntropyLoss"}
        tcfg.trainer.max_steps = recipe.steps
        tcfg.data.eval_interval = recipe.eval_interval
    return tcfg
