"""Held-out evaluation of the keypoint network (inference only).

For every held-out example (a phantom rendered from one expert's reading):
:func:`predict_example` runs the shipped model on its 2D input (the path of
:func:`~vfs_utils.keypoints.detect`); :func:`evaluate`
matches the detections to the rendered vertebrae (detection precision and recall inside
the annotated span) and to every expert's reading (keypoint distances, heights and QM
grades), beside the same comparisons between the experts themselves.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from ..annotation import Annotation, load_annotation
from ..baseline import vertebra_table
from ..data import annotation_dir
from ..morphometry import LABEL_LEVELS, genant_grade, heights
from ..phantom import sample_readings
from ._data import HELDOUT_SEED, Example, cached_examples, split, synthetic_truth
from ._decode import THRESHOLD
from ._levels import name_levels
from .predict import vertebrae_from_input

__all__ = ["MATCH_MM", "evaluate", "heldout_set", "keypoint_distances", "match_centres", "report",
           "patient_table", "predict_example", "summary"]

#: A detection and a reading are the same vertebra when their centres (six-point means)
#: are closer than this (mm); neighbouring vertebrae are 20-35 mm apart.
MATCH_MM = 10.0


def predict_example(ex: Example, *, threshold: float = THRESHOLD, model=None):
    """(voxels (n, 6, 3), level names, scores) of the model on one example: the
    network, decoding and partial-vertebra rule of :func:`~vfs_utils.keypoints.detect`
    (vertebrae cut by the first or last slice are dropped, as ``detect`` does not grade
    them), and its level rules: the ribs when the example carries their slices
    (``ex.ribs``, :func:`~vfs_utils.keypoints._levels.rib_slices` of the rendered block),
    else the lung-base fallback."""
    vox, scores, partial, _, _ = vertebrae_from_input(ex.sag, (None, None, len(ex.sag.rows)),
                                                      threshold=threshold, model=model)
    vox, scores = vox[~partial], scores[~partial]
    centres = vox[:, :, 2].mean(axis=1) if len(vox) else np.zeros(0)
    top = float(vox[0, :, 2].min()) if len(vox) else 0.0    # the spine's top in view
    names, _ = name_levels(centres, ex.sag.spacing[2], ribs=getattr(ex, "ribs", None),
                           top_slice=top, bottom_slice=len(ex.sag.rows) - 1.0, lungs=ex.lungs)
    return vox, names, scores


def _mm(vox: np.ndarray, sp) -> np.ndarray:
    return np.asarray(vox, float) * np.asarray(sp, float)


def match_centres(a: np.ndarray, b: np.ndarray, sp, tol: float = MATCH_MM):
    """Greedy one-to-one matching of vertebrae (n, 6, 3) and (m, 6, 3) by centre distance
    (mm, row and slice only): a list of (i, j) pairs closer than ``tol``."""
    if len(a) == 0 or len(b) == 0:
        return []
    ca, cb = _mm(a, sp).mean(axis=1)[:, [0, 2]], _mm(b, sp).mean(axis=1)[:, [0, 2]]
    d = np.linalg.norm(ca[:, None] - cb[None], axis=2)
    pairs, used_a, used_b = [], set(), set()
    for flat in np.argsort(d, axis=None, kind="stable"):
        i, j = np.unravel_index(flat, d.shape)
        if d[i, j] >= tol:
            break
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        pairs.append((int(i), int(j)))
    return sorted(pairs)


def keypoint_distances(a: np.ndarray, b: np.ndarray, sp) -> np.ndarray:
    """In-plane (row, slice) distances in mm of corresponding points, (n, 6)."""
    d = (_mm(a, sp) - _mm(b, sp))[..., [0, 2]]
    return np.linalg.norm(d, axis=-1)


def _grade(vox: np.ndarray, sp) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h = heights(np.asarray(vox, float), sp)
    loss = 1 - h.min(axis=1) / h.max(axis=1)
    return h, loss, np.asarray(genant_grade(loss), dtype=float)


def evaluate(examples: list[Example], annotations: dict[str, Annotation], *,
             threshold: float = THRESHOLD, model=None) -> dict[str, pd.DataFrame]:
    """Tables of the held-out evaluation.

    Returns
    -------
    dict with
      ``detection``: one row per example (``tp``, ``fn``, ``fp`` inside the annotated
      span, ``levels_right``, ``levels_named``, ``levels_unknown``);
      ``pairs``: one row per vertebra pair compared, ``reader_a`` (``"model"`` or an
      expert), ``reader_b`` (an expert), ``image_expert`` (is ``reader_b`` the reading the
      image was rendered from), the median point distance (mm), the three height
      differences (mm), both QM grades and losses, ``level``;
      ``vertebrae``: the model's vertebrae with height loss, grade and level.
    """
    det_rows, pair_rows, vert_rows = [], [], []
    for ex in examples:
        ann = annotations[ex.folder]
        sp = ex.sag.spacing
        vox, names, scores = predict_example(ex, threshold=threshold, model=model)
        truth = ex.voxels
        ann_idx = np.nonzero(ex.annotated)[0]
        zs = _mm(truth, sp).mean(axis=1)[:, 2]
        step = float(np.median(np.diff(zs))) if len(zs) > 1 else 25.0
        lo, hi = zs[ann_idx].min() - 0.5 * step, zs[ann_idx].max() + 0.5 * step
        zd = _mm(vox, sp).mean(axis=1)[:, 2] if len(vox) else np.zeros(0)
        inside = (zd >= lo) & (zd <= hi)
        pairs = match_centres(vox, truth, sp)
        matched_truth = {j for _, j in pairs}
        matched_det = {i for i, _ in pairs}
        tp = sum(1 for j in ann_idx if j in matched_truth)
        fp = int(sum(1 for i in np.nonzero(inside)[0] if i not in matched_det
                     or not ex.annotated[dict((a, b) for a, b in pairs)[i]]))
        right = sum(1 for i, j in pairs if ex.annotated[j] and ex.levels[j] is not None
                    and names[i] == ex.levels[j])
        named = sum(1 for i, j in pairs if ex.annotated[j] and ex.levels[j] is not None)
        unknown = sum(1 for i, j in pairs if ex.annotated[j] and ex.levels[j] is not None
                      and names[i] is None)
        det_rows.append({"folder": ex.folder, "image_expert": ex.expert, "tp": tp,
                         "fn": len(ann_idx) - tp, "fp": fp, "detections": len(vox),
                         "levels_right": right, "levels_named": named,
                         "levels_unknown": unknown})
        if len(vox):
            h, loss, grade = _grade(vox, sp)
            for k in range(len(vox)):
                vert_rows.append({"folder": ex.folder, "level": names[k], "score": scores[k],
                                  "inside": bool(inside[k]), "ha": h[k, 0], "hm": h[k, 1],
                                  "hp": h[k, 2], "height_loss": loss[k], "grade": grade[k]})
        readers = {"model": vox}
        levels = {"model": list(names)}
        for e, vs in sorted(ann.experts.items()):
            if vs:
                readers[e] = np.stack([v.points for v in vs]).astype(float)
                levels[e] = [v.level for v in vs]
        experts = [e for e in readers if e != "model"]
        combos = [("model", e) for e in experts] + list(itertools.combinations(experts, 2))
        for a, b in combos:
            pa, pb = readers[a], readers[b]
            mp = match_centres(pa, pb, sp)
            if not mp:
                continue
            ia, ib = np.array(mp).T
            dist = keypoint_distances(pa[ia], pb[ib], sp)
            ha, la, ga = _grade(pa[ia], sp)
            hb, lb, gb = _grade(pb[ib], sp)
            for k in range(len(ia)):
                pair_rows.append({
                    "folder": ex.folder, "reader_a": a, "reader_b": b,
                    "image_expert": ex.expert in (a, b), "level": levels[b][ib[k]],
                    "distance_mm": float(np.median(dist[k])),
                    "dist_points": dist[k],
                    "dha": ha[k, 0] - hb[k, 0], "dhm": ha[k, 1] - hb[k, 1],
                    "dhp": ha[k, 2] - hb[k, 2], "loss_a": la[k], "loss_b": lb[k],
                    "grade_a": ga[k], "grade_b": gb[k]})
    return {"detection": pd.DataFrame(det_rows), "pairs": pd.DataFrame(pair_rows),
            "vertebrae": pd.DataFrame(vert_rows)}


def summary(tables: dict[str, pd.DataFrame]) -> dict[str, float]:
    """Precision, recall, level accuracy and the keypoint-distance medians and ratio."""
    det, pairs = tables["detection"], tables["pairs"]
    tp, fn, fp = det["tp"].sum(), det["fn"].sum(), det["fp"].sum()
    model = pairs[pairs["reader_a"] == "model"]
    experts = pairs[pairs["reader_a"] != "model"]

    def med(frame):
        return float(np.median(np.concatenate(frame["dist_points"].to_list()))) \
            if len(frame) else float("nan")

    out = {"precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1),
           "level_accuracy": det["levels_right"].sum() / max(det["levels_named"].sum(), 1),
           "model_vs_image_expert_mm": med(model[model["image_expert"]]),
           "model_vs_other_experts_mm": med(model[~model["image_expert"]]),
           "model_vs_experts_mm": med(model),
           "expert_vs_expert_mm": med(experts)}
    out["ratio"] = out["model_vs_experts_mm"] / out["expert_vs_expert_mm"]
    return out


def heldout_set(mode: str = "phantom", *, workers: int = 2, folder=None):
    """(examples, annotations by folder) of the held-out patients of a data mode.

    ``phantom``: the 25 held-out real v2 annotation files, each image rendered from
    :func:`vfs_utils.baseline.image_expert`'s reading; ``synthetic``: 25 sampled spines of
    a seed the model never saw, read by simulated experts
    (:func:`vfs_utils.phantom.sample_readings`). Rendered once, then cached. ``folder``:
    the v2 annotation folder (default: the configured one).
    """
    if mode == "phantom":
        files = sorted((annotation_dir("v2") if folder is None else Path(folder)).glob("*.json"))
        held = set(split([f.stem for f in files])["heldout"])
        anns = {a.folder: a for a in (load_annotation(f) for f in files if f.stem in held)}
        return cached_examples("phantom", "heldout", files=files, workers=workers), anns
    if mode != "synthetic":
        raise ValueError(f"heldout_set: mode must be 'phantom' or 'synthetic', not {mode!r}")
    examples = cached_examples("synthetic", "heldout", workers=workers)
    anns = {}
    for i, ex in enumerate(examples):
        truth = synthetic_truth(HELDOUT_SEED, i)
        readings = sample_readings(truth, np.random.default_rng([HELDOUT_SEED, i, 5]))
        anns[ex.folder] = Annotation(ex.folder, "", "v2", readings)
    return examples, anns


def patient_table(examples: list[Example], annotations: dict[str, Annotation],
                  tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per patient: the primary target and three scores.

    ``label``: at least one T4-L4 vertebra with consensus QM grade >= 2 among the readers
    other than ``score_reader`` (the classifier lessons' primary target);
    ``model``: the largest height loss of the model's vertebrae it names T4-L4;
    ``reader``: the same from ``score_reader``'s own keypoints (the reading the image was
    rendered from; in the synthetic mode the first simulated reader).
    """
    verts = tables["vertebrae"]
    rows = []
    for ex in examples:
        ann = annotations[ex.folder]
        reader = ex.expert or sorted(e for e, vs in ann.experts.items() if vs)[0]
        lab = vertebra_table(ann, ex.sag.spacing, exclude={ann.folder: reader})
        lab = lab[lab["in_levels"] & lab["label_moderate"].notna()]
        if lab.empty:
            continue
        mine = verts[(verts["folder"] == ex.folder) & verts["level"].isin(list(LABEL_LEVELS))]
        vs = [v for v in ann.experts[reader] if v.level in LABEL_LEVELS]
        own = _grade(np.stack([v.points for v in vs]), ex.sag.spacing)[1].max() if vs else 0.0
        rows.append({"folder": ex.folder, "score_reader": reader,
                     "label": bool(lab["label_moderate"].astype(bool).any()),
                     "model": float(mine["height_loss"].max()) if len(mine) else 0.0,
                     "reader": float(own)})
    return pd.DataFrame(rows)


