"""Training and evaluation data of the keypoint network: the fixed split and the
rendered 2D examples.

Phantom mode: every real v2 annotation (the set with level names) is a patient; the
25 folders with the largest sha256 of their name are held out (:func:`split`), never
looked at while choosing the architecture, threshold or step count; of the others, the
10 with the largest hash are the validation patients those choices were made on. A
training image is rendered from one expert's reading (every expert of a training
patient gives one image); a held-out image from :func:`vfs_utils.baseline.image_expert`
(the classifier lesson's choice), so the other experts' readings stay independent of it.

Synthetic mode: sampled spines (:func:`vfs_utils.phantom.sample_spine`); training seeds
``[SYNTH_SEED, i]``, evaluation seeds ``[HELDOUT_SEED, i]`` the model never saw.

Only a block of columns around the image's middle is rendered (the renderer's ``box``):
the network's input never reaches beyond it, so the result equals the full volume's.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..annotation import LEVELS, Annotation, load_annotation
from ..baseline.studies import image_expert
from ..data import annotation_dir, cache_dir
from ..errors import NoSpineError
from ..phantom import (
    Geometry,
    SpineTruth,
    cache_key,
    random_appearance,
    render_volume,
    sample_spine,
    spine_from_annotation,
)
from ..phantom import with_acquisition as _with_acquisition
from ._input import SEARCH_HALF_MM, SagittalInput, lung_profile, sagittal_input
from ._levels import rib_slices
from ._spine import hu_offset

__all__ = ["HELDOUT_COUNT", "HELDOUT_SEED", "SYNTH_SEED", "VALIDATION_COUNT", "Example",
           "render_box", "render_example", "split", "synthetic_truth", "truth_of"]

HELDOUT_COUNT = 25
VALIDATION_COUNT = 10
SYNTH_SEED = 1901          # synthetic training spines
HELDOUT_SEED = 1977        # synthetic evaluation spines (never trained on)
DATA_VERSION = 2           # raise when the rendered examples change (the cache key has it)
#: Every training spine is also rendered this many times more as another scanner could show
#: it (SynthSeg-style, Billot et al. 2023): spacing, tissue intensities, contrast, noise,
#: blur, bias and HU offset drawn at random per image.
VARIANTS = 2
PIXEL_MM = (0.6, 1.0)      # the pixel and slice spacings the variants are drawn from
SLICE_MM = (0.6, 3.0)
_PAD_MM = 6.0              # rendered columns beyond the search window (the slab's width)


def _hash(folder: str) -> str:
    return hashlib.sha256(folder.encode()).hexdigest()


def split(folders) -> dict[str, list[str]]:
    """``{"train", "validation", "heldout"}`` folder lists (sorted by name).

    The :data:`HELDOUT_COUNT` folders with the largest sha256 of the name are held out;
    of the rest, the :data:`VALIDATION_COUNT` largest are the validation patients.
    """
    order = sorted(set(folders), key=_hash, reverse=True)
    held = order[:HELDOUT_COUNT]
    val = order[HELDOUT_COUNT:HELDOUT_COUNT + VALIDATION_COUNT]
    train = order[HELDOUT_COUNT + VALIDATION_COUNT:]
    return {"train": sorted(train), "validation": sorted(val), "heldout": sorted(held)}


def truth_of(annotation: Annotation, expert: str, seed: int = 0) -> SpineTruth:
    """The phantom spine of one expert's reading, with a per-study acquisition."""
    digest = int.from_bytes(hashlib.sha256(f"{annotation.folder}|{expert}".encode())
                            .digest()[:4], "little")
    return _with_acquisition(spine_from_annotation(annotation, expert=expert),
                             np.random.default_rng([seed, digest, 19]))


def synthetic_truth(seed: int, i: int, *, lumbar: bool = False) -> SpineTruth:
    """A sampled spine (fractures with the phantom dataset's prevalence); ``lumbar``: one
    from Th6-Th9 down to L5, as an abdominal CT shows it (the annotations end at L3)."""
    rng = np.random.default_rng([seed, i, 19])
    if not lumbar:
        return sample_spine(rng, folder=f"KP{seed}-{i:03d}")
    first = LEVELS[LEVELS.index("Th6") + int(rng.integers(0, 4))]
    n = LEVELS.index("L5") - LEVELS.index(first) + 1
    return sample_spine(rng, n_vertebrae=n, first=first, folder=f"KL{seed}-{i:03d}")


def regrid(truth: SpineTruth, spacing) -> SpineTruth:
    """The same anatomy (mm) on another voxel grid of ``spacing`` (row, col, slice) mm."""
    old = np.asarray(truth.geometry.spacing, float)
    new = np.asarray(spacing, float)
    f = old / new
    shape = tuple(int(np.ceil(n * k)) for n, k in zip(truth.geometry.shape, f))
    verts = tuple(dataclasses.replace(v, points=v.points * f) for v in truth.vertebrae)
    geom = Geometry(shape, tuple(float(x) for x in new), truth.geometry.origin)
    return dataclasses.replace(truth, vertebrae=verts, geometry=geom, readings={})


