"""Write the phantom pictures of the docs: docs/phantom_{wedge,biconcave,axial,anatomy}.png.

Run from the repository root: ``python docs/make_phantom_figures.py``. The studies are
sampled with fixed seeds, so the pictures are reproducible.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vfs_utils import phantom, plotting  # noqa: E402
from vfs_utils._fs import atomic_file  # noqa: E402

OUT = Path(__file__).resolve().parent
# Okabe-Ito colour-blind-safe palette, one colour per expert
COLOURS = [plotting.OKABE_ITO[name]
           for name in ("orange", "sky blue", "bluish green", "reddish purple")]
WINDOW = dict(cmap="gray", vmin=-450, vmax=1050)    # a bone-ish window, HU


def _save(fig, path: Path) -> None:
    """Write the figure atomically (a reader never sees half a PNG) and close it."""
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _study(seed: int, fracture: str):
    rng = np.random.default_rng(seed)
    truth = phantom.sample_spine(rng, n_vertebrae=15, fractures=[(fracture, 2)],
                                 series_uid="figure")
    readings = phantom.sample_readings(truth, np.random.default_rng(seed + 1), n_experts=2)
    volume = phantom.render_volume(truth, rng=np.random.default_rng(seed + 2))
    return truth, readings, volume


def sagittal(seed: int, fracture: str, path: Path) -> None:
    truth, readings, volume = _study(seed, fracture)
    sp = truth.geometry.spacing
    col = int(round(np.median([v.points[:, 1].mean() for v in truth.vertebrae])))
    rows, _, slices = volume.shape
    fig, ax = plt.subplots(figsize=(6.2, 7.6))
    # x: row (anterior -> posterior) in mm, y: slice (head -> feet) in mm
    ax.imshow(volume[:, col, :].T, extent=(-0.5 * sp[0], (rows - 0.5) * sp[0],
                                           (slices - 0.5) * sp[2], -0.5 * sp[2]), **WINDOW)
    for colour, (expert, vertebrae) in zip(COLOURS, readings.items()):
        for i, v in enumerate(vertebrae):
            p = v.points
            for k in range(3):
                ax.plot(p[2 * k:2 * k + 2, 0] * sp[0], p[2 * k:2 * k + 2, 2] * sp[2], "-o",
                        color=colour, ms=2.5, lw=1.0, label=expert if i == 0 and k == 0 else None)
    broken = [v for v in truth.vertebrae if v.grade]
    for v in broken:
        c = v.points.mean(axis=0)
        ax.annotate(f"{v.level}: {v.deformity}, grade {v.grade}",
                    xy=(c[0] * sp[0] - 22, c[2] * sp[2]), xytext=(60, c[2] * sp[2] - 25),
                    color="white", fontsize=9,
                    arrowprops=dict(arrowstyle="->", color="white", lw=1))
    y = np.concatenate([v.points[:, 0] for v in truth.vertebrae]) * sp[0]
    ax.set_xlim(max(y.min() - 230, 0), min(y.max() + 110, rows * sp[0]))
    ax.set_xlabel("anterior \u2192 posterior (mm)")
    ax.set_ylabel("head \u2192 feet (mm)")
    ax.set_title(f"Synthetic chest CT, sagittal slice (col {col}): {fracture} fracture\n"
                 f"{sp[0]:.2f} mm pixels, {sp[2]:g} mm slices; expert readings overlaid",
                 fontsize=10)
    ax.legend(loc="lower left", fontsize=8, framealpha=0.8)
    fig.tight_layout()
    _save(fig, path)


def axial(seed: int, path: Path) -> None:
    truth, readings, volume = _study(seed, "wedge")
    sp = truth.geometry.spacing
    v = next(v for v in truth.vertebrae if v.level == "Th8")
    k = int(round(v.points[:, 2].mean()))
    rows, cols, _ = volume.shape
    fig, ax = plt.subplots(figsize=(6.4, 6.0))
    # radiological convention: patient right on the image left (col 0 = patient right)
    ax.imshow(volume[:, :, k], extent=(-0.5 * sp[1], (cols - 0.5) * sp[1],
                                       (rows - 0.5) * sp[0], -0.5 * sp[0]), **WINDOW)
    for colour, (expert, vertebrae) in zip(COLOURS, readings.items()):
        for w in vertebrae:
            if w.level == v.level:
                ax.axvline(w.points[0, 1] * sp[1], color=colour, lw=1, ls="--",
                           label=f"{expert}: sagittal column of {v.level}")
    ax.set_xlabel("patient right \u2192 left (mm)")
    ax.set_ylabel("anterior \u2192 posterior (mm)")
    ax.set_title(f"Synthetic chest CT, axial slice {k} through {v.level}", fontsize=10)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.8)
    fig.tight_layout()
    _save(fig, path)


def anatomy(seed: int, path: Path) -> None:
    """Axial slice through Th8 (ribs), mid-sagittal and coronal views, in mm, one window."""
    truth, _, volume = _study(seed, "wedge")
    sp = truth.geometry.spacing
    v = next(v for v in truth.vertebrae if v.level == "Th8")
    r, c, k = (int(round(x)) for x in v.points.mean(axis=0))
    rows, cols, slices = volume.shape
    window = dict(cmap="gray", vmin=-1000, vmax=1000)
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.6), width_ratios=[1.0, 0.8, 1.0])
    views = [
        (volume[:, :, k], (cols * sp[1], rows * sp[0]), "patient right \u2192 left (mm)",
         "anterior \u2192 posterior (mm)", f"axial, slice {k} (centre of Th8): ribs"),
        (volume[:, c, :].T, (rows * sp[0], slices * sp[2]), "anterior \u2192 posterior (mm)",
         "head \u2192 feet (mm)", f"mid-sagittal, column {c}"),
        (volume[r, :, :].T, (cols * sp[1], slices * sp[2]), "patient right \u2192 left (mm)",
         "head \u2192 feet (mm)", f"coronal, row {r} (through Th8)"),
    ]
    for ax, (img, (width, height), xlabel, ylabel, title) in zip(axes, views):
        im = ax.imshow(img, extent=(0, width, height, 0), **window)   # mm axes: true aspect
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=axes, shrink=0.8, label="HU")
    fig.suptitle(f"Synthetic chest CT (phantom): {sp[0]:.2f} mm pixels, {sp[2]:g} mm slices, "
                 f"ribs Th1-{truth.lowest_rib}, lung base {truth.lung_base}", fontsize=11)
    _save(fig, path)


def main() -> None:
    sagittal(11, "wedge", OUT / "phantom_wedge.png")
    sagittal(12, "biconcave", OUT / "phantom_biconcave.png")
    axial(11, OUT / "phantom_axial.png")
    anatomy(11, OUT / "phantom_anatomy.png")


if __name__ == "__main__":
    main()
