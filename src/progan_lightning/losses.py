"""GAN losses: WGAN-GP with drift (the paper's default), LSGAN and non-saturating logistic,
each with the optional AC-GAN class term.

Each loss gives ``discriminator(D, reals, fakes, grad_scale=None, resolution_scale=1.0,
labels=None) -> (loss, stats)`` and ``generator(fake_out, labels=None) -> loss``. ``D`` is any
callable mapping images [NCHW] to D's raw output [N, 1 + C]: the score in column 0, then C
class logits (C = 0 for an unconditional D); ``fake_out`` is that output on fakes. Only the
score enters the GAN loss and its penalties (the gradient penalty and R1 differentiate column
0 alone). With ``labels`` (class indices [N], or one-hot / soft labels [N, C]) and C > 0 each
loss adds the class term (:func:`class_term`); ``stats`` holds detached tensors for logging
(no host syncs), among them ``loss/real_sign``: the batch's mean of ``sign(D(real) -
boundary)``, ADA's overfitting heuristic (:func:`real_sign`, ``augment=ada``), with
``boundary`` the score that separates D's verdicts: 0 for the logistic loss (ADA's), 0.5
between LSGAN's targets, and for WGAN-GP, whose critic has no fixed level (only the drift term
keeps it near 0), the midpoint of the batch's mean real and fake scores.
``grad_scale`` is the current fp16 loss scale (a 0-dim tensor, or None without loss scaling):
penalties that take ``autograd.grad`` of D scale D's output by it and unscale the gradient, so
that the fp16 backward inside the penalty does not underflow (PyTorch's AMP recipe for
gradient penalties). ``resolution_scale`` is ``final resolution / stage resolution`` (1 at the
last stage); only the WGAN-GP penalty uses it (see :class:`WGANGP`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

Critic = Callable[[Tensor], Tensor]
"""Images [NCHW] -> D's raw output [N, 1 + C] (score, then class logits)."""

GP_RESOLUTIONS = ("final", "stage")
"""Where the WGAN-GP gradient norm is measured (``model.loss.gp_resolution``)."""


def split_output(out: Tensor) -> tuple[Tensor, Tensor]:
    """D's raw output [N, 1 + C] as scores [N] (column 0) and class logits [N, C]."""
    return out[:, 0], out[:, 1:]


def class_term(
    cond_weight: float,
    labels: Tensor | None,
    stats: dict[str, Tensor] | None = None,
    **logits: Tensor,
) -> Tensor | None:
    """The AC-GAN class term, per sample: ``cond_weight * sum_k CE(logits_k, labels)``.

    Softmax cross-entropy of each named set of class logits against the labels, as the
    official loss.py (tkarras/progressive_growing_of_gans): ``D_wgangp_acgan`` adds
    ``(label_penalty_reals + label_penalty_fakes) * cond_weight`` with
    ``label_penalty_* = tf.nn.softmax_cross_entropy_with_logits_v2(labels=labels,
    logits=*_labels_out)``, and ``G_wgan_acgan`` adds ``label_penalty_fakes * cond_weight``;
    both only ``if D.output_shapes[1][1] > 0`` (D gives class logits). The fakes carry the
    labels they were generated with (the official D step draws them with the reals' labels).

    Args:
        cond_weight: Weight of the term (official 1).
        labels: Class indices [N] (int64), or one-hot / soft labels [N, C] (float); None for an
            unconditional step.
        stats: Where to put ``loss/class_<name>`` (the detached mean of each cross-entropy);
            None for no stats.
        **logits: Class logits [N, C] by name (``real``, ``fake``), from :func:`split_output`.

    Returns:
        The weighted term [N], or None when it is off: no labels, or D gives no class logits
        (labels for an unconditional D are ignored, as the official code does).

    Raises:
        ValueError: D gives class logits but no labels came with the images.
    """
    num_classes = next(iter(logits.values())).shape[1]
    if not num_classes:
        return None
    if labels is None:
        raise ValueError(
            f"D gives {num_classes} class logits but the loss got no labels; pass labels= "
            "(the class of each real, which its fake was generated with)"
        )
    total = None
    for name, x in logits.items():
        ce = F.cross_entropy(x, labels, reduction="none")  # [N]
        if stats is not None:
            stats[f"loss/class_{name}"] = ce.mean().detach()
        total = ce if total is None else total + ce
    return total * cond_weight


