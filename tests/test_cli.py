"""Tests of the ``vfs morphometry`` command (vfs_utils.cli.main) on a tiny written dataset.

The dataset is one study with one small series written with
:func:`vfs_utils.dicom.write_series` and a v1 annotation file written as JSON
by hand; expected heights are computed here from the chosen points and
spacing with ``math.hypot``.
"""
from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pytest

from vfs_utils.cli import main
from vfs_utils.dicom import write_series

SPACING = (0.5, 0.5, 2.0)                 # row, col, slice (mm)
UID = "1.2.826.0.1.3680043.10.543.4.1"
FOLDER = "STUDY-0001"
# Two readings of one vertebra: pairs (anterior, middle, posterior), upper endplate first.
POINTS = {
    "expert0": [[2, 4, 1], [3, 4, 5], [6, 4, 1], [6, 4, 4.5], [10, 4, 1], [10, 4, 6]],
    "expert1": [[2, 4, 2], [2, 4, 6], [6, 4, 2], [6, 4, 6], [10, 4, 2], [11, 4, 7]],
}


def expected_heights(pts, spacing):
    """(Ha, Hm, Hp) in mm of six points [row, col, slice], pairs in anterior-first order."""
    out = []
    for k in range(3):
        (r0, _, s0), (r1, _, s1) = pts[2 * k], pts[2 * k + 1]
        out.append(math.hypot((r1 - r0) * spacing[0], (s1 - s0) * spacing[2]))
    return out


@pytest.fixture()
def dataset(tmp_path):
    root = tmp_path / "root"
    write_series(root / "dicom" / FOLDER / "series-001", np.zeros((16, 8, 10), dtype=np.int16),
                 spacing=SPACING, series_uid=UID, study_uid=UID + ".1",
                 frame_of_reference_uid=UID + ".2")
    ann = tmp_path / "annotation"
    ann.mkdir()
    doc = {"Folder": FOLDER, "SeriesInstanceUID": UID,
           "Annotation": {e: [pts] for e, pts in POINTS.items()}}
    (ann / f"{FOLDER}.json").write_text(json.dumps(doc))
    return root, ann


def run_csv(capsys, *argv) -> pd.DataFrame:
    assert main(["morphometry", *argv, "--format", "csv"]) == 0
    return pd.read_csv(io.StringIO(capsys.readouterr().out))


def test_morphometry_with_root_reads_the_spacing_from_the_headers(dataset, capsys):
    root, ann = dataset
    table = run_csv(capsys, "--annotation-dir", str(ann), "--root", str(root))
    assert len(table) == 2 and list(table["expert"]) == ["expert0", "expert1"]
    assert (table["folder"] == FOLDER).all()
    for row in table.itertuples():
        ha, hm, hp = expected_heights(POINTS[row.expert], SPACING)
        assert (row.ha, row.hm, row.hp) == pytest.approx((ha, hm, hp), rel=1e-6)
        loss = 1 - min(ha, hm, hp) / max(ha, hm, hp)
        assert row.height_loss == pytest.approx(loss, rel=1e-6)
    # expert0: Hm = 7 mm against Hp = 10 mm: 30 % lost, grade 2 (25-40 %), biconcave.
    assert table.loc[0, "grade"] == 2 and table.loc[0, "deformity"] == "biconcave"


def test_morphometry_with_spacing_scales_the_heights(dataset, capsys):
    _, ann = dataset
    table = run_csv(capsys, "--annotation-dir", str(ann), "--spacing", "1", "1", "3")
    for row in table.itertuples():
        expected = expected_heights(POINTS[row.expert], (1.0, 1.0, 3.0))
        assert (row.ha, row.hm, row.hp) == pytest.approx(expected, rel=1e-6)
    header = run_csv(capsys, "--annotation-dir", str(ann), "--spacing", *map(str, SPACING))
    root_table = run_csv(capsys, "--annotation-dir", str(ann), "--root", str(dataset[0]))
    pd.testing.assert_frame_equal(header, root_table)


def test_morphometry_table_format_prints_one_line_per_reading(dataset, capsys):
    _, ann = dataset
    assert main(["morphometry", "--annotation-dir", str(ann), "--spacing", "1", "1", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and "grade" in lines[0]


def test_morphometry_with_a_missing_study_is_an_error_naming_it(dataset, capsys, tmp_path):
    root, ann = dataset
    doc = json.loads((ann / f"{FOLDER}.json").read_text())
    doc["Folder"] = "NOT-DOWNLOADED"
    (ann / "NOT-DOWNLOADED.json").write_text(json.dumps(doc))
    assert main(["morphometry", "--annotation-dir", str(ann), "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "DataNotFoundError" in err and "NOT-DOWNLOADED" in err


def test_morphometry_needs_root_or_spacing(dataset):
    _, ann = dataset
    with pytest.raises(SystemExit):
        main(["morphometry", "--annotation-dir", str(ann)])
