"""pass@k of a language model on verifiable questions (task=lm on data=arith).

For each question, `n` answers are sampled at temperature 1 from a seeded generator and
checked; with `c` of them right, pass@k is Chen et al.'s (2021) unbiased estimator
`1 − C(n−c, k)/C(n, k)`, averaged over the questions, computed as the product
`1 − Π_{i=n−c+1..n} (1 − k/i)` (never with the binomials, which overflow for n = 128).

The curve (pass@k for k = 1..n) is written per evaluation to `pass_at_k.json` and drawn in
`pass_at_k.png` (log-x, one line per epoch) in the run dir; `PassAtKSweepPlot`, a Hydra callback
that experiment=dco_arith installs, draws one figure for a whole sweep (one line per row and
epoch, the mean over seeds) in the sweep dir.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

CURVE_FILE = "pass_at_k.json"
PLOT_FILE = "pass_at_k.png"
HEADLINE_KS = (1, 8, 64, 128)


def pass_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of k answers drawn without replacement from n, c of them right, is
    right) = 1 − C(n−c, k)/C(n, k), as a product of k-free ratios (Chen et al. 2021)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def pass_at_k_curve(correct: Sequence[int], n: int) -> dict[int, float]:
    """Mean pass@k over the questions (their counts of right answers), for k = 1..n."""
    return {k: sum(pass_at_k(n, c, k) for c in correct) / len(correct) for k in range(1, n + 1)}


@torch.no_grad()
def sample_continuations(
    net: torch.nn.Module,
    prompt: list[int],
    count: int,
    new_tokens: int,
    generator: torch.Generator,
    temperature: float = 1.0,
) -> torch.Tensor:
    """`count` continuations of one prompt, `new_tokens` ids each, sampled side by side: (count,
    new_tokens). The model's `logits` over the whole prefix (a tiny model, short rows)."""
    device = net.head_weight.device
    ids = torch.tensor([prompt], dtype=torch.long, device=device).repeat(count, 1)
    for _ in range(new_tokens):
        logits = net.logits(ids)[:, -1].float() / temperature
        probs = logits.softmax(-1).cpu()
        nxt = torch.multinomial(probs, 1, generator=generator).to(device)
        ids = torch.cat([ids, nxt], dim=1)
    return ids[:, len(prompt) :].cpu()


def count_correct(
    net: torch.nn.Module,
    datamodule: Any,
    questions: Sequence[tuple[str, str]],
    n: int,
    seed: int,
    temperature: float = 1.0,
) -> list[int]:
    """Per question, how many of `n` sampled answers are exactly right (the text before the
    first END of `max_len + 1` sampled characters). One generator seeded once: the same model
    and seed give the same counts."""
    from xent.data.arith import END

    generator = torch.Generator().manual_seed(seed)
    was_training = net.training
    net.eval()
    counts = []
    for prompt, answer in questions:
        tokens = sample_continuations(
            net, datamodule.encode(prompt), n, len(answer) + 1, generator, temperature
        )
        texts = [datamodule.decode(row).split(END, 1) for row in tokens.tolist()]
        counts.append(sum(len(t) == 2 and t[0] == answer for t in texts))
    net.train(was_training)
    return counts


def headline(curve: dict[int, float], stage: str = "test") -> dict[str, float]:
    """The curve's values that go to metrics.json: `test/pass@1`, @8, @64, @128 (those <= n)."""
    return {f"{stage}/pass@{k}": curve[k] for k in HEADLINE_KS if k in curve}


# -- files and plots -------------------------------------------------------------------------------


def write_curves(run_dir: Path, curves: list[dict[str, Any]]) -> None:
    """`pass_at_k.json` (a list of {epoch, n, questions, curve}) and its plot, in the run dir."""
    (run_dir / CURVE_FILE).write_text(json.dumps(curves, indent=1))
    lines = [
        (
            epoch_label(c["epoch"]),
            c["curve"],
            BASE_COLOUR if c["epoch"] == 0 else "C0",
            shade(i, len(curves)),
        )
        for i, c in enumerate(curves)
    ]
    plot_curves(lines, run_dir / PLOT_FILE, "pass@k on the test questions")


BASE_COLOUR = "black"  # epoch 0: the weights fine-tuning starts from