def with_class_term(
    loss: Tensor,
    cond_weight: float,
    labels: Tensor | None,
    stats: dict[str, Tensor] | None = None,
    **logits: Tensor,
) -> Tensor:
    """``loss`` [N] plus :func:`class_term` where it is on (``loss`` itself where it is off)."""
    term = class_term(cond_weight, labels, stats, **logits)
    return loss if term is None else loss + term


def real_sign(real: Tensor, boundary: float | Tensor = 0.0) -> Tensor:
    """ADA's overfitting heuristic on one batch: ``mean(sign(real - boundary))``, detached.

    Args:
        real: D's scores of the reals (as D saw them: augmented, where augmentation is on). [N]
        boundary: The score that separates D's verdicts real and fake (0 for the logistic
            loss, 0.5 between LSGAN's targets 1 and 0; WGAN-GP: the midpoint of the batch's
            mean real and fake scores, a 0-dim tensor).

    Returns:
        A 0-dim tensor in [-1, 1]: 1 when D scores every real on the real side.
    """
    return (real.detach().float() - boundary).sign().mean()


def input_gradient(scores: Tensor, inputs: Tensor, grad_scale: Tensor | None = None) -> Tensor:
    """``d scores.sum() / d inputs`` with a graph for a later backward (``create_graph``).

    Args:
        scores: D's output on ``inputs``. [N1]
        inputs: Images that require grad. [NCHW]
        grad_scale: Loss scale to apply to ``scores`` and remove from the gradient (fp16), so
            that the backward pass runs on scaled values; None for no scaling.

    Returns:
        The gradient, shaped like ``inputs``, in ``inputs``' dtype. Where the scaled backward
        overflowed it holds inf/nan, which makes the loss scaler skip the step.
    """
    total = scores.sum()
    if grad_scale is not None:
        total = total * grad_scale
    (grad,) = torch.autograd.grad(total, inputs, create_graph=True)
    return grad if grad_scale is None else grad / grad_scale


def penalty_batch(batch: int, fraction: float) -> int:
    """Images of a ``batch`` the penalty is taken on at ``fraction``: ``round(batch *
    fraction)``, at least 1 (all of them at 1.0)."""
    return max(1, round(batch * fraction))


def gradient_penalty(
    D: Critic,
    reals: Tensor,
    fakes: Tensor,
    target: float = 1.0,
    grad_scale: Tensor | None = None,
    resolution_scale: float = 1.0,
) -> Tensor:
    """Per-sample ``(||grad_x D(x_hat)|| / resolution_scale - target)^2`` on
    ``x_hat = lerp(real, fake, t)``.

    Uses ``autograd.grad(..., create_graph=True)`` followed later by one ordinary backward,
    which is what DDP supports (never ``backward(create_graph=True)``).

    Args:
        D: The critic (its score column alone is differentiated; class logits play no part).
        reals: Real images [NCHW].
        fakes: Generated images [NCHW], detached from G.
        target: Gradient norm the penalty pulls towards (1, or 750 for CIFAR-10).
        grad_scale: fp16 loss scale (see :func:`input_gradient`), or None.
        resolution_scale: ``k``, the factor the norm is divided by. With ``k = final / stage
            resolution`` this is the norm the official code penalizes: it nearest-upscales the
            images by ``k`` and its D average-pools them back, so the gradient with respect to
            the full-size image is ``upsample_nearest(grad, k) / k^2``, whose norm is
            ``||grad|| / k``. 1 measures the norm at the images' own resolution.

    Returns:
        Penalties [N].
    """
    t = torch.rand(reals.shape[0], 1, 1, 1, device=reals.device, dtype=reals.dtype)
    # Under autocast G's output may be bf16 while reals are float32: mix in the reals' dtype.
    mixed = torch.lerp(reals.detach(), fakes.detach().to(reals.dtype), t).requires_grad_(True)
    scores, _ = split_output(D(mixed))  # [N]
    grad = input_gradient(scores, mixed, grad_scale)
    norms = grad.flatten(1).norm(dim=1) / resolution_scale  # [N]
    return (norms - target).square()


