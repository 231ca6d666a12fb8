"""The demo data a newcomer gets: one dataset per parameter set, the layout's annotation/
(v1) and annotation_v2/ (v2), a progress line while it is written, damage noticed and
repaired, a deleted demo folder explained; and the CLI's help and output polish."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from vfs_utils import data, phantom, tutorial
from vfs_utils.annotation import load_annotation
from vfs_utils.cli import build_parser, main
from vfs_utils.errors import AnnotationError, DataNotFoundError
from vfs_utils.phantom import dataset

SMALL = 96


@pytest.fixture
def env(tmp_path, monkeypatch):
    for name in (data.ENV_DATA_ROOT, data.ENV_ANNOTATION_DIR, data.ENV_ANNOTATION_DIR_V2,
                 data.ENV_SHARED_DIR):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(data.ENV_OFFLINE, "1")             # no copy, no network: synthetic
    monkeypatch.setenv(data.ENV_CACHE_DIR, str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture
def small_builds(monkeypatch):
    """setup() builds a one-study, 96-pixel synthetic dataset instead of the full one."""
    real = tutorial.build_dataset
    monkeypatch.setattr(tutorial, "build_dataset",
                        lambda out, **kw: real(out, studies=1, image_size=SMALL, **kw))


def _files(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.is_file())


# ---------------------------------------------------------------------- layout: v1 in annotation/
def _fake_write_study(root, truth, *, rng, patient_id, annotations=True):
    series = Path(root) / "dicom" / truth.folder / "series-001"
    series.mkdir(parents=True)
    (series / "0001.dcm").write_bytes(b"x")
    return {"folder": truth.folder}


@pytest.mark.parametrize("with_v1", [True, False])
def test_phantom_build_from_v2_files_keeps_v1_in_annotation(tmp_path, monkeypatch, v1_dir,
                                                            v2_dir, shortest_files, with_v1):
    monkeypatch.setattr(dataset, "write_study", _fake_write_study)
    given = tmp_path / "v2"
    given.mkdir()
    for f in shortest_files(v2_dir, 2):
        shutil.copyfile(f, given / f.name)
    if with_v1:
        monkeypatch.setenv(data.ENV_ANNOTATION_DIR, str(v1_dir))
    else:
        monkeypatch.setenv(data.ENV_CACHE_DIR, str(tmp_path / "empty-cache"))
        monkeypatch.delenv(data.ENV_ANNOTATION_DIR, raising=False)
        monkeypatch.delenv(data.ENV_SHARED_DIR, raising=False)
        monkeypatch.setenv(data.ENV_OFFLINE, "1")
    root = phantom.build_dataset(tmp_path / "ds", annotation_dir=given)
    names = sorted(p.name for p in given.glob("*.json"))
    assert sorted(p.name for p in (root / "annotation_v2").glob("*.json")) == names
    for name in names:
        assert (root / "annotation_v2" / name).read_bytes() == (given / name).read_bytes()
    if with_v1:
        assert sorted(p.name for p in (root / "annotation").glob("*.json")) == names
        for name in names:
            assert (root / "annotation" / name).read_bytes() == (v1_dir / name).read_bytes()
            assert load_annotation(root / "annotation" / name).version == "v1"
    else:                                  # no v1 copy at hand: no v2 files posing as v1
        assert not (root / "annotation").exists()
    manifest = json.loads((root / "manifest.json").read_text())
    assert [rec["files"] for rec in manifest["studies"]] == [{"series-001": 1}] * 2


# ---------------------------------------------------------------------- one dataset per parameters
def test_demo_data_with_the_lessons_parameters_writes_the_lessons_folder(env, monkeypatch,
                                                                         capsys):
    calls = []
    monkeypatch.setattr(phantom, "build_dataset", lambda out, **kw: calls.append((out, kw)) or out)
    assert main(["demo-data"]) == 0
    assert main(["demo-data", "--studies", "4", "--seed", "0"]) == 0
    lessons = env / "cache" / "demo" / "synthetic"
    assert [c[0] for c in calls] == [lessons, lessons]
    assert all(c[1]["replace_stale"] for c in calls)
    assert main(["demo-data", "--seed", "1"]) == 0           # other parameters: their own
    assert calls[-1][0] is None and calls[-1][1]["replace_stale"] is False
    assert all(callable(c[1]["progress"]) for c in calls)
    calls[0][1]["progress"](0, 4, "A", lessons)          # what the build calls first
    err = capsys.readouterr().err
    assert f"writing 4 demo studies (1.0 GB) into {lessons}" in err


# ---------------------------------------------------------------------- progress, damage, deletion
def test_setup_says_what_it_writes_once(env, small_builds, capsys):
    first = tutorial.setup()
    err = capsys.readouterr().err
    final = err.rstrip().split("\r")[-1]               # the bar's last state
    assert final.startswith(f"writing 1 demo study (0.2 GB) into "
                            f"{env / 'cache' / 'demo' / 'synthetic'}: 100%")
    assert " 1/1 " in final
    assert tutorial.setup().root == first.root
    assert capsys.readouterr().err == ""                   # built already: silent


def test_missing_slices_are_noticed_and_the_demo_rebuilt(env, small_builds, capsys):
    source = tutorial.setup()
    folder = source.studies[0]
    series = source.root / "dicom" / folder / "series-001"
    n = _files(series)
    assert n > 20 and tutorial.damage(source.root) == []
    for f in sorted(series.iterdir())[:20]:
        f.unlink()
    assert tutorial.damage(source.root) == [f"{folder}/series-001: {n - 20} of {n} files"]
    with pytest.warns(UserWarning, match=re.escape(
            f"lost files since it was written ({folder}/series-001: {n - 20} of {n} files); "
            "writing it again")):
        again = tutorial.setup()
    assert again.root == source.root and _files(series) == n
    assert tutorial.damage(again.root) == []


def test_vfs_prepare_notices_a_damaged_demo(env, small_builds, capsys):
    source = tutorial.setup()
    study = source.root / "dicom" / source.studies[0]
    shutil.rmtree(study / "series-002")
    n = json.loads((source.root / "manifest.json").read_text())["studies"][0]["files"]
    capsys.readouterr()
    assert main(["prepare"]) == 0
    text = capsys.readouterr().err
    err = text.splitlines()                          # the CLI prints a warning as one line
    assert err[0] == (f"vfs prepare: warning: {source.root}: the demo dataset lost files since "
                      f"it was written ({study.name}/series-002: 0 of {n['series-002']} files); "
                      "writing it again.")
    assert "writing 1 demo study (0.2 GB)" in text
    assert (study / "series-002").is_dir() and tutorial.damage(source.root) == []
    assert _files(study / "series-002") == n["series-002"]


def test_a_deleted_demo_folder_says_re_run_the_setup_cell(env, small_builds):
    from vfs_utils._fs import dicom_root

    source = tutorial.setup()
    folder = source.studies[0]
    shutil.rmtree(source.root)
    for call in (lambda: source.studies, lambda: source.study_dir(folder),
                 lambda: dicom_root(source.root)):
        with pytest.raises(DataNotFoundError, match="Re-run the lesson's setup cell") as info:
            call()
        assert "VFS_DATA_ROOT" not in str(info.value)
    assert tutorial.setup().studies == [folder]              # which rebuilds it


# ---------------------------------------------------------------------- CLI polish
def test_program_version(capsys):
    from vfs_utils import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"vfs (vfs-tutorials) {__version__}\n"


def test_fetch_names_the_annotation_set_not_a_version(monkeypatch, capsys, tmp_path):
    calls = []
    monkeypatch.setattr(data, "fetch", lambda which: calls.append(which) or {which: tmp_path})
    assert main(["fetch", "--schema", "v2"]) == 0
    assert calls == ["v2"]
    with pytest.raises(SystemExit) as info:                  # the old spelling is gone
        main(["fetch", "--version", "v1"])
    assert info.value.code == 2 and calls == ["v2"]
    help_text = build_parser()._subparsers._group_actions[0].choices["fetch"].format_help()
    assert "--schema" in help_text and "--version" not in help_text


def test_help_lists_every_command_and_every_option_has_help():
    parser = build_parser()
    top = parser.format_help()
    commands = parser._subparsers._group_actions[0].choices
    assert "``" not in top
    for name, sub in commands.items():
        assert name in top
        text = sub.format_help()
        assert "``" not in text, name
        if name == "predict":        # owned by the keypoint lesson's work
            continue
        for action in sub._actions:
            if action.help is None:
                pytest.fail(f"vfs {name} {'/'.join(action.option_strings) or action.dest}: "
                            "no help")


def test_scan_table_fits_100_columns(tiny_dataset, capsys):
    import io

    import pandas as pd

    assert main(["scan", str(tiny_dataset), "--format", "csv"]) == 0
    full = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert {"series_uid", "study_folder", "orientation"} <= set(full.columns)
    assert main(["scan", str(tiny_dataset)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 2 + len(full) and max(map(len, lines)) <= 100
    assert lines[0].split() == ["#", "slices", "description", "type", "spacing_mm", "size"]
    assert lines[1] == f"{full['folder'][0]}/"          # the whole name, once per study
    assert [line.split()[:2] for line in lines[2:]] == [
        [str(n), str(k)] for n, k in zip(full["series_number"], full["n_slices"])]
    assert "--format csv" in captured.err


@pytest.mark.parametrize("doc", [{"name": "vfs", "version": 1}, [1, 2, 3]])
def test_a_non_annotation_file_is_not_told_to_re_download(tmp_path, doc):
    path = tmp_path / "package.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(AnnotationError) as info:
        load_annotation(path)
    message = str(info.value)
    assert message.startswith(f"{path}: (top level): not an annotation file")
    assert "vfs fetch" not in message and "move this file out" in message


def test_a_remembered_failure_is_not_cut_mid_word(env):
    words = [f"word{i}" for i in range(300)]
    data._remember_failure("v1", " ".join(words))
    data._failed.clear()                                    # as in the next process
    message = data._remembered_failure("v1")
    reason = message.split(" (remembered ")[0]
    assert reason.endswith("...")
    assert reason[:-3].split() == words[:len(reason[:-3].split())]


# ---------------------------------------------------------------------- on demand
@pytest.fixture
def three_small(monkeypatch):
    """setup() builds a three-study, 96-pixel synthetic dataset instead of the full one."""
    real = tutorial.build_dataset
    monkeypatch.setattr(tutorial, "build_dataset",
                        lambda out, **kw: real(out, studies=3, image_size=SMALL, **kw))


def test_setup_builds_only_the_studies_a_lesson_asks_for_then_reuses_them(env, three_small,
                                                                          capsys):
    first = tutorial.setup(studies=1)
    folders = [f"SYNTH0000-00{i}_PHANTOM" for i in (1, 2, 3)]     # the synthetic naming
    assert first.studies == folders[:1]
    assert sorted(p.name for p in (first.root / "dicom").iterdir()) == folders[:1]
    manifest = json.loads((first.root / "manifest.json").read_text())
    assert manifest["folders"] == folders
    assert [rec["folder"] for rec in manifest["studies"]] == folders[:1]
    assert "writing 1 demo study (0.2 GB)" in capsys.readouterr().err
    stamp = (first.root / "dicom" / folders[0] / "series-001").stat().st_mtime_ns
    everything = tutorial.setup()                          # vfs prepare: the other two
    assert everything.studies == folders
    assert "writing 2 demo studies (0.5 GB)" in capsys.readouterr().err
    assert (first.root / "dicom" / folders[0] / "series-001").stat().st_mtime_ns == stamp
    assert tutorial.setup(studies=1).studies == folders[:1]   # still the lesson's one study
    assert capsys.readouterr().err == ""
    assert tutorial.damage(first.root) == []
    assert sorted(p.name for p in (first.root / "annotation_v2").iterdir()) == [
        f"{f}.json" for f in folders]


_BUILD = """
import sys
from vfs_utils import phantom
written = []
phantom.build_dataset(sys.argv[1], studies=2, image_size=64,
                      progress=lambda k, n, folder, out: folder and written.append(folder))