def variant(truth: SpineTruth, rng: np.random.Generator) -> tuple[SpineTruth, dict]:
    """The same anatomy as another scanner could show it: a grid drawn from
    :data:`PIXEL_MM` and :data:`SLICE_MM`, the study's acquisition and patient drawn again,
    and the render kwargs of a random appearance."""
    pixel = float(rng.uniform(*PIXEL_MM))
    truth = regrid(truth, (pixel, pixel, float(rng.uniform(*SLICE_MM))))
    return _with_acquisition(truth, rng), random_appearance(rng)


def render_box(truth: SpineTruth, half_mm: float = SEARCH_HALF_MM + _PAD_MM):
    """Voxel box of the columns within ``half_mm`` of the image's middle, all rows/slices."""
    rows, cols, slices = truth.geometry.shape
    mid = (cols - 1) / 2.0
    half = half_mm / truth.geometry.spacing[1]
    c0, c1 = max(int(np.floor(mid - half)), 0), min(int(np.ceil(mid + half)) + 1, cols)
    return ((0, rows), (c0, c1), (0, slices))


@dataclass
class Example:
    """One rendered study as the network sees it, with its truth.

    points : (n, 6, 2) pixel coordinates of the truth vertebrae (head -> feet);
    voxels : (n, 6, 3) the same in voxel indices; levels : names (None unknown);
    annotated : the reading's own vertebrae (False: the continuation above/below).
    """

    folder: str
    expert: str | None
    sag: SagittalInput
    points: np.ndarray
    voxels: np.ndarray
    levels: list
    annotated: np.ndarray
    lungs: np.ndarray | None = None
    ribs: np.ndarray | None = None


def _levels(truth: SpineTruth) -> list:
    names = [v.level for v in truth.vertebrae]
    idx = [LEVELS.index(n) if n in LEVELS else None for n in names]
    known = [(k, i) for k, i in enumerate(idx) if i is not None]
    if known:
        k0, i0 = known[0]
        idx = [i0 + (k - k0) for k in range(len(names))]
        return [LEVELS[i] if 0 <= i < len(LEVELS) else None for i in idx]
    return [None] * len(names)


def render_example(truth: SpineTruth, *, expert: str | None = None, lungs: bool = False,
                   seed: int = 0, appearance: dict | None = None) -> Example:
    """Render ``truth`` (a column block; wide enough for the lungs with ``lungs``), build
    the 2D input and the pixel coordinates of its vertebrae (``appearance``: render kwargs)."""
    box = render_box(truth, 115.0 if lungs else SEARCH_HALF_MM + _PAD_MM)
    vol = render_volume(truth, rng=np.random.default_rng([seed, 7]), box=box,
                        **(appearance or {}))
    c0 = box[1][0]
    full = truth.geometry.shape[1]
    sag = sagittal_input(vol, truth.geometry.spacing, col_offset=c0, full_cols=full)
    vox = np.stack([v.points for v in truth.vertebrae]).astype(float)
    pix = sag.to_pixels(vox)
    prof = ribs = None
    if lungs:   # the block is wide enough for the level rules too
        off = hu_offset(vol)
        prof = lung_profile(vol, truth.geometry.spacing, sag.rows, sag.cols, col_offset=c0,
                            hu_offset=off)
        ribs = rib_slices(vol, truth.geometry.spacing, sag.rows, sag.cols - c0, hu_offset=off)
    return Example(truth.folder, expert, sag, pix, vox, _levels(truth),
                   np.array([v.annotated for v in truth.vertebrae]), prof, ribs)


# --------------------------------------------------------------------------- whole splits
SYNTH_TRAIN = 60           # synthetic spines in the training set (both modes)
SYNTH_LUMBAR = 30          # and sampled spines down to L5
SYNTH_EVAL = 25            # synthetic evaluation spines (synthetic mode)


