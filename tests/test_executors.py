"""The dataset-wide functions give the same tables serially, on threads and on a Dask cluster.

Every function that walks a whole dataset takes ``executor=``, any
:class:`concurrent.futures.Executor`. Here each one runs three ways on a small
phantom dataset and the tables must be equal:

- serially (``executor=None``), the reference;
- on a ``ThreadPoolExecutor(2)``;
- on a ``dask.distributed`` ``LocalCluster`` of two worker *processes*, through
  ``Client.get_executor()``: a ``distributed.cfexecutor.ClientExecutor``, which
  implements the ``concurrent.futures.Executor`` interface (``map`` yields the
  results in input order, exceptions are re-raised). Worker processes are the
  real test: the task functions and their arguments have to pickle.

One cluster and one dataset serve the whole module (module-scoped fixtures).
"""
from __future__ import annotations

import inspect
import logging
import time
from concurrent.futures import Executor, ThreadPoolExecutor

import pandas as pd
import pytest

from vfs_utils import dicom, matching, morphometry
from vfs_utils.annotation import read_annotations
from vfs_utils.errors import DataNotFoundError
from vfs_utils.phantom import build_dataset

try:
    from vfs_utils import baseline
except ImportError:  # the baseline module is optional for these tests
    baseline = None

STUDIES = 2


def _accepts_executor(func) -> bool:
    return "executor" in inspect.signature(func).parameters


def _require_executor(func) -> None:
    if not _accepts_executor(func):
        pytest.skip(f"{func.__module__}.{func.__name__} does not accept executor= yet")


class CountingThreadPool(ThreadPoolExecutor):
    """A thread pool that counts the tasks submitted to it."""

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers)
        self.submitted = 0

    def submit(self, fn, /, *args, **kwargs):
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A two-study fully synthetic dataset with 128 x 128 images."""
    return build_dataset(tmp_path_factory.mktemp("executors") / "dataset", studies=STUDIES,
                         seed=1, image_size=128)


@pytest.fixture(scope="module")
def serial_scan(root):
    """The reference: ``scan`` run serially."""
    return dicom.scan(root)


@pytest.fixture(scope="module")
def serial_features(root):
    """The reference: ``dataset_features`` run serially (None when it does not exist yet)."""
    if baseline is None or not hasattr(baseline, "dataset_features"):
        return None
    return baseline.dataset_features(root / "annotation_v2", root=root)


@pytest.fixture(scope="module", autouse=True)
def _private_cache(private_cache_dir):
    """The series index of these tests lives in a temporary cache folder."""
    yield


@pytest.fixture(scope="module")
def client():
    """A Client on a LocalCluster of two single-threaded worker processes.

    The dashboard takes a free port (":0": no "port 8787 is in use" warning); distributed's
    log handlers are set up in conftest.py.
    """
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    client.get_task_stream()  # installs the scheduler's task-stream plugin: records from now on
    yield client
    client.close()
    cluster.close()


@pytest.fixture(params=["threads", pytest.param("dask", marks=pytest.mark.slow)])
def executor(request):
    """Each parallel executor in turn; ``executor.ran()`` says whether it ran any task."""
    if request.param == "threads":
        with CountingThreadPool(2) as pool:
            pool.ran = lambda: pool.submitted > 0
            yield pool
        return
    client = request.getfixturevalue("client")
    ex = client.get_executor()
    start = time.time()
    ex.ran = lambda: bool(client.get_task_stream(start=start))
    yield ex


@pytest.mark.slow
def test_client_executor_is_a_concurrent_futures_executor(client):
    ex = client.get_executor()
    assert isinstance(ex, Executor)
    # map keeps the input order and takes several iterables, like concurrent.futures.
    assert list(ex.map(pow, [2, 3, 4], [3, 2, 1])) == [8, 9, 4]


def test_scan(root, serial_scan, executor):
    _require_executor(dicom.scan)
    serial = serial_scan
    folders = sorted(p.name for p in (root / "dicom").iterdir())
    assert len(folders) == STUDIES
    assert sorted(serial["folder"].unique()) == folders
    parallel = dicom.scan(root, executor=executor)
    assert executor.ran()
    pd.testing.assert_frame_equal(parallel, serial)
    assert parallel.attrs == serial.attrs


def test_inventory(root, executor):
    _require_executor(matching.inventory)
    serial = matching.inventory(root)
    assert len(serial) == STUDIES
    assert serial["series_found"].all()
    parallel = matching.inventory(root, executor=executor)
    assert executor.ran()
    pd.testing.assert_frame_equal(parallel, serial)


def test_inventory_reports_a_broken_file_the_same_way(root, tmp_path, executor):
    _require_executor(matching.inventory)
    annotations = tmp_path / "annotation"
    annotations.mkdir()
    for f in sorted((root / "annotation").glob("*.json")):
        (annotations / f.name).write_bytes(f.read_bytes())
    (annotations / "AAA_BROKEN.json").write_text("{ not json", encoding="utf-8")
    serial = matching.inventory(root, annotations)
    assert serial.loc[serial["file"] == "AAA_BROKEN.json", "problem"].iloc[0] != ""
    pd.testing.assert_frame_equal(matching.inventory(root, annotations, executor=executor),
                                  serial)


def test_morphometry_table(root, executor):
    _require_executor(morphometry.morphometry_table)
    frame = read_annotations(root / "annotation")
    serial = morphometry.morphometry_table(frame, root=root)
    assert len(serial) == len(frame)
    parallel = morphometry.morphometry_table(frame, root=root, executor=executor)
    assert executor.ran()
    pd.testing.assert_frame_equal(parallel, serial)


def test_morphometry_table_missing_study_raises_through_the_executor(root, executor):
    _require_executor(morphometry.morphometry_table)
    frame = read_annotations(root / "annotation")
    frame["folder"] = "NOT_DOWNLOADED"
    with pytest.raises(DataNotFoundError, match="NOT_DOWNLOADED"):
        morphometry.morphometry_table(frame, root=root)
    with pytest.raises(DataNotFoundError, match="NOT_DOWNLOADED"):
        morphometry.morphometry_table(frame, root=root, executor=executor)


def test_dataset_features(root, serial_features, executor):
    if serial_features is None:
        pytest.skip("vfs_utils.baseline.dataset_features does not exist yet")
    _require_executor(baseline.dataset_features)
    serial = serial_features
    assert set(serial["folder"]) == {p.name for p in (root / "dicom").iterdir()}
    parallel = baseline.dataset_features(root / "annotation_v2", root=root, executor=executor)
    assert executor.ran()
    pd.testing.assert_frame_equal(parallel, serial)
