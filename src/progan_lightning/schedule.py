"""The progressive growth schedule: images seen -> phase.

Pure Python (no torch, no Lightning), so it is trivial to test. It reproduces the official
``TrainingSchedule``: the first resolution trains stable for ``stable_kimg``; every later
resolution first fades in for ``fade_kimg`` and then trains stable for ``stable_kimg``. The
last stable phase runs until ``total_kimg``. Only real images shown to D count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PerResolution = int | float | Mapping[int | str, int | float] | None


def stage_resolution(stage: int) -> int:
    """The image side at ``stage``: ``4 * 2**stage`` (stage 0 is 4x4), the argument of ``G``
    and ``D``."""
    return 4 * 2**stage


def resolution_stage(resolution: int) -> int:
    """The stage of a power-of-two ``resolution``: ``log2(resolution) - 2`` (4x4 is stage 0);
    the inverse of :func:`stage_resolution`."""
    return int(resolution).bit_length() - 3


def check_resolution(value: int, name: str) -> int:
    """Return ``value`` if it is a power of two >= 4, else raise one clear ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 4 or value & (value - 1):
        raise ValueError(
            f"{name}={value!r} is not a power of two >= 4; use one of 4, 8, 16, ..., 1024"
        )
    return value


def per_resolution(
    value: PerResolution, resolutions: list[int], name: str, optional: bool = False
) -> dict[int, int | float | None]:
    """Expand a scalar or a {resolution: value} mapping to one value per resolution.

    Resolutions missing from a mapping, or null in it, take the value of the nearest lower
    resolution that has one (like the official ``minibatch_dict`` with ``minibatch_base`` as
    fallback). Below the lowest key the value is None if ``optional``, else an error.
    """
    if value is None or isinstance(value, int | float):
        return dict.fromkeys(resolutions, value)
    table = {}
    for key, val in value.items():
        try:
            res = int(key)
        except ValueError:
            raise ValueError(
                f"{name} has key {key!r}; keys must be resolutions like 4, 8, 16"
            ) from None
        if val is not None:
            table[res] = val
    out: dict[int, int | float | None] = {}
    known = sorted(table)
    for res in resolutions:
        lower = [r for r in known if r <= res]
        if not lower and not optional:
            raise ValueError(
                f"{name} has no value for resolution {res} (keys: {known}); "
                f"add {res} or a lower resolution"
            )
        out[res] = table[lower[-1]] if lower else None
    return out


@dataclass(frozen=True)
class Phase:
    """One stretch of training at a fixed resolution, either fading in or stable.

    Attributes:
        index: Position in the schedule (0 = stable phase of the start resolution).
        resolution: Image side length trained in this phase.
        stage: ``log2(resolution) - 2`` (0 = 4x4), the argument of ``G`` and ``D``.
        fading: Whether the new top block is being faded in.
        start_nimg: Images seen when the phase starts.
        end_nimg: Images seen when the phase ends (exclusive).
        batch_size: Global minibatch size (summed over all devices).
        lr: Learning rate for this resolution, or None for the optimizer's default.
    """

    index: int
    resolution: int
    stage: int
    fading: bool
    start_nimg: int
    end_nimg: int
    batch_size: int
    lr: float | None

    def alpha(self, nimg: int) -> float:
        """Fade-in weight of the new block at ``nimg`` images seen (1 when stable)."""
        if not self.fading:
            return 1.0
        span = self.end_nimg - self.start_nimg
        return min(max((nimg - self.start_nimg) / span, 0.0), 1.0)

    def images(self, total_nimg: int, since: int = 0) -> int:
        """Images this phase trains on after ``since`` images, when training stops at
        ``total_nimg`` (the last phase runs on to ``total_nimg``; a cut one stops there)."""
        return max(0, min(self.end_nimg, total_nimg) - max(self.start_nimg, since))

    @property
    def name(self) -> str:
        """Short label such as ``fade16`` or ``stable32``."""
        return f"{'fade' if self.fading else 'stable'}{self.resolution}"


def resolutions_between(start_resolution: int, final_resolution: int) -> list[int]:
    """Every resolution from ``start_resolution`` to ``final_resolution`` (both checked)."""
    check_resolution(start_resolution, "growth.start_resolution")
    check_resolution(final_resolution, "data.resolution")
    if start_resolution > final_resolution:
        raise ValueError(
            f"growth.start_resolution={start_resolution} is above "
            f"data.resolution={final_resolution}; lower it or raise data.resolution"
        )
    return [
        stage_resolution(s)
        for s in range(resolution_stage(start_resolution), resolution_stage(final_resolution) + 1)
    ]


