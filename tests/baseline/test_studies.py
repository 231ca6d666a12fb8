"""Tests of vfs_utils.baseline.studies: which studies, their kinds and labels."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from vfs_utils import baseline
from vfs_utils.errors import DataNotFoundError


def test_labels_are_the_consensus_of_the_readings(studies, features):
    # every study has a wedge grade 3 and a second fracture of grade >= 2 in the truth
    per_study = features.groupby("folder")["label_moderate"].sum()
    assert (per_study >= 1).all()
    assert features["label_any"].sum() >= len(studies)


def test_load_studies_tops_up_with_sampled_spines(tmp_path, tiny_dataset):
    root = tiny_dataset
    got = baseline.load_studies(root / "annotation_v2", root=root, min_studies=3)
    # the tiny dataset is a synthetic phantom (its manifest says so): read from disk,
    # then topped up with sampled spines rendered in memory
    assert [s.kind for s in got] == ["synthetic", "synthetic", "synthetic"]
    assert got[0].root == root and got[0].truth is None
    assert all(s.root is None and s.truth is not None for s in got[1:])
    assert len({s.folder for s in got}) == 3
    # sampled studies get one deterministic SeriesInstanceUID: the same on every call
    again = baseline.load_studies(root / "annotation_v2", root=root, min_studies=3)
    assert [s.annotation.series_uid for s in again] == [s.annotation.series_uid for s in got]
    digest = hashlib.sha256(f"vfs-tutorials baseline\x1f{got[1].folder}".encode()).digest()
    assert got[1].annotation.series_uid == f"2.25.{int.from_bytes(digest[:16], 'big')}"
    with pytest.raises(DataNotFoundError):
        baseline.load_studies(tmp_path / "empty-folder-that-is-missing")


def test_study_kind_is_the_data_mode_of_its_root(tmp_path, tiny_dataset):
    import json
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["parameters"]["mode"] = "from-annotations"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert baseline.load_studies(copy / "annotation_v2", root=copy)[0].kind == "phantom"
    (copy / "manifest.json").unlink()           # no manifest: a real dataset root
    assert baseline.load_studies(copy / "annotation_v2", root=copy)[0].kind == "real"


def test_study_takes_the_mode_names_and_refuses_others(studies):
    s = studies[0]
    assert baseline.Study(s.annotation, s.spacing, "synthetic", None, s.truth).kind == "synthetic"
    assert baseline.Study(s.annotation, s.spacing, "real", Path("/x")).kind == "real"
    for old in ("sampled", "image"):  # the names of earlier versions are gone
        with pytest.raises(ValueError, match=f"unknown kind '{old}'"):
            baseline.Study(s.annotation, s.spacing, old, Path("/x"), s.truth)
    with pytest.raises(ValueError, match="unknown kind 'scan'"):
        baseline.Study(s.annotation, s.spacing, "scan", None, s.truth)
    with pytest.raises(ValueError, match="dataset root"):
        baseline.Study(s.annotation, s.spacing, "real")
