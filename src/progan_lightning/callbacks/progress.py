"""A progress bar that reads like a ProGAN log line: kimg, resolution, alpha, losses."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar


class GrowthProgressBar(TQDMProgressBar):
    """TQDM bar with short metric names (``kimg``, ``resolution``, ``alpha``, ``D``, ``G``)
    and the tick number in place of Lightning's epoch."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return {key.rsplit("/", 1)[-1]: value for key, value in items.items()}

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        super().on_train_epoch_start(trainer)
        self.train_progress_bar.set_description(f"tick {trainer.current_epoch}")
