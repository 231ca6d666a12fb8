"""The phantom mode is not circular: no study's image is rendered from a reading that also
makes the label it is scored against; labels at the label levels (T4-L4)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from vfs_utils import baseline, morphometry, phantom
from vfs_utils.annotation import Annotation, Vertebra, write_annotation

_BANDS = (0.20, 0.25, 0.40)     # Genant's bands, written out here on purpose


def _three_reader_annotation(i: int) -> tuple[Annotation, object]:
    """A sampled spine read by three experts (simulated readings), and its truth."""
    rng = np.random.default_rng([5, i])
    truth = phantom.sample_spine(rng, n_vertebrae=13, fractures=[("wedge", 2), ("crush", 3)],
                                 folder=f"CIRC{i:02d}", series_uid=f"1.2.3.5.{i}")
    readings = phantom.sample_readings(truth, np.random.default_rng([5, i, 1]), n_experts=3,
                                       noise_mm=0.8, p_missing_end=0.5)
    return Annotation(truth.folder, truth.series_uid, "v2", readings), truth


def _grade_by_hand(readings: list[np.ndarray], spacing) -> int:
    """QM grade of the mean over readers of 1 - min/max of the three heights (numpy only)."""
    losses = []
    for pts in readings:
        h = [np.linalg.norm((pts[2 * k + 1] - pts[2 * k]) * np.asarray(spacing)) for k in range(3)]
        losses.append(1 - min(h) / max(h))
    loss = float(np.mean(losses))
    return int(sum(loss >= t - 1e-9 for t in _BANDS))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("circ")
    anns = [_three_reader_annotation(i)[0] for i in range(3)]
    for ann in anns:
        write_annotation(ann, folder / f"{ann.folder}.json", version="v2")
    return folder, anns


def test_phantom_image_is_one_reading_and_no_label_uses_it(files):
    folder, anns = files
    studies = baseline.load_studies(folder)            # phantom mode: rendered in memory
    assert [s.kind for s in studies] == ["phantom"] * len(anns)
    feats = baseline.dataset_features(studies, levels=None)
    for study, ann in zip(studies, anns):
        counts = {e: len(vs) for e, vs in ann.experts.items()}
        # the expert with the most vertebrae, the first in name order on a tie
        best = max(counts.values())
        assert study.expert == sorted(e for e, n in counts.items() if n == best)[0]
        # the image's spine is that one reading, and no other (the same as an annotation
        # holding that reading only)
        alone = Annotation(ann.folder, ann.series_uid, "v2",
                           {study.expert: ann.experts[study.expert]})
        expected = phantom.spine_from_annotation(alone)
        got = [v.points for v in study.truth.vertebrae if v.annotated]
        want = [v.points for v in expected.vertebrae if v.annotated]
        assert len(got) == len(want) == len(ann.experts[study.expert])
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
        # every label is the consensus of the OTHER experts, graded here by hand
        rows = feats[feats["folder"] == ann.folder]
        assert (rows["image_expert"] == study.expert).all()
        assert not rows["experts"].str.contains(study.expert).any()
        others = {e: {v.level: v.points for v in vs} for e, vs in ann.experts.items()
                  if e != study.expert}
        for _, r in rows.iterrows():
            readers = [o[r["level"]] for o in others.values() if r["level"] in o]
            assert r["n_experts"] == len(readers) >= 1
            assert r["grade"] == _grade_by_hand(readers, study.spacing)


def test_labels_do_not_change_with_the_reading_the_image_is_rendered_from(files):
    folder, anns = files
    study = baseline.load_studies(folder, limit=1)[0]
    ann = study.annotation
    # flatten every vertebra of the image's reading anteriorly by 45 %: a grade 3 wedge
    squashed = []
    for v in ann.experts[study.expert]:
        pts = v.points.copy()
        pts[1] = pts[0] + 0.55 * (pts[1] - pts[0])
        squashed.append(Vertebra(pts, v.level))
    other = Annotation(ann.folder, ann.series_uid, "v2",
                       {**ann.experts, study.expert: tuple(squashed)})
    assert baseline.image_expert(other) == study.expert
    exclude = {ann.folder: study.expert}
    before = baseline.vertebra_table(ann, study.spacing, exclude=exclude)
    after = baseline.vertebra_table(other, study.spacing, exclude=exclude)
    cols = ["level", "n_experts", "experts", "grade", "label_moderate", "label_any"]
    assert before[cols].equals(after[cols])
    # ... while the image does change (the features see the squashed reading)
    new = baseline.Study(other, study.spacing, "phantom", None,
                         phantom.spine_from_annotation(other, expert=study.expert),
                         study.seed, study.expert)
    loss_before = baseline.dataset_features([study])["f_loss"].median()
    loss_after = baseline.dataset_features([new])["f_loss"].median()
    assert loss_after > loss_before + 0.15


def test_single_reader_studies_are_left_out_of_the_phantom_mode(tmp_path):
    ann, _ = _three_reader_annotation(9)
    one = Annotation(ann.folder, ann.series_uid, "v2", {"expert1": ann.experts["expert1"]}
                     if "expert1" in ann.experts else dict([next(iter(ann.experts.items()))]))
    assert baseline.image_expert(one) is None
    write_annotation(one, tmp_path / f"{one.folder}.json", version="v2")
    with pytest.warns(UserWarning, match="single expert"):
        assert baseline.load_studies(tmp_path) == []
    with pytest.raises(Exception, match="no vertebra reading"):
        phantom.spine_from_annotation(ann, expert="expert9")


def test_a_phantom_build_on_disk_is_rendered_again_from_one_reading(tmp_path, tiny_dataset):
    import json
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["parameters"]["mode"] = "from-annotations"        # rendered from all readings
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (study,) = baseline.load_studies(copy / "annotation_v2", root=copy)
    assert study.kind == "phantom" and study.root is None and study.expert is not None


def test_rows_are_the_labelled_vertebrae_at_the_label_levels(files):
    folder, anns = files
    studies = baseline.load_studies(folder)
    feats = baseline.dataset_features(studies)
    assert feats["level"].isin(morphometry.LABEL_LEVELS).all() and feats["in_levels"].all()
    everything = baseline.dataset_features(studies, levels=None)
    assert set(everything["level"]) - set(morphometry.LABEL_LEVELS)     # C7..Th3 are read
    inside = everything[everything["level"].isin(morphometry.LABEL_LEVELS)]
    # the features of a vertebra do not depend on which levels are labelled
    cols = baseline.feature_columns(feats)
    np.testing.assert_allclose(inside[cols].to_numpy(float), feats[cols].to_numpy(float))
    assert list(baseline.TARGETS) == ["label_moderate", "label_any"]
    assert baseline.PRIMARY_TARGET == "label_moderate"
    with pytest.raises(ValueError, match="unknown level names"):
        baseline.vertebra_table(anns[0], (1.0, 1.0, 1.0), levels=["T4"])
