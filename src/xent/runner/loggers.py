"""Loggers as xent configures them."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger


class WandbLogger(LightningWandbLogger):
    """Lightning's W&B logger without its `anonymous=None` init argument: current wandb
    versions print a deprecation warning on stderr for any value of that setting, which would
    break the rule that stderr holds only the one-line errors."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
