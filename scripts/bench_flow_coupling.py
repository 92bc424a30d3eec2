"""One training step of I-CFM, W-CFM and exact OT-CFM in 2D, by batch size (issue 8).

`python scripts/bench_flow_coupling.py [--out DIR] [--quick] [--threads N]` writes
`DIR/flow_coupling.json` and the `flow_coupling` line of `DIR/README.md` (DIR defaults to
benchmarks/).

A step is what task=flow does per batch: draw x0 (source) and x1 (target) of the toy2d config,
`loss(net, x0, x1)`, backward, AdamW step, with the losses of conf/loss/{cfm,wcfm,otcfm}.yaml,
the velocity MLP of conf/model/velocity_mlp.yaml and conf/optim/adamw.yaml. Each matcher trains
its own copy of the same initial net. At each batch size (256, 1024, 4096) the three are
interleaved; a repetition runs `inner` steps of one matcher (sized to ~50 ms; 1 for OT-CFM at
large batches), and the figure is the median ms per step. OT-CFM's coupling (cost matrix,
`ot.emd`, pairing) is timed inside the same steps, so its share needs no separate run.

Bars: W-CFM <= 1.15x I-CFM at every batch (W-CFM only adds a per-pair weight); OT-CFM's growth
with the batch as exponents k of t ~ a * B^k, fitted by least squares on log-log over the
batches, for the whole step and for the coupling alone. A missed bar is reported (output and
`"bar": {"met": false}`), not raised.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from xent.bench_harness import ROOT, bench_parser, interleaved, median, write_result
from xent.flow import FlowMatchingLoss, VelocityMLP, sample

NAME = "flow_coupling"
CONF = ROOT / "src" / "xent" / "conf"
MATCHERS = {"cfm": "I-CFM", "wcfm": "W-CFM", "otcfm": "OT-CFM"}
BASELINE = "cfm"
BATCHES = (256, 1024, 4096)
QUICK_BATCHES = (64, 128, 256)
DIM = 2
WCFM_BAR = 1.15


def load_matcher(name: str) -> FlowMatchingLoss:
    """The loss of conf/loss/<name>.yaml (its Hydra `defaults` list removed)."""
    node = OmegaConf.load(CONF / "loss" / f"{name}.yaml")
    node.pop("defaults", None)
    return instantiate(node)


def build_net() -> VelocityMLP:
    """The velocity MLP of conf/model/velocity_mlp.yaml in 2D, from a fixed seed."""
    node = OmegaConf.load(CONF / "model" / "velocity_mlp.yaml")
    torch.manual_seed(0)
    return VelocityMLP(dim=DIM, width=int(node.width), depth=int(node.depth))


def build_optimizer(net: torch.nn.Module) -> torch.optim.Optimizer:
    """conf/optim/adamw.yaml (a partial of torch.optim.AdamW) on the net's parameters."""
    return instantiate(OmegaConf.load(CONF / "optim" / "adamw.yaml"))(net.parameters())


class Trainer:
    """One matcher's training state; `step(n)` runs n steps and notes their coupling time."""

    def __init__(self, matcher: FlowMatchingLoss, batch: int, source: str, target: str):
        self.matcher, self.batch, self.source, self.target = matcher, batch, source, target
        self.net = build_net()
        self.optimizer = build_optimizer(self.net)
        self.data = torch.Generator().manual_seed(1)
        self.noise = torch.Generator().manual_seed(2)
        self.coupling_s = 0.0
        self.coupling_per_step: list[float] = []
        couple = matcher.couple

        def timed_couple(x0, x1, generator=None):
            started = time.perf_counter()
            pairs = couple(x0, x1, generator)
            self.coupling_s += time.perf_counter() - started
            return pairs

        matcher.couple = timed_couple  # an instance attribute shadows the method

    def step(self, count: int) -> None:
        self.coupling_s = 0.0
        for _ in range(count):
            x0 = sample(self.source, self.batch, self.data)
            x1 = sample(self.target, self.batch, self.data)
            self.optimizer.zero_grad(set_to_none=True)
            self.matcher(self.net, x0, x1, generator=self.noise).backward()
            self.optimizer.step()
        self.coupling_per_step.append(self.coupling_s / count)


def steps_per_repetition(trainer: Trainer, target_s: float) -> int:
    """Steps so that one repetition takes ~target_s (after two untimed warm-up steps)."""
    trainer.step(2)
    started = time.perf_counter()
    trainer.step(1)
    return max(1, math.ceil(target_s / (time.perf_counter() - started)))


def fit_power(batches: list[int], seconds: list[float]) -> dict[str, float]:
    """t ~ a * B^k by least squares on (log B, log t): k and a (in ms)."""
    k, log_a = np.polyfit(np.log(batches), np.log(seconds), 1)
    return {"k": float(k), "a_ms": float(np.exp(log_a) * 1e3)}


