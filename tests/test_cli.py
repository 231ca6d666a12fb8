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
    cached = tmp_path / "cache" / "models" / "baseline-logistic-v2.json"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"{\"names\": damaged")
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
    err = capsys.readouterr().err.split("\r")[-1]
    assert err.startswith(f"writing 2 demo studies (0.5 GB) into {out}:") and " 1/2 " in err


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
    assert f"writing 20 demo studies (4.8 GB) into {out}" in lines[0]
    assert not out.exists()            # made by this run: nothing of it is left
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".demo")]


# ------------------------------------------------------------- vfs predict from the image
P_UID = "1.2.826.0.1.3680043.10.543.4.9"
P_FOLDER = "STUDY-0009"


def _write_study(root, n_slices=30, spacing=(0.7, 0.7, 2.0), **kw):
    """One small axial CT series (32 x 32 px) under root/dicom/P_FOLDER; the files."""
    rng = np.random.default_rng(0)
    return write_series(root / "dicom" / P_FOLDER / "s1",
                        rng.integers(-1000, 1000, (32, 32, n_slices)).astype(np.int16),
                        spacing=spacing, series_uid=P_UID, study_uid=P_UID + ".1",
                        frame_of_reference_uid=P_UID + ".2", **kw)


def _edit(files, **values):
    """Set header elements (keyword: raw value) in every file, with pydicom (which would
    warn and log about an invalid value)."""
    import pydicom

    with pydicom.config.disable_value_validation():
        for path in files:
            ds = pydicom.dcmread(path)
            for keyword, value in values.items():
                ds[keyword].value = value
            ds.save_as(path)


@pytest.fixture()
def predict_root(tmp_path, monkeypatch):
    """A dataset root and a cache holding a default classifier (plain numbers)."""
    from vfs_utils.baseline.models import _DEFAULT_MODEL_FILE, LinearModel

    cache = tmp_path / "cache"
    LinearModel(["f_a"], [0.0], [0.0], [1.0], [1.0], 0.0).save(
        cache / "models" / _DEFAULT_MODEL_FILE)
    monkeypatch.setenv("VFS_CACHE_DIR", str(cache))
    return tmp_path / "root"


