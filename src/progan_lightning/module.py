"""The ProGAN LightningModule: G, D and G_ema trained with manual optimization."""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from progan_lightning.augment import Augment, step_generator
from progan_lightning.checkpoint import check_architecture, module_entries
from progan_lightning.data.stream import split_batch
from progan_lightning.devices import auto_device_type
from progan_lightning.export import check_class_names
from progan_lightning.faults import Diverged
from progan_lightning.layers import fade_reals
from progan_lightning.precision import (
    AUTO_PRECISION,
    FP16_PIXEL_NORM_EPS,
    PRECISIONS,
    resolve_precision,
)
from progan_lightning.progress import TrainingProgress
from progan_lightning.rng import seed_rank
from progan_lightning.schedule import Phase, stage_resolution

OptimizerFactory = Callable[..., torch.optim.Optimizer]


def check_training_values(
    optimizer: OptimizerFactory, ema_beta: float, ema_kimg: float | None, d_lr_ratio: float = 1.0
) -> None:
    """Fail on an optimizer learning rate <= 0, a D/G rate ratio <= 0 or an EMA that is not
    a decay."""
    lr = getattr(optimizer, "keywords", {}).get("lr")
    if lr is not None and not lr > 0:
        raise ValueError(f"model.optimizer.lr={lr!r}; use a learning rate > 0 (official 0.001)")
    if not d_lr_ratio > 0:
        raise ValueError(
            f"model.d_lr_ratio={d_lr_ratio!r}; use a ratio of D's learning rate to G's > 0 "
            "(official 1: the same rate)"
        )
    if not 0.0 <= ema_beta <= 1.0:
        raise ValueError(
            f"model.ema_beta={ema_beta!r} is not a decay; use a value in [0, 1] (paper 0.999)"
        )
    if ema_kimg is not None and not ema_kimg > 0:
        raise ValueError(
            f"model.ema_kimg={ema_kimg!r}; use a half-life > 0 kimg, or null for model.ema_beta"
        )