def check_batch_sizes(sizes: dict[int, Any]) -> dict[int, Any]:
    """``sizes`` (per resolution) if each is a positive integer, else one clear ValueError."""
    for res, size in sizes.items():
        if not isinstance(size, int) or size < 1:
            raise ValueError(
                f"growth.batch_size at {res}x{res} is {size!r}; use a positive integer"
            )
    return sizes


def check_lrs(lrs: dict[int, Any]) -> dict[int, Any]:
    """``lrs`` (per resolution) if each is None or > 0, else one clear ValueError."""
    for res, value in lrs.items():
        if value is not None and (not isinstance(value, int | float) or not value > 0):
            raise ValueError(
                f"growth.lr at {res}x{res} is {value!r}; use a learning rate > 0 (official "
                "0.001-0.003), or null for model.optimizer.lr"
            )
    return lrs


def check_lengths(
    stables: dict[int, Any], fades: dict[int, Any]
) -> tuple[dict[int, Any], dict[int, Any]]:
    """Stable (> 0) and fade (>= 0) kimg per resolution, checked; else one clear ValueError."""
    for res in stables:
        if not isinstance(stables[res], int | float) or stables[res] <= 0:
            raise ValueError(
                f"growth.stable_kimg at {res}x{res} is {stables[res]!r}; use a number > 0"
            )
        if not isinstance(fades[res], int | float) or fades[res] < 0:
            raise ValueError(
                f"growth.fade_kimg at {res}x{res} is {fades[res]!r}; use a number >= 0 "
                "(0 disables fading)"
            )
    return stables, fades


def lay_out(
    resolutions: list[int],
    stables: dict[int, Any],
    fades: dict[int, Any],
    sizes: dict[int, Any],
    lrs: dict[int, Any],
) -> list[Phase]:
    """The phases end to end: the first resolution stable, every later one a fade-in (unless
    its fade is 0) then stable."""
    phases: list[Phase] = []
    nimg = 0
    for res in resolutions:
        stable, fade = round(stables[res] * 1000), round(fades[res] * 1000)
        kinds = [False] if res == resolutions[0] or fade == 0 else [True, False]
        for fading in kinds:
            length = fade if fading else stable
            phases.append(
                Phase(
                    index=len(phases),
                    resolution=res,
                    stage=resolution_stage(res),
                    fading=fading,
                    start_nimg=nimg,
                    end_nimg=nimg + length,
                    batch_size=int(sizes[res]),
                    lr=None if lrs[res] is None else float(lrs[res]),
                )
            )
            nimg += length
    return phases


