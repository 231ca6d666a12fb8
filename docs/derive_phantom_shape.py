"""Re-derive the phantom's per-level normal vertebral shape from the real v2 annotations.

Prints the table ``vfs_utils.phantom.spine._NORMAL_SHAPE`` (as Python source) from the
anchor-free-genant (v2) annotation files of the keypoint TRAINING patients only
(``vfs_utils.keypoints._data.split``: validation and held-out patients never shape the
phantom), so the committed numbers can be reproduced:

    VFS_ANNOTATION_DIR_V2=/path/to/anchor-free-genant/annotation \
        python docs/derive_phantom_shape.py [--check]

``--check`` compares the derived table with the committed one and exits 1 on a
difference larger than the rounding (0.0005). The annotation files are CC BY-NC 4.0
and are never copied into the repository: only these summary numbers are.

What is measured (per level with at least ``MIN_READINGS`` readings): every expert's
reading of a vertebra, heights at unit spacing (voxels; the series spacing is not in
the annotation), "normal" = within-vertebra QM grade 0 (``vfs_utils.morphometry``):

- ``n``: normal readings of the level;
- ``wedge``: median, first and third quartile of Ha/Hp;
- ``concave``: the same for Hm/Hp;
- ``reader_wedge``, ``reader_concave``: the SD of one reader's ratio around the
  readers' mean for the same vertebra (pooled over vertebrae with two or more normal
  readings, ``sqrt(sum of squared deviations / (readings - vertebrae))``).

One number for the whole spine (all levels pooled, unit-free):

- ``endplate_shift``: the part of the readers' slice-axis keypoint scatter
  (:func:`vfs_utils.morphometry.keypoint_scatter`) that the per-point ratio noise does
  not explain, as a fraction of the vertebra's posterior height (a reader's whole
  endplate placed a little higher or lower).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from vfs_utils import annotation, morphometry, readings
from vfs_utils.annotation import LEVELS
from vfs_utils.keypoints._data import split

MIN_READINGS = 20
KEYS = ["folder", "vertebra_id"]


def _reader_sd(table, column):
    g = table.groupby(KEYS)[column]
    count = g.transform("count")
    dev = (table[column] - g.transform("mean"))[count >= 2]
    sub = table[count >= 2].assign(dev=dev)
    out = {}
    for level, x in sub.groupby("level"):
        dof = len(x) - x.groupby(KEYS).ngroups
        if dof > 0:
            out[level] = float(np.sqrt((x["dev"] ** 2).sum() / dof))
    return out


def derive(annotation_dir) -> tuple[dict, float]:
    """``(table, endplate_shift)`` from the training patients of the v2 annotation folder."""
    anns = [annotation.load_annotation(p) for p in sorted(Path(annotation_dir).glob("*.json"))]
    train = set(split([a.folder for a in anns])["train"])
    frame = readings.match_vertebrae(annotation.read_annotations(
        [a for a in anns if a.folder in train]))
    table = morphometry.morphometry_table(frame, spacing=(1.0, 1.0, 1.0))
    normal = table[table["grade"] == 0]
    sd_w = _reader_sd(normal, "wedge_index")
    sd_c = _reader_sd(normal, "biconcave_index")
    rows = {}
    for level in LEVELS:
        x = normal[normal["level"] == level]
        if len(x) < MIN_READINGS or level not in sd_w:
            continue
        w = x["wedge_index"].quantile([0.5, 0.25, 0.75]).to_numpy()
        c = x["biconcave_index"].quantile([0.5, 0.25, 0.75]).to_numpy()
        rows[level] = (len(x), *np.round(w, 3), *np.round(c, 3),
                       round(sd_w[level], 3), round(sd_c[level], 3))
    # slice-axis scatter of one reader's point (voxels) against the per-point part
    scatter = morphometry.keypoint_scatter(frame, (1.0, 1.0, 1.0)).loc["slice", "sd_mm"]
    hp = float(normal["hp"].median())
    per_point = np.median([0.5 * (r[7] + r[8]) for r in rows.values()]) * hp / 2
    shift = float(np.sqrt(max(scatter ** 2 - per_point ** 2, 0.0)) / hp)
    return rows, round(shift, 4)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the table committed in vfs_utils.phantom.spine")
    args = parser.parse_args(argv)
    folder = os.environ.get("VFS_ANNOTATION_DIR_V2")
    if not folder:
        print("set VFS_ANNOTATION_DIR_V2 to the v2 (anchor-free-genant) annotation folder",
              file=sys.stderr)
        return 2
    rows, shift = derive(folder)
    print("_NORMAL_SHAPE = {   # level: (n, wedge median, q1, q3, concave median, q1, q3, "
          "reader_wedge, reader_concave)")
    for level, r in rows.items():
        print(f"    {level!r}: ({r[0]}, " + ", ".join(f"{v:.3f}" for v in r[1:]) + "),")
    print("}")
    print(f"_ENDPLATE_SHIFT = {shift}")
    if args.check:
        from vfs_utils.phantom import spine
        bad = [lv for lv in set(rows) | set(spine._NORMAL_SHAPE)
               if lv not in rows or lv not in spine._NORMAL_SHAPE
               or not np.allclose(rows[lv], spine._NORMAL_SHAPE[lv], atol=5e-4)]
        if bad or abs(shift - spine._ENDPLATE_SHIFT) > 5e-5:
            print(f"differs from the committed table at {sorted(bad)} "
                  f"(endplate shift {spine._ENDPLATE_SHIFT} vs {shift})", file=sys.stderr)
            return 1
        print("matches the committed table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
