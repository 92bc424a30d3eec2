"""Online error per domain of each TTA method in a sweep: `python scripts/plot_tta.py SWEEP_DIR`.

Made for `xent-run -m experiment=rmt_digits_c` (and rmt_cifar10c / rmt_cifar100c): reads each
finished job's `tta_errors.json`, averages the per-domain errors over seeds for every
(method, setting), draws one figure per setting (`tta_errors_<setting>.png` in the sweep dir,
one line per method, domains in stream order) and prints the table of mean online errors
(mean ± sample std over seeds, the value alone for one seed). Unfinished or failed jobs are
skipped, so it runs mid-sweep.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import yaml

from xent.runner.report import format_stat, job_dirs

METHOD_NAMES = {
    "source": "Source",
    "norm": "BN-1",
    "tent": "TENT",
    "cotta": "CoTTA",
    "rmt": "RMT",
    "rmt_sf": "RMT source-free",
}


def read_jobs(sweep_dir: Path) -> dict[tuple[str, str], list[dict]]:
    """{(method, setting): [tta_errors.json of each finished seed]}."""
    jobs: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for job in job_dirs(sweep_dir):
        record_path = job / "tta_errors.json"
        if not record_path.exists():
            continue
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        chosen = dict(o.split("=", 1) for o in overrides if "=" in o)
        record = json.loads(record_path.read_text())
        method = chosen.get("tta", record["method"].lower())
        jobs[(method, record["setting"])].append(record)
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    args = parser.parse_args()
    jobs = read_jobs(args.sweep_dir)
    if not jobs:
        sys.exit(f"plot_tta: no finished TTA jobs (tta_errors.json) in {args.sweep_dir}")
    from xent.tta.plots import plot_domain_errors

    settings = sorted({setting for _, setting in jobs})
    methods = [m for m in METHOD_NAMES if any((m, s) in jobs for s in settings)]
    methods += sorted({m for m, _ in jobs} - set(methods))
    for setting in settings:
        curves, names = {}, None
        for method in methods:
            records = jobs.get((method, setting))
            if not records:
                continue
            names = [d["domain"] for d in records[0]["domains"]]
            per_domain = zip(*([d["err"] for d in r["domains"]] for r in records), strict=True)
            curves[f"{METHOD_NAMES.get(method, method)} ×{len(records)}"] = [
                sum(v) / len(v) for v in per_domain
            ]
        path = args.sweep_dir / f"tta_errors_{setting}.png"
        plot_domain_errors(curves, names, path, title=f"online error per domain, {setting}")
        print(f"wrote {path}")
    columns = [(s, "test/err") for s in settings]
    columns += [(s, "test/err_at5") for s in settings if s == "gradual"]
    header = [f"{s} {'(severity 5)' if k.endswith('at5') else ''}".strip() for s, k in columns]
    print("| method | " + " | ".join(header) + " |")
    print("|---|" + "---|" * len(columns))
    for method in methods:
        cells = []
        for setting, key in columns:
            values = [100 * r[key] for r in jobs.get((method, setting), []) if key in r]
            cells.append(f"{format_stat(values, 1)} (×{len(values)})" if values else "–")
        print(f"| {METHOD_NAMES.get(method, method)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
