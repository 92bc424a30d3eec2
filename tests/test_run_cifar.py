"""The issue's CIFAR command end to end, on tiny files in the real on-disk format.

In-process (not a subprocess) because torchvision's md5 check must be patched for tiny files.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import composed, write_cifar
from xent.runner.run import run


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
def test_resnet18_one_epoch_on_cifar_files(tmp_path, skip_cifar_checksum, variant):
    data_dir = tmp_path / "data"
    write_cifar(data_dir, variant, n_train=200, n_test=60)
    cfg = composed(
        tmp_path,
        "model=resnet18",
        f"data={variant}",
        "trainer.max_epochs=1",
        f"paths.data_dir={data_dir}",
        "data.download=false",
        "data.batch_size=50",
    )
    result = run(cfg)
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert result["status"] == on_disk["status"] == "ok"
    assert on_disk["epochs"] == 1 and "test/acc5" in on_disk
    assert 0.0 <= on_disk["test/acc"] <= 1.0
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
