"""Projected wall-clock time of a growth schedule from measured step rates (pure Python).

Each phase of the schedule takes ``images / (devices * img/s of one device) / 3600`` hours,
where ``images`` is the phase's share of ``total_kimg`` and the rate is the one measured at
the phase's resolution and kind (fading or stable). This assumes ideal data-parallel
scaling: N devices process N times the images per second of one device at the same
per-device batch (per-device batch = global batch / N), and nothing but the training step
costs time (no communication, data loading, checkpoints, metrics or sample grids).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from progan_lightning.schedule import Phase


@dataclass(frozen=True)
class Rate:
    """Training images/second of one device at one stage.

    Attributes:
        img_s: Images per second (median of the repeats).
        batch: The per-device batch it was measured at.
    """

    img_s: float
    batch: int


@dataclass(frozen=True)
class PhaseTime:
    """The projected time of one phase on ``devices`` devices.

    Attributes:
        devices: Data-parallel devices.
        phase: Its name (``fade8``, ``stable8``).
        resolution: Image side length.
        fading: Whether the phase fades in a new block.
        images: Images the phase trains on (capped at ``total_kimg``).
        batch_per_device: The schedule's global batch / ``devices``.
        measured_batch: The batch the rate was measured at (None: not measured).
        img_s: One device's images/second used (None: not measured).
        hours: ``images / (devices * img_s) / 3600`` (None: not measured).
    """

    devices: int
    phase: str
    resolution: int
    fading: bool
    images: int
    batch_per_device: int
    measured_batch: int | None
    img_s: float | None
    hours: float | None

    @property
    def converted(self) -> bool:
        """Whether the rate was measured at another batch than the per-device one."""
        return self.measured_batch not in (None, self.batch_per_device)


def project(
    phases: Iterable[Phase],
    total_nimg: int,
    devices: int,
    rates: Mapping[tuple[int, bool], Rate],
) -> list[PhaseTime]:
    """Hours of every phase of a schedule on ``devices`` devices.

    Args:
        phases: The schedule's phases (laid out for ``devices``: global batch sizes).
        total_nimg: Where training stops; the last phase is cut there.
        devices: Data-parallel devices (ideal scaling).
        rates: ``(resolution, fading) -> Rate`` of one device; a phase without one gets
            ``None`` hours. A rate measured at another batch than the per-device one is used
            as is (:attr:`PhaseTime.converted`): the per-image cost is taken to be the same.

    Raises:
        ValueError: A global batch does not divide over ``devices``.
    """
    times = []
    for phase in phases:
        if phase.batch_size % devices:
            raise ValueError(
                f"the {phase.name} batch {phase.batch_size} does not divide over {devices} "
                "devices; drop that count from bench.devices"
            )
        images = phase.images(total_nimg)
        rate = rates.get((phase.resolution, phase.fading))
        times.append(
            PhaseTime(
                devices=devices,
                phase=phase.name,
                resolution=phase.resolution,
                fading=phase.fading,
                images=images,
                batch_per_device=phase.batch_size // devices,
                measured_batch=None if rate is None else rate.batch,
                img_s=None if rate is None else rate.img_s,
                hours=None if rate is None else images / (devices * rate.img_s) / 3600,
            )
        )
    return times


def total_hours(times: Iterable[PhaseTime]) -> tuple[float, int, int]:
    """Hours of the measured phases, their images, and the images of all phases."""
    times = list(times)
    measured = [t for t in times if t.hours is not None]
    return (
        sum(t.hours for t in measured),
        sum(t.images for t in measured),
        sum(t.images for t in times),
    )


def format_number(value: float | None) -> str:
    """Three significant digits below 100, whole numbers from there; a dash for None."""
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def format_projection(
    projections: Mapping[int, list[PhaseTime]],
    rates: Mapping[tuple[int, bool], Rate],
    schedules: Mapping[int, str],
    title: str,
    command: str,
    fade_alpha: float,
) -> str:
    """The projection as a markdown section: one row per resolution (its fade-in and stable
    phases together), hours per device count, and the totals.

    Args:
        projections: Device count -> :func:`project` of the schedule for that count.
        rates: The rates the projections used.
        schedules: Device count -> the schedule's name (preset or ``growth config``).
        title: What measured the rates (``CPU: AMD EPYC``).
        command: The command that ran.
        fade_alpha: The fade weight the fading rates were measured at.
    """
    counts = list(projections)
    first = projections[counts[0]]
    resolutions = list(dict.fromkeys(t.resolution for t in first))

    def rate(res: int, fading: bool) -> str:
        found = rates.get((res, fading))
        return "-" if found is None else f"{format_number(found.img_s)} (b {found.batch})"

    head = "| res | kimg | fade img/s | stable img/s | " + " | ".join(
        f"{n} dev: batch/dev | {n} dev: hours" for n in counts
    )
    lines = [head + " |", "|---:|---:|---:|---:|" + "---:|---:|" * len(counts)]
    for res in resolutions:
        kimg = sorted(
            {sum(t.images for t in p if t.resolution == res) for p in projections.values()}
        )
        cells = [str(res), " / ".join(f"{k / 1000:g}" for k in kimg), rate(res, True)]
        cells.append(rate(res, False))
        for n in counts:
            at = [t for t in projections[n] if t.resolution == res]
            batches = " / ".join(str(b) for b in dict.fromkeys(t.batch_per_device for t in at))
            hours = [t.hours for t in at]
            total = None if None in hours else sum(hours)
            mark = "*" if any(t.converted for t in at) else ""
            cells += [batches, format_number(total) + mark]
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["all", f"{total_hours(first)[2] / 1000:g}", "", ""]
    partial = []
    for n in counts:
        hours, done, everything = total_hours(projections[n])
        cells += ["", f"**{format_number(hours)}** ({hours / 24:.3g} d)"]
        if done < everything:
            partial.append(f"{n} dev: {done / 1000:g} of {everything / 1000:g} kimg")
    lines.append("| " + " | ".join(cells) + " |")
    names = ", ".join(f"{n} dev: {schedules[n]}" for n in counts)
    notes = [
        f"### Projected schedule time, {title}",
        "",
        f"{date.today().isoformat()}. Schedule ({names}): {total_hours(first)[2] / 1000:g} kimg "
        "to total_kimg. Hours = images of a phase / (devices x img/s of one device) / 3600, "
        "summed per resolution (its fade-in and stable phases) and over the schedule. "
        "**Ideal data-parallel scaling assumed**: N devices process N times the images per "
        "second of one device at the same per-device batch (batch/dev = global batch / N); "
        "no communication, data loading, checkpoints, metrics or sample grids counted. "
        f"Fade-in phases use the step measured at alpha {fade_alpha:g} (both paths and the "
        "real-image fade run), stable phases the stages table (alpha 1); `b` is the batch "
        "each rate was measured at. `*`: the schedule's batch/dev differs from that batch; "
        "the rate is used as is, i.e. the per-image cost is taken not to depend on the "
        "batch (on a GPU small batches are launch-bound and run slower per image; "
        "`bench.batch_size=null` measures at the schedule's 1-device batch).",
        "",
        f"```\n{command}\n```",
        "",
        *lines,
    ]
    if partial:
        notes += ["", "Totals cover the measured stages only (" + "; ".join(partial) + ")."]
    return "\n".join(notes) + "\n"