def _jobs(mode: str, part: str, files) -> list[tuple]:
    """(kind, argument, expert, lungs) render jobs of one part of the split."""
    jobs = []
    if mode == "phantom":
        anns = {a.folder: a for a in (load_annotation(f) for f in files)}
        parts = split(anns)
        for folder in parts[part]:
            ann = anns[folder]
            if part == "train":
                experts = sorted(e for e, vs in ann.experts.items() if vs)
            else:
                e = image_expert(ann)
                experts = [e] if e is not None else []
            for e in experts:
                jobs.append(("annotation", str(ann.path), e, part == "heldout"))
    if part == "train":
        jobs += [("synthetic", (SYNTH_SEED, i), None, False) for i in range(SYNTH_TRAIN)]
        jobs += [("lumbar", (SYNTH_SEED, i), None, False) for i in range(SYNTH_LUMBAR)]
        jobs = [(*j, v) for j in jobs for v in range(VARIANTS + 1)]
    elif part == "heldout" and mode == "synthetic":
        jobs += [("synthetic", (HELDOUT_SEED, i), None, True) for i in range(SYNTH_EVAL)]
    elif part == "validation" and mode == "synthetic":
        jobs += [("synthetic", (SYNTH_SEED, SYNTH_TRAIN + i), None, False) for i in range(10)]
    return jobs


def _run_job(job) -> Example:
    kind, arg, expert, lungs, *var = job
    if kind == "annotation":
        truth = truth_of(load_annotation(arg), expert)
    else:
        truth = synthetic_truth(*arg, lumbar=kind == "lumbar")
    appearance = None
    if var and var[0]:
        digest = hashlib.sha256(f"{truth.folder}|{expert}|{var[0]}".encode()).digest()[:4]
        truth, appearance = variant(truth, np.random.default_rng(
            [SYNTH_SEED, int.from_bytes(digest, "little")]))
    try:
        return render_example(truth, expert=expert, lungs=lungs, appearance=appearance)
    except NoSpineError:             # the spine search failed on this image: skipped (the
        return None                  # count is in the model's metadata)


def build(mode: str, part: str, files=(), *, workers: int = 1) -> list[Example]:
    """Render every example of one part (``train``, ``validation``, ``heldout``) of a mode
    (``phantom``: ``files`` are the v2 annotation files; ``synthetic``)."""
    jobs = _jobs(mode, part, files)
    if workers > 1 and len(jobs) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            done = list(pool.map(_run_job, jobs, chunksize=4))
    else:
        done = [_run_job(j) for j in jobs]
    return [ex for ex in done if ex is not None]


def save_examples(examples: list[Example], path) -> None:
    """Store examples in one ``.npz`` (no pickles)."""
    arrays = {}
    for k, ex in enumerate(examples):
        p = f"e{k}_"
        arrays[p + "image"] = ex.sag.image
        arrays[p + "rows"] = ex.sag.rows
        arrays[p + "cols"] = ex.sag.cols
        arrays[p + "spacing"] = np.asarray(ex.sag.spacing)
        arrays[p + "points"] = ex.points
        arrays[p + "voxels"] = ex.voxels
        arrays[p + "levels"] = np.array([lv or "" for lv in ex.levels])
        arrays[p + "annotated"] = ex.annotated
        arrays[p + "meta"] = np.array([ex.folder, ex.expert or ""])
        if ex.lungs is not None:
            arrays[p + "lungs"] = ex.lungs
        if ex.ribs is not None:
            arrays[p + "ribs"] = ex.ribs
    arrays["count"] = np.array(len(examples))
    np.savez_compressed(path, **arrays)


def load_examples(path) -> list[Example]:
    """Read what :func:`save_examples` stored."""
    out = []
    with np.load(path, allow_pickle=False) as z:
        for k in range(int(z["count"])):
            p = f"e{k}_"
            sag = SagittalInput(z[p + "image"], z[p + "rows"], z[p + "cols"],
                                tuple(float(s) for s in z[p + "spacing"]))
            folder, expert = (str(s) for s in z[p + "meta"])
            out.append(Example(folder, expert or None, sag, z[p + "points"], z[p + "voxels"],
                               [str(s) or None for s in z[p + "levels"]], z[p + "annotated"],
                               z[p + "lungs"] if p + "lungs" in z else None,
                               z[p + "ribs"] if p + "ribs" in z else None))
    return out


def cached_examples(mode: str, part: str, *, workers: int = 2, files=None) -> list[Example]:
    """The rendered examples of one part, cached under ``<cache>/keypoints`` (the key
    covers the phantom's and the input's code, this module and the file names)."""
    if files is None:
        files = sorted(annotation_dir("v2").glob("*.json")) if mode == "phantom" else []
    here = Path(__file__)
    code = sorted(here.parent.parent.joinpath("phantom").glob("*.py")) + [
        here.with_name(n) for n in ("_data.py", "_input.py", "_spine.py", "_levels.py")]
    key = hashlib.sha256(("|".join([mode, part, cache_key(), str(DATA_VERSION)]
                                   + [p.read_text() for p in code]
                                   + [Path(f).name for f in files])).encode()).hexdigest()[:12]
    path = cache_dir() / "keypoints" / f"{mode}-{part}-{key}.npz"
    if path.is_file():
        return load_examples(path)
    ex = build(mode, part, files, workers=workers)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".partial.npz")
    save_examples(ex, tmp)
    tmp.replace(path)
    return ex
