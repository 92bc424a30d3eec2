"""Training tokens/s of task=lm's model and loss against nanoGPT's model, side by side in one
process: the same GPT shape, batch, optimizer and clip, interleaved repetitions.

    python scripts/bench_lm_train.py --nanogpt PATH/TO/nanoGPT [--threads 1] [--quick]
    NANOGPT=PATH/TO/nanoGPT make bench      # with every other benchmark

A step is what both training loops do per iteration: forward, the token cross-entropy, backward,
gradient clip 1.0, AdamW step, zero_grad. xent's side is `xent.models.gpt.GPT` (model=gpt_nano)
with `TokenCE` on the tied head, as `task=lm` calls it; nanoGPT's side is its own `model.py`
(imported from the checkout) whose `forward(idx, targets)` returns the loss. Both train on the
same random character windows (vocab 65, as tiny Shakespeare). What this leaves out, Lightning's
loop and the batch fetch, is in the whole-run comparison `scripts/parity_nanogpt.py`. Bar: xent's
tokens/s at least 0.9x nanoGPT's. Writes benchmarks/lm_train.json and its line in
benchmarks/README.md.

`--device cuda` (writes `lm_train_gpu.json`): nanoGPT's own GPU recipe for this text
(config/train_shakespeare_char.py: 6 layers, 6 heads, 384 wide, block 256, batch 64; dropout 0
here), TF32 matmuls allowed as its train.py does, in three variants per side: `fp32` (eager),
`bf16` (eager under bf16 autocast) and `bf16_compiled` (bf16 autocast with the model wrapped in
`torch.compile`, nanoGPT's default; its forward includes its loss, xent's GPT does not, so
xent's `TokenCE` stays eager, as task=lm would run it). Each repetition ends with a CUDA
synchronise; compiling happens in the warm-up round. `--cpu-smoke`: the same code on the CPU,
gpt_nano-sized, two steps, so that a test runs it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

from xent.bench_harness import bench_parser, interleaved, median, write_result
from xent.losses.lm import TokenCE
from xent.models.gpt import GPT

NAME = "lm_train"
SHAPE = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64}  # model=gpt_nano
VOCAB = 65
BATCH = 12
SPEED_BAR = 0.9
FULL = {"steps": 20, "repeats": 7}
QUICK = {"steps": 2, "repeats": 2}
GPU_SHAPE = {"n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 256}
GPU_BATCH = 64
GPU_SIZES = {"steps": 50, "repeats": 7}
VARIANTS = {"fp32": (False, False), "bf16": (True, False), "bf16_compiled": (True, True)}
NO_CUDA = "lm_train --device cuda: no CUDA device here; nothing measured"


def nanogpt_module(checkout: Path):
    """nanoGPT's `model.py`, imported from its checkout under a name of its own."""
    spec = importlib.util.spec_from_file_location("nanogpt_model", checkout / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def adamw(model: torch.nn.Module) -> torch.optim.Optimizer:
    """The same optimizer for both sides (task=lm's adamw_lm: lr 1e-3, betas 0.9/0.99, weight
    decay 0.1), over every parameter: the benchmark times the step, not the grouping."""
    return torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)


