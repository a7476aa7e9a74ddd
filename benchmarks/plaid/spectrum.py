"""A frequency view of generated images against the reals: the mean power spectrum.

    python -m benchmarks.plaid.spectrum REALS FAKES [--map OUT.png] [--factor 2]

``REALS`` and ``FAKES`` are folders of PNG files or ``.npz`` files holding ``images`` (uint8
[N, C, H, W], as ``study.py`` saves its samples). Prints the radially averaged spectra (power
per ring of frequencies, fakes over reals) and every peak the reals lack: a frequency where
the fakes' spectrum has a local maximum, the reals' has none, and the fakes hold at least
``factor`` times the reals' power. A regular texture (plaid, a grid, stripes) shows as such a
peak: a 2-pixel checkerboard at (0.5, 0.5) cycles per pixel, 4-pixel stripes at 0.25. With
``--map`` it writes the 2-D spectra: the reals' and the fakes' (log power, grey) and their
ratio (red: the fakes hold more power, blue: less; full colour at 8x), zero frequency at the
centre.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from progan_lightning.imaging import save_png


def power_spectrum(images: np.ndarray) -> np.ndarray:
    """Mean power spectrum of ``images``, zero frequency at the centre. [H, W]

    Args:
        images: uint8 [N, C, H, W] (0..255), or float in [-1, 1].

    Returns:
        ``|FFT2(x - mean(x))|^2 / (H W)`` of each channel ``x`` of each image (on the [-1, 1]
        scale, the image's own mean removed), averaged over images and channels, shifted so
        that frequency ``(fy, fx)`` sits at ``frequencies(H)[i], frequencies(W)[j]``.
    """
    x = np.asarray(images)
    x = x.astype(np.float64) / 127.5 - 1.0 if x.dtype == np.uint8 else x.astype(np.float64)
    x = x - x.mean(axis=(2, 3), keepdims=True)
    h, w = x.shape[2:]
    power = np.abs(np.fft.fft2(x)) ** 2 / (h * w)  # [N, C, H, W]
    return np.fft.fftshift(power.mean(axis=(0, 1)))


def frequencies(size: int) -> np.ndarray:
    """The frequencies along one axis of :func:`power_spectrum`, in cycles per pixel."""
    return np.fft.fftshift(np.fft.fftfreq(size))


def radial_profile(spectrum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean power per ring ``|f| ~ k / H`` (k = 0, 1, ...; rings 1/H wide).

    Returns:
        The rings' radii in cycles per pixel [K] and their mean power [K].
    """
    h, w = spectrum.shape
    fy, fx = np.meshgrid(frequencies(h), frequencies(w), indexing="ij")
    ring = np.rint(np.hypot(fy, fx) * h).astype(int)  # [H, W]
    counts = np.bincount(ring.ravel())
    sums = np.bincount(ring.ravel(), weights=spectrum.ravel())
    return np.arange(len(counts)) / h, sums / counts


@dataclass(frozen=True)
class Peak:
    """A frequency where the fakes' spectrum peaks and the reals' does not."""

    fy: float  # cycles per pixel, vertical
    fx: float  # cycles per pixel, horizontal
    fake: float  # the fakes' power there
    real: float  # the reals' power there
    ratio: float  # fake / real


def _local_max(spectrum: np.ndarray) -> np.ndarray:
    """True where a bin is above its 8 neighbours (periodic, as frequencies are). [H, W]"""
    best = np.full(spectrum.shape, -np.inf)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                best = np.maximum(best, np.roll(spectrum, (dy, dx), axis=(0, 1)))
    return spectrum > best


def excess_peaks(fake: np.ndarray, real: np.ndarray, factor: float = 2.0) -> list[Peak]:
    """Peaks of ``fake`` the reals lack (see the module docstring), strongest ratio first.

    The spectrum of a real image is point-symmetric: of each pair ``f, -f`` only the one with
    ``fy > 0`` (or ``fy == 0, fx >= 0``; on the Nyquist row ``-0.5`` either) is listed. The
    zero frequency never is.
    """
    h, w = fake.shape
    tiny = 1e-12 * max(float(real.max()), 1e-300)
    ratio = fake / np.maximum(real, tiny)
    found = _local_max(fake) & ~_local_max(real) & (ratio >= factor)
    fy_axis, fx_axis = frequencies(h), frequencies(w)
    peaks = []
    for i, j in zip(*np.nonzero(found), strict=True):
        fy, fx = float(fy_axis[i]), float(fx_axis[j])
        if (fy, fx) == (0.0, 0.0) or (fy < 0 and fy != -0.5) or (fy == 0 and fx < 0):
            continue
        peaks.append(Peak(fy, fx, float(fake[i, j]), float(real[i, j]), float(ratio[i, j])))
    return sorted(peaks, key=lambda p: -p.ratio)


def spectrum_map(real: np.ndarray, fake: np.ndarray, scale: int = 8) -> np.ndarray:
    """The reals' and the fakes' log power (grey, one scale for both) and their log ratio
    (red: fakes above, blue: below, saturated at 8x), side by side. uint8 [H', W', 3]"""
    logs = np.log10(np.maximum(np.stack([real, fake]), 1e-12))
    low, high = np.percentile(logs, 1), logs.max()
    grey = np.clip((logs - low) / max(high - low, 1e-12), 0, 1) * 255  # [2, H, W]
    ratio = np.clip(np.log2(np.maximum(fake, 1e-12) / np.maximum(real, 1e-12)) / 3, -1, 1)
    colour = np.stack(  # white at ratio 1, red above, blue below
        [1 - np.clip(-ratio, 0, 1), 1 - np.abs(ratio), 1 - np.clip(ratio, 0, 1)], -1
    )
    panels = [np.repeat(g[..., None], 3, -1) for g in grey] + [colour * 255]
    gap = np.full((real.shape[0], 1, 3), 128.0)
    row = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
    return np.rint(row).astype(np.uint8).repeat(scale, 0).repeat(scale, 1)


def load_images(path: str | Path) -> np.ndarray:
    """Images of a folder of PNG files (sorted by name) or an ``.npz`` with ``images``.
    uint8 [N, C, H, W]"""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path) as data:
            return data["images"]
    files = sorted(path.glob("*.png"))
    if not files:
        raise SystemExit(f"{path}: no PNG files; give a folder of PNG files or an .npz file")
    arrays = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    return np.stack(arrays).transpose(0, 3, 1, 2)


