"""Bad data settings each end as one line (exit 2 from the CLI), and VFS_OFFLINE means "no
network": with an annotation copy at hand the lessons stay in the phantom mode.

The demo build is replaced by a recorder: what is tested is the choice of the data and
the refusal of a bad setting, not the rendering.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vfs_utils import _env, data, tutorial
from vfs_utils.cli import main
from vfs_utils.errors import DataNotFoundError, UsageError

ENV = (data.ENV_DATA_ROOT, data.ENV_ANNOTATION_DIR, data.ENV_ANNOTATION_DIR_V2,
       data.ENV_OFFLINE, data.ENV_SHARED_DIR, "VFS_NO_INDEX", "VFS_STATIC_FIGURES")


@pytest.fixture
def env(tmp_path, monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(data.ENV_CACHE_DIR, str(tmp_path / "cache"))
    builds = []

    def fake_build(out, **kwargs):
        builds.append(Path(out))
        (Path(out) / "dicom" / "STUDY").mkdir(parents=True, exist_ok=True)
        return Path(out)

    monkeypatch.setattr(tutorial, "build_dataset", fake_build)
    return builds


def _copy(src: Path, dst: Path, n: int = 3) -> Path:
    dst.mkdir(parents=True)
    for f in sorted(src.glob("*.json"))[:n]:
        shutil.copyfile(f, dst / f.name)
    return dst


def _one_line_exit_2(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


# ---------------------------------------------------------------------- one on/off parser
@pytest.mark.parametrize("value, on", [
    ("1", True), ("true", True), ("YES", True), (" on ", True),
    ("", False), ("0", False), ("false", False), ("No", False), ("off", False), ("OFF", False),
])
def test_one_meaning_of_on(monkeypatch, value, on):
    monkeypatch.setenv("VFS_SOME_FLAG", value)
    assert _env.env_flag("VFS_SOME_FLAG") is on


def test_unset_flag_is_off(monkeypatch):
    monkeypatch.delenv("VFS_SOME_FLAG", raising=False)
    assert _env.env_flag("VFS_SOME_FLAG") is False


def test_every_flag_of_the_package_reads_the_same_values(env, monkeypatch):
    from vfs_utils.dicom.index import ENV_NO_INDEX, index_enabled

    monkeypatch.setenv(data.ENV_OFFLINE, "off")
    monkeypatch.setenv(ENV_NO_INDEX, "off")
    assert data.offline() is False            # "off" is not offline
    assert index_enabled() is True            # and does not switch the index off
    monkeypatch.setenv(data.ENV_OFFLINE, "on")
    monkeypatch.setenv(ENV_NO_INDEX, "on")
    assert data.offline() is True and index_enabled() is False


def test_a_flag_that_is_neither_on_nor_off_is_refused(env, monkeypatch, capsys):
    monkeypatch.setenv(data.ENV_OFFLINE, "maybe")
    with pytest.raises(UsageError, match="VFS_OFFLINE='maybe': not an on/off value"):
        data.offline()
    _one_line_exit_2(capsys, ["prepare"], "vfs prepare: UsageError: VFS_OFFLINE='maybe'",
                     "Set it to 1 (on) or 0 (off)")
    assert env == []


# ---------------------------------------------------------------------- 3: offline + a copy
def test_offline_with_an_annotation_copy_prepares_the_phantom_mode(env, monkeypatch, capsys,
                                                                   v1_dir, v2_dir, tmp_path):
    monkeypatch.setenv(data.ENV_ANNOTATION_DIR, str(v1_dir))
    monkeypatch.setenv(data.ENV_ANNOTATION_DIR_V2, str(v2_dir))
    monkeypatch.setenv(data.ENV_OFFLINE, "1")
    assert main(["prepare"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Data mode: phantom - the real expert annotations")
    assert "VFS_OFFLINE is set: nothing downloaded" in out
    assert "no annotation copy" not in out
    assert env == [tmp_path / "cache" / "demo" / "phantom"]


# ---------------------------------------------------------------------- 4: swapped folders
def test_swapped_annotation_folders_are_refused_in_one_line(env, monkeypatch, capsys, v1_dir,
                                                            v2_dir):
    monkeypatch.setenv(data.ENV_ANNOTATION_DIR, str(v2_dir))        # swapped
    monkeypatch.setenv(data.ENV_ANNOTATION_DIR_V2, str(v1_dir))
    with pytest.raises(UsageError) as info:
        tutorial.setup()
    assert str(info.value) == (
        f"VFS_ANNOTATION_DIR={v2_dir}: holds v2 annotation files (neuro-ml/anchor-free-genant), "
        f"not v1 (neuro-ml/vertebral-fractures-severity). Point VFS_ANNOTATION_DIR at the v1 "
        f"folder and VFS_ANNOTATION_DIR_V2 at the v2 one (are the two swapped?).")
    _one_line_exit_2(capsys, ["prepare"], "vfs prepare: UsageError:", "are the two swapped?")
    assert env == []                                             # nothing built


def test_one_folder_given_for_both_versions_is_refused(env, monkeypatch, v1_dir):
    monkeypatch.setenv(data.ENV_ANNOTATION_DIR, str(v1_dir))
    monkeypatch.setenv(data.ENV_ANNOTATION_DIR_V2, str(v1_dir))
    assert data.annotation_dir("v1") == v1_dir
    with pytest.raises(UsageError, match=r"VFS_ANNOTATION_DIR_V2=.*holds v1 annotation files"):
        data.annotation_dir("v2")


def test_the_schema_of_a_folder_is_read_from_its_files(v1_dir, v2_dir, tmp_path):
    assert data.folder_schema(v1_dir) == "v1"
    assert data.folder_schema(v2_dir) == "v2"
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.json").write_text("{}")
    assert data.folder_schema(junk) is None          # unreadable files: no verdict, no error


# ---------------------------------------------------------------------- 5: empty data root
def test_a_data_root_without_studies_is_refused_in_one_line(env, monkeypatch, capsys, tmp_path):
    root = tmp_path / "ctlungca"
    (root / "dicom").mkdir(parents=True)
    (root / "dicom" / ".DS_Store").write_text("")               # not a study folder
    monkeypatch.setenv(data.ENV_DATA_ROOT, str(root))
    with pytest.raises(DataNotFoundError, match="holds no study folder"):
        tutorial.setup()
    _one_line_exit_2(capsys, ["prepare"],
                     f"vfs prepare: DataNotFoundError: VFS_DATA_ROOT={root}: {root / 'dicom'} "
                     "holds no study folder", "or unset it to use the phantom")
    assert env == []
