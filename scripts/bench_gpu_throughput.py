"""Training throughput of xent's Lightning path against a tuned hand-written loop on a GPU
(issue 8, benchmark 6): ResNet-18 on CIFAR-100-shaped data, bf16 autocast, channels_last.

`python scripts/bench_gpu_throughput.py [--out DIR] [--quick]` writes `DIR/gpu_throughput.json`
and the `gpu_throughput` line of `DIR/README.md` (DIR defaults to benchmarks/). Without a CUDA
device it prints one line and writes nothing; `--cpu-smoke --out DIR` runs the same code on the
CPU with a tiny model, batch and step count, fp32, no compile, so that tests exercise it.

The setup both loops share (so the figures differ only by the loop): 50,000 random uint8
images 3x32x32 and labels in [0, 100) generated on the GPU; every step gathers a batch of 128
(xent's data/cifar100.yaml batch size) by a device-side permutation, applies CIFAR's
augmentation on the device (4-pixel-padded random crop + horizontal flip, the computation of
`xent.data.augment.random_crop_flip`, which draws its indices on the CPU and so cannot work on
CUDA tensors), normalises with CIFAR-100's mean/std and makes it channels_last. The net is
`model/resnet18.yaml` at 100 classes, moved to channels_last; the loss `loss/ce.yaml`
(CrossEntropyLoss); the optimizer `optim/sgd.yaml` (lr 0.05, momentum 0.9, wd 5e-4), all from
xent's composed config. cudnn.benchmark is on and float32 matmuls may use TF32 (process-wide
settings, the same for every candidate).

Candidates, each with its own net (same init), in rotation:

- `xent`: a `lightning.Trainer` built from `trainer/gpu.yaml` (precision bf16-mixed) with xent's
  `ClassifyTask` (its per-step loss and accuracy logging included), xent's EpochLog and
  EpochSeed callbacks and its default CSV logger (into a temp dir); checkpointing, validation
  and the progress bar off. The batches come from an iterable handed to `trainer.fit`.
- `hand`: `torch.autocast("cuda", bfloat16)` around forward and loss, `loss.backward()`,
  `optimizer.step()`, `optimizer.zero_grad(set_to_none=True)`; nothing else.
- `xent_compiled`, `hand_compiled`: the same with the net wrapped in `torch.compile` (default
  mode); compilation happens in the warm-up round.

One repetition of a candidate is one `trainer.fit` (a fresh Trainer, as every run makes) or one
hand loop over `steps` batches (200; 30 with --quick), each with a fresh optimizer; 7 timed
repetitions (2 with --quick) after one warm-up round. Throughput (`images_per_s`) is
timed from the start of batch `skip` to the end of the last batch (CUDA synchronised at both
ends), so per-fit setup is left out; `end_to_end_images_per_s` is all `steps` batches over the
repetition's wall time (Trainer construction and fit setup included; a `gc.collect()` before
each repetition is not). `peak_allocated_mb` is `torch.cuda.max_memory_allocated()` over
the candidate's repetitions (it includes the 150 MB data set and every candidate's weights);
`peak_above_start_mb` subtracts what was allocated when each repetition began (weights, data):
activations, gradients, optimizer state and workspaces.

Bar (as benchmark 1): images/s of xent >= 0.95x the hand loop, eager and compiled alike. A
missed bar is reported (output and `"bar": {"met": false}`), not raised.
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from xent.bench_harness import BENCH_DIR, interleaved, median, write_result

NAME = "gpu_throughput"
NO_CUDA = "gpu_throughput: no CUDA device here; nothing measured"
BAR = 0.95
NUM_CLASSES = 100
MEAN = (0.5071, 0.4865, 0.4409)  # data/cifar100.yaml
STD = (0.2673, 0.2564, 0.2762)


@dataclass
class Setup:
    """What is run; the defaults are the GPU benchmark's."""

    device: torch.device
    model: str = "resnet18"
    images: int = 50_000
    image_size: int = 32
    batch: int = 128
    steps: int = 200  # batches per repetition
    skip: int = 10  # batches of a repetition left out of the timed window
    repeats: int = 7
    warmup: int = 1
    bf16: bool = True
    channels_last: bool = True
    compile: bool = True
    smoke: bool = False

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def setup_for(args: argparse.Namespace) -> Setup:
    """The GPU setup, or a tiny fp32 eager CPU one whose numbers only prove the code runs."""
    if args.cpu_smoke:
        return Setup(
            device=torch.device("cpu"),
            model="resnet8",
            images=256,
            batch=8,
            steps=4,
            skip=1,
            repeats=2,
            warmup=1,
            bf16=False,
            channels_last=True,
            compile=False,
            smoke=True,
        )
    setup = Setup(device=torch.device("cuda"), batch=args.batch_size)
    if args.quick:
        setup.steps, setup.skip, setup.repeats = 30, 3, 2
    if args.no_compile:
        setup.compile = False
    return setup


