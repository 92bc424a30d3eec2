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
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Callable
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


def trainer(model: torch.nn.Module, loss_of: Callable, batches: list) -> Callable[[], None]:
    """A callable that trains `len(batches)` steps: loss, backward, clip, AdamW, zero_grad."""
    optimizer = adamw(model)

    def run() -> None:
        for x, y in batches:
            loss = loss_of(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    return run


def sides(checkout: Path, steps: int) -> dict[str, tuple[torch.nn.Module, Callable[[], None]]]:
    """name -> (model, its training callable): xent's GPT + TokenCE and nanoGPT's GPT, seeded
    alike, on the same windows."""
    generator = torch.Generator().manual_seed(0)
    windows = [
        torch.randint(VOCAB, (BATCH, SHAPE["block_size"] + 1), generator=generator)
        for _ in range(steps)
    ]
    batches = [(ids[:, :-1].contiguous(), ids[:, 1:].contiguous()) for ids in windows]
    torch.manual_seed(0)
    ours = GPT(vocab_size=VOCAB, dropout=0.0, bias=False, **SHAPE)
    token_ce = TokenCE()
    nano = nanogpt_module(checkout)
    torch.manual_seed(0)
    theirs = nano.GPT(nano.GPTConfig(vocab_size=VOCAB, dropout=0.0, bias=False, **SHAPE))
    return {
        "xent": (
            ours,
            trainer(ours, lambda x, y: token_ce(ours(x), ours.head_weight, y).loss, batches),
        ),
        "nanogpt": (theirs, trainer(theirs, lambda x, y: theirs(x, y)[1], batches)),
    }


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
    args = parser.parse_args(argv)
    if args.nanogpt is None:  # `make bench` runs every script: say why this one measured nothing
        print("lm_train: no nanoGPT checkout (--nanogpt DIR or NANOGPT=DIR); nothing measured")
        return
    if not (args.nanogpt / "model.py").is_file():
        parser.error(f"--nanogpt {args.nanogpt}: no model.py (a nanoGPT checkout)")
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