class WGANGP:
    """WGAN-GP with the paper's drift term.

    ``L_D = D(fake) - D(real) + lambda / target^2 * (||grad|| - target)^2 + eps * D(real)^2``
    and ``L_G = -D(fake)`` (the official ``D_wgangp_acgan`` / ``G_wgan_acgan``), each plus the
    AC-GAN class term when D is conditional (:func:`class_term`).

    Where ``||grad||`` is measured: the official networks work at the final resolution at
    every stage (G nearest-upscales its output, the data pipeline upscales the reals the same
    way, D average-pools its input down), so the official penalty takes the gradient with
    respect to the full-size mixed image, whose norm is the stage-resolution norm divided by
    ``k = final / stage resolution``. ``gp_resolution="final"`` (default) penalizes exactly
    that, computed at the stage resolution and divided by ``k`` (no full-size tensors);
    ``"stage"`` penalizes the stage-resolution norm itself, as most ports do (a ``k^2`` times
    stronger pull at the early stages).

    Args:
        gp_lambda: Gradient-penalty weight (official 10).
        gp_target: Target gradient norm (official 1; 750 for CIFAR-10).
        drift: Weight of the drift term that keeps real scores near 0 (official 0.001).
        gp_resolution: ``final`` (official) or ``stage`` (see above).
        gp_fraction: Share of each batch the penalty is taken on (official 1: all of it).
            Below 1 the penalty is the mean over the batch's first ``round(N * gp_fraction)``
            pairs (the data loader shuffles, the fakes are random): the same penalty in
            expectation, for a fraction of its cost. It is the most expensive part of a D step
            (a D forward and a double backward: 37% of the whole step at 32x32 on a CPU), so
            a short run gets more images for the same time (0.25 scored no better in the
            quickstart's budget, docs/quickstart.md).
        cond_weight: Weight of the class term (official 1).
    """

    def __init__(
        self,
        gp_lambda: float = 10.0,
        gp_target: float = 1.0,
        drift: float = 0.001,
        gp_resolution: str = "final",
        gp_fraction: float = 1.0,
        cond_weight: float = 1.0,
    ):
        if gp_resolution not in GP_RESOLUTIONS:
            raise ValueError(
                f"model.loss.gp_resolution={gp_resolution!r}; use final (the official "
                "penalty, at the final resolution) or stage (at the stage resolution)"
            )
        if not 0.0 < gp_fraction <= 1.0:
            raise ValueError(
                f"model.loss.gp_fraction={gp_fraction!r}; use a share of the batch in (0, 1] "
                "(1: every image, the official penalty)"
            )
        self.gp_lambda = gp_lambda
        self.gp_target = gp_target
        self.drift = drift
        self.gp_resolution = gp_resolution
        self.gp_fraction = gp_fraction
        self.cond_weight = cond_weight

    def discriminator(
        self,
        D: Critic,
        reals: Tensor,
        fakes: Tensor,
        grad_scale: Tensor | None = None,
        resolution_scale: float = 1.0,
        labels: Tensor | None = None,
    ) -> tuple[Tensor, dict]:
        real, real_logits = split_output(D(reals))  # [N], [N, C]
        fake, fake_logits = split_output(D(fakes))  # [N], [N, C]
        loss = fake - real
        midpoint = (real.mean() + fake.mean()).detach() / 2
        stats = {
            "loss/wdist": (real - fake).mean().detach(),
            "loss/real_sign": real_sign(real, midpoint),
        }
        if self.drift:
            loss = loss + real.square() * self.drift
        loss = with_class_term(
            loss, self.cond_weight, labels, stats, real=real_logits, fake=fake_logits
        ).mean()
        if self.gp_lambda:
            k = resolution_scale if self.gp_resolution == "final" else 1.0
            n = penalty_batch(reals.shape[0], self.gp_fraction)
            gp = gradient_penalty(D, reals[:n], fakes[:n], self.gp_target, grad_scale, k).mean()
            loss = loss + gp * (self.gp_lambda / self.gp_target**2)
            stats["loss/gp"] = gp.detach()
        return loss, stats

    def generator(self, fake_out: Tensor, labels: Tensor | None = None) -> Tensor:
        fake, fake_logits = split_output(fake_out)
        return with_class_term(-fake, self.cond_weight, labels, fake=fake_logits).mean()


