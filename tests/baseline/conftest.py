"""Fixtures of the baseline tests: sampled phantom spines with fractures, their features."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vfs_utils import baseline, phantom
from vfs_utils.annotation import Annotation


def fractured_studies(n: int, seed: int = 11) -> list[baseline.Study]:
    """Sampled phantom spines, every one with two moderate-to-severe fractures."""
    studies = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        kinds = [("wedge", 3), ("biconcave", 2)] if i % 2 else [("crush", 3), ("wedge", 2)]
        truth = phantom.sample_spine(rng, n_vertebrae=12, fractures=kinds,
                                     folder=f"TEST{i:02d}", series_uid=f"1.2.3.{seed}.{i}")
        readings = phantom.sample_readings(truth, np.random.default_rng([seed, i, 1]),
                                           n_experts=2, noise_mm=0.3, p_missing_end=0.0)
        ann = Annotation(truth.folder, truth.series_uid, "v2", readings)
        studies.append(baseline.Study(ann, tuple(truth.geometry.spacing), "synthetic", None, truth,
                                      seed))
    return studies


@pytest.fixture(scope="module")
def studies() -> list[baseline.Study]:
    return fractured_studies(8)


@pytest.fixture(scope="module")
def features(studies) -> pd.DataFrame:
    return baseline.dataset_features(studies)
