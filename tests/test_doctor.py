"""`vfs doctor`: a good setup (exit 0, every line ok) and three broken ones (exit 2, the
failing line and its fix): no annotation copy, no disk, a missing package. It writes nothing."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from vfs_utils import doctor
from vfs_utils.cli import main

REPO = Path(__file__).resolve().parents[1]
DiskUsage = namedtuple("DiskUsage", "total used free")
GB = 1024**3
ENV = ("VFS_DATA_ROOT", "VFS_ANNOTATION_DIR", "VFS_ANNOTATION_DIR_V2", "VFS_SHARED_DIR",
       "VFS_OFFLINE", "VFS_CACHE_DIR")


@pytest.fixture
def env(monkeypatch, tmp_path, tiny_dataset):
    """A fresh cache, the tiny dataset's annotation folders as the copies at hand, 50 GB of
    disk and 8 GB of memory: a good setup whose demo data is not built yet."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VFS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VFS_OFFLINE", "1")
    monkeypatch.setenv("VFS_ANNOTATION_DIR", str(tiny_dataset / "annotation"))
    monkeypatch.setenv("VFS_ANNOTATION_DIR_V2", str(tiny_dataset / "annotation_v2"))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: DiskUsage(100 * GB, 50 * GB, 50 * GB))
    monkeypatch.setattr(doctor, "_memory_gb", lambda: 8.0)
    return tmp_path


def _run(capsys) -> tuple[int, list[str], str]:
    status = main(["doctor"])
    out, err = capsys.readouterr()
    return status, out.splitlines(), err


def _line(lines: list[str], name: str) -> str:
    found = [i for i, line in enumerate(lines) if line.split(":", 1)[0].split()[-1] == name]
    assert len(found) == 1, (name, lines)
    return lines[found[0]]


def _fix(lines: list[str], name: str) -> str:
    i = lines.index(_line(lines, name))
    assert lines[i + 1].strip().startswith("fix: "), lines
    return lines[i + 1]


def test_good_setup_says_every_check_ok_and_writes_nothing(env, capsys):
    status, lines, err = _run(capsys)
    assert status == 0, (lines, err)
    names = [line.split(":", 1)[0].split()[-1] for line in lines[:-1]]
    assert names == ["python", "packages", "mode", "data", "disk", "memory", "model"], lines
    assert all(line.startswith("ok ") for line in lines[:-1]), lines
    assert lines[-1] == "vfs doctor: ready for the lessons"
    assert "phantom: the real annotations from VFS_ANNOTATION_DIR, VFS_ANNOTATION_DIR_V2" in \
        _line(lines, "mode")
    assert str(env / "cache" / "demo" / "phantom") in _line(lines, "data")
    assert "not built yet" in _line(lines, "data")
    # 4 studies x 0.24 GB + 0.5 GB spare, and the 50 GB the patched disk has
    assert "50.0 GB free" in _line(lines, "disk") and "need 1.5 GB" in _line(lines, "disk")
    assert "8.0 GB available" in _line(lines, "memory")
    assert "loads and runs (onnxruntime" in _line(lines, "model")
    assert len(lines) <= 10
    assert not (env / "cache").exists()   # reads only


def test_no_annotation_copy_fails_with_the_fix(env, capsys, monkeypatch):
    monkeypatch.delenv("VFS_ANNOTATION_DIR")
    monkeypatch.delenv("VFS_ANNOTATION_DIR_V2")
    status, lines, err = _run(capsys)
    assert status == 2
    assert err.strip() == "vfs doctor: 1 problem; each FAIL line has its fix"
    mode = _line(lines, "mode")
    assert mode.startswith("FAIL") and "synthetic: no annotation copy at hand" in mode
    assert "VFS_SHARED_DIR" in _fix(lines, "mode") and "vfs fetch" in _fix(lines, "mode")
    assert str(env / "cache" / "demo" / "synthetic") in _line(lines, "data")