class LSGAN:
    """Least-squares GAN: D pushes reals to 1 and fakes to 0, G pushes fakes to 1 (no
    penalty: ``grad_scale`` and ``resolution_scale`` are accepted and unused), plus the class
    term when D is conditional.

    Args:
        cond_weight: Weight of the class term (:func:`class_term`).
    """

    def __init__(self, cond_weight: float = 1.0):
        self.cond_weight = cond_weight

    def discriminator(
        self,
        D: Critic,
        reals: Tensor,
        fakes: Tensor,
        grad_scale: Tensor | None = None,
        resolution_scale: float = 1.0,
        labels: Tensor | None = None,
    ) -> tuple[Tensor, dict]:
        real, real_logits = split_output(D(reals))
        fake, fake_logits = split_output(D(fakes))
        loss = 0.5 * ((real - 1).square() + fake.square())
        stats = {"loss/D_real": real.mean().detach(), "loss/real_sign": real_sign(real, 0.5)}
        loss = with_class_term(
            loss, self.cond_weight, labels, stats, real=real_logits, fake=fake_logits
        )
        return loss.mean(), stats

    def generator(self, fake_out: Tensor, labels: Tensor | None = None) -> Tensor:
        fake, fake_logits = split_output(fake_out)
        loss = 0.5 * (fake - 1).square()
        return with_class_term(loss, self.cond_weight, labels, fake=fake_logits).mean()


class Logistic:
    """Non-saturating logistic loss (Goodfellow et al.), optional R1 penalty on reals.

    Neither this loss nor R1 exists in the official ProGAN code, so there is no official
    resolution to follow: R1 stays measured at the stage resolution (on the images D sees) and
    ``resolution_scale`` is accepted and unused. Code that upscales every stage to the final
    resolution (as the official ProGAN does) would get ``||grad||^2 / k^2`` instead, i.e. the
    same penalty with ``r1_gamma / k^2``.

    The class term is added when D is conditional (R1 differentiates the score alone).

    Args:
        r1_gamma: Weight of ``gamma / 2 * ||grad_x D(real)||^2``; 0 switches it off.
        cond_weight: Weight of the class term (:func:`class_term`).
    """

    def __init__(self, r1_gamma: float = 0.0, cond_weight: float = 1.0):
        self.r1_gamma = r1_gamma
        self.cond_weight = cond_weight

    def discriminator(
        self,
        D: Critic,
        reals: Tensor,
        fakes: Tensor,
        grad_scale: Tensor | None = None,
        resolution_scale: float = 1.0,
        labels: Tensor | None = None,
    ) -> tuple[Tensor, dict]:
        reals = reals.detach().requires_grad_(self.r1_gamma > 0)
        real, real_logits = split_output(D(reals))
        fake, fake_logits = split_output(D(fakes))
        loss = F.softplus(fake) + F.softplus(-real)
        stats = {"loss/D_real": real.mean().detach(), "loss/real_sign": real_sign(real)}
        if self.r1_gamma > 0:
            grad = input_gradient(real, reals, grad_scale)
            r1 = grad.flatten(1).square().sum(dim=1)
            loss = loss + r1 * (self.r1_gamma / 2)
            stats["loss/r1"] = r1.mean().detach()
        loss = with_class_term(
            loss, self.cond_weight, labels, stats, real=real_logits, fake=fake_logits
        )
        return loss.mean(), stats

    def generator(self, fake_out: Tensor, labels: Tensor | None = None) -> Tensor:
        fake, fake_logits = split_output(fake_out)
        return with_class_term(
            F.softplus(-fake), self.cond_weight, labels, fake=fake_logits
        ).mean()