def measure(batch: int, repeats: int, target_s: float) -> dict[str, Any]:
    """ms per step of each matcher at one batch size, interleaved; OT-CFM's coupling ms."""
    data = OmegaConf.load(CONF / "data" / "toy2d.yaml")
    trainers = {n: Trainer(load_matcher(n), batch, data.source, data.target) for n in MATCHERS}
    inner = {name: steps_per_repetition(t, target_s) for name, t in trainers.items()}
    candidates: dict[str, Callable[[], None]] = {
        name: (lambda t=trainer, n=inner[name]: t.step(n)) for name, trainer in trainers.items()
    }
    times = interleaved(candidates, repeats=repeats, warmup=1)
    result: dict[str, Any] = {}
    for name, trainer in trainers.items():
        entry = {"ms": median(times[name]) / inner[name] * 1e3, "inner_steps": inner[name]}
        if name == "otcfm":
            entry["coupling_ms"] = median(trainer.coupling_per_step[-repeats:]) * 1e3
            entry["coupling_share"] = entry["coupling_ms"] / entry["ms"]
        result[name] = entry
    base = result[BASELINE]["ms"]
    result["wcfm_over_icfm"] = result["wcfm"]["ms"] / base
    result["otcfm_over_icfm"] = result["otcfm"]["ms"] / base
    return result


def run(out: Path, quick: bool, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    batches = list(QUICK_BATCHES if quick else BATCHES)
    repeats, target_s = (3, 0.002) if quick else (11, 0.05)
    results = {str(b): measure(b, repeats, target_s) for b in batches}

    def series(name: str, key: str = "ms") -> list[float]:
        return [results[str(b)][name][key] / 1e3 for b in batches]

    fit = {
        "otcfm_step": fit_power(batches, series("otcfm")),
        "otcfm_coupling": fit_power(batches, series("otcfm", "coupling_ms")),
        "cfm_step": fit_power(batches, series("cfm")),
        "wcfm_step": fit_power(batches, series("wcfm")),
    }
    ratios = {str(b): results[str(b)]["wcfm_over_icfm"] for b in batches}
    met = all(r <= WCFM_BAR for r in ratios.values())
    bar = {
        "wcfm_over_icfm_max": WCFM_BAR,
        "wcfm_over_icfm": ratios,
        "wcfm_met": met,
        "otcfm_exponent_step": fit["otcfm_step"]["k"],
        "otcfm_exponent_coupling": fit["otcfm_coupling"]["k"],
        "met": met,
    }
    result = {
        "dim": DIM,
        "batches": batches,
        "torch_threads": threads,
        "repeats": repeats,
        "quick": quick,
        "matchers": MATCHERS,
        "hparams": {name: load_matcher(name).hparams() for name in MATCHERS},
        "results": results,
        "fit": fit,
        "fit_note": "least squares of log t on log B over the batches; step = the whole "
        "training step, coupling = OT-CFM's couple() (cost matrix, ot.emd, pairing) alone",
        "bar": bar,
    }
    print_table(batches, results, fit, bar, threads)
    write_result(NAME, result, summary(batches, results, fit, bar, threads), out_dir=out)
    return result


def summary(
    batches: list[int],
    results: dict[str, Any],
    fit: dict[str, dict[str, float]],
    bar: dict[str, Any],
    threads: int,
) -> str:
    """The README line: W-CFM/I-CFM per batch against the bar, OT-CFM's exponents."""
    sizes = "/".join(map(str, batches))
    wcfm = "/".join(f"{results[str(b)]['wcfm_over_icfm']:.2f}" for b in batches)
    ot = "/".join(f"{results[str(b)]['otcfm_over_icfm']:.0f}" for b in batches)
    state = "met" if bar["met"] else "bar missed"
    return (
        f"one AdamW step in 2D, batch {sizes}, {threads} torch thread(s): W-CFM/I-CFM {wcfm} "
        f"(bar <= {WCFM_BAR:g}: {state}); OT-CFM/I-CFM {ot}x; OT-CFM step ~ "
        f"B^{fit['otcfm_step']['k']:.2f}, its exact OT coupling alone ~ "
        f"B^{fit['otcfm_coupling']['k']:.2f}"
    )


def print_table(
    batches: list[int],
    results: dict[str, Any],
    fit: dict[str, dict[str, float]],
    bar: dict[str, Any],
    threads: int,
) -> None:
    print(f"flow_coupling: ms per training step (2D, velocity MLP, AdamW), torch threads {threads}")
    header = ["batch", *MATCHERS.values(), "OT coupling", "W/I", "OT/I"]
    print("".join(f"{h:>13}" for h in header))
    for b in batches:
        r = results[str(b)]
        cells = [
            str(b),
            *(f"{r[name]['ms']:.3f}" for name in MATCHERS),
            f"{r['otcfm']['coupling_ms']:.3f}",
            f"{r['wcfm_over_icfm']:.3f}",
            f"{r['otcfm_over_icfm']:.1f}",
        ]
        print("".join(f"{c:>13}" for c in cells))
    for name, f in fit.items():
        print(f"fit {name}: t ~ {f['a_ms']:.3g} ms * B^{f['k']:.2f}")
    state = "met" if bar["wcfm_met"] else "bar missed"
    print(f"W-CFM <= {WCFM_BAR:g}x I-CFM at every batch: {state}")
    print("bar met" if bar["met"] else "bar missed")


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "tiny batches and repeats: a smoke test")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    run(args.out, args.quick, args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