print(len(written))
"""


def test_two_concurrent_builds_of_one_folder_write_each_study_once(tmp_path):
    import subprocess
    import sys
    import time

    out = tmp_path / "ds"
    env = {**os.environ, "VFS_CACHE_DIR": str(tmp_path / "cache")}
    run = [sys.executable, "-c", _BUILD, str(out)]
    first = subprocess.Popen(run, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
    partial = out / "dicom" / f".SYNTH0000-001_PHANTOM.partial-{first.pid}"
    while not partial.is_dir() and first.poll() is None:   # the first is writing a study
        time.sleep(0.02)
    second = subprocess.run(run, capture_output=True, text=True, env=env)
    out1, err1 = first.communicate()
    assert (first.returncode, second.returncode) == (0, 0), err1 + second.stderr
    assert int(out1) + int(second.stdout) == 2               # each study written once
    assert [rec["folder"] for rec in json.loads((out / "manifest.json").read_text())[
        "studies"]] == ["SYNTH0000-001_PHANTOM", "SYNTH0000-002_PHANTOM"]
    assert tutorial.damage(out) == []


# ---------------------------------------------------------------------- errors as one line
def test_a_bad_data_root_reaches_a_notebook_as_one_line(env, monkeypatch):
    monkeypatch.setenv(data.ENV_DATA_ROOT, str(env / "nowhere"))
    with pytest.raises(DataNotFoundError) as info:
        tutorial.setup()
    lines = info.value._render_traceback_()          # what IPython shows instead of a traceback
    assert lines == [f"DataNotFoundError: {data.ENV_DATA_ROOT}={env / 'nowhere'}: no folder "
                     f"{env / 'nowhere' / 'dicom'}. Point {data.ENV_DATA_ROOT} at the "
                     "CTLungCa-500 root that holds dicom/<Folder>/..., or unset it to use the "
                     "phantom."]


def test_an_unusable_cache_reaches_a_notebook_as_one_line_naming_the_variable(env, monkeypatch):
    blocker = env / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(data.ENV_CACHE_DIR, str(blocker))
    with pytest.raises(tutorial.SetupError) as info:
        tutorial.setup()
    (line,) = info.value._render_traceback_()
    assert line.startswith(f"SetupError: {blocker}") and "Point VFS_CACHE_DIR at a writable" in line
    assert blocker.read_text() == "not a folder"


# ---------------------------------------------------------------------- outside the Makefile
def test_a_checkout_gets_the_makefiles_data_settings(monkeypatch, tmp_path):
    checkout = Path(tutorial.__file__).resolve().parents[1]
    settings = data.checkout_settings()
    assert settings[data.ENV_CACHE_DIR] == checkout / ".cache"        # as `make` exports
    shared = checkout.parent / "shared" / "data"
    assert (data.ENV_ANNOTATION_DIR in settings) == (
        shared / "vertebral-fractures-severity" / "annotation").is_dir()
    # in a kernel started by hand, setup() fills in only what is unset
    monkeypatch.setattr(data, "checkout_settings", lambda: {data.ENV_CACHE_DIR: tmp_path / "c",
                                                            data.ENV_OFFLINE: "1"})
    monkeypatch.setenv(data.ENV_OFFLINE, "0")
    monkeypatch.delenv(data.ENV_CACHE_DIR, raising=False)
    monkeypatch.setattr(tutorial, "_in_kernel", lambda: True)
    assert tutorial._checkout_defaults() == [data.ENV_CACHE_DIR]
    assert os.environ[data.ENV_CACHE_DIR] == str(tmp_path / "c")
    assert os.environ[data.ENV_OFFLINE] == "0"


def test_a_stop_request_is_honoured_inside_a_study_and_between_studies(tmp_path, monkeypatch):
    import signal

    from vfs_utils import _fs

    real = dataset.render_volume
    rendered = []

    def render_then_stop(*args, **kwargs):     # as if SIGTERM came (and was swallowed) here
        rendered.append(1)
        volume = real(*args, **kwargs)
        if len(rendered) == 2:
            _fs._stop.append(signal.SIGTERM)
        return volume

    monkeypatch.setattr(dataset, "render_volume", render_then_stop)
    monkeypatch.setattr(_fs, "_stop", [])
    monkeypatch.setenv(data.ENV_CACHE_DIR, str(tmp_path / "cache"))
    kept = phantom.build_dataset(tmp_path / "kept", studies=3, image_size=64, only=1)
    with pytest.raises(_fs.Terminated):
        phantom.build_dataset(kept, studies=3, image_size=64)   # stops in the second study
    assert len(rendered) == 2
    assert sorted(p.name for p in (kept / "dicom").iterdir()) == ["SYNTH0000-001_PHANTOM"]
    assert [r["folder"] for r in json.loads((kept / "manifest.json").read_text())["studies"]] \
        == ["SYNTH0000-001_PHANTOM"] and tutorial.damage(kept) == []
    with pytest.raises(_fs.Terminated):                          # a new root: nothing left
        phantom.build_dataset(tmp_path / "new", studies=3, image_size=64)
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "kept"]
