"""vfs_utils.matching (annotation <-> series, the inventory) and vfs_utils.readings
(vertebrae across readings)."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vfs_utils.annotation import LEVELS, read_annotations
from vfs_utils.dicom import write_series
from vfs_utils.errors import AnnotationError, DataNotFoundError, SeriesError, UsageError
from vfs_utils.matching import inventory, match, series_spacing, study_folder
from vfs_utils.readings import carry_levels, match_vertebrae

THIN = "1.2.826.0.1.3680043.10.1.1"
THICK = "1.2.826.0.1.3680043.10.1.2"


def _box(top: float, row: float = 10.0, col: float = 12.0, height: float = 6.0) -> list:
    return [[row, col, top], [row, col, top + height], [row + 3, col, top],
            [row + 3, col, top + height], [row + 6, col, top], [row + 6, col, top + height]]


def _annotation(folder: str, uid: str, experts: dict) -> dict:
    return {"Folder": folder, "SeriesInstanceUID": uid, "Annotation": experts}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A dataset root with one study (a thin and a thick series) and four annotation files."""
    root = tmp_path_factory.mktemp("root")
    study = root / "dicom" / "STUDY-A"
    vol = np.zeros((24, 24, 30), dtype=np.int16)
    common = dict(study_uid="1.2.826.0.1.3680043.10.1", frame_of_reference_uid="1.2.826.0.1.3",
                  intercept=-1024.0)
    write_series(study / "thin", vol, spacing=(0.75, 0.75, 1.25), series_uid=THIN,
                 series_description="thin", **common)
    write_series(study / "thick", vol[:, :, :6], spacing=(0.75, 0.75, 5.0), series_uid=THICK,
                 series_number=2, series_description="5 mm", **common)
    ann = root / "annotation"
    ann.mkdir()
    docs = {
        "STUDY-A": _annotation("STUDY-A", THIN, {"expert1": [_box(2), _box(10)],
                                                 "expert2": [_box(2.5)]}),
        "STUDY-A-old-uid": _annotation("STUDY-A", "1.2.3.999", {"expert1": [_box(2)]}),
        "STUDY-A-outside": _annotation("STUDY-A", THIN, {"expert1": [_box(25)]}),
        "STUDY-MISSING": _annotation("STUDY-MISSING", THIN, {"expert1": [_box(2)]}),
    }
    for name, doc in docs.items():
        (ann / f"{name}.json").write_text(json.dumps(doc))
    (ann / "broken.json").write_text("{")
    return root


def test_match_finds_the_annotated_series(dataset):
    row = match(dataset / "annotation" / "STUDY-A.json", dataset)
    assert row["series_uid"] == THIN
    assert row["n_slices"] == 30
    assert series_spacing(dataset, "STUDY-A", THIN) == pytest.approx((0.75, 0.75, 1.25))
    assert series_spacing(dataset, "STUDY-A", THICK) == pytest.approx((0.75, 0.75, 5.0))


def test_match_unknown_uid_lists_the_series(dataset):
    with pytest.raises(SeriesError) as info:
        match(dataset / "annotation" / "STUDY-A-old-uid.json", dataset)
    message = str(info.value)
    assert "STUDY-A-old-uid.json" in message and "1.2.3.999" in message
    assert THIN in message and THICK in message and "30 slices" in message
    assert "February 2021" in message


def test_match_missing_folder(dataset):
    with pytest.raises(DataNotFoundError, match="STUDY-MISSING"):
        match(dataset / "annotation" / "STUDY-MISSING.json", dataset)
    with pytest.raises(DataNotFoundError, match="no dicom/"):
        match(dataset / "annotation" / "STUDY-A.json", dataset / "annotation")


def test_inventory(dataset):
    table = inventory(dataset).set_index("file")
    assert list(table.index) == sorted(p.name for p in (dataset / "annotation").glob("*.json"))
    ok = table.loc["STUDY-A.json"]
    assert ok["ok"] and ok["series_found"] and ok["points_inside"] and ok["n_slices"] == 30
    assert ok["experts"] == "expert1 expert2" and ok["vertebrae"] == "expert1:2 expert2:1"
    old = table.loc["STUDY-A-old-uid.json"]
    assert old["folder_found"] and not old["series_found"] and not old["ok"]
    assert "February 2021" in old["problem"]
    outside = table.loc["STUDY-A-outside.json"]
    assert outside["series_found"] and not outside["points_inside"] and not outside["ok"]
    assert "outside the volume" in outside["problem"]
    missing = table.loc["STUDY-MISSING.json"]
    assert not missing["folder_found"] and not missing["ok"]
    broken = table.loc["broken.json"]
    assert not broken["ok"] and "not valid JSON" in broken["problem"]
    assert table["ok"].sum() == 1


def test_inventory_with_an_executor(dataset):
    with ThreadPoolExecutor(2) as pool:
        parallel = inventory(dataset, executor=pool)
    pd.testing.assert_frame_equal(parallel, inventory(dataset))


