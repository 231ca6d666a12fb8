"""Tests of vfs_utils.baseline.studies: which studies, their kinds and labels."""
from __future__ import annotations

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
    assert [s.kind for s in got] == ["image", "sampled", "sampled"]
    assert len({s.folder for s in got}) == 3
    with pytest.raises(DataNotFoundError):
        baseline.load_studies(tmp_path / "empty-folder-that-is-missing")