# -- data -------------------------------------------------------------------------------------
def crop_flip(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """`xent.data.augment.random_crop_flip` with every draw and index on the images' device."""
    batch, channels, height, width = images.shape
    dev = images.device
    padded = F.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (batch,), device=dev, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (batch,), device=dev, generator=generator)
    rows = (dy[:, None] + torch.arange(height, device=dev))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(width, device=dev))[:, None, None, :]
    b = torch.arange(batch, device=dev)[:, None, None, None]
    c = torch.arange(channels, device=dev)[None, :, None, None]
    out = padded[b, c, rows, cols]
    flip = torch.rand(batch, device=dev, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


class DeviceBatches:
    """`steps` augmented, normalised (x, y, index) batches gathered from device-resident data;
    seeded by `seed`, so every candidate's k-th repetition sees the same batches."""

    def __init__(self, data: tuple[torch.Tensor, torch.Tensor], setup: Setup, seed: int):
        self.images, self.labels = data
        self.setup, self.seed = setup, seed
        dev = setup.device
        self.mean = torch.tensor(MEAN, device=dev).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(STD, device=dev).view(1, -1, 1, 1) * 255

    def __len__(self) -> int:
        return self.setup.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        setup, n = self.setup, len(self.labels)
        gen = torch.Generator(device=setup.device).manual_seed(self.seed)
        epochs = math.ceil(setup.steps * setup.batch / n)
        order = torch.cat(
            [torch.randperm(n, device=setup.device, generator=gen) for _ in range(epochs)]
        )
        memory = torch.channels_last if setup.channels_last else torch.contiguous_format
        for step in range(setup.steps):
            index = order[step * setup.batch : (step + 1) * setup.batch]
            images = crop_flip(self.images[index], 4, gen)
            x = ((images.float() - self.mean) / self.std).contiguous(memory_format=memory)
            yield x, self.labels[index], index


def device_data(setup: Setup) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-100's shapes generated where they are used: no host-to-device copy in any step."""
    gen = torch.Generator(device=setup.device).manual_seed(0)
    shape = (setup.images, 3, setup.image_size, setup.image_size)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, device=setup.device, generator=gen)
    labels = torch.randint(0, NUM_CLASSES, (setup.images,), device=setup.device, generator=gen)
    return images, labels


# -- xent's parts -----------------------------------------------------------------------------
def xent_config(setup: Setup):
    """xent's composed config for this model on CIFAR-100 with the GPU (or CPU) trainer."""
    from hydra import compose, initialize_config_module

    overrides = [
        f"model={setup.model}",
        "data=cifar100",
        f"data.image_size={setup.image_size}",
        f"data.batch_size={setup.batch}",
        "trainer=gpu" if setup.cuda else "trainer=cpu",
        "loss=ce",
        "optim=sgd",
    ]
    with initialize_config_module("xent.conf", version_base="1.3"):
        return compose("config", overrides=overrides)


def build_net(cfg, setup: Setup) -> torch.nn.Module:
    """The model config's net, as xent builds it, on the device and (here) channels_last."""
    from hydra.utils import instantiate

    torch.manual_seed(0)  # every candidate starts from the same weights
    net = instantiate(cfg.model).to(setup.device)
    if setup.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net


def maybe_compile(net: torch.nn.Module, compiled: bool) -> torch.nn.Module:
    return torch.compile(net) if compiled else net


@dataclass
class Record:
    """Per candidate: timed-window seconds and peak memory of each repetition."""

    window_s: list[float] = field(default_factory=list)
    repetition_s: list[float] = field(default_factory=list)
    peak_allocated: list[int] = field(default_factory=list)
    peak_above_start: list[int] = field(default_factory=list)


class Meter:
    """Marks the timed window (synchronised) and the peak memory of one repetition."""

    def __init__(self, setup: Setup, record: Record):
        self.setup, self.record = setup, record
        self.started = self.began = 0.0
        self.start_allocated = 0

    def _sync(self) -> None:
        if self.setup.cuda:
            torch.cuda.synchronize(self.setup.device)

    def begin_repetition(self) -> None:
        gc.collect()
        if self.setup.cuda:
            torch.cuda.synchronize(self.setup.device)
            torch.cuda.reset_peak_memory_stats(self.setup.device)
            self.start_allocated = torch.cuda.memory_allocated(self.setup.device)
        self.began = time.perf_counter()

    def batch_start(self, step: int) -> None:
        if step == self.setup.skip:
            self._sync()
            self.started = time.perf_counter()

    def batch_end(self, step: int) -> None:
        if step == self.setup.steps - 1:
            self._sync()
            ended = time.perf_counter()
            self.record.window_s.append(ended - self.started)
            self.record.repetition_s.append(ended - self.began)
            if self.setup.cuda:
                peak = torch.cuda.max_memory_allocated(self.setup.device)
                self.record.peak_allocated.append(peak)
                self.record.peak_above_start.append(peak - self.start_allocated)


