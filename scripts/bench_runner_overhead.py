"""Training images/s of `xent-run` against a hand-written PyTorch loop doing the same work (#8).

`python scripts/bench_runner_overhead.py [--out DIR] [--quick] [--threads N]` writes
`DIR/runner_overhead.json` and the `runner_overhead` line of `DIR/README.md` (DIR defaults to
benchmarks/).

Both candidates train resnet20 (`model=resnet20`, the same init) on the same CIFAR-shaped uint8
images held in memory (`data=synthetic_cifar`), batch 128, on the CPU with the same torch thread
count, with CIFAR's augmentation (random 32x32 crop of the 4-padded image + horizontal flip,
both through xent's `random_crop_flip`), normalisation, cross-entropy and SGD with
conf/optim/sgd.yaml's lr, momentum, weight decay and nesterov.

- xent: `xent.runner.run.run(cfg)` itself, on the config `xent-run data=synthetic_cifar
  model=resnet20 trainer=cpu logger=none trainer.max_epochs=1` composes (plus a timing
  callback), with a training split of exactly `warmup_steps + steps` batches. Its stdout is
  redirected, so the progress bar is the one of a pipe (none, as under SLURM or `| tee`).
- hand: a plain loop: per step, `index_select` a shuffled batch out of the uint8 tensor,
  `random_crop_flip`, normalise in place (the operations `BatchGather` does), forward,
  `cross_entropy`, `zero_grad`, `backward`, `step`; no DataLoader, no metrics, no logging.

Timed region (both): the last `steps` training steps of the call, i.e. from the end of step
`warmup_steps` to the end of the last step, each step including fetching and augmenting its
batch. The issue asks about training, so what happens once per run or epoch is left out of the
headline: building the parts, the Trainer's start, the end-of-epoch validation and checkpoints,
the test. (Those are in `call_s`, each call's whole wall time, reported for reference.)
Repetitions of the two are interleaved; the figures are medians over repetitions.

Bar: xent >= 0.95x the hand loop's images/s. A missed bar is reported, not raised.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from xent.bench_harness import bench_parser, interleaved, median, write_result

NAME = "runner_overhead"
BAR = 0.95
OVERRIDES = (
    "data=synthetic_cifar",
    "model=resnet20",
    "trainer=cpu",
    "logger=none",
    "trainer.max_epochs=1",
)


class StepTimer(L.Callback):
    """Stamps the end of every training step. Hydra builds it inside `run`, so what it measured
    is left on the class: (steps, seconds) after the warm-up steps, per fit."""

    spans: list[tuple[int, float]] = []
    threads_in_fit = 0

    def __init__(self, warmup_steps: int):
        self.warmup_steps = warmup_steps
        self.started: float | None = None
        self.ended, self.steps = 0.0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        if batch_idx + 1 == self.warmup_steps:
            self.started = now
        self.ended, self.steps = now, batch_idx + 1 - self.warmup_steps

    def on_train_end(self, trainer, pl_module) -> None:
        if self.started is not None and self.steps > 0:
            StepTimer.spans.append((self.steps, self.ended - self.started))
        StepTimer.threads_in_fit = torch.get_num_threads()


# (steps, seconds) after the warm-up steps, per call of the hand-written loop.
hand_spans: list[tuple[int, float]] = []


def compose_config(run_dir: Path, overrides: list[str]) -> DictConfig:
    """The config `xent-run OVERRIDES hydra.run.dir=RUN_DIR` runs (Hydra's node removed)."""
    from hydra import compose, initialize_config_module
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with initialize_config_module("xent.conf", version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.runtime.cwd = str(run_dir.parent)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def xent_candidate(cfg: DictConfig, root: Path) -> Callable[[], None]:
    """One `xent.runner.run.run(cfg)` per call, in a fresh run dir; the timer records its steps."""
    from omegaconf import open_dict

    from xent.runner.run import run

    calls = iter(range(1_000_000))

    def call() -> None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(root / f"run{next(calls)}")
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            metrics = run(cfg)
        if metrics.get("status") != "ok":
            raise RuntimeError(f"xent run failed: {metrics}")

    return call


def hand_candidate(cfg: DictConfig, warmup_steps: int, steps: int) -> Callable[[], None]:
    """The same training written by hand; appends (steps, seconds) to `hand_spans`."""
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    train = datamodule.splits["train"]
    mean, std = datamodule.mean.view(1, -1, 1, 1), datamodule.std.view(1, -1, 1, 1)
    padding, hflip, batch = datamodule.crop_padding, datamodule.hflip, datamodule.batch_size
    optim_factory = instantiate(cfg.optim)

    def call() -> None:
        from xent.data.augment import random_crop_flip

        L.seed_everything(cfg.seed, workers=True, verbose=False)
        net = instantiate(cfg.model)
        net.train()
        optimizer = optim_factory(params=net.parameters())
        gen = torch.Generator().manual_seed(cfg.seed)
        order = torch.randperm(len(train.labels), generator=gen)
        started = 0.0
        for i in range(warmup_steps + steps):
            if i == warmup_steps:
                started = time.perf_counter()
            index = order[i * batch : (i + 1) * batch]
            images = random_crop_flip(train.images.index_select(0, index), padding, hflip, gen)
            x = images.to(torch.float32, copy=True).div_(255.0).sub_(mean).div_(std)
            loss = F.cross_entropy(net(x), train.labels.index_select(0, index))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        hand_spans.append((steps, time.perf_counter() - started))

    return call


def measure(batch: int, warmup_steps: int, steps: int, repeats: int, warmup: int) -> dict[str, Any]:
    """Interleaved repetitions of both; the medians and the per-repetition figures."""
    with tempfile.TemporaryDirectory(prefix="bench_runner_") as tmp:
        root = Path(tmp)
        overrides = [
            *OVERRIDES,
            f"data.batch_size={batch}",
            f"data.train_size={batch * (warmup_steps + steps)}",
            f"data.val_size={batch}",
            f"data.test_size={batch}",
            f"+callbacks.bench_timer._target_={__name__}.StepTimer",
            f"+callbacks.bench_timer.warmup_steps={warmup_steps}",
        ]
        cfg = compose_config(root / "run", overrides)
        threads = torch.get_num_threads()
        candidates = {
            "xent": xent_candidate(cfg, root),
            "hand": hand_candidate(cfg, warmup_steps, steps),
        }
        call_s = interleaved(candidates, repeats=repeats, warmup=warmup)
    spans = {"xent": StepTimer.spans[-repeats:], "hand": hand_spans[-repeats:]}
    per_rep = {k: [n * batch / s for n, s in v] for k, v in spans.items()}
    ips = {k: median(v) for k, v in per_rep.items()}
    ratio = ips["xent"] / ips["hand"]
    return {
        "settings": {
            "model": "resnet20",
            "data": "synthetic_cifar (uint8 in memory), crop_padding 4 + hflip",
            "batch_size": batch,
            "device": "cpu",
            "torch_threads": threads,
            "torch_threads_in_xent_fit": StepTimer.threads_in_fit,
            "warmup_steps": warmup_steps,
            "timed_steps": steps,
            "repeats": repeats,
            "xent_overrides": overrides[:-2],
        },
        "images_per_s": ips,
        "images_per_s_per_repeat": per_rep,
        "call_s": {k: median(v) for k, v in call_s.items()},
        "ratio": ratio,
        "bar": {"xent_over_hand_at_least": BAR, "met": ratio >= BAR},
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "tiny sizes, a smoke test")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per repetition")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="default: torch's")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        batch, warmup_steps, steps, repeats, warmup = 8, 1, 2, 2, 0
    else:
        batch, warmup_steps, steps, repeats, warmup = 128, 2, 20, 5, 1
    steps, repeats = args.steps or steps, args.repeats or repeats
    result = measure(batch, warmup_steps, steps, repeats, warmup)
    ips, ratio, met = result["images_per_s"], result["ratio"], result["bar"]["met"]
    verdict = "bar met" if met else "bar missed"
    print(f"{'candidate':<10} {'images/s':>10} {'call s':>8}   (median of {repeats})")
    for name in ("xent", "hand"):
        print(f"{name:<10} {ips[name]:>10.1f} {result['call_s'][name]:>8.2f}")
    print(f"ratio xent/hand = {ratio:.3f} (bar >= {BAR}): {verdict}")
    summary = (
        f"xent-run trains resnet20 at {ips['xent']:.0f} images/s vs {ips['hand']:.0f} for a "
        f"hand-written loop, {ratio:.3f}x (bar >= {BAR}x: {'met' if met else 'missed'}); "
        f"batch {batch}, CPU, {result['settings']['torch_threads']} torch threads"
    )
    path = write_result(NAME, result, summary, out_dir=args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
