"""How tutorial.setup() chooses its data mode: real, phantom, synthetic, VFS_OFFLINE=1,
forced modes and their errors. The demo build is replaced by a recorder (or by the shared
tiny dataset) except where the build itself is what is tested; nothing is downloaded."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vfs_utils import data, tutorial
from vfs_utils.errors import DataNotFoundError

ENV = (data.ENV_DATA_ROOT, data.ENV_ANNOTATION_DIR, data.ENV_ANNOTATION_DIR_V2,
       data.ENV_OFFLINE, data.ENV_CACHE_DIR)


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A clean environment: no data root, no annotations, a cache of our own."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(data.ENV_CACHE_DIR, str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture
def builds(monkeypatch):
    """Record the demo builds setup() asks for; each makes a root with one study folder."""
    calls = []

    def fake_build(out, *, only=None, progress=None, **kwargs):
        assert only is None and callable(progress)   # every study, with a progress line
        calls.append((Path(out), kwargs))
        (Path(out) / "dicom" / "STUDY").mkdir(parents=True, exist_ok=True)
        return Path(out)

    monkeypatch.setattr(tutorial, "build_dataset", fake_build)
    return calls


@pytest.fixture
def no_download(monkeypatch):
    """data.annotation_dir finds nothing and may not download."""
    def nothing(version="v1", *args, **kwargs):
        raise DataNotFoundError(f"no {version} annotations here (test)")

    monkeypatch.setattr(data, "annotation_dir", nothing)


def _annotations(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    folders = []
    for name, var in (("v1", data.ENV_ANNOTATION_DIR), ("v2", data.ENV_ANNOTATION_DIR_V2)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "STUDY.json").write_text(json.dumps({}))
        monkeypatch.setenv(var, str(folder))
        folders.append(folder)
    return folders[0], folders[1]


def test_real_mode_when_the_data_root_is_set(env, builds, monkeypatch):
    v1, v2 = _annotations(env, monkeypatch)
    root = env / "ctlungca"
    (root / "dicom" / "RLAD42").mkdir(parents=True)
    monkeypatch.setenv(data.ENV_DATA_ROOT, str(root))
    source = tutorial.setup()
    assert (source.mode, source.root, source.annotation_dir, source.annotation_dir_v2) == (
        "real", root, v1, v2)
    assert builds == []                              # nothing is rendered
    assert source.studies == ["RLAD42"]
    assert source.study_dir("RLAD42") == root / "dicom" / "RLAD42"
    with pytest.raises(DataNotFoundError, match="MISSING"):
        source.study_dir("MISSING")
    assert str(source).startswith("Data mode: real - ")


def test_a_data_root_without_dicom_is_an_error_naming_the_variable(env, builds, monkeypatch):
    _annotations(env, monkeypatch)
    monkeypatch.setenv(data.ENV_DATA_ROOT, str(env))
    with pytest.raises(DataNotFoundError, match=data.ENV_DATA_ROOT):
        tutorial.setup()
    assert builds == []


def test_phantom_mode_is_the_default_with_annotations(env, builds, monkeypatch):
    v1, v2 = _annotations(env, monkeypatch)
    source = tutorial.setup()
    assert (source.mode, source.annotation_dir, source.annotation_dir_v2) == ("phantom", v1, v2)
    assert builds == [(env / "cache" / "demo" / "phantom",
                       {"studies": tutorial.PHANTOM_STUDIES, "annotation_dir": v2,
                        "replace_stale": True})]
    assert source.root == builds[0][0]
    assert str(source).startswith("Data mode: phantom - ")


def test_offline_with_an_annotation_copy_is_the_phantom_mode_and_says_so(env, builds,
                                                                        monkeypatch):
    v1, v2 = _annotations(env, monkeypatch)
    monkeypatch.setenv(data.ENV_OFFLINE, "1")
    source = tutorial.setup()
    out = env / "cache" / "demo" / "phantom"
    assert builds == [(out, {"studies": tutorial.PHANTOM_STUDIES, "annotation_dir": v2,
                             "replace_stale": True})]
    assert (source.mode, source.annotation_dir, source.annotation_dir_v2) == ("phantom", v1, v2)
    assert "VFS_OFFLINE is set" in str(source).splitlines()[0]


def test_offline_without_an_annotation_copy_is_the_synthetic_mode(env, builds, monkeypatch):
    monkeypatch.setenv(data.ENV_OFFLINE, "1")
    source = tutorial.setup()
    out = env / "cache" / "demo" / "synthetic"
    assert builds == [(out, {"seed": 0, "replace_stale": True})]
    assert (source.mode, source.root, source.annotation_dir, source.annotation_dir_v2) == (
        "synthetic", out, out / "annotation", out / "annotation_v2")
    assert str(source).splitlines()[0].endswith(
        "(no annotation copy at hand, and VFS_OFFLINE is set).")


def test_no_annotations_online_falls_back_to_synthetic_with_a_warning(env, builds, no_download):
    with pytest.warns(UserWarning, match="falling back to the fully synthetic dataset"):
        source = tutorial.setup()
    assert source.mode == "synthetic" and len(builds) == 1


def test_forced_modes(env, builds, monkeypatch):
    _annotations(env, monkeypatch)
    assert tutorial.setup("synthetic").mode == "synthetic"
    monkeypatch.setenv(data.ENV_OFFLINE, "1")      # a forced mode wins over VFS_OFFLINE
    assert tutorial.setup("phantom").mode == "phantom"
    assert [kw.get("annotation_dir") is not None for _, kw in builds] == [False, True]


def test_forced_modes_that_cannot_be_had_are_errors(env, builds, no_download):
    with pytest.raises(DataNotFoundError, match=f"mode 'real' needs {data.ENV_DATA_ROOT}"):
        tutorial.setup("real")
    with pytest.raises(DataNotFoundError, match="mode 'phantom' needs the real annotations"), \
            pytest.warns(UserWarning, match="falling back to the fully synthetic dataset"):
        tutorial.setup("phantom")
    with pytest.raises(ValueError, match="unknown data mode 'images'"):
        tutorial.setup("images")
    assert builds == []


def test_str_counts_the_study_folders_and_annotation_files(env, tiny_dataset, monkeypatch):
    monkeypatch.setattr(tutorial, "build_dataset", lambda out, **kwargs: tiny_dataset)
    monkeypatch.setenv(data.ENV_OFFLINE, "1")
    source = tutorial.setup()
    assert source.root == tiny_dataset
    folder = source.studies[0]
    assert source.study_dir(folder).is_dir()
    assert str(source).splitlines()[1] == ("1 study folders with images; annotation files: "
                                           "1 (v1), 1 (v2).")


def test_a_real_small_synthetic_build_is_reused(env, monkeypatch):
    real = tutorial.build_dataset
    monkeypatch.setattr(tutorial, "build_dataset",
                        lambda out, **kw: real(out, studies=1, image_size=128, **kw))
    monkeypatch.setenv(data.ENV_OFFLINE, "1")
    first = tutorial.setup()
    stamp = (first.root / "manifest.json").stat().st_mtime_ns
    second = tutorial.setup()
    assert second.root == first.root and len(second.studies) == 1
    assert (second.root / "manifest.json").stat().st_mtime_ns == stamp   # not rebuilt