def trainer(
    model: torch.nn.Module, loss_of: Callable, batches: list, bf16: bool = False
) -> Callable[[], None]:
    """A callable that trains `len(batches)` steps: loss (under bf16 autocast if asked),
    backward, clip, AdamW, zero_grad; on a GPU it waits for the last step to finish."""
    optimizer = adamw(model)
    device = next(model.parameters()).device

    def run() -> None:
        for x, y in batches:
            with torch.autocast(device.type, torch.bfloat16) if bf16 else nullcontext():
                loss = loss_of(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return run


def sides(
    checkout: Path,
    steps: int,
    shape: dict = SHAPE,
    batch: int = BATCH,
    device: str = "cpu",
    bf16: bool = False,
    compiled: bool = False,
) -> dict[str, tuple[torch.nn.Module, Callable[[], None]]]:
    """name -> (model, its training callable): xent's GPT + TokenCE and nanoGPT's GPT, seeded
    alike, on the same windows; `compiled` wraps each model in torch.compile."""
    generator = torch.Generator().manual_seed(0)
    windows = [
        torch.randint(VOCAB, (batch, shape["block_size"] + 1), generator=generator).to(device)
        for _ in range(steps)
    ]
    batches = [(ids[:, :-1].contiguous(), ids[:, 1:].contiguous()) for ids in windows]
    torch.manual_seed(0)
    ours = GPT(vocab_size=VOCAB, dropout=0.0, bias=False, **shape).to(device)
    token_ce = TokenCE()
    nano = nanogpt_module(checkout)
    torch.manual_seed(0)
    theirs = nano.GPT(nano.GPTConfig(vocab_size=VOCAB, dropout=0.0, bias=False, **shape))
    theirs = theirs.to(device)
    ours_fwd, theirs_fwd = (torch.compile(m) if compiled else m for m in (ours, theirs))
    return {
        "xent": (
            ours,
            trainer(
                ours,
                lambda x, y: token_ce(ours_fwd(x), ours.head_weight, y).loss,
                batches,
                bf16,
            ),
        ),
        "nanogpt": (theirs, trainer(theirs, lambda x, y: theirs_fwd(x, y)[1], batches, bf16)),
    }


def main_on_device(checkout: Path, out: Path, smoke: bool) -> None:
    """`--device cuda` (or `--cpu-smoke`): xent vs nanoGPT in each variant, all interleaved."""
    device = "cpu" if smoke else "cuda"
    shape, batch = (SHAPE, 2) if smoke else (GPU_SHAPE, GPU_BATCH)
    sizes = QUICK if smoke else GPU_SIZES
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # as nanoGPT's train.py
        torch.backends.cudnn.allow_tf32 = True
    runs = {}
    for variant, (bf16, compiled) in VARIANTS.items():
        if smoke and compiled:
            continue  # compiling on the CPU takes minutes: the GPU run times it
        for side, (_, run) in sides(
            checkout, sizes["steps"], shape, batch, device, bf16, compiled
        ).items():
            runs[f"{side}_{variant}"] = run
    seconds = interleaved(runs, sizes["repeats"])
    tokens = sizes["steps"] * batch * shape["block_size"]
    rates = {name: tokens / median(times) for name, times in seconds.items()}
    ratios = {
        variant: rates[f"xent_{variant}"] / rates[f"nanogpt_{variant}"]
        for variant in VARIANTS
        if f"xent_{variant}" in rates
    }
    result = {
        "device": device,
        "shape": {**shape, "vocab_size": VOCAB, "batch": batch},
        "steps_per_repeat": sizes["steps"],
        "seconds": seconds,
        "tokens_per_s": rates,
        "ratio": ratios,
        "bar": SPEED_BAR,
        "bar_met": {variant: ratio >= SPEED_BAR for variant, ratio in ratios.items()},
    }
    cells = [
        f"{variant} {rates[f'xent_{variant}']:,.0f} vs {rates[f'nanogpt_{variant}']:,.0f} "
        f"tokens/s, {ratio:.2f}x"
        for variant, ratio in ratios.items()
    ]
    line = (
        f"task=lm's model+loss step vs nanoGPT's on {device} ({shape['n_layer']} layers, "
        f"{shape['n_embd']} wide, batch {batch}x{shape['block_size']}): {'; '.join(cells)} "
        f"(bar >= {SPEED_BAR}x: {'met' if all(result['bar_met'].values()) else 'missed'})"
    )
    path = write_result(
        f"{NAME}_gpu" if device == "cuda" else f"{NAME}_cpu_smoke", result, line, out
    )
    print(json.dumps(result, indent=2))
    print(line)
    print(f"wrote {path}", file=sys.stderr)


def summary(result: dict) -> str:
    """The benchmark's README line."""
    tokens = result["tokens_per_s"]
    return (
        f"task=lm's model+loss step vs nanoGPT's (gpt_nano shape, batch {BATCH}x"
        f"{SHAPE['block_size']}, {result['threads']} thread(s)): {tokens['xent']:,.0f} vs "
        f"{tokens['nanogpt']:,.0f} tokens/s, {result['ratio']:.2f}x "
        f"(bar >= {SPEED_BAR}x: {'met' if result['bar_met'] else 'missed'})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--nanogpt",
        type=Path,
        default=os.environ.get("NANOGPT"),
        help="a nanoGPT checkout (default: $NANOGPT)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--cpu-smoke", action="store_true", help="the --device run's code, tiny, on the CPU"
    )
    args = parser.parse_args(argv)
    if args.nanogpt is None:  # `make bench` runs every script: say why this one measured nothing
        print("lm_train: no nanoGPT checkout (--nanogpt DIR or NANOGPT=DIR); nothing measured")
        return
    if not (args.nanogpt / "model.py").is_file():
        parser.error(f"--nanogpt {args.nanogpt}: no model.py (a nanoGPT checkout)")
    if args.device == "cuda" and not torch.cuda.is_available():
        print(NO_CUDA)
        return
    if args.device == "cuda" or args.cpu_smoke:
        main_on_device(args.nanogpt, args.out, smoke=args.cpu_smoke)
        return
    torch.set_num_threads(args.threads)
    sizes = QUICK if args.quick else FULL
    runs = {name: run for name, (_, run) in sides(args.nanogpt, sizes["steps"]).items()}
    seconds = interleaved(runs, sizes["repeats"])
    tokens = sizes["steps"] * BATCH * SHAPE["block_size"]
    rates = {name: tokens / median(times) for name, times in seconds.items()}
    ratio = rates["xent"] / rates["nanogpt"]
    result = {
        "shape": {**SHAPE, "vocab_size": VOCAB, "batch": BATCH},
        "threads": args.threads,
        "steps_per_repeat": sizes["steps"],
        "seconds": seconds,
        "tokens_per_s": rates,
        "ratio": ratio,
        "bar": SPEED_BAR,
        "bar_met": ratio >= SPEED_BAR,
        "quick": args.quick,
    }
    line = summary(result)
    path = write_result(NAME, result, line, args.out)
    print(json.dumps(result, indent=2))
    print(line)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
