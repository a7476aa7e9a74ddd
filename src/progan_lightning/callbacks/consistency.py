"""A check that every rank trains the same thing: same progress and same weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch

from progan_lightning.data.stream import split_batch
from progan_lightning.rng import fingerprint


class DistributedConsistency(L.Callback):
    """Gathers each rank's progress after every step and fails at once if ranks disagree.

    After every batch each rank contributes ``[cur_nimg, stage, alpha, resolution, local
    batch]``; the images seen, stage, alpha and resolution must match on all ranks and the
    local batches must add up to the global batch just counted. Before every batch the ranks
    compare fingerprints of the random states the step draws from (:func:`~progan_lightning.
    rng.fingerprint`): each rank must draw its own latents, labels and penalty mixes, or the
    global batch holds each fake once per rank. At the end of training the
    weights of G, D and G_ema must be identical on all ranks. With ``dirpath`` set, each
    rank also appends its rows to ``rank<r>.jsonl`` (for tests and post-mortems).

    Args:
        dirpath: Optional folder for the per-rank JSON-lines traces.
    """

    def __init__(self, dirpath: str | Path | None = None) -> None:
        super().__init__()
        self.dirpath = Path(dirpath) if dirpath else None
        self._rows: list[dict[str, Any]] = []

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, _: int
    ) -> None:
        mine = torch.tensor(fingerprint(pl_module.device), device=pl_module.device)
        prints = pl_module.all_gather(mine).reshape(-1).cpu().tolist()  # [world]
        if len(set(prints)) != len(prints):
            raise RuntimeError(
                f"ranks draw the same random numbers at {pl_module.cur_nimg} images (RNG "
                f"fingerprints {prints}): each rank would generate the same fakes"
            )

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, _: int
    ) -> None:
        images, _ = split_batch(batch)
        row = torch.tensor(
            [pl_module.cur_nimg, pl_module.stage, pl_module.alpha, images.shape[-1], len(images)],
            dtype=torch.float64,
            device=pl_module.device,
        )
        rows = pl_module.all_gather(row).reshape(-1, 5).cpu()  # [world, 5]
        if not (rows[:, :4] == rows[0, :4]).all():
            raise RuntimeError(f"ranks disagree on [nimg, stage, alpha, resolution]: {rows}")
        if self._rows and rows[0, 0] - self._rows[-1]["nimg"] != rows[:, 4].sum():
            raise RuntimeError(
                f"images seen went from {self._rows[-1]['nimg']} to {int(rows[0, 0])} but the "
                f"ranks' batches sum to {int(rows[:, 4].sum())}"
            )
        self._rows.append(
            {
                "nimg": int(rows[0, 0]),
                "stage": int(rows[0, 1]),
                "alpha": float(rows[0, 2]),
                "resolution": int(rows[0, 3]),
                "local_batches": [int(b) for b in rows[:, 4]],
            }
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sums = torch.stack(
            [
                torch.cat([p.detach().flatten().double() for p in net.parameters()]).sum()
                for net in (pl_module.G, pl_module.D, pl_module.G_ema)
            ]
        )
        gathered = pl_module.all_gather(sums).reshape(-1, 3).cpu()  # [world, 3]
        if not (gathered == gathered[0]).all():
            raise RuntimeError(f"weights differ across ranks (G, D, G_ema sums): {gathered}")
        if self.dirpath is not None:
            self.dirpath.mkdir(parents=True, exist_ok=True)
            path = self.dirpath / f"rank{trainer.global_rank}.jsonl"
            with path.open("w") as f:
                for row in self._rows:
                    f.write(json.dumps(row) + "\n")
                f.write(json.dumps({"weight_sums": gathered[0].tolist()}) + "\n")