def test_match_vertebrae_by_position(tmp_path):
    # expert2 misses the top vertebra and is shifted by a voxel: ids still line up
    doc = _annotation("S", "1.2", {"expert1": [_box(0), _box(8), _box(16)],
                                   "expert2": [_box(9), _box(17)],
                                   "expert3": [_box(0.5), _box(8.5), _box(16.5), _box(24.5)]})
    (tmp_path / "S.json").write_text(json.dumps(doc))
    frame = match_vertebrae(read_annotations(tmp_path))
    ids = {e: g["vertebra_id"].tolist() for e, g in frame.groupby("expert")}
    assert ids == {"expert1": [0, 1, 2], "expert2": [1, 2], "expert3": [0, 1, 2, 3]}


def test_match_vertebrae_by_level(v2_dir):
    frame = match_vertebrae(read_annotations(v2_dir))
    expected = [LEVELS.index(level) for level in frame["level"]]
    assert frame["vertebra_id"].tolist() == expected


def test_match_vertebrae_real_v1(v1_dir):
    frame = match_vertebrae(read_annotations(v1_dir))
    assert not frame.duplicated(["file", "expert", "vertebra_id"]).any()
    # ids follow the file order (head to feet) within every reading
    for _, group in frame.groupby(["file", "expert"]):
        assert group["vertebra_id"].is_monotonic_increasing
    # expert readings of one vertebra lie close together (within a vertebral height)
    centre = frame[["slice0", "slice1", "slice4", "slice5"]].mean(axis=1)
    spread = centre.groupby([frame["file"], frame["vertebra_id"]]).agg(lambda s: s.max() - s.min())
    assert spread.max() < 15


def test_carry_levels_real(v1_dir, v2_dir):
    v1 = read_annotations(v1_dir)
    carried = carry_levels(v1, read_annotations(v2_dir))
    assert carried["level"].notna().mean() > 0.99
    order = carried.dropna(subset=["level"]).assign(
        rank=lambda f: [LEVELS.index(level) for level in f["level"]])
    gaps = set()
    for (file, _), group in order.groupby(["file", "expert"]):
        steps = np.diff(group["rank"].to_numpy())
        assert (steps >= 1).all()  # levels follow the spine, head to feet
        if (steps > 1).any():
            gaps.add(file)
    # consecutive levels everywhere but in one study, where the v2 readers put Th12
    # inside L1 (its mean centre lies below L1's upper endplate)
    assert len(gaps) <= 1
    thoracic = carried["level"].isin([f"Th{i}" for i in range(1, 13)])
    assert thoracic.mean() > 0.9  # v1 is the thoracic set (with L1 often, a few beyond)
    readings = carried.groupby(["file", "expert"]).ngroups
    for level in ("Th2", "Th5", "Th8"):  # mid-thoracic levels are in every reading once
        assert (carried["level"] == level).sum() == readings


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("folder", ["/etc", "..", "../../..", "a/b", "F" * 2000, "", "a\0b"])
def test_folder_names_are_checked_where_they_are_taken(dataset, folder):
    with pytest.raises(UsageError, match="not a plain folder name|folder name|characters long"):
        study_folder(dataset, folder)
    with pytest.raises(UsageError):
        series_spacing(dataset, folder, THIN)


def test_series_spacing_needs_a_uid_string(dataset):
    with pytest.raises(UsageError, match="series_uid"):
        series_spacing(dataset, "STUDY-A", None)


def test_study_folder_without_dicom_gets_no_uid_reissue_hint(dataset, tmp_path):
    root = tmp_path / "root"
    (root / "dicom" / "STUDY-A").mkdir(parents=True)
    (root / "dicom" / "STUDY-A" / "notes.txt").write_text("not DICOM")
    with pytest.raises(SeriesError) as info:
        match(dataset / "annotation" / "STUDY-A.json", root)
    message = str(info.value)
    assert "holds no DICOM series" in message and "STUDY-A.json" in message
    assert "February 2021" not in message


def test_match_vertebrae_refuses_frames_it_cannot_match(tmp_path):
    doc = _annotation("S", "1.2", {"expert1": [_box(0), _box(8)], "expert2": [_box(1)]})
    (tmp_path / "S.json").write_text(json.dumps(doc))
    frame = read_annotations(tmp_path)
    huge = frame.copy()
    huge.loc[1, "row2"] = 1e308            # edited by hand, past the loader's checks
    with pytest.raises(AnnotationError, match="S.json: expert expert1"):
        match_vertebrae(huge)
    with pytest.raises(UsageError, match="read_annotations"):
        match_vertebrae(frame.drop(columns=["slice5"]))


def test_match_vertebrae_refuses_a_level_twice(tmp_path):
    def item(top, level):
        p = _box(top)
        return {"segments": [p[0:2], p[2:4], p[4:6]], "type": level}
    doc = _annotation("S", "1.2", {"expert1": [item(0, "Th7"), item(8, "Th8")]})
    (tmp_path / "S.json").write_text(json.dumps(doc))
    frame = read_annotations(tmp_path)
    frame.loc[1, "level"] = "Th7"           # edited by hand: the loader refuses this
    with pytest.raises(AnnotationError, match="expert1 marks level Th7 twice"):
        match_vertebrae(frame)