class ProGAN(L.LightningModule):
    """Trains a progressive GAN: per batch one D step, one G step, then an EMA update.

    Where training is lives in :attr:`progress` (see ``progress.py``): the stage, fade
    ``alpha`` and phase are written by the ``ProgressiveGrowth`` callback, the module only
    adds the images it trains on (``cur_nimg``, global across devices); it is saved in
    checkpoints. Nothing depends on ``global_step``, which counts two optimizer steps per
    batch; the loggers plot against ``cur_nimg``.

    Args:
        G: Generator built at full depth.
        D: Discriminator built at full depth.
        loss: An object with ``discriminator(D, reals, fakes)`` and ``generator(scores)``.
        optimizer: Factory (``functools.partial`` of an optimizer) used for both G and D.
        d_lr_ratio: D's learning rate over G's, at every phase (official: separate
            ``G_lrate`` and ``D_lrate`` schedules, equal in every official config, so 1).
        ema_beta: G_ema decay per step (paper: 0.999); ignored when ``ema_kimg`` is set.
        ema_kimg: Optional EMA half-life in thousands of images (StyleGAN style).
        reset_optimizer: Clear optimizer state at every phase change (official default).
        precision: ``fp32``; ``bf16`` (autocast); ``fp16`` (autocast with dynamic loss
            scaling, one ``GradScaler`` per network; penalties scale their input gradient);
            or ``auto`` (``bf16`` on a CPU with bf16 units, else ``fp32``: resolved for the
            device the step runs on, see :attr:`active_precision`).
        channels_last: Keep G, D, G_ema and the real batch in NHWC memory format.
        compile_G: ``torch.compile`` G and G_ema (never D: the gradient penalty's double
            backward). A stage change compiles anew; alpha is passed as a tensor during a
            fade, so changing it does not.
        compile_backend: ``torch.compile`` backend (``inductor``; ``aot_eager`` to debug).
        class_names: Names of the ``G.num_classes`` classes of a conditional G and D (the
            official ``-cond`` setup; ``train`` passes the data's). The D step generates its
            fakes with the real batch's labels; the G step draws labels from the data's
            label distribution (the official ``get_random_labels_tf``), set from the
            datamodule's ``class_counts`` in :meth:`setup` (uniform without a Trainer).
        augment: The ``augment`` group (see ``augment.py``): the ops every image D scores
            goes through, with a fixed or an adaptive (ADA) probability; None: none.
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
        precision: str = "fp32",
        channels_last: bool = False,
        compile_G: bool = False,
        compile_backend: str = "inductor",
        class_names: list[str] | None = None,
        d_lr_ratio: float = 1.0,
        augment: Augment | None = None,
    ) -> None:
        super().__init__()
        if precision not in (*PRECISIONS, AUTO_PRECISION):
            raise ValueError(
                f"model.precision={precision!r}; use one of {', '.join(PRECISIONS)}, "
                f"{AUTO_PRECISION} "
                "(model/precision=fp16 also sets the fp16 pixel-norm epsilon)"
            )
        check_training_values(optimizer, ema_beta, ema_kimg, d_lr_ratio)
        self.num_classes = int(getattr(G, "num_classes", 0))
        # A plain list of str (not a ListConfig) before save_hyperparameters reads it: the
        # checkpoint stays loadable with weights_only.
        class_names = check_class_names(class_names, self.num_classes)
        self.class_names = class_names
        eps = getattr(G, "init_kwargs", {}).get("pixel_norm_eps", FP16_PIXEL_NORM_EPS)
        if precision == "fp16" and eps < FP16_PIXEL_NORM_EPS:
            rank_zero_warn(
                f"model.precision=fp16 with model.G.pixel_norm_eps={eps:g}: the official fp16 "
                f"preset uses {FP16_PIXEL_NORM_EPS:g}; select model/precision=fp16 to get it"
            )
        self.automatic_optimization = False
        # Keep modules and factories out of the hyperparameters: they break weights-only loading.
        self.save_hyperparameters(ignore=["G", "D", "loss", "optimizer", "augment"])
        self.G = G
        self.D = D
        if channels_last:
            self.to(memory_format=torch.channels_last)
        self.G_ema = copy.deepcopy(G).requires_grad_(False)
        self.G_ema.class_names = self.class_names  # exported with it
        if compile_G:
            for net in (self.G, self.G_ema):
                net.compile(backend=compile_backend)
            # A stage compiles about 4 graphs (grad on/off x fading/stable; G_ema shares
            # them, new batch sizes make the batch dynamic once): lift Dynamo's per-function
            # limit (8) so that later stages do not fall back to eager, with room to spare.
            # (``cache_size_limit`` is ``recompile_limit``'s older name.)
            limit = 8 * getattr(G, "num_stages", 1)
            dynamo_config = torch._dynamo.config
            dynamo_config.cache_size_limit = max(dynamo_config.cache_size_limit, limit)
        self.loss = loss
        self.augment = augment if augment is not None else Augment()
        self._augment_generator: torch.Generator | None = None
        self.optimizer_factory = optimizer
        self.d_lr_ratio = float(d_lr_ratio)
        self.ema_beta = ema_beta
        self.ema_kimg = ema_kimg
        self.reset_optimizer = reset_optimizer
        self.precision = precision
        self.channels_last = channels_last
        # The device only gates GradScaler's CUDA check; the scale lives where the loss is.
        scaler_device = auto_device_type()
        self.grad_scalers = {
            net: torch.amp.GradScaler(scaler_device, enabled=precision == "fp16")
            for net in ("G", "D")
        }

        # Class distribution of the G step's labels [C] (uniform until setup sees the data).
        self.register_buffer(
            "label_probs",
            torch.full((self.num_classes,), 1.0 / max(self.num_classes, 1)),
            persistent=False,
        )

        self.progress = TrainingProgress()

    # Progress, read-only here (the growth callback writes it; see ``progress.py``).

    @property
    def cur_nimg(self) -> int:
        """Real images trained on, global across devices."""
        return self.progress.cur_nimg

    @property
    def stage(self) -> int:
        """Depth of the networks (0: 4x4)."""
        return self.progress.stage

    @property
    def alpha(self) -> float:
        """Fade-in weight of the newest block."""
        return self.progress.alpha

    @property
    def phase_index(self) -> int:
        """Index of the schedule's phase (-1 before the first batch)."""
        return self.progress.phase_index

    def setup(self, stage: str) -> None:
        """Give each rank of a data-parallel run a random stream of its own (``seed`` makes
        them equal, see ``rng.py``; a resume then restores each rank's saved one), and take
        the G step's label distribution from the data (the stored labels' counts)."""
        if stage == "fit" and self.world_size > 1:
            seed_rank(torch.initial_seed(), self.global_rank)
        datamodule = self.trainer.datamodule
        if datamodule is None:
            return
        data_classes = int(getattr(datamodule, "num_classes", 0))
        if data_classes != self.num_classes:
            raise ValueError(
                f"the data has {data_classes} classes (data.labels), the networks "
                f"{self.num_classes} (model.G.num_classes): train() sets the networks' from "
                "the data; build the model with num_classes=datamodule.num_classes"
            )
        if self.num_classes:
            self.set_label_distribution(datamodule.class_counts)

    def set_label_distribution(self, counts: Any) -> None:
        """Draw the G step's labels with probabilities ``counts / counts.sum()``. [C]"""
        counts = torch.as_tensor(counts, dtype=torch.float32).flatten()
        if len(counts) != self.num_classes or not counts.sum() > 0:
            raise ValueError(
                f"class counts {counts.tolist()} do not fit the networks' "
                f"{self.num_classes} classes"
            )
        self.label_probs.copy_(counts / counts.sum())

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return self.build_optimizers()

    def build_optimizers(self) -> list[torch.optim.Optimizer]:
        """Fresh optimizers ``[G's, D's]`` from the factory; D's rate is ``d_lr_ratio`` times
        G's. Each group keeps the factory's rate as ``base_lr`` (G's scale)."""
        opt_g = self.optimizer_factory(self.G.parameters())
        opt_d = self.optimizer_factory(self.D.parameters())
        for opt, ratio in zip((opt_g, opt_d), self.lr_ratios, strict=True):
            for group in opt.param_groups:
                group.setdefault("base_lr", group["lr"])
                group["lr"] = group["base_lr"] * ratio
        return [opt_g, opt_d]

    @property
    def lr_ratios(self) -> tuple[float, float]:
        """Each network's learning rate over the schedule's: (G, D)."""
        return 1.0, self.d_lr_ratio

    def enter_phase(self, phase: Phase, lr_scale: float = 1.0) -> None:
        """Train the next batch in ``phase``: its learning rate and, at a phase change,
        (optionally) fresh optimizer state; then :attr:`progress` enters it.

        Called by the growth callback before every batch; ``lr_scale`` is the schedule's
        ramp-down factor at this point (1 outside a ramp-down). Each network's rate is set
        from it, the phase's rate and ``lr_ratios`` before every batch, so a resumed run sets
        the same rate as an uninterrupted one."""
        changed = phase.index != self.phase_index
        self.progress.enter(phase, lr_scale)
        if self._trainer is None:
            return
        for opt, ratio in zip(self.trainer.optimizers, self.lr_ratios, strict=True):
            if changed and self.reset_optimizer:
                opt.state.clear()
            for group in opt.param_groups:
                lr = group["base_lr"] if phase.lr is None else phase.lr
                group["lr"] = lr * lr_scale * ratio

    def forward(
        self,
        z: Tensor,
        stage: int | None = None,
        alpha: float | None = None,
        labels: Tensor | None = None,
    ) -> Tensor:
        """Images from G_ema at the current stage and alpha (or the given ones). [NCHW]

        ``labels`` (class indices [N]) are required by a conditional G_ema."""
        alpha = self.alpha if alpha is None else alpha
        stage = self.stage if stage is None else stage
        return self.G_ema(z, stage, self.g_alpha(alpha), **self._label_kwargs(labels))

    def g_alpha(self, alpha: float) -> float | Tensor:
        """``alpha`` as G takes it: a python 1.0 in a stable phase (G skips the old path), a
        0-dim tensor during a fade (a compiled G then does not recompile when it changes)."""
        return 1.0 if alpha >= 1.0 else torch.full((), alpha, device=self.device)

    @property
    def active_precision(self) -> str:
        """``precision`` as the training step runs it on this module's device (``auto``
        resolved by :func:`resolve_precision`)."""
        return resolve_precision(self.precision, self.device.type)

    def autocast(self) -> AbstractContextManager:
        """Autocast context of :attr:`active_precision` (none for fp32)."""
        dtype = PRECISIONS[self.active_precision]
        return nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    def discriminator_loss(
        self, reals: Tensor, labels: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """D loss on a real batch [NCHW] (already cross-faded) and as many fresh fakes,
        generated with the reals' ``labels`` [N] in a conditional run (official
        ``D_wgangp_acgan``).

        The loss also gets ``resolution_scale = final / stage resolution``: the official
        gradient penalty is measured at the final resolution (see ``losses.WGANGP``)."""
        stage, alpha = self.stage, self.alpha
        kwargs = self._label_kwargs(labels)
        with torch.no_grad():
            fakes = self.G(self._latents(reals.shape[0]), stage, self.g_alpha(alpha), **kwargs)
        # With fp16, penalties take their input gradient at the D scaler's current scale.
        scaler, grad_scale = self.grad_scalers["D"], None
        if scaler.is_enabled():
            grad_scale = scaler.scale(torch.ones((), device=reals.device))
        return self.loss.discriminator(
            self._critic(stage, alpha, labels),
            reals,
            fakes,
            grad_scale=grad_scale,
            resolution_scale=self.G.img_resolution / self.resolution,
            **kwargs,
        )

    def generator_loss(self, n: int) -> Tensor:
        """G loss on ``n`` fresh fakes (with labels drawn from the data's class
        distribution in a conditional run: the official ``G_wgan_acgan``)."""
        kwargs = self._label_kwargs(self.random_labels(n))
        fakes = self.G(self._latents(n), self.stage, self.g_alpha(self.alpha), **kwargs)
        critic = self._critic(self.stage, self.alpha, kwargs.get("labels"))
        return self.loss.generator(critic(fakes), **kwargs)

    def _critic(
        self, stage: int, alpha: float | Tensor, labels: Tensor | None
    ) -> Callable[[Tensor], Tensor]:
        """D at ``stage`` as the losses call it: images [N', C, H, W] -> D's output.

        A projection D also scores with the labels [N]: those of the first N' images (the
        reals, their fakes and the penalty's mixes of the two share them; a penalty on part
        of the batch takes its first pairs). Labels are never augmented.

        With augmentation on, every image goes through :attr:`augment` before D, with fresh
        random parameters per call: the reals (cross-faded) and fakes of the D step, the fakes
        of the G step, and the gradient penalty's mixes ``lerp(real, fake, t)`` (R1's reals),
        whose gradient is then taken with respect to the mix before augmentation, through the
        differentiable ops: the penalty constrains the function the losses train, D after
        the augmentation (as ADA's R1 does)."""
        if getattr(self.D, "conditioning", "acgan") != "projection":
            score = lambda x: self.D(x, stage, alpha)  # noqa: E731
        else:
            score = lambda x: self.D(x, stage, alpha, labels=labels[: x.shape[0]])  # noqa: E731
        generator = self._augment_generator
        if not self.augment.enabled or generator is None:  # None: no step seeded it
            return score
        return lambda x: score(self.augment(x, generator))

    def random_labels(self, n: int) -> Tensor | None:
        """``n`` class indices drawn from the data's label distribution, or None (no classes)."""
        if not self.num_classes:
            return None
        return torch.multinomial(self.label_probs, n, replacement=True)  # [N] int64

    def _label_kwargs(self, labels: Tensor | None) -> dict[str, Tensor]:
        """``{"labels": labels}`` for a conditional network, ``{}`` otherwise (an
        unconditional G and loss are called exactly as without classes)."""
        if labels is None and self.num_classes:
            raise ValueError(
                f"this generator is conditional ({self.num_classes} classes: "
                f"{', '.join(self.class_names)}); pass labels (class indices [N])"
            )
        return {} if labels is None else {"labels": labels}

    def training_step(self, batch: Tensor | tuple[Tensor, Tensor], batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        reals, labels = split_batch(batch)
        loss_d, loss_g, stats = self.train_step(reals, opt_g, opt_d, labels)
        self.progress.cur_nimg += reals.shape[0] * self.world_size

        self.log_dict({"loss/D": loss_d.detach(), "loss/G": loss_g.detach()}, prog_bar=True)
        self.log_dict(stats)
        if self.augment.enabled:
            self.log("augment/p", self.augment.p)
        if self.augment.controller is not None:
            self.log("augment/rt", self.augment.controller.signal)
        # Every logger's x-axis is the real images trained on (see loggers.log_step): a
        # logged "step" replaces Lightning's count of batches. float64 keeps it exact.
        self.log("step", torch.tensor(self.cur_nimg, dtype=torch.float64))
        self.log_dict(
            {
                "progress/kimg": self.cur_nimg / 1000,
                "progress/resolution": float(reals.shape[-1]),
                "progress/alpha": float(self.alpha),
            },
            prog_bar=True,
        )

    def train_step(
        self,
        reals: Tensor,
        opt_g: torch.optim.Optimizer,
        opt_d: torch.optim.Optimizer,
        labels: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """One D step, one G step and the G_ema update; runs with or without a Trainer.

        Args:
            reals: Real images at the stage resolution, in [-1, 1]. [NCHW]
            opt_g: G's optimizer (Lightning's wrapper or a plain one).
            opt_d: D's optimizer.
            labels: The reals' class indices (conditional runs only). [N]

        Returns:
            D loss, G loss and the loss's extra statistics (all attached tensors).
        """
        if self.alpha < 1.0:
            # Cross-fade the reals exactly like the generator output.
            reals = fade_reals(reals, self.alpha)
        if self.channels_last:
            reals = reals.contiguous(memory_format=torch.channels_last)
        if self.augment.enabled:
            self.seed_augment(reals.device)

        # Discriminator step (G frozen: no weight gradients for it).
        self._train_only(self.D)
        with self.autocast():
            loss_d, stats = self.discriminator_loss(reals, labels)
        self._step(opt_d, loss_d, self.grad_scalers["D"], "D")

        # Generator step (D frozen).
        self._train_only(self.G)
        with self.autocast():
            loss_g = self.generator_loss(reals.shape[0])
        self._step(opt_g, loss_g, self.grad_scalers["G"], "G")
        self.D.requires_grad_(True)

        self.update_ema(reals.shape[0] * self.world_size)
        if self.augment.controller is not None:
            self.adapt_augment(stats["loss/real_sign"], reals.shape[0])
        return loss_d, loss_g, stats

    def seed_augment(self, device: torch.device) -> None:
        """Start a step's augmentations: their generator on ``device``, seeded from
        ``augment.seed``, the images seen and the rank (a resumed run draws the same)."""
        self._augment_generator = step_generator(
            self.augment.seed, self.cur_nimg, self.global_rank, device
        )

    def adapt_augment(self, real_sign: Tensor, n: int) -> None:
        """Gather ADA's heuristic of one step (``real_sign``: the mean sign of D's scores of
        this rank's ``n`` reals) and, every ``augment.interval`` steps, move ``p`` by its sum
        and count over all ranks (one all-reduce), so every rank holds the same ``p``."""
        controller = self.augment.controller
        if not controller.gather(real_sign * n, n, n * self.world_size):
            return
        totals = controller.totals.clone()  # [sum of signs, count]
        if self.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.all_reduce(totals)
        controller.adjust(totals)

    @property
    def world_size(self) -> int:
        """Processes sharing each global batch (1 without a Trainer)."""
        return self._trainer.world_size if self._trainer is not None else 1

    def _train_only(self, net: nn.Module) -> None:
        self.G.requires_grad_(net is self.G)
        self.D.requires_grad_(net is self.D)

    def _step(
        self, opt: torch.optim.Optimizer, loss: Tensor, scaler: torch.amp.GradScaler, net: str
    ) -> None:
        """Backward of the (loss-scaled) ``loss`` and an optimizer step; with fp16 the scaler
        unscales the gradients, skips the step when they overflowed and updates the scale.

        Raises:
            Diverged: fp32/bf16: ``loss`` or a gradient of ``net`` is not finite (the step is
                not applied, as the official optimizer applies updates only when finite).
                fp16: the loss scale fell below 1 (the scaler skips every non-finite step;
                below 1 even the unscaled gradients overflow, so every step is skipped).
        """
        opt.zero_grad(set_to_none=True)
        # Lightning's backward applies DDP hooks when it runs us.
        if self._trainer is not None:
            self.manual_backward(scaler.scale(loss))
        else:
            scaler.scale(loss).backward()
        if not scaler.is_enabled():
            self._check_finite(loss, opt, net)
        scaler.step(opt)
        scaler.update()
        if scaler.is_enabled() and scaler.get_scale() < 1.0:
            self._diverged(f"loss/{net} (the fp16 loss scale fell below 1: every step overflows)")

    def _check_finite(self, loss: Tensor, opt: torch.optim.Optimizer, net: str) -> None:
        """Raise :class:`Diverged` unless ``loss`` and ``net``'s gradients are finite on every
        rank (one host sync per step; gradients are already all-reduced, the loss is not)."""
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        values = [loss.detach().float().reshape(1)]
        if grads:
            values.append(torch.stack(torch._foreach_norm(grads)).float())
        finite = torch.isfinite(torch.cat(values)).all().to(torch.int32)
        if self.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if not finite.item():
            self._diverged(
                f"loss/{net}" if not torch.isfinite(loss).all() else f"the gradient of {net}"
            )

    def _diverged(self, what: str) -> None:
        raise Diverged(what, self.cur_nimg, self.phase_name)

    @property
    def phase_name(self) -> str:
        """``fade16`` or ``stable16``: the phase the module is in, as the schedule names it."""
        return f"{'fade' if self.alpha < 1.0 else 'stable'}{self.resolution}"

    @property
    def resolution(self) -> int:
        """Image side at the current stage."""
        return stage_resolution(self.stage)

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
        checkpoint.update(module_entries(self))  # the format: checkpoint.py
        # The augmentations' seed and ADA's p with its gathered heuristic.
        checkpoint["augment"] = self.augment.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_architecture(checkpoint, self)
        self.progress.load_state_dict(checkpoint.get("progress", {}))
        self.augment.load_state_dict(checkpoint.get("augment", {}))
        for net, state in checkpoint.get("grad_scalers", {}).items():
            if self.grad_scalers[net].is_enabled():
                self.grad_scalers[net].load_state_dict(state)
