"""vfs_utils.annotation: both schemas, the tidy frame, and one test per validation rule."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest

from vfs_utils.annotation import (
    LEVELS,
    MAX_COORDINATE,
    MAX_DEPTH,
    POINT_COLUMNS,
    load_annotation,
    points,
    read_annotations,
    write_annotation,
)
from vfs_utils.errors import AnnotationError, DataNotFoundError


def _vertebra(top: float) -> list[list[float]]:
    """Six points of a box-shaped vertebra whose upper endplate is at slice ``top``."""
    return [[100.0, 50.0, top], [100.5, 50.0, top + 20],
            [110.0, 50.0, top + 0.5], [110.0, 50.0, top + 19],
            [120.0, 50.0, top + 1], [120.5, 50.0, top + 21]]


def v1_doc() -> dict:
    return {"Folder": "STUDY-1", "SeriesInstanceUID": "1.2.3.4",
            "Annotation": {"expert0": [_vertebra(10), _vertebra(35)],
                           "expert2": [_vertebra(11)]}}


def v2_doc() -> dict:
    def item(top, level):
        p = _vertebra(top)
        return {"segments": [p[0:2], p[2:4], p[4:6]], "type": level}
    return {"Folder": "STUDY-1", "SeriesInstanceUID": "1.2.3.4",
            "Annotation": {"expert1": [item(10, "Th7"), item(35, "Th8")],
                           "expert2": [item(11, "Th7")]}}


def _write(tmp_path: Path, doc, name="STUDY-1.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


# ----------------------------------------------------------------------------- real data
def _json_counts(folder: Path) -> tuple[int, int, int]:
    """(files, expert readings, vertebra readings) counted with plain json."""
    files = sorted(folder.glob("*.json"))
    experts = vertebrae = 0
    for f in files:
        data = json.loads(f.read_text())
        experts += len(data["Annotation"])
        vertebrae += sum(len(v) for v in data["Annotation"].values())
    return len(files), experts, vertebrae


def test_real_v1_loads_all(v1_dir):
    frame = read_annotations(v1_dir)
    n_files, n_experts, n_vertebrae = _json_counts(v1_dir)
    assert (n_files, n_experts, n_vertebrae) == (100, 271, 3393)  # the README's numbers
    assert len(frame) == n_vertebrae
    assert frame.groupby(["file", "expert"]).ngroups == n_experts
    assert frame["file"].nunique() == n_files
    assert set(frame["version"]) == {"v1"}
    assert frame["level"].isna().all()
    assert frame.groupby(["file", "expert"]).size().between(8, 16).all()


def test_real_v2_loads_all_with_levels(v2_dir):
    frame = read_annotations(v2_dir)
    n_files, _, n_vertebrae = _json_counts(v2_dir)
    assert (n_files, n_vertebrae) == (100, 3607)
    assert len(frame) == 3607
    assert frame["level"].notna().all()
    assert set(frame["level"]) <= set(LEVELS)
    assert set(frame["version"]) == {"v2"}


@pytest.mark.parametrize("fixture", ["v1_dir", "v2_dir"])
def test_real_files_round_trip_exactly(fixture, request, tmp_path):
    folder = request.getfixturevalue(fixture)
    for path in sorted(folder.glob("*.json")):
        original = json.loads(path.read_text())
        ann = load_annotation(path)
        assert ann.to_dict() == original
        assert ann.folder == original["Folder"] == path.stem
    written = write_annotation(ann, tmp_path / path.name)
    assert json.loads(written.read_text()) == original
    assert not list(tmp_path.glob("*.tmp"))


def test_frame_points_follow_the_file(tmp_path):
    doc = v1_doc()
    frame = read_annotations(_write(tmp_path, doc))
    assert list(frame.columns[:8]) == ["file", "folder", "series_uid", "version", "expert",
                                       "vertebra", "level", "column"]
    assert list(frame.columns[8:]) == POINT_COLUMNS
    expected = np.array([doc["Annotation"]["expert0"][0], doc["Annotation"]["expert0"][1],
                         doc["Annotation"]["expert2"][0]])
    np.testing.assert_array_equal(points(frame), expected)
    assert frame["expert"].tolist() == ["expert0", "expert0", "expert2"]
    assert frame["vertebra"].tolist() == [0, 1, 0]
    assert frame["level"].tolist() == [None, None, None]
    assert frame["column"].tolist() == [50.0, 50.0, 50.0]
    assert frame.loc[1, "slice2"] == 35.5


def test_v2_levels_and_v1_conversion(tmp_path):
    ann = load_annotation(_write(tmp_path, v2_doc()))
    assert ann.version == "v2"
    assert [v.level for v in ann.experts["expert1"]] == ["Th7", "Th8"]
    as_v1 = ann.to_dict("v1")
    assert as_v1["Annotation"]["expert1"][1] == _vertebra(35)
    with pytest.raises(AnnotationError, match="level"):
        load_annotation(_write(tmp_path, v1_doc(), "x.json")).to_dict("v2")


def test_read_annotations_accepts_lists_and_objects(tmp_path):
    a = _write(tmp_path, v1_doc(), "a.json")
    b = _write(tmp_path, v2_doc(), "b.json")
    frame = read_annotations([a, load_annotation(b)])
    assert frame["version"].tolist() == ["v1"] * 3 + ["v2"] * 3
    assert len(read_annotations(tmp_path)) == 6


# ----------------------------------------------------------------------------- validation
def _set(doc, path, value):
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


def _del(doc, key):
    del doc[key]
    return doc


V1_CASES = {
    "missing Folder": (lambda d: _del(d, "Folder"), "Folder"),
    "missing SeriesInstanceUID": (lambda d: _del(d, "SeriesInstanceUID"), "SeriesInstanceUID"),
    "missing Annotation": (lambda d: _del(d, "Annotation"), "Annotation"),
    "Annotation not an object": (lambda d: _set(d, ["Annotation"], [1, 2]), "Annotation"),
    "expert not a list": (lambda d: _set(d, ["Annotation", "expert2"], {"a": 1}),
                          "Annotation.expert2"),
    "expert with no vertebrae": (lambda d: _set(d, ["Annotation", "expert2"], []),
                                 "Annotation.expert2"),
    "five points": (lambda d: _set(d, ["Annotation", "expert0", 1],
                                   _vertebra(35)[:5]), "Annotation.expert0[1]"),
    "point of two numbers": (lambda d: _set(d, ["Annotation", "expert0", 1, 4], [1.0, 2.0]),
                             "Annotation.expert0[1][4]"),
    "string coordinate": (lambda d: _set(d, ["Annotation", "expert0", 1, 4, 2], "12"),
                          "Annotation.expert0[1][4][2]"),
    "boolean coordinate": (lambda d: _set(d, ["Annotation", "expert0", 0, 0, 1], True),
                           "Annotation.expert0[0][0][1]"),
    "negative coordinate": (lambda d: _set(d, ["Annotation", "expert0", 1, 3, 0], -2.0),
                            "Annotation.expert0[1][3][0]"),
    "NaN coordinate": (lambda d: _set(d, ["Annotation", "expert2", 0, 5, 2], math.nan),
                       "Annotation.expert2[0][5][2]"),
    "infinite coordinate": (lambda d: _set(d, ["Annotation", "expert2", 0, 5, 2], math.inf),
                            "Annotation.expert2[0][5][2]"),
    "mixed v1 and v2 items": (lambda d: _set(d, ["Annotation", "expert0", 1],
                                             {"segments": [], "type": "Th1"}),
                              "Annotation.expert0[1]"),
    "Folder with a slash": (lambda d: _set(d, ["Folder"], "a/b"), "Folder"),
    "Folder with a backslash": (lambda d: _set(d, ["Folder"], "a\\b"), "Folder"),
    "Folder is ..": (lambda d: _set(d, ["Folder"], ".."), "Folder"),
    "absolute Folder": (lambda d: _set(d, ["Folder"], "/etc"), "Folder"),
    "Windows drive Folder": (lambda d: _set(d, ["Folder"], "C:evil"), "Folder"),
    "empty Folder": (lambda d: _set(d, ["Folder"], ""), "Folder"),
    "numeric UID": (lambda d: _set(d, ["SeriesInstanceUID"], 12), "SeriesInstanceUID"),
    "Folder of 2,000 characters": (lambda d: _set(d, ["Folder"], "F" * 2000), "Folder"),
    "Folder with a newline": (lambda d: _set(d, ["Folder"], "STUDY\n1"), "Folder"),
    "coordinate 1e308": (lambda d: _set(d, ["Annotation", "expert0", 1, 2, 0], 1e308),
                         "Annotation.expert0[1][2][0]"),
    "coordinate above the bound": (lambda d: _set(d, ["Annotation", "expert2", 0, 0, 2],
                                                  MAX_COORDINATE + 1),
                                   "Annotation.expert2[0][0][2]"),
    "the same vertebra twice": (lambda d: _set(d, ["Annotation", "expert0", 1],
                                               copy.deepcopy(d["Annotation"]["expert0"][0])),
                                "Annotation.expert0[1]"),
    "empty expert name": (lambda d: _set(d, ["Annotation"], {"": d["Annotation"]["expert0"]}),
                          "Annotation."),
}

V2_CASES = {
    "unknown level": (lambda d: _set(d, ["Annotation", "expert1", 1, "type"], "Th13"),
                      "Annotation.expert1[1].type"),
    "missing type": (lambda d: (_del(d["Annotation"]["expert1"][0], "type"), d)[1],
                     "Annotation.expert1[0].type"),
    "missing segments": (lambda d: (_del(d["Annotation"]["expert2"][0], "segments"), d)[1],
                         "Annotation.expert2[0].segments"),
    "two segments": (lambda d: _set(d, ["Annotation", "expert1", 0, "segments"],
                                    d["Annotation"]["expert1"][0]["segments"][:2]),
                     "Annotation.expert1[0].segments"),
    "segment of three points": (lambda d: d["Annotation"]["expert1"][0]["segments"][1].append(
        [1.0, 2.0, 3.0]) or d, "Annotation.expert1[0].segments[1]"),
    "bad point in a segment": (lambda d: _set(d, ["Annotation", "expert1", 1, "segments", 2, 1],
                                              [1.0, None, 3.0]),
                               "Annotation.expert1[1].segments[2][1][1]"),
    "v1 item in a v2 file": (lambda d: _set(d, ["Annotation", "expert2", 0], _vertebra(3)),
                             "Annotation.expert2[0]"),
    "a level twice for one expert": (lambda d: _set(d, ["Annotation", "expert1", 1, "type"],
                                                    "Th7"), "Annotation.expert1[1]"),
}


VALIDATION_CASES = [("v1", case) for case in sorted(V1_CASES)] + [
    ("v2", case) for case in sorted(V2_CASES)]


@pytest.mark.parametrize("version,case", VALIDATION_CASES)
def test_validation(version, case, tmp_path):
    cases, doc = (V1_CASES, v1_doc) if version == "v1" else (V2_CASES, v2_doc)
    mutate, where = cases[case]
    path = _write(tmp_path, mutate(copy.deepcopy(doc())))
    with pytest.raises(AnnotationError) as info:
        load_annotation(path)
    message = str(info.value)
    assert str(path) in message
    assert f"{where}:" in message


def test_no_expert_has_vertebrae(tmp_path):
    path = _write(tmp_path, {"Folder": "F", "SeriesInstanceUID": "1.2",
                             "Annotation": {"expert0": []}})
    with pytest.raises(AnnotationError, match=r"Annotation: no expert has any vertebra"):
        load_annotation(path)


def test_not_json(tmp_path):
    path = _write(tmp_path, '{"Folder": "F",')
    with pytest.raises(AnnotationError, match=r"STUDY-1\.json: not valid JSON \(line 1"):
        load_annotation(path)


def test_top_level_not_an_object(tmp_path):
    with pytest.raises(AnnotationError, match=r"\(top level\)"):
        load_annotation(_write(tmp_path, [1, 2, 3]))


def test_missing_file_and_empty_folder(tmp_path):
    with pytest.raises(DataNotFoundError, match="nope.json"):
        load_annotation(tmp_path / "nope.json")
    with pytest.raises(DataNotFoundError, match="no \\*.json"):
        read_annotations(tmp_path)


def test_points_needs_point_columns(tmp_path):
    frame = read_annotations(_write(tmp_path, v1_doc())).drop(columns=["slice5"])
    with pytest.raises(ValueError, match="read_annotations"):
        points(frame)


# ----------------------------------------------------------------------------- damaged files
def _raw(tmp_path: Path, data: bytes, name="STUDY-1.json") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("encoding,named", [("utf-16", "UTF-16"), ("utf-32", "UTF-32"),
                                            ("utf-16-le", "NUL bytes")])
def test_other_encodings_are_named(tmp_path, encoding, named):
    path = _raw(tmp_path, json.dumps(v1_doc()).encode(encoding))
    with pytest.raises(AnnotationError, match=named) as info:
        load_annotation(path)
    assert str(path) in str(info.value)


def test_latin1_bytes_give_the_offset(tmp_path):
    text = json.dumps({**v1_doc(), "Folder": "STUDY-\u00e9"}, ensure_ascii=False)
    offset = text.encode("latin-1").index(b"\xe9")
    path = _raw(tmp_path, text.encode("latin-1"))
    with pytest.raises(AnnotationError, match=f"not UTF-8 \\(byte 0xe9 at offset {offset}, line 1"):
        load_annotation(path)


def test_utf8_with_bom_is_utf8(tmp_path):
    path = _raw(tmp_path, json.dumps(v1_doc()).encode("utf-8-sig"))
    assert load_annotation(path).folder == "STUDY-1"


def test_duplicate_keys_are_refused(tmp_path):
    text = json.dumps(v1_doc()).replace('{"Folder": "STUDY-1"',
                                        '{"Folder": "OTHER", "Folder": "STUDY-1"')
    with pytest.raises(AnnotationError, match="key 'Folder' appears twice"):
        load_annotation(_write(tmp_path, text))


@pytest.mark.parametrize("number", ["1" * 5000, "1e400", "-1e400"])
def test_absurd_numbers(tmp_path, number):
    text = json.dumps(v1_doc()).replace("100.5", number, 1)
    assert number in text
    with pytest.raises(AnnotationError, match="STUDY-1.json"):
        load_annotation(_write(tmp_path, text))


def test_nesting_limit(tmp_path):
    deep = "[" * 1000 + "]" * 1000
    text = json.dumps(v1_doc()).replace("[100.5, 50.0, 30]", deep, 1)
    with pytest.raises(AnnotationError, match=f"nested deeper than {MAX_DEPTH} levels"):
        load_annotation(_write(tmp_path, text))
    # brackets inside strings do not count
    ok = {**v1_doc(), "Folder": "[" * 100}
    assert load_annotation(_write(tmp_path, ok)).folder == "[" * 100


def test_special_files_are_not_opened(tmp_path):
    import os
    os.mkfifo(tmp_path / "fifo.json")           # opening it for reading would block
    with pytest.raises(AnnotationError, match="fifo.json: not a regular file \\(a FIFO\\)"):
        load_annotation(tmp_path / "fifo.json")
    (tmp_path / "loop.json").symlink_to(tmp_path / "loop.json")
    with pytest.raises(AnnotationError, match="loop.json: cannot be read \\(a symlink loop\\)"):
        load_annotation(tmp_path / "loop.json")
    (tmp_path / "null.json").symlink_to("/dev/null")
    with pytest.raises(AnnotationError, match="a character device"):
        load_annotation(tmp_path / "null.json")
    # a folder read names the first bad file, in name order
    with pytest.raises(AnnotationError, match="fifo.json"):
        read_annotations(tmp_path)


def test_unreadable_file(tmp_path, monkeypatch):
    import os
    path = _write(tmp_path, v1_doc())
    real_open = os.open

    def refuse(p, *a, **k):
        if str(p) == str(path):
            raise PermissionError(13, "Permission denied", str(p))
        return real_open(p, *a, **k)
    monkeypatch.setattr(os, "open", refuse)      # root ignores chmod 000
    with pytest.raises(AnnotationError, match="STUDY-1.json: cannot be read \\(Permission denied"):
        load_annotation(path)
