"""scripts/plot_tta.py: per-domain online error of each TTA method, from a sweep's job dirs."""

from __future__ import annotations

import json
import struct
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
    assert rows == ["| Source | 60.0 ± 14.1 (×2) |", "| RMT | 20.0 (×1) |"]  # one seed: no ± 0.0
    assert (sweep / "tta_errors_continual.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_tta_jobs_is_one_line(tmp_path):
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, ["loss=ce", "seed=0"], {"status": "ok", "seed": 0, "test/acc": 0.9})
    proc = subprocess.run([sys.executable, str(SCRIPT), str(sweep)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"plot_tta: no finished TTA jobs (tta_errors.json) in {sweep}"


CORRUPTIONS = ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur"]
CORRUPTIONS += ["motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast"]
CORRUPTIONS += ["elastic_transform", "pixelate", "jpeg_compression"]


def png_size(path: Path) -> tuple[int, int]:
    return struct.unpack(">II", path.read_bytes()[16:24])


def test_a_gradual_stream_is_a_readable_size_with_a_label_per_corruption(tmp_path):
    """135 domains (15 corruptions at severities 1..5..1) were 4925 px wide, a label per
    3 domains at 7 pt; now at most 1600 px, a 9 pt label per corruption."""
    from xent.tta.plots import domain_errors_figure, plot_domain_errors

    domains = [f"{c}@{s}" for c in CORRUPTIONS for s in (1, 2, 3, 4, 5, 4, 3, 2, 1)]
    errors = {"Source (42.0)": [0.4] * 135, "RMT": [0.2] * 135}
    fig = domain_errors_figure(errors, domains, title="online error per domain, gradual")
    (ax,) = fig.axes
    labels = ax.get_xticklabels()
    assert [t.get_text() for t in labels] == CORRUPTIONS
    assert [t.get_fontsize() for t in labels] == [9] * 15
    assert list(ax.get_xticks()) == [4 + 9 * i for i in range(15)]  # the middle of each block
    assert ax.get_xlabel() == "corruption, in stream order (severity within each block)"
    assert ax.get_ylabel() == "online error (%)"
    assert ax.get_title() == "online error per domain, gradual"
    assert [line.get_label() for line in ax.get_lines()[:2]] == [
        "Source (42.0) (40.0)",
        "RMT (20.0)",
    ]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "Source (42.0) (40.0)",
        "RMT (20.0)",
    ]
    assert png_size(plot_domain_errors(errors, domains, tmp_path / "g.png")) == (1550, 480)


def test_a_continual_stream_labels_every_domain(tmp_path):
    from xent.tta.plots import domain_errors_figure

    fig = domain_errors_figure({"BN-1": [0.3] * 15}, CORRUPTIONS)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == CORRUPTIONS
    assert ax.get_xlabel() == "domain, in stream order"
    assert len(ax.get_lines()) == 1
    width, height = fig.get_size_inches() * fig.dpi
    assert (round(width), round(height)) == (950, 480)
