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
import os

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


# ----------------------------------------------------------------------------- bad input
def _fails_with_usage(capsys, argv, fragment):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"vfs {argv[0]}: error: argument") and fragment in last, err
    assert "Traceback" not in err


@pytest.mark.parametrize("spacing,fragment", [(["-1", "0.7", "1.25"], "'-1'"),
                                              (["nan", "0.7", "1.25"], "'nan'"),
                                              (["0.5", "inf", "1"], "'inf'"),
                                              (["0.5", "0", "1"], "'0'"),
                                              (["0.5", "x", "1"], "'x' is not a number")])
def test_bad_spacing(dataset, capsys, spacing, fragment):
    _, ann = dataset
    _fails_with_usage(capsys, ["morphometry", "--annotation-dir", str(ann), "--spacing",
                               *spacing], fragment)


@pytest.mark.parametrize("argv,fragment", [
    (["demo-data", "--studies", "0"], "studies must be between 1"),
    (["demo-data", "--studies", "-3"], "studies must be between 1"),
    (["demo-data", "--seed", "-1"], "seed must be between 0"),
    (["demo-data", "--seed", "1.5"], "not a whole number"),
])
def test_bad_numbers(capsys, argv, fragment):
    _fails_with_usage(capsys, argv, fragment)


def test_bad_folders(tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    _fails_with_usage(capsys, ["scan", str(a_file)], "is a file; pass a folder")
    _fails_with_usage(capsys, ["scan", str(tmp_path / "nope")], "no such folder")
    _fails_with_usage(capsys, ["demo-data", "--out", str(a_file)], "is not a folder")
    _fails_with_usage(capsys, ["demo-data", "--from-annotations", str(tmp_path), "--studies",
                               "0"], "studies must be between 1")
    _fails_with_usage(capsys, ["inventory", str(a_file)], "is a file")
    _fails_with_usage(capsys, ["predict", "--root", str(tmp_path), "--annotation",
                               str(tmp_path)], "is a folder; pass a file")


def test_scan_of_a_folder_without_dicom(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not DICOM")
    assert main(["scan", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"vfs scan: DataNotFoundError: {tmp_path}: no DICOM series")


def test_model_files_that_are_not_skops(dataset, tmp_path, capsys, monkeypatch):
    root, ann = dataset
    not_skops = tmp_path / "model.skops"
    not_skops.write_bytes(b"\x80\x04not a zip")
    argv = ["predict", "--root", str(root), "--annotation", str(ann / f"{FOLDER}.json")]
    assert main([*argv, "--model", str(not_skops)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ModelFileError" in err and str(not_skops) in err
    # a damaged cached default model
    monkeypatch.setenv("VFS_CACHE_DIR", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "models" / "baseline-logistic-v1.skops"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"PK\x03\x04 damaged")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(cached) in err and "delete it" in err


def test_unusable_cache_folder_is_one_line(tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    monkeypatch.setenv("VFS_CACHE_DIR", str(a_file))
    assert main(["demo-data", "--studies", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "VFS_CACHE_DIR" in err and "Traceback" not in err


def _dead_pid() -> int:
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_demo_data_warns_before_rendering_every_file_and_removes_dead_leftovers(
        tmp_path, capsys, monkeypatch):
    from vfs_utils import phantom

    calls = []
    monkeypatch.setattr(phantom, "build_dataset", lambda out, **kw: calls.append(kw) or out)
    ann = tmp_path / "ann"
    ann.mkdir()
    for i in range(6):
        (ann / f"S{i}.json").write_text("{}")
    out = tmp_path / "out"
    leftover = tmp_path / f".out.partial-{_dead_pid()}"
    (leftover / "dicom").mkdir(parents=True)
    alive = tmp_path / f".out.partial-{os.getpid()}"    # a live process's build: kept
    alive.mkdir()
    assert main(["demo-data", "--out", str(out), "--from-annotations", str(ann)]) == 0
    err = capsys.readouterr().err
    assert "rendering all 6 studies" in err and "--studies N" in err
    assert calls[0]["studies"] is None
    assert not leftover.exists() and alive.exists()
    assert main(["demo-data", "--out", str(out), "--from-annotations", str(ann),
                 "--studies", "2"]) == 0
    assert capsys.readouterr().err == ""           # the build (faked) wrote nothing
    calls[-1]["progress"](0, 2, "S0", out)         # what a build calls before its first study
    calls[-1]["progress"](1, 2, "S1", out)
    assert capsys.readouterr().err == (f"vfs demo-data: writing 2 studies (about 0.5 GB) into "
                                       f"{out}; this takes a while...\n  1/2 written\n")


def test_sigterm_during_demo_data_leaves_nothing_behind(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "demo"
    env = {**os.environ, "VFS_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "vfs_utils", "demo-data", "--out", str(out),
                             "--studies", "20"], stderr=subprocess.PIPE, text=True, env=env)
    partial = tmp_path / "demo" / "dicom" / f".SYNTH0000-001_PHANTOM.partial-{proc.pid}"
    # wait for the condition (the first study is being written), not for a time
    while not partial.is_dir() and proc.poll() is None:
        time.sleep(0.05)        # a poll interval, not a synchronisation by time
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate()                      # the exit is the condition waited for
    assert proc.returncode == 143, err
    lines = err.strip().splitlines()
    assert lines[-1] == "vfs demo-data: terminated (SIGTERM); partial output removed"
    assert lines[0].startswith("vfs demo-data: writing 20 studies")
    assert not out.exists()            # made by this run: nothing of it is left
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".demo")]
