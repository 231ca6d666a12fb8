"""The shipped keypoint model: output files, ONNX against torch, held-out targets, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vfs_utils.annotation import load_annotation, read_annotations
from vfs_utils.cli import main
from vfs_utils.keypoints import MODEL_FILE, detect, model_metadata, sagittal_input


@pytest.fixture(scope="module")
def spine_volume():
    """A sampled spine (seed the model never saw), rendered in full: (volume, truth)."""
    from vfs_utils.keypoints._data import HELDOUT_SEED, synthetic_truth
    from vfs_utils.phantom import render_volume

    truth = synthetic_truth(HELDOUT_SEED, 900)
    return render_volume(truth, rng=np.random.default_rng(0)), truth


def _centres_mm(vox, sp):
    return (np.asarray(vox, float) * np.asarray(sp)).mean(axis=-2)


def test_detect_finds_the_rendered_vertebrae_and_round_trips(spine_volume, tmp_path):
    vol, truth = spine_volume
    sp = truth.geometry.spacing
    det = detect(vol, sp, folder="KP-TEST", series_uid="1.2.3.4")
    found = np.stack([v.points for v in det.annotation.experts["model"]])
    true = np.stack([v.points for v in truth.vertebrae])
    d = np.linalg.norm(_centres_mm(found, sp)[:, None, [0, 2]]
                       - _centres_mm(true, sp)[None, :, [0, 2]], axis=2)
    # every rendered vertebra has a detection within 5 mm of its centre, and every
    # detection inside the rendered span is one of them (precision inside the span)
    assert (d.min(axis=0) < 5).all()
    z_found, z_true = _centres_mm(found, sp)[:, 2], _centres_mm(true, sp)[:, 2]
    inside = (z_found >= z_true.min()) & (z_found <= z_true.max())
    assert inside.sum() >= len(true) - 2 and (d.min(axis=1)[inside] < 5).all()
    # the column follows the spine: within 3.5 mm of the rendered vertebra's column (the
    # canal's column, which the search follows, lies within a few mm of the body's)
    nearest = d.argmin(axis=1)[inside]
    col_mm = np.abs(found[inside, 0, 1] - true[nearest, :, 1].mean(axis=1)) * sp[1]
    assert col_mm.max() < 3.5
    # written in the upstream v2 schema and read back unchanged
    from vfs_utils.annotation import write_annotation

    path = write_annotation(det.annotation, tmp_path / "KP-TEST.json", version="v2")
    raw = json.loads(path.read_text())
    assert set(raw) == {"Folder", "SeriesInstanceUID", "Annotation"}
    assert list(raw["Annotation"]) == ["model"]
    assert set(raw["Annotation"]["model"][0]) == {"segments", "type"}
    back = load_annotation(path)
    assert back.folder == "KP-TEST" and back.version == "v2"
    assert [v.level for v in back.experts["model"]] == \
        [v.level for v in det.annotation.experts["model"]]
    np.testing.assert_allclose(np.stack([v.points for v in back.experts["model"]]), found)
    frame = read_annotations(path)
    assert frame.shape[0] == len(found) and (frame["expert"] == "model").all()


def test_level_names_count_from_the_ribs(spine_volume):
    vol, truth = spine_volume
    det = detect(vol, truth.geometry.spacing)
    assert det.level_source == "ribs"
    found = np.stack([v.points for v in det.annotation.experts["model"]])
    sp = truth.geometry.spacing
    true = np.stack([v.points for v in truth.vertebrae])
    d = np.linalg.norm(_centres_mm(found, sp)[:, None, [0, 2]]
                       - _centres_mm(true, sp)[None, :, [0, 2]], axis=2)
    names = [v.level for v in det.annotation.experts["model"]]
    hit = d.min(axis=1) < 5
    assert hit.sum() >= len(true) - 1
    assert [truth.vertebrae[j].level for j in d.argmin(axis=1)[hit]] == \
        [n for n, h in zip(names, hit) if h]


def test_onnx_file_agrees_with_torch(spine_volume):
    pytest.importorskip("torch")
    from vfs_utils.keypoints._onnx import run_model
    from vfs_utils.keypoints.training import load_weights, predict_torch

    vol, truth = spine_volume
    image = sagittal_input(vol, truth.geometry.spacing).image
    net = load_weights(MODEL_FILE.with_name(MODEL_FILE.stem + "-weights.npz"))
    h_t, o_t = predict_torch(net, image)
    h_o, o_o = run_model(image)
    np.testing.assert_allclose(h_o, h_t, atol=1e-4)
    np.testing.assert_allclose(o_o, o_t, atol=1e-4)


def test_metadata_names_data_licence_and_target():
    meta = model_metadata()
    assert meta["licence"].startswith("CC BY-NC 4.0")
    assert "anchor-free-genant" in meta["training_data"]
    assert meta["training"]["steps"] > 0 and meta["split"]["counts"]["heldout"] == 25
    assert MODEL_FILE.stat().st_size < 2_000_000


# --------------------------------------------------------------------------- held out
@pytest.fixture(scope="module")
def heldout_tables(v2_dir):
    """The shipped model on the 25 held-out patients (rendered once, then cached)."""
    from vfs_utils.keypoints import evaluation

    examples, anns = evaluation.heldout_set("phantom", folder=v2_dir)
    return evaluation.evaluate(examples, anns)


@pytest.mark.slow
def test_heldout_detection_and_distances(heldout_tables):
    from vfs_utils.keypoints import evaluation

    det, pairs = heldout_tables["detection"], heldout_tables["pairs"]
    assert len(det) == 25
    tp, fn, fp = det["tp"].sum(), det["fn"].sum(), det["fp"].sum()
    assert tp / (tp + fn) >= 0.95 and tp / (tp + fp) >= 0.95
    # every held-out reading is compared: the model with each expert, experts in pairs
    model = pairs[pairs["reader_a"] == "model"]
    experts = pairs[pairs["reader_a"] != "model"]
    own = np.median(np.concatenate(model[model["image_expert"]]["dist_points"].to_list()))
    between = np.median(np.concatenate(experts["dist_points"].to_list()))
    # the model is closer to the reading the image shows than the experts are to each other
    assert own <= between
    # against every reader pooled (the others carry their real disagreement with the
    # rendered one): no farther than the experts are from each other
    s = evaluation.summary(heldout_tables)
    assert s["ratio"] <= 1.0
    # a regression guard at the shipped model's 0.889: the target of 0.95 is not reached
    # (the phantom's short 12th ribs; see the model's metadata and lesson 08)
    assert s["level_accuracy"] >= 0.88


@pytest.mark.slow
def test_the_recorded_heldout_numbers_are_what_the_shipped_model_gives(v2_dir):
    """Lesson 08 prints the held-out numbers ``make model`` recorded: recomputed here."""
    from vfs_utils.keypoints import evaluation

    recorded = model_metadata()["heldout"]
    again = json.loads(json.dumps(evaluation.report("phantom", folder=v2_dir)))
    assert again == recorded
    assert recorded["patients"] == 25 and recorded["vertebrae"] > 300


@pytest.mark.slow
def test_synthetic_heldout_seed():
    """Sampled spines of a seed the model never saw, read by simulated experts."""
    from vfs_utils.keypoints import evaluation

    examples, anns = evaluation.heldout_set("synthetic")
    s = evaluation.summary(evaluation.evaluate(examples, anns))
    assert s["recall"] >= 0.95 and s["precision"] >= 0.95
    # the ratio target (1.0) is NOT met here: 1.004 for the shipped model (simulated
    # readers scatter around the true spine, so the ratio is about 1 by construction unless
    # the model is much closer to the truth than a reader). A regression guard only.
    assert s["ratio"] <= 1.05


# --------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory):
    """A one-study synthetic dataset of a seed the model never saw (256 x 256 px)."""
    from vfs_utils import phantom

    return phantom.build_dataset(tmp_path_factory.mktemp("kp") / "ds", studies=1, seed=77,
                                 image_size=320)


def test_cli_predict_without_annotation(phantom_root, tmp_path, capsys):
    folder = next((phantom_root / "dicom").iterdir()).name
    out = tmp_path / "pred.json"
    assert main(["predict", "--root", str(phantom_root), "--folder", folder,
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "keypoints.onnx" in text and "target" in text and "deformity" in text
    assert "fracture probab" not in text.lower()
    ann = load_annotation(out)
    assert ann.folder == folder and list(ann.experts) == ["model"]
    import pydicom

    first = sorted((phantom_root / "dicom" / folder / "series-001").iterdir())[0]
    assert ann.series_uid == pydicom.dcmread(first, stop_before_pixels=True).SeriesInstanceUID
    # one printed row per vertebra, named by level
    rows = [ln for ln in text.splitlines() if ln.split() and ln.split()[0] in
            {v.level for v in ann.experts["model"]}]
    assert len(rows) == len(ann.experts["model"]) >= 10


def test_cli_predict_bad_input_is_one_line(phantom_root, tmp_path, capsys):
    out = tmp_path / "pred.json"
    assert main(["predict", "--root", str(phantom_root), "--folder", "NO-SUCH-STUDY",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NO-SUCH-STUDY" in err and not out.exists()
    assert "vfs scan" in err and "annotation" not in err  # no annotation in this call
    folder = next((phantom_root / "dicom").iterdir()).name
    assert main(["predict", "--root", str(phantom_root), "--folder", folder, "--series",
                 "1.2.3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1.2.3" in err and "--series" in err
    assert main(["predict", "--root", str(phantom_root), "--folder", folder]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err


def test_cli_predict_with_a_v1_annotation_names_levels_and_model(phantom_root, capsys):
    folder = next((phantom_root / "dicom").iterdir()).name
    v1 = phantom_root / "annotation" / f"{folder}.json"
    v2 = load_annotation(phantom_root / "annotation_v2" / f"{folder}.json")
    assert load_annotation(v1).version == "v1"
    assert main(["predict", "--root", str(phantom_root), "--annotation", str(v1),
                 "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert "target" in captured.err and "deformity score" in captured.err
    import io

    import pandas as pd

    table = pd.read_csv(io.StringIO(captured.out))
    # the v1 file has no levels: they are carried from the v2 reading of the same study
    levels = {v.level for vs in v2.experts.values() for v in vs}
    assert table["level"].notna().all() and set(table["level"]) <= levels
    assert table["probability"].between(0, 1).all()    # today's columns, unchanged
