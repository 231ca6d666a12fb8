"""vfs_utils.quality.check_readings on hand-built readings, and on the real annotations."""
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vfs_utils import annotation, quality


def _reading(centres, expert="expert1", folder="S1", levels=None, depth=30.0, height=20.0):
    """A readings frame: one vertebra per centre (row, col, slice), six points around it."""
    rows = []
    for i, (r, c, s) in enumerate(centres):
        pts = []
        for dr in (-depth / 2, 0.0, depth / 2):            # anterior, middle, posterior
            pts += [(r + dr, c, s - height / 2), (r + dr, c, s + height / 2)]
        row = {"file": f"{folder}.json", "folder": folder, "version": "v2", "expert": expert,
               "vertebra": i, "level": levels[i] if levels else None}
        for j, (pr, pc, ps) in enumerate(pts):
            row.update({f"row{j}": pr, f"col{j}": pc, f"slice{j}": ps})
        rows.append(row)
    return pd.DataFrame(rows)


STRAIGHT = [(300.0 + 2 * i, 200.0, 100.0 + 25 * i) for i in range(8)]
LEVELS = ["Th5", "Th6", "Th7", "Th8", "Th9", "Th10", "Th11", "Th12"]


def test_a_straight_spine_passes():
    assert quality.check_readings(_reading(STRAIGHT, levels=LEVELS)).empty


def test_a_vertebra_at_the_height_of_its_neighbour_and_anterior_is_found():
    # the 27768 pattern: the last vertebra 36 voxels anterior, 36 columns over, 3.5
    # voxels below the one before it (step 25 elsewhere)
    centres = STRAIGHT[:-1] + [(STRAIGHT[-2][0] - 36, 236.0, STRAIGHT[-2][2] + 3.5)]
    got = quality.check_readings(_reading(centres, levels=LEVELS))
    assert set(got["check"]) == {"off the spine line", "overlaps a neighbour"}
    assert (got["vertebra"] == 7).all() and (got["level"] == "Th12").all()
    # the distance from the line: extrapolation of the two before, (row, col) plane
    pred = 2 * np.array(STRAIGHT[6][:2]) - np.array(STRAIGHT[5][:2])
    off = np.hypot(*(np.array(centres[7][:2]) - pred)) / 30.0
    assert f"{off:.2f} body depths" in got.loc[got["check"] == "off the spine line",
                                              "detail"].iloc[0]


def test_only_the_displaced_vertebra_is_named_not_its_neighbours():
    centres = list(STRAIGHT)
    centres[4] = (centres[4][0] + 40, centres[4][1], centres[4][2])
    got = quality.check_readings(_reading(centres, levels=LEVELS))
    assert got["vertebra"].tolist() == [4] and got["check"].tolist() == ["off the spine line"]


def test_levels_out_of_order_and_repeated():
    levels = ["Th5", "Th6", "Th8", "Th7", "Th9", "Th10", "Th10", "Th12"]
    got = quality.check_readings(_reading(STRAIGHT, levels=levels))
    assert got["check"].eq("levels out of order").all()
    assert got["vertebra"].tolist() == [3, 6]


def test_readings_are_checked_per_expert():
    a = _reading(STRAIGHT, expert="expert1", levels=LEVELS)
    b = _reading(STRAIGHT[:4], expert="expert2", levels=LEVELS[:4])   # 4 vertebrae, fine
    c = _reading(STRAIGHT[:2] + [(STRAIGHT[1][0], 200.0, STRAIGHT[1][2] + 2)], expert="expert3",
                 levels=LEVELS[:3])
    frame = pd.concat([a, b, c], ignore_index=True)
    got = quality.check_readings(frame)
    assert set(got["expert"]) == {"expert3"}
    assert got.index.isin(frame.index[frame["expert"] == "expert3"]).all()


_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
_V1 = os.environ.get("VFS_ANNOTATION_DIR") or _SHARED / "vertebral-fractures-severity/annotation"
_V2 = os.environ.get("VFS_ANNOTATION_DIR_V2") or _SHARED / "anchor-free-genant/annotation"


@pytest.mark.skipif(not Path(_V2).is_dir() or not Path(_V1).is_dir(),
                    reason="the real annotations are not at hand")
def test_the_real_annotations_flag_study_27768_in_both_rounds():
    v2 = quality.check_readings(annotation.read_annotations(_V2))
    v1 = quality.check_readings(annotation.read_annotations(_V1))
    assert set(v2["folder"]) == set(v1["folder"]) == {"RLAD42D007-27768_RLSD42D007-27768"}
    assert set(v2["level"]) == {"L1"} and set(v2["expert"]) == {"expert1", "expert2", "expert3"}
    assert set(v2["check"]) == {"off the spine line", "overlaps a neighbour"}
    assert set(v1["check"]) == {"off the spine line"} and len(v1) == 3
