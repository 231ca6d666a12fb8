"""The keypoint detector judged as `vfs predict` runs it (`detect()` on a whole volume).

    python tools/evaluate_keypoints.py validation   # the patients every choice was made on
    python tools/evaluate_keypoints.py stress       # held-out patients under real CT's variations
    python tools/evaluate_keypoints.py real-ct      # the real development CT

``validation`` and ``stress`` render phantom volumes from the patients of the fixed split
(:func:`vfs_utils.keypoints.split`): validation patients for choosing, held-out patients only
to report (nothing is tuned on them). A vertebra counts as found when a detection's centre
lies within 10 mm (row and slice) of the rendered one; only vertebrae whose six points lie
inside the volume count (a cut one is partial by design).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from scipy import ndimage

from vfs_utils.annotation import load_annotation
from vfs_utils.baseline import image_expert
from vfs_utils.data import annotation_dir
from vfs_utils.errors import VfsError
from vfs_utils.keypoints import detect, split
from vfs_utils.keypoints._data import regrid, truth_of
from vfs_utils.keypoints.evaluation import match_centres
from vfs_utils.phantom import render_volume

#: Condition name -> how the held-out phantom is changed (see :func:`_condition`).
STRESS = {
    "as rendered": {},
    "slices 0.6 mm": {"slice_mm": 0.6},
    "slices 2.5 mm": {"slice_mm": 2.5},
    "pixels 0.6 mm": {"pixel_mm": 0.6},
    "pixels 0.9 mm": {"pixel_mm": 0.9},
    "HU offset -60": {"render": {"hu_offset": -60.0}},
    "HU offset +60": {"render": {"hu_offset": 60.0}},
    "noise doubled": {"noise": 2.0},
    "contrast blood (300 HU)": {"render": {"tissue_hu": {"blood": 300.0}}},
    "lung base Th10": {"truth": {"lung_base": "Th10"}},
    "lung base L1": {"truth": {"lung_base": "L1"}},
    "field of view cut (20 % top and bottom)": {"cut": 0.2},
    "patient 30 mm off-centre": {"shift_mm": 30.0},
    "rotated 5 degrees (axial)": {"rotate": 5.0},
}


def _condition(truth, spec):
    """(volume, spacing, truth points (n, 6, 3) in its voxels, annotated mask)."""
    if "slice_mm" in spec or "pixel_mm" in spec:
        sp = truth.geometry.spacing
        truth = regrid(truth, (spec.get("pixel_mm", sp[0]),) * 2 + (spec.get("slice_mm", sp[2]),))
    if "truth" in spec:
        truth = dataclasses.replace(truth, **spec["truth"])
    if "shift_mm" in spec:
        dc = spec["shift_mm"] / truth.geometry.spacing[1]
        verts = tuple(dataclasses.replace(v, points=v.points + [0.0, dc, 0.0])
                      for v in truth.vertebrae)
        truth = dataclasses.replace(truth, vertebrae=verts)
    kwargs = dict(spec.get("render", {}))
    if "noise" in spec:
        kwargs["noise"] = spec["noise"] * truth.noise_hu
    vol = render_volume(truth, rng=np.random.default_rng(7), **kwargs)
    pts = np.stack([v.points for v in truth.vertebrae]).astype(float)
    if "rotate" in spec:    # about the volume's centre, in the axial plane
        a = np.radians(spec["rotate"])
        vol = ndimage.rotate(vol, spec["rotate"], axes=(1, 0), reshape=False, order=1,
                             mode="constant", cval=-1024)
        c = (np.asarray(vol.shape[:2]) - 1) / 2.0
        r, q = pts[..., 0] - c[0], pts[..., 1] - c[1]
        pts[..., 0] = c[0] + np.cos(a) * r - np.sin(a) * q
        pts[..., 1] = c[1] + np.sin(a) * r + np.cos(a) * q
    if "cut" in spec:
        k = int(spec["cut"] * vol.shape[2])
        vol = vol[:, :, k:vol.shape[2] - k]
        pts[..., 2] -= k
    inside = ((pts[..., 2] >= 0) & (pts[..., 2] <= vol.shape[2] - 1)).all(axis=1)
    annotated = np.array([v.annotated for v in truth.vertebrae]) & inside
    return vol, truth.geometry.spacing, pts, annotated, truth


def _score(job):
    """One study under one condition: (condition, folder, found, annotated, extra, levels
    right, levels named, levels left unknown, level rule)."""
    name, path, expert, model = job
    truth = truth_of(load_annotation(path), expert)
    vol, sp, pts, annotated, truth = _condition(truth, STRESS[name])
    try:
        det = detect(vol, sp, model=model)
    except VfsError as exc:
        return name, truth.folder, 0, int(annotated.sum()), 0, 0, 0, 0, f"refused: {exc}"[:60]
    found = np.stack([v.points for v in det.annotation.experts["model"]]) \
        if det.annotation.experts["model"] else np.zeros((0, 6, 3))
    pairs = match_centres(found, pts, sp)
    hit = {j for _, j in pairs if annotated[j]}
    zs = pts[annotated][:, :, 2].mean(axis=1)
    lo, hi = (zs.min() - 12 / sp[2], zs.max() + 12 / sp[2]) if len(zs) else (0, -1)
    matched = {i for i, _ in pairs}
    zf = found[:, :, 2].mean(axis=1) if len(found) else np.zeros(0)
    extra = int(sum(1 for i, z in enumerate(zf) if lo <= z <= hi and i not in matched))
    levels = [v.level for v in truth.vertebrae]
    names = [v.level for v in det.annotation.experts["model"]]
    named = [(i, j) for i, j in pairs if annotated[j] and levels[j]]
    right = sum(1 for i, j in named if names[i] == levels[j])
    unknown = sum(1 for i, j in named if names[i] is None)
    return name, truth.folder, len(hit), int(annotated.sum()), extra, right, len(named), unknown, \
        det.level_source


def _jobs(part: str, conditions, model=None) -> list[tuple]:
    files = sorted(annotation_dir("v2").glob("*.json"))
    folders = set(split([f.stem for f in files])[part])
    jobs = []
    for f in files:
        if f.stem in folders:
            ann = load_annotation(f)
            e = image_expert(ann)
            if e is not None:
                jobs += [(c, str(f), e, model) for c in conditions]
    return jobs


def table(part: str, conditions, workers: int = 2, model=None):
    """Per condition: recall, precision, level accuracy (right of the found vertebrae with a
    reference level; those left unknown count as not right), the names wrong and unknown,
    the level rules used."""
    import pandas as pd

    jobs = _jobs(part, conditions, model)
    with ProcessPoolExecutor(workers) as pool:
        rows = list(pool.map(_score, jobs, chunksize=2))
    df = pd.DataFrame(rows, columns=["condition", "folder", "found", "vertebrae", "extra",
                                     "levels_right", "levels_named", "levels_unknown", "rule"])
    out = df.groupby("condition", sort=False).agg(
        studies=("folder", "size"), vertebrae=("vertebrae", "sum"), found=("found", "sum"),
        extra=("extra", "sum"), levels_right=("levels_right", "sum"),
        levels_named=("levels_named", "sum"), levels_unknown=("levels_unknown", "sum"),
        rules=("rule", lambda s: ", ".join(f"{k} {v}" for k, v in s.value_counts().items())))
    out["recall"] = out["found"] / out["vertebrae"]
    out["precision"] = out["found"] / (out["found"] + out["extra"])
    # found vertebrae with a reference level: named right, named wrong, or left unknown
    out["levels_wrong"] = out["levels_named"] - out["levels_right"] - out["levels_unknown"]
    out["level_accuracy"] = out["levels_right"] / out["levels_named"].clip(lower=1)
    return out.reindex(list(conditions))


def real_ct(model=None):
    """The real development CT: which reference vertebrae were found (whole, or partial:
    cut by the field of view, named but not graded) and how they were named."""
    from vfs_utils.realct import fetch_real_ct

    vol, ref = fetch_real_ct()
    det = detect(vol, model=model)
    found = [(v, "found") for v in det.annotation.experts["model"]] + \
        [(v, "partial") for v in det.partial]
    z_found = np.array([float(np.mean(v.points[:, 2])) for v, _ in found])
    rows = []
    for level, (_r, _c, s) in sorted(ref.items(), key=lambda kv: kv[1][2]):
        k = int(np.argmin(np.abs(z_found - s))) if len(found) else None
        near = k is not None and abs(z_found[k] - s) * vol.spacing[2] <= 10
        rows.append((level, round(s, 1), found[k][1] if near else "MISSED",
                     found[k][0].level if near else None))
    return det, rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["validation", "stress", "real-ct"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--model", default=None, help="another ONNX file (default: the shipped one)")
    ap.add_argument("--conditions", nargs="*", default=None, help="a subset of the conditions")
    args = ap.parse_args(argv)
    import pandas as pd

    pd.set_option("display.width", 200)
    if args.what == "real-ct":
        det, rows = real_ct(args.model)
        print(f"level rule: {det.level_source}; partial: {len(det.partial)}; warnings: "
              f"{det.warnings}")
        for level, s, status, name in rows:
            print(f"  {level:4s} slice {s:6.1f}: {status:7s} named {name}")
        return 0
    part = "validation" if args.what == "validation" else "heldout"
    conditions = args.conditions or list(STRESS)
    print(table(part, conditions, args.workers, args.model)
          .to_string(float_format=lambda x: f"{x:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