def epoch_label(epoch: int) -> str:
    return "epoch 0 (base model)" if epoch == 0 else f"epoch {epoch}"


def shade(index: int, count: int) -> float:
    """Line opacity of the index-th of `count` epochs: early epochs light, the last one solid."""
    return 1.0 if count <= 1 else 0.3 + 0.7 * index / (count - 1)


def plot_curves(lines: list[tuple[str, dict, str, float]], path: Path, title: str) -> Path:
    """Save `curves_figure` to `path`."""
    import matplotlib.pyplot as plt

    fig = curves_figure(lines, title)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def curves_figure(lines: list[tuple[str, dict, str, float]], title: str) -> Any:
    """pass@k against k (log x); a line per (label, {k: value}, colour, opacity); the base
    model's line dashed."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for label, curve, colour, alpha in lines:
        ks = sorted(int(k) for k in curve)
        values = [curve.get(k, curve.get(str(k))) for k in ks]
        dashes = "--" if colour == BASE_COLOUR else "-"
        ax.plot(ks, values, dashes, label=label, color=colour, alpha=alpha)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlabel("k (answers sampled per question)")
    ax.set_ylabel("pass@k")
    ax.set_title(title)
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def job_curves(sweep_dir: Path) -> dict[str, dict[int, list[dict]]]:
    """row label -> epoch -> the seeds' curves. A row is a job's overrides but the seed, and
    its label names only the overrides that differ between rows, as the sweep's summary does."""
    import yaml

    jobs = []
    paths = sweep_dir.glob(f"*/{CURVE_FILE}")
    for path in sorted(paths, key=lambda p: (len(p.parent.name), p.parent.name)):  # 2 before 10
        overrides_file = path.parent / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        row = [o for o in overrides if not o.lstrip("+").startswith("seed=")]
        jobs.append((row, json.loads(path.read_text())))
    shared = set.intersection(*(set(row) for row, _ in jobs)) if len(jobs) > 1 else set()
    rows: dict[str, dict[int, list[dict]]] = {}
    for row, entries in jobs:
        label = " ".join(o for o in row if o not in shared) or "run"
        for entry in entries:
            rows.setdefault(label, {}).setdefault(entry["epoch"], []).append(entry["curve"])
    return rows


def mean_curve(curves: list[dict]) -> dict[int, float]:
    return {int(k): sum(c[k] for c in curves) / len(curves) for k in curves[0]}


def sweep_lines(sweep_dir: Path) -> list[tuple[str, dict, str, float]]:
    """The sweep plot's lines: the base model (epoch 0, the same weights in every job) once,
    then a colour per row and a shade per fine-tuning epoch (light to dark), each the mean
    curve over the row's seeds."""
    rows = job_curves(sweep_dir)
    base = [curve for epochs in rows.values() for curve in epochs.get(0, [])]
    lines = [(epoch_label(0), mean_curve(base), BASE_COLOUR, 1.0)] if base else []
    for colour, (label, epochs) in enumerate(rows.items()):
        tuned = sorted(e for e in epochs if e > 0)
        for i, epoch in enumerate(tuned):
            seeds = len(epochs[epoch])
            name = f"{label}, epoch {epoch} ({seeds} seed{'s' if seeds > 1 else ''})"
            lines.append((name, mean_curve(epochs[epoch]), f"C{colour}", shade(i, len(tuned))))
    return lines


def plot_sweep(sweep_dir: Path) -> Path | None:
    """`pass_at_k.png` in the sweep dir; None where no job wrote a curve."""
    lines = sweep_lines(sweep_dir)
    if not lines:
        return None
    title = "pass@k on the test questions, mean over seeds"
    return plot_curves(lines, sweep_dir / PLOT_FILE, title)


class PassAtKSweepPlot(Callback):
    """At the end of a multirun: `pass_at_k.png` over all its jobs, in the sweep dir."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        import logging

        try:
            path = plot_sweep(Path(config.hydra.sweep.dir))
        except Exception as err:  # noqa: BLE001 - a plot must never hide the jobs' results
            logging.getLogger("xent").warning("no pass@k plot: %s", err)
            return
        if path is not None:
            logging.getLogger("xent").info("pass@k plot: %s", path)
