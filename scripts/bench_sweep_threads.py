"""Jobs × threads on this machine: what a sweep of small models should use (issue 18).

`python scripts/bench_sweep_threads.py [--out DIR] [--quick]` writes `DIR/sweep_threads.json`
and the `sweep_threads` line of `DIR/README.md`.

What is measured: training throughput (images per second, the whole machine) of the models the
Fashion-MNIST comparisons train (the 2x256 MLP on 28x28x1, resnet8 on 32x32x3; SGD steps at batch
128 on in-memory tensors), laid out as one job with 1 thread, one job with as many threads as
cores, and one single-threaded job per core running at once. Each job is a process of its own
(`--worker`), as a sweep's jobs are; the layouts are interleaved, rotating, `repeats` times, and
the figure is the median. Ratios are against one job with one thread, measured in the same run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from xent.bench_harness import bench_parser, median, write_result

NAME = "sweep_threads"
BATCH = 128
MODELS = ("mlp", "resnet8")


def build(model: str):
    """The model and an input batch of the shape its comparison trains on."""
    import torch

    from xent.models import mlp, resnet8

    if model == "mlp":
        return mlp(10, (1, 28, 28), hidden=256, depth=2), torch.randn(BATCH, 1, 28, 28)
    return resnet8(num_classes=10), torch.randn(BATCH, 3, 32, 32)


def worker(model: str, threads: int, seconds: float) -> None:
    """Train `model` for about `seconds` with `threads` torch threads; print images/s."""
    import torch

    torch.set_num_threads(threads)
    net, x = build(model)
    y = torch.randint(0, 10, (BATCH,))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()

    for _ in range(3):  # warm-up: allocator, first-call dispatch
        step()
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        steps += 1
    print(steps * BATCH / (time.perf_counter() - started))


def layout_throughput(model: str, jobs: int, threads: int, seconds: float) -> float:
    """Images/s of `jobs` worker processes with `threads` threads each, run at once (summed)."""
    command = [sys.executable, __file__, "--worker", model, str(threads), str(seconds)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    procs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) for _ in range(jobs)
    ]
    outputs = [proc.communicate()[0] for proc in procs]
    if any(proc.returncode for proc in procs):
        raise RuntimeError(f"a {model} worker failed: {outputs}")
    return sum(float(out.strip().splitlines()[-1]) for out in outputs)


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return
    args = bench_parser(__doc__).parse_args()
    cores = os.cpu_count() or 1
    layouts = {"1x1": (1, 1), f"1x{cores}": (1, cores), f"{cores}x1": (cores, 1)}
    seconds, repeats = (0.5, 1) if args.quick else (4.0, 3)
    results = {}
    for model in MODELS:
        samples: dict[str, list[float]] = {name: [] for name in layouts}
        names = list(layouts)
        for rep in range(repeats):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                samples[name].append(layout_throughput(model, *layouts[name], seconds))
        base = median(samples["1x1"])
        results[model] = {
            name: {
                "jobs": layouts[name][0],
                "threads": layouts[name][1],
                "images_per_s": median(values),
                "ratio_to_1x1": median(values) / base,
                "samples": values,
            }
            for name, values in samples.items()
        }
    best = {model: max(by, key=lambda n: by[n]["images_per_s"]) for model, by in results.items()}
    summary = "; ".join(
        f"{model}: "
        + ", ".join(f"{n} {v['ratio_to_1x1']:.2f}x" for n, v in results[model].items())
        + f" (best {best[model]})"
        for model in MODELS
    )
    write_result(
        NAME,
        {
            "batch": BATCH,
            "seconds_per_sample": seconds,
            "repeats": repeats,
            "layouts": {name: {"jobs": j, "threads": t} for name, (j, t) in layouts.items()},
            "results": results,
            "best": best,
        },
        "throughput of jobs x threads against 1 job x 1 thread: " + summary,
        args.out,
    )
    print(summary)


if __name__ == "__main__":
    main()
