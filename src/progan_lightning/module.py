"""The ProGAN LightningModule: G, D and G_ema trained with manual optimization."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from progan_lightning.layers import fade_reals
from progan_lightning.schedule import Phase

OptimizerFactory = Callable[..., torch.optim.Optimizer]


class ProGAN(L.LightningModule):
    """Trains a progressive GAN: per batch one D step, one G step, then an EMA update.

    The stage, fade ``alpha`` and phase are set from outside by the ``ProgressiveGrowth``
    callback; the module only counts images. ``cur_nimg`` (global across devices) is saved in
    checkpoints; nothing depends on ``global_step``, which counts two optimizer steps per batch.

    Args:
        G: Generator built at full depth.
        D: Discriminator built at full depth.
        loss: An object with ``discriminator(D, reals, fakes)`` and ``generator(scores)``.
        optimizer: Factory (``functools.partial`` of an optimizer) used for both G and D.
        ema_beta: G_ema decay per step (paper: 0.999); ignored when ``ema_kimg`` is set.
        ema_kimg: Optional EMA half-life in thousands of images (StyleGAN style).
        reset_optimizer: Clear optimizer state at every phase change (official default).
    """

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        loss: Any,
        optimizer: OptimizerFactory,
        ema_beta: float = 0.999,
        ema_kimg: float | None = None,
        reset_optimizer: bool = True,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        # Keep modules and factories out of the hyperparameters: they break weights-only loading.
        self.save_hyperparameters(ignore=["G", "D", "loss", "optimizer"])
        self.G = G
        self.D = D
        self.G_ema = copy.deepcopy(G).requires_grad_(False)
        self.loss = loss
        self.optimizer_factory = optimizer
        self.ema_beta = ema_beta
        self.ema_kimg = ema_kimg
        self.reset_optimizer = reset_optimizer

        # Progress, set by the growth callback and saved in checkpoints.
        self.cur_nimg = 0
        self.stage = 0
        self.alpha = 1.0
        self.phase_index = -1

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        opt_g = self.optimizer_factory(self.G.parameters())
        opt_d = self.optimizer_factory(self.D.parameters())
        for opt in (opt_g, opt_d):
            for group in opt.param_groups:
                group.setdefault("base_lr", group["lr"])
        return [opt_g, opt_d]

    def enter_phase(self, phase: Phase) -> None:
        """Switch to ``phase``: stage, learning rate and (optionally) fresh optimizer state."""
        changed = phase.index != self.phase_index
        self.stage = phase.stage
        self.phase_index = phase.index
        if not changed or self._trainer is None:
            return
        for opt in self.trainer.optimizers:
            if self.reset_optimizer:
                opt.state.clear()
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] if phase.lr is None else phase.lr

    def forward(self, z: Tensor, stage: int | None = None, alpha: float | None = None) -> Tensor:
        """Images from G_ema at the current stage and alpha (or the given ones). [NCHW]"""
        return self.G_ema(
            z, self.stage if stage is None else stage, self.alpha if alpha is None else alpha
        )

    def discriminator_loss(self, reals: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """D loss on a real batch [NCHW] (already cross-faded) and as many fresh fakes."""
        stage, alpha = self.stage, self.alpha
        with torch.no_grad():
            fakes = self.G(self._latents(reals.shape[0]), stage, alpha)
        return self.loss.discriminator(lambda x: self.D(x, stage, alpha), reals, fakes)

    def generator_loss(self, n: int) -> Tensor:
        """G loss on ``n`` fresh fakes."""
        fakes = self.G(self._latents(n), self.stage, self.alpha)
        return self.loss.generator(self.D(fakes, self.stage, self.alpha))

    def training_step(self, batch: Tensor, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        loss_d, loss_g, stats = self.train_step(batch, opt_g, opt_d)
        self.cur_nimg += batch.shape[0] * self.world_size

        self.log_dict({"loss/D": loss_d.detach(), "loss/G": loss_g.detach()}, prog_bar=True)
        self.log_dict(stats)
        self.log_dict(
            {
                "progress/kimg": self.cur_nimg / 1000,
                "progress/resolution": float(batch.shape[-1]),
                "progress/alpha": float(self.alpha),
            },
            prog_bar=True,
        )

    def train_step(
        self, reals: Tensor, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """One D step, one G step and the G_ema update; runs with or without a Trainer.

        Args:
            reals: Real images at the stage resolution, in [-1, 1]. [NCHW]
            opt_g: G's optimizer (Lightning's wrapper or a plain one).
            opt_d: D's optimizer.

        Returns:
            D loss, G loss and the loss's extra statistics (all attached tensors).
        """
        if self.alpha < 1.0:
            # Cross-fade the reals exactly like the generator output.
            reals = fade_reals(reals, self.alpha)

        # Discriminator step (G frozen: no weight gradients for it).
        self._train_only(self.D)
        loss_d, stats = self.discriminator_loss(reals)
        opt_d.zero_grad(set_to_none=True)
        self._backward(loss_d)
        opt_d.step()

        # Generator step (D frozen).
        self._train_only(self.G)
        loss_g = self.generator_loss(reals.shape[0])
        opt_g.zero_grad(set_to_none=True)
        self._backward(loss_g)
        opt_g.step()
        self.D.requires_grad_(True)

        self.update_ema(reals.shape[0] * self.world_size)
        return loss_d, loss_g, stats

    @property
    def world_size(self) -> int:
        """Processes sharing each global batch (1 without a Trainer)."""
        return self._trainer.world_size if self._trainer is not None else 1

    def _train_only(self, net: nn.Module) -> None:
        self.G.requires_grad_(net is self.G)
        self.D.requires_grad_(net is self.D)

    def _backward(self, loss: Tensor) -> None:
        # Lightning's backward applies precision scaling and DDP hooks when it runs us.
        if self._trainer is not None:
            self.manual_backward(loss)
        else:
            loss.backward()

    def _latents(self, n: int) -> Tensor:
        return torch.randn(n, self.G.z_dim, device=self.device)

    @torch.no_grad()
    def update_ema(self, batch: int) -> None:
        """``G_ema = beta * G_ema + (1 - beta) * G`` over parameters; buffers are copied."""
        beta = self.ema_beta if self.ema_kimg is None else 0.5 ** (batch / (self.ema_kimg * 1e3))
        ema_params = list(self.G_ema.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in self.G.parameters()], 1.0 - beta)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            b_ema.copy_(b)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["progress"] = {
            "cur_nimg": self.cur_nimg,
            "stage": self.stage,
            "alpha": self.alpha,
            "phase_index": self.phase_index,
        }
        # Constructor arguments: export rebuilds G_ema from them, resume checks them.
        checkpoint["architecture"] = {"G": self.G.init_kwargs, "D": self.D.init_kwargs}

    def check_architecture(self, checkpoint: dict[str, Any]) -> None:
        """Raise a clear error when the checkpoint's networks differ from this config's."""
        saved = checkpoint.get("architecture")
        if saved is None:
            return
        diffs = [
            f"model.{net}.{key}: checkpoint {saved[net].get(key)!r}, config {value!r}"
            for net, mine in (("G", self.G.init_kwargs), ("D", self.D.init_kwargs))
            for key, value in mine.items()
            if net in saved and saved[net].get(key) != value
        ]
        if diffs:
            raise ValueError(
                "the checkpoint does not fit this config (resume with the settings it was "
                "trained with): " + "; ".join(diffs)
            )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.check_architecture(checkpoint)
        progress = checkpoint.get("progress", {})
        self.cur_nimg = int(progress.get("cur_nimg", 0))
        self.stage = int(progress.get("stage", 0))
        self.alpha = float(progress.get("alpha", 1.0))
        self.phase_index = int(progress.get("phase_index", -1))