def test_no_disk_fails_with_the_fix(env, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: DiskUsage(100 * GB, 100 * GB, GB // 5))
    status, lines, _ = _run(capsys)
    assert status == 2
    disk = _line(lines, "disk")
    assert disk.startswith("FAIL") and "0.2 GB free" in disk
    assert "free 1.3 GB there" in _fix(lines, "disk") and "VFS_CACHE_DIR" in _fix(lines, "disk")
    assert [line.split()[0] for line in lines if line.startswith("FAIL")] == ["FAIL"]


def test_a_shared_build_needs_no_disk_for_the_demo(env, capsys, monkeypatch, tiny_dataset):
    # a shared folder whose demo build matches what the lesson asks for: nothing to write
    from vfs_utils.phantom import build_dataset

    shared = env / "shared"
    built = build_dataset(shared / "demo" / "phantom", studies=1, seed=0,
                          annotation_dir=tiny_dataset / "annotation_v2", image_size=192)
    assert (built / "manifest.json").is_file()
    monkeypatch.setenv("VFS_SHARED_DIR", str(shared))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: DiskUsage(GB, GB, GB))
    status, lines, _ = _run(capsys)
    assert status == 0, lines
    assert _line(lines, "data") == f"ok    data: {built} (shared, read-only: nothing to write)"
    assert "need 0.5 GB" in _line(lines, "disk")


def test_a_built_demo_is_current_or_outdated_as_its_manifest_says(env, capsys, tiny_dataset):
    from vfs_utils.phantom import build_dataset

    demo = env / "cache" / "demo" / "phantom"
    build_dataset(demo, studies=1, seed=0, annotation_dir=tiny_dataset / "annotation_v2",
                  image_size=192)
    status, lines, _ = _run(capsys)
    assert status == 0
    assert _line(lines, "data") == f"ok    data: {demo} (built, current)"
    assert "need 0.5 GB" in _line(lines, "disk")
    # built with other parameters: the lesson would write it again
    build_dataset(demo, studies=1, seed=1, annotation_dir=tiny_dataset / "annotation_v2",
                  image_size=192, replace_stale=True)
    status, lines, _ = _run(capsys)
    assert f"{demo}: outdated; the first lesson" in _line(lines, "data")
    assert "need 1.5 GB" in _line(lines, "disk")


def test_a_missing_package_fails_with_the_fix(env, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pydicom", None)    # what an install without it sees
    status, lines, _ = _run(capsys)
    assert status == 2
    packages = _line(lines, "packages")
    assert packages == "FAIL  packages: not importable: pydicom"
    assert 'pip install "vfs-tutorials[notebooks]"' in _fix(lines, "packages")
    assert _line(lines, "mode").startswith("ok")


def test_the_doctor_runs_where_the_package_cannot_import_pydicom(env, tmp_path):
    # a fresh interpreter: nothing imported yet, so every check meets the missing package
    code = ("import sys; sys.modules['pydicom'] = None\n"
            "from vfs_utils.cli import main; raise SystemExit(main(['doctor']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "FAIL  packages: not importable: pydicom" in done.stdout.splitlines()


# --- the classroom recipe (docs/book/classroom.md), run as it is written ---------------

def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("VFS_") and k != "XDG_CACHE_HOME"}
    env["PYTHONPATH"] = str(REPO)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**env, **extra}


@pytest.fixture(scope="module")
def classroom(tmp_path_factory, v1_dir, v2_dir) -> Path:
    """The instructor's one command: `sh docs/classroom.sh FOLDER` with local annotation copies."""
    folder = tmp_path_factory.mktemp("classroom") / "vfs-course"
    env = _clean_env(VFS_ANNOTATION_DIR=str(v1_dir), VFS_ANNOTATION_DIR_V2=str(v2_dir))
    done = subprocess.run(["sh", str(REPO / "docs" / "classroom.sh"), str(folder)], env=env,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Students: export VFS_SHARED_DIR={folder}" in done.stdout
    yield folder
    subprocess.run(["chmod", "-R", "u+w", str(folder)], check=False)


def _student(home: Path, folder: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, env=_clean_env(HOME=str(home), VFS_SHARED_DIR=str(folder)))


def _state(folder: Path) -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_mode)
            for p in [folder, *folder.rglob("*")]}


@pytest.mark.slow
def test_classroom_folder_holds_both_sets_and_the_demo_read_only(classroom, v1_dir, v2_dir):
    for version, copy in (("v1", v1_dir), ("v2", v2_dir)):
        shared = classroom / "annotations" / version
        assert sorted(p.name for p in shared.glob("*.json")) == sorted(
            p.name for p in copy.glob("*.json"))
        for f in copy.glob("*.json"):
            assert (shared / f.name).read_bytes() == f.read_bytes()
    assert (classroom / "demo" / "phantom" / "manifest.json").is_file()
    # the series index of every demo study is built there, for students to read
    studies = list((classroom / "demo" / "phantom" / "dicom").iterdir())
    assert len(list((classroom / "dicom-index").glob("*.json"))) == len(studies) > 0
    assert all(not p.stat().st_mode & 0o222 for p in [classroom, *classroom.rglob("*")])


@pytest.mark.slow
def test_a_student_sets_one_variable_and_gets_the_phantom_writing_nothing(classroom, tmp_path):
    before = _state(classroom)
    home = tmp_path / "home"
    home.mkdir()
    done = _student(home, classroom, "from vfs_utils import tutorial\n"
                    "s = tutorial.setup()\n"
                    "print(s.mode, s.root, s.annotation_dir, s.annotation_dir_v2, sep='|')")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().split("|") == [
        "phantom", str(classroom / "demo" / "phantom"), str(classroom / "annotations" / "v1"),
        str(classroom / "annotations" / "v2")]
    assert "Writing" not in done.stderr and "falling back" not in done.stderr
    assert _state(classroom) == before
    assert [p for p in home.rglob("*") if p.is_file()] == []     # nothing written at all
    doctor = _student(home, classroom, "from vfs_utils.cli import main; main(['doctor'])")
    assert (f"ok    data: {classroom / 'demo' / 'phantom'} (shared, read-only: nothing to "
            "write)") in doctor.stdout.splitlines()


@pytest.mark.slow
def test_a_student_reading_the_shared_images_writes_nothing(classroom, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    done = _student(home, classroom, "from vfs_utils import dicom, tutorial\n"
                    "s = tutorial.setup()\n"
                    "print(len(dicom.scan(s.study_dir(s.studies[0]))))")
    assert done.returncode == 0, done.stderr
    assert [p for p in home.rglob("*") if p.is_file()] == []