def report(real: np.ndarray, fake: np.ndarray, factor: float = 2.0, top: int = 10) -> str:
    """The radial spectra and the peaks the reals lack, as text."""
    radii, real_rings = radial_profile(real)
    _, fake_rings = radial_profile(fake)
    lines = ["| radius (cycles/px) | reals | fakes | fakes / reals |", "|---|---|---|---|"]
    for r, a, b in zip(radii[1:], real_rings[1:], fake_rings[1:], strict=True):
        lines.append(f"| {r:.3f} | {a:.3g} | {b:.3g} | {b / a:.2f} |")
    peaks = excess_peaks(fake, real, factor)
    lines.append(f"\nPeaks the reals lack (fakes >= {factor:g}x the reals' power): {len(peaks)}")
    for p in peaks[:top]:
        lines.append(f"  (fy, fx) = ({p.fy:+.3f}, {p.fx:+.3f}) cycles/px: {p.ratio:.1f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reals", help="folder of PNG files or .npz (images: uint8 NCHW)")
    parser.add_argument("fakes", help="folder of PNG files or .npz (images: uint8 NCHW)")
    parser.add_argument("--map", help="write the 2-D spectra and their ratio to this PNG")
    parser.add_argument("--factor", type=float, default=2.0)
    args = parser.parse_args(argv)
    real, fake = (power_spectrum(load_images(p)) for p in (args.reals, args.fakes))
    print(report(real, fake, args.factor))
    if args.map:
        save_png(args.map, spectrum_map(real, fake))


if __name__ == "__main__":
    main()