def _predict_refuses(capsys, root, fragments, *extra):
    """`vfs predict` ends in one line naming each fragment, status 2, nothing written."""
    out = root.parent / "out.json"
    status = main(["predict", "--root", str(root), "--folder", P_FOLDER, "--out", str(out),
                   *extra])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and captured.out == "", captured.err
    assert lines[0].startswith("vfs predict: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not out.exists() and not list(root.parent.glob(".out.json*"))
    return lines[0]


def test_predict_refuses_one_slice(predict_root, capsys):
    _write_study(predict_root, n_slices=1)
    _predict_refuses(capsys, predict_root, ["no axial series of at least 20 slices"])
    _predict_refuses(capsys, predict_root, ["1 slice(s) cover 0 mm", "at least 40 mm"],
                     "--series", P_UID)


def test_predict_refuses_too_short_a_series(predict_root, capsys):
    _write_study(predict_root, n_slices=24, spacing=(0.7, 0.7, 1.5))     # 36 mm
    _predict_refuses(capsys, predict_root, ["24 slice(s) cover 36 mm", "at least 40 mm"])


@pytest.mark.parametrize("spacing,fragment", [
    ((12.0, 12.0, 2.0), "PixelSpacing (0028,0030) is 12 mm, outside (0, 10] mm"),
    ((0.7, 0.7, 25.0), "slice spacing (from ImagePositionPatient (0020,0032)) is 25 mm"),
])
def test_predict_refuses_absurd_spacing(predict_root, capsys, spacing, fragment):
    _write_study(predict_root, spacing=spacing)
    _predict_refuses(capsys, predict_root, [fragment, "check the headers"])


@pytest.mark.parametrize("keyword,value,fragment", [
    ("PixelSpacing", ["0", "0.7"], "PixelSpacing value [0.0, 0.7] is not positive"),
    ("RescaleSlope", "NaN", "RescaleSlope value 'NaN' is not a finite number"),
    ("RescaleIntercept", "inf", "RescaleIntercept value 'inf' is not a finite number"),
])
def test_predict_names_the_header_fault(predict_root, capsys, keyword, value, fragment):
    files = _write_study(predict_root)
    _edit(files, **{keyword: value})
    line = _predict_refuses(capsys, predict_root, [str(files[0]), fragment])
    assert "no DICOM series" not in line and "fix or remove the file" in line


def test_predict_refuses_another_modality(predict_root, capsys):
    _edit(_write_study(predict_root), Modality="MR")
    _predict_refuses(capsys, predict_root, ["Modality (0008,0060) is 'MR'", "CT only"])


@pytest.mark.parametrize("orientation,degrees", [
    ((0.0, 1.0, 0.0, 0.0, 0.0, -1.0), 90),                            # sagittal
    ((1.0, 0.0, 0.0, 0.0, math.cos(math.radians(20)), -math.sin(math.radians(20))), 20),
])
def test_predict_refuses_a_series_that_is_not_axial(predict_root, capsys, orientation, degrees):
    _write_study(predict_root, orientation=orientation)
    _predict_refuses(capsys, predict_root, ["ImageOrientationPatient (0020,0037)",
                                            f"is {degrees} degrees from axial"])


def test_predict_names_a_missing_decoder(predict_root, capsys, monkeypatch):
    """A JPEG 2000 series where pydicom has no decoder plugin (simulated: one is installed
    here): the message names the transfer syntax and the packages to install."""
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    import vfs_utils.dicom._load as load

    for path in _write_study(predict_root):
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51 not decodable"])
        ds["PixelData"].VR = "OB"
        ds.save_as(path, enforce_file_format=True)
    real = load._get_decoder

    class Missing:
        is_available = False
        missing_dependencies = real(JPEG2000Lossless).missing_dependencies

    monkeypatch.setattr(load, "_get_decoder", lambda uid: Missing())
    _predict_refuses(capsys, predict_root, ["SeriesError", "JPEG 2000", "pylibjpeg-openjpeg",
                                            "pip install"])


def test_failed_predict_keeps_the_previous_out(predict_root, tmp_path, capsys, monkeypatch):
    """A damaged --model, or any project error inside the run, leaves --out as it was."""
    import vfs_utils.keypoints as keypoints
    from vfs_utils.errors import SeriesError

    _write_study(predict_root)
    out = tmp_path / "out.json"
    out.write_text("previous")
    argv = ["predict", "--root", str(predict_root), "--folder", P_FOLDER, "--out", str(out)]
    bad = tmp_path / "bad.skops"
    bad.write_bytes(b"PK\x03\x04 damaged")
    assert main([*argv, "--model", str(bad)]) == 2
    assert capsys.readouterr().err.count("\n") == 1

    def no_spine(*args, **kwargs):
        raise SeriesError("no bone column")     # as a keypoint error would end

    monkeypatch.setattr(keypoints, "detect", no_spine)
    assert main(argv) == 2
    assert capsys.readouterr().err == "vfs predict: SeriesError: no bone column\n"
    assert out.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == [
        "bad.skops", "cache", "out.json", "root"]
    assert main([*argv[:-1], str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


# ------------------------------------------------------- commands the package tells users to run
def _vfs_commands_in_the_package() -> list[tuple[str, str]]:
    """(file:line, command) of every `vfs ...` quoted in a string of vfs_utils; an f-string's
    fields become {expression}."""
    import ast
    import re
    from pathlib import Path

    import vfs_utils

    found = []
    for path in sorted(Path(vfs_utils.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value if isinstance(v, ast.Constant)
                               else "{" + ast.unparse(v.value) + "}" for v in node.values)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            else:
                continue
            for command in re.findall(r"`+(vfs(?: [^`]*)?)`+", text):
                found.append((f"{path.name}:{node.lineno}", command))
    return found


#: Values for the f-string fields of those commands (a new field: add it here).
FIELDS = {"{version}": "v1", "{source.version}": "v2", "{root}": "."}


def test_every_vfs_command_in_a_message_is_accepted_by_the_parser(capsys):
    import shlex

    from vfs_utils.cli import build_parser

    commands = _vfs_commands_in_the_package()
    assert len(commands) > 20 and ("data.py", "vfs fetch --schema {source.version}") in {
        (where.split(":")[0], c) for where, c in commands}
    parser = build_parser()
    names = set(parser._subparsers._group_actions[0].choices)
    for where, command in commands:
        words = shlex.split(command)[1:]
        if not words or words[0].isupper():      # `vfs`, `vfs COMMAND -h`: the usage itself
            continue
        assert words[0] in names, f"{where}: `{command}`: no such command"
        if len(words) > 1:                        # a full command line: it must parse
            argv = [FIELDS.get(w, w) for w in words]
            assert not [w for w in argv if "{" in w], f"{where}: add the field to FIELDS"
            try:
                parser.parse_args(argv)
            except SystemExit:
                pytest.fail(f"{where}: `{command}` is refused: {capsys.readouterr().err}")


def test_predict_accepts_a_slightly_tilted_series(predict_root, capsys, monkeypatch):
    """5 degrees of gantry tilt and 40.5 mm of slices pass the checks: the run reaches the
    keypoint model (stubbed)."""
    import vfs_utils.keypoints as keypoints
    from vfs_utils.errors import VfsError

    def reached(vol, **kwargs):
        raise VfsError(f"reached the model with {vol.array.shape[2]} slices")

    monkeypatch.setattr(keypoints, "detect", reached)
    t = math.radians(5)
    _write_study(predict_root, n_slices=27, spacing=(0.7, 0.7, 1.5),
                 orientation=(1.0, 0.0, 0.0, 0.0, math.cos(t), -math.sin(t)))
    _predict_refuses(capsys, predict_root, ["reached the model with 27 slices"])