def _comparisons(pairs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The three groups of vertebra pairs the lesson compares."""
    model = pairs["reader_a"] == "model"
    return {"model vs rendered expert": pairs[model & pairs["image_expert"]],
            "model vs other experts": pairs[model & ~pairs["image_expert"]],
            "expert vs expert": pairs[~model]}


def report(mode: str = "phantom", *, model=None, workers: int = 2, folder=None) -> dict:
    """Every held-out number lesson 08 states, as plain numbers (``make model`` records them
    in the model's metadata; a slow test recomputes them): detection, level names,
    keypoint distances, QM grade kappa (quadratic) with patient-bootstrap intervals, the
    height-loss error on deformed vertebrae and the patient AUCs."""
    from ..agreement import bootstrap_groups, cohen_kappa
    from ..baseline import bootstrap_ci

    examples, anns = heldout_set(mode, workers=workers, folder=folder)
    tables = evaluate(examples, anns, model=model)
    out = {k: round(float(v), 4) for k, v in summary(tables).items()}
    det = tables["detection"]
    out.update(patients=len(examples), vertebrae=int(det["tp"].sum() + det["fn"].sum()),
               levels_named=int(det["levels_named"].sum()),
               levels_unknown=int(det["levels_unknown"].sum()))
    rows = {}
    for name, g in _comparisons(tables["pairs"]).items():
        if g.empty:
            continue
        a, b, f = (g[c].to_numpy() for c in ("grade_a", "grade_b", "folder"))
        k = bootstrap_groups(lambda i, a=a, b=b: cohen_kappa(a[i], b[i], categories=[0, 1, 2, 3],
                                                             weights="quadratic"),
                             f, n_boot=1000, seed=0)
        rows[name] = {"vertebrae": len(g), "kappa": [round(float(x), 3) for x in k],
                      **{f"median_abs_{c}_mm": round(float(np.median(np.abs(g[c]))), 3)
                         for c in ("dha", "dhm", "dhp")}}
    out["comparisons"] = rows
    own = tables["pairs"][(tables["pairs"]["reader_a"] == "model")
                          & tables["pairs"]["image_expert"]]
    deformed = own[own["loss_b"] >= 0.25]
    out["deformed"] = {"vertebrae": len(deformed),
                       "mean_loss_error": round(float((deformed["loss_a"]
                                                       - deformed["loss_b"]).mean()), 4)
                       if len(deformed) else None}
    patients = patient_table(examples, anns, tables)
    out["patient_auc"] = {}
    if patients["label"].nunique() == 2:
        for col in ("model", "reader"):
            auc = bootstrap_ci(patients["label"], patients[col], patients["folder"], n_boot=1000)
            out["patient_auc"][col] = [round(float(x), 3) for x in auc]
    out["patients_positive"] = int(patients["label"].sum())
    return out
