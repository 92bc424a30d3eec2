"""scripts/plot_tta.py: per-domain online error of each TTA method, from a sweep's job dirs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.test_report import fake_job

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "plot_tta.py"


def tta_job(sweep: Path, num: int, method: str, seed: int, errors: list[float]) -> None:
    schedule = [("fog", 5), ("snow", 5)]
    metrics = {"status": "ok", "seed": seed, "test/err": sum(errors) / 2}
    fake_job(sweep, num, [f"tta={method}", f"seed={seed}", "experiment=e"], metrics)
    job = sweep / str(num)
    record = {
        "method": method,
        "setting": "continual",
        "domains": [
            {"domain": c, "corruption": c, "severity": s, "err": e, "n": 10}
            for (c, s), e in zip(schedule, errors, strict=True)
        ],
        "test/err": sum(errors) / 2,
    }
    (job / "tta_errors.json").write_text(json.dumps(record))


def test_averages_seeds_per_method_and_draws_one_figure_per_setting(tmp_path):
    sweep = tmp_path / "sweep"
    tta_job(sweep, 0, "source", 1, [0.4, 0.6])
    tta_job(sweep, 1, "source", 2, [0.6, 0.8])
    tta_job(sweep, 2, "rmt", 1, [0.1, 0.3])
    proc = subprocess.run([sys.executable, str(SCRIPT), str(sweep)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "×" in line]
    assert rows == ["| Source | 60.0 ± 14.1 (×2) |", "| RMT | 20.0 ± 0.0 (×1) |"]
    assert (sweep / "tta_errors_continual.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_tta_jobs_is_one_line(tmp_path):
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, ["loss=ce", "seed=0"], {"status": "ok", "seed": 0, "test/acc": 0.9})
    proc = subprocess.run([sys.executable, str(SCRIPT), str(sweep)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"plot_tta: no finished TTA jobs (tta_errors.json) in {sweep}"