def xent_candidate(
    cfg, setup: Setup, data, compiled: bool, record: Record, log_dir: Path
) -> Callable[[], None]:
    """One repetition: a fresh Trainer (xent's trainer config) fits xent's ClassifyTask for
    `steps` batches."""
    import lightning as L
    from hydra.utils import instantiate
    from lightning.pytorch.loggers import CSVLogger
    from omegaconf import OmegaConf

    from xent.runner.callbacks import EpochLog, EpochSeed
    from xent.tasks.classify import ClassifyTask

    meter = Meter(setup, record)

    class Window(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            meter.batch_start(batch_idx)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            meter.batch_end(batch_idx)

    task = ClassifyTask(
        net=maybe_compile(build_net(cfg, setup), compiled),
        loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optim),
        scheduler=instantiate(cfg.sched),
        num_classes=NUM_CLASSES,
    )
    trainer_args = OmegaConf.to_container(cfg.trainer, resolve=False)
    trainer_args.pop("_target_")
    trainer_args.update(
        default_root_dir=str(log_dir),
        max_epochs=1,
        max_steps=setup.steps,
        limit_val_batches=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    repetition = iter(range(10**9))

    def run() -> None:
        meter.begin_repetition()
        trainer = L.Trainer(
            **trainer_args,
            callbacks=[EpochLog(), EpochSeed(seed=0), Window()],
            logger=CSVLogger(save_dir=str(log_dir), name="csv", version=""),
        )
        trainer.fit(task, train_dataloaders=DeviceBatches(data, setup, next(repetition)))

    return run


def hand_candidate(cfg, setup: Setup, data, compiled: bool, record: Record) -> Callable[[], None]:
    """One repetition: the plain loop over `steps` batches with a fresh optimizer."""
    from hydra.utils import instantiate

    net = maybe_compile(build_net(cfg, setup), compiled)
    optimizer_factory = instantiate(cfg.optim)
    meter = Meter(setup, record)
    repetition = iter(range(10**9))

    def run() -> None:
        meter.begin_repetition()
        optimizer = optimizer_factory(params=net.parameters())
        net.train()
        for step, (x, y, _index) in enumerate(DeviceBatches(data, setup, next(repetition))):
            meter.batch_start(step)
            x = x.to(setup.device, non_blocking=True)
            y = y.to(setup.device, non_blocking=True)
            with torch.autocast(setup.device.type, dtype=torch.bfloat16, enabled=setup.bf16):
                loss = F.cross_entropy(net(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            meter.batch_end(step)

    return run


# -- the benchmark ----------------------------------------------------------------------------
def quiet() -> None:
    """Lightning's per-fit info lines and hints, once per repetition, would bury the table."""
    import lightning  # noqa: F401  (its loggers exist, with levels of their own, once imported)

    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in ("lightning", "lightning_fabric", "pytorch_lightning"):
            logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("xent").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module=r"lightning\..*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def run(setup: Setup, out: Path) -> dict[str, Any]:
    quiet()
    if setup.smoke:
        # 2+ intra-op threads on a shared CPU can cost 100x per step (spinning OpenMP workers).
        torch.set_num_threads(1)
    if setup.cuda:
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    cfg = xent_config(setup)
    data = device_data(setup)
    if not setup.bf16:
        cfg.trainer.precision = "32-true"
    variants = [False, True] if setup.compile else [False]
    records: dict[str, Record] = {}
    candidates: dict[str, Callable[[], None]] = {}
    with tempfile.TemporaryDirectory(prefix="xent_bench_gpu_") as tmp:
        for compiled in variants:
            suffix = "_compiled" if compiled else ""
            records[f"xent{suffix}"] = Record()
            records[f"hand{suffix}"] = Record()
            candidates[f"xent{suffix}"] = xent_candidate(
                cfg, setup, data, compiled, records[f"xent{suffix}"], Path(tmp)
            )
            candidates[f"hand{suffix}"] = hand_candidate(
                cfg, setup, data, compiled, records[f"hand{suffix}"]
            )
        interleaved(candidates, repeats=setup.repeats, warmup=setup.warmup)

    timed_images = (setup.steps - setup.skip) * setup.batch
    results: dict[str, dict[str, Any]] = {}
    for name, record in records.items():
        window = record.window_s[setup.warmup :]
        repetition = record.repetition_s[setup.warmup :]
        peaks = record.peak_allocated[setup.warmup :]
        above = record.peak_above_start[setup.warmup :]
        results[name] = {
            "images_per_s": timed_images / median(window),
            "end_to_end_images_per_s": setup.steps * setup.batch / median(repetition),
            "window_s": window,
            "repetition_s": repetition,
            "peak_allocated_mb": max(peaks) / 2**20 if peaks else None,
            "peak_above_start_mb": max(above) / 2**20 if above else None,
        }
    ratios = {
        suffix.strip("_") or "eager": results[f"xent{suffix}"]["images_per_s"]
        / results[f"hand{suffix}"]["images_per_s"]
        for suffix in (["", "_compiled"] if setup.compile else [""])
    }
    met = all(ratio >= BAR for ratio in ratios.values())
    result: dict[str, Any] = {
        "smoke": setup.smoke,
        "setup": {
            "model": setup.model,
            "images": setup.images,
            "image_size": setup.image_size,
            "batch": setup.batch,
            "steps_per_repetition": setup.steps,
            "timed_steps": setup.steps - setup.skip,
            "repeats": setup.repeats,
            "warmup": setup.warmup,
            "bf16_autocast": setup.bf16,
            "channels_last": setup.channels_last,
            "compile": setup.compile,
            "device": str(setup.device),
        },
        "candidates": results,
        "ratio_xent_to_hand": ratios,
        "bar": {"limit": f"xent >= {BAR}x hand images/s", **ratios, "met": met},
    }
    report(result)
    parts = []
    for variant, ratio in ratios.items():
        suffix = "" if variant == "eager" else "_compiled"
        xent, hand = results[f"xent{suffix}"], results[f"hand{suffix}"]
        memory = (
            f", peak {xent['peak_allocated_mb']:.0f} vs {hand['peak_allocated_mb']:.0f} MB"
            if setup.cuda
            else ""
        )
        parts.append(
            f"{variant}: xent {xent['images_per_s']:.0f} vs hand {hand['images_per_s']:.0f} "
            f"img/s ({ratio:.3f}x){memory}"
        )
    summary = (
        f"{'CPU smoke, ' if setup.smoke else ''}{setup.model} batch {setup.batch}"
        f"{', bf16' if setup.bf16 else ''}{', channels_last' if setup.channels_last else ''}; "
        + "; ".join(parts)
        + f" (bar >= {BAR}x: {'met' if met else 'missed'})"
    )
    write_result(NAME, result, summary, out_dir=out)
    return result


def report(result: dict[str, Any]) -> None:
    """The table on the terminal."""
    setup = result["setup"]
    print(
        f"gpu_throughput: {setup['model']} batch {setup['batch']} on {setup['device']}, median of "
        f"{setup['repeats']} interleaved repetitions of {setup['timed_steps']} timed steps"
    )
    print(
        f"  {'candidate':<14} {'images/s':>10} {'end-to-end':>11} {'peak MB':>9} {'+start MB':>10}"
    )
    for name, values in result["candidates"].items():
        peak = values["peak_allocated_mb"]
        above = values["peak_above_start_mb"]
        print(
            f"  {name:<14} {values['images_per_s']:>10.1f} "
            f"{values['end_to_end_images_per_s']:>11.1f} "
            f"{'-' if peak is None else f'{peak:.0f}':>9} "
            f"{'-' if above is None else f'{above:.0f}':>10}"
        )
    ratios = ", ".join(f"{k} {v:.3f}x" for k, v in result["ratio_xent_to_hand"].items())
    verdict = "bar met" if result["bar"]["met"] else "bar missed"
    print(f"  {verdict}: xent / hand images/s: {ratios} (>= {BAR}x)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="where the JSON and README go")
    parser.add_argument("--quick", action="store_true", help="fewer steps and repetitions")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--no-compile", action="store_true", help="eager candidates only")
    parser.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="the same code on the CPU, tiny (needs --out: its numbers are no benchmark)",
    )
    args = parser.parse_args(argv)
    if args.cpu_smoke and args.out is None:
        parser.error("--cpu-smoke needs --out: a smoke run must not replace benchmarks/")
    if not args.cpu_smoke and not torch.cuda.is_available():
        print(NO_CUDA)
        return
    run(setup_for(args), args.out or BENCH_DIR)


if __name__ == "__main__":
    sys.exit(main())