class GrowthSchedule:
    """Maps images seen to the training phase.

    Args:
        start_resolution: First resolution trained (official: 4).
        final_resolution: Last resolution (``data.resolution``).
        stable_kimg: Thousands of images per stable phase (official TF default 600), one
            number or ``{resolution: kimg}``.
        fade_kimg: Thousands of images per fade-in phase (0 switches fading off), one number
            or ``{resolution: kimg}``.
        batch_size: Global minibatch, one int or ``{resolution: size}``.
        lr: Learning rate per resolution (``{resolution: lr}``), one float, or None; where
            none applies (None, or below the lowest key) the optimizer's own lr.
        total_kimg: Where training stops; default: the end of the last stable phase.
        lr_rampdown_kimg: Over the last this many thousand images of the run, every learning
            rate falls linearly towards 0 (:meth:`lr_scale`); 0 (the official schedule):
            constant rates.
    """

    def __init__(
        self,
        start_resolution: int,
        final_resolution: int,
        stable_kimg: PerResolution,
        fade_kimg: PerResolution,
        batch_size: PerResolution,
        lr: PerResolution = None,
        total_kimg: float | None = None,
        lr_rampdown_kimg: float = 0.0,
    ) -> None:
        resolutions = resolutions_between(start_resolution, final_resolution)
        sizes = check_batch_sizes(per_resolution(batch_size, resolutions, "growth.batch_size"))
        lrs = check_lrs(per_resolution(lr, resolutions, "growth.lr", optional=True))
        if not isinstance(lr_rampdown_kimg, int | float) or not lr_rampdown_kimg >= 0:
            raise ValueError(
                f"growth.lr_rampdown_kimg={lr_rampdown_kimg!r}; use the kimg at the end of the "
                "run over which the learning rates fall to 0, or 0 for constant rates"
            )
        self.lr_rampdown_nimg = round(lr_rampdown_kimg * 1000)
        stables, fades = check_lengths(
            per_resolution(stable_kimg, resolutions, "growth.stable_kimg"),
            per_resolution(fade_kimg, resolutions, "growth.fade_kimg"),
        )
        phases = lay_out(resolutions, stables, fades, sizes, lrs)

        # The last stable phase runs until total_kimg.
        self.total_nimg = phases[-1].end_nimg if total_kimg is None else round(total_kimg * 1000)
        if self.total_nimg <= 0:
            raise ValueError(f"growth.total_kimg={total_kimg} must be > 0")
        last = phases[-1]
        phases[-1] = Phase(**{**last.__dict__, "end_nimg": max(last.end_nimg, self.total_nimg)})
        self.phases = [p for p in phases if p.start_nimg < self.total_nimg]
        self.start_resolution = start_resolution
        self.final_resolution = final_resolution

    def phase_at(self, nimg: int) -> Phase:
        """The phase in force after ``nimg`` images (the last phase once past the end)."""
        for phase in self.phases:
            if nimg < phase.end_nimg:
                return phase
        return self.phases[-1]

    def next_boundary(self, nimg: int) -> int:
        """Images seen at the end of the phase in force (capped at ``total_nimg``)."""
        return min(self.phase_at(nimg).end_nimg, self.total_nimg)

    def lr_scale(self, nimg: int) -> float:
        """Factor on the learning rates after ``nimg`` images: 1, then over the last
        ``lr_rampdown_kimg`` a linear fall, ``(total - nimg) / rampdown``, reaching 0 at
        ``total_kimg`` (the step before the end still moves, by one batch's share)."""
        if not self.lr_rampdown_nimg:
            return 1.0
        return min(1.0, max(self.total_nimg - nimg, 0) / self.lr_rampdown_nimg)

    @property
    def resolutions(self) -> list[int]:
        """Every resolution the schedule visits, in order."""
        return sorted({p.resolution for p in self.phases})

    def state(self) -> dict:
        """The laid-out phases and ``total_nimg`` as plain values (kept in checkpoints)."""
        return {"total_nimg": self.total_nimg, "phases": [dict(p.__dict__) for p in self.phases]}

    def resume_conflicts(self, saved: Mapping, nimg: int) -> list[str]:
        """How this schedule contradicts the ``saved`` one (:meth:`state`) at ``nimg`` images.

        A resume must continue the same training: every phase that has begun keeps its
        resolution, kind and start; a completed phase keeps its end; a fade in progress keeps
        its length (alpha would jump). The current stable phase (and ``total_kimg``) may be
        lengthened or shortened down to ``nimg``, and phases not begun may change freely. The
        last stable phase of a finished run counts as current even when its last batch went
        past its end, so a finished run can be extended.

        Returns:
            One line per difference; empty when the resume is consistent.
        """
        conflicts = []
        phases = [Phase(**p) for p in saved.get("phases", [])]
        for old in phases:
            if old.start_nimg >= nimg:
                break
            label = f"phase {old.index} ({old.name})"
            span = f"{old.start_nimg / 1000:g} -> {old.end_nimg / 1000:g} kimg"
            new = self.phases[old.index] if old.index < len(self.phases) else None
            if new is None or (new.resolution, new.fading, new.start_nimg) != (
                old.resolution,
                old.fading,
                old.start_nimg,
            ):
                now = "none" if new is None else f"{new.name} from {new.start_nimg / 1000:g} kimg"
                conflicts.append(f"{label} ran {span} in the checkpoint, the config has {now}")
            elif old is phases[-1] and not old.fading and old.end_nimg <= nimg:
                continue  # Where a finished run stopped: it may be extended.
            elif old.end_nimg < nimg or old.fading:
                if new.end_nimg != old.end_nimg:
                    conflicts.append(
                        f"{label} ran {span} in the checkpoint, the config ends it at "
                        f"{new.end_nimg / 1000:g} kimg"
                    )
            elif new.end_nimg < nimg:
                conflicts.append(
                    f"{label} is at {nimg / 1000:g} kimg in the checkpoint, the config ends it "
                    f"at {new.end_nimg / 1000:g} kimg"
                )
        return conflicts

    def describe(self) -> str:
        """A one-line-per-phase table for logs."""
        lines = [
            f"{p.index:>3} {p.name:<10} kimg {p.start_nimg / 1000:>9.3f} -> "
            f"{min(p.end_nimg, self.total_nimg) / 1000:>9.3f}  batch {p.batch_size}"
            + (f"  lr {p.lr:g}" if p.lr is not None else "")
            for p in self.phases
        ]
        if self.lr_rampdown_nimg:
            start = max(self.total_nimg - self.lr_rampdown_nimg, 0)
            lines.append(
                f"    lr ramp-down  kimg {start / 1000:>9.3f} -> {self.total_nimg / 1000:>9.3f}"
                "  lr x 1 -> 0"
            )
        return "\n".join(lines)
