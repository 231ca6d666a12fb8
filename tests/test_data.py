"""vfs_utils.data: the pinned registry, where annotations are looked for, the download."""
from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading

import pytest

from vfs_utils import data
from vfs_utils.cli import main
from vfs_utils.errors import DataNotFoundError, DownloadError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for var in (data.ENV_ANNOTATION_DIR, data.ENV_ANNOTATION_DIR_V2, data.ENV_OFFLINE,
                data.ENV_DATA_ROOT):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(data.ENV_CACHE_DIR, str(tmp_path / "cache"))


@pytest.mark.parametrize("version,fixture", [("v1", "v1_dir"), ("v2", "v2_dir")])
def test_registry_pins_every_file_of_the_copy(version, fixture, request):
    folder = request.getfixturevalue(fixture)
    expected = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in folder.glob("*.json")}
    assert len(expected) == 100
    assert data.registry(version) == expected


def test_sources_are_pinned_commits():
    for source in data.SOURCES.values():
        assert len(source.commit) == 40 and int(source.commit, 16) >= 0
        assert source.base_url.startswith("https://raw.githubusercontent.com/neuro-ml/")
        assert f"/{source.commit}/annotation/" in source.base_url


def test_explicit_path_then_env_then_cache(monkeypatch, tmp_path, v1_dir):
    explicit = tmp_path / "explicit"
    shutil.copytree(v1_dir, explicit)
    assert data.annotation_dir("v1", explicit) == explicit
    monkeypatch.setenv(data.ENV_ANNOTATION_DIR, str(v1_dir))
    assert data.annotation_dir("v1", explicit) == explicit        # explicit wins
    assert data.annotation_dir("v1") == v1_dir                    # then the variable
    monkeypatch.delenv(data.ENV_ANNOTATION_DIR)
    cached = data.cache_dir() / "annotations" / "v1"
    shutil.copytree(v1_dir, cached)
    assert data.annotation_dir("v1", download=False) == cached    # then the cache


def test_offline_without_copy_says_what_to_do(monkeypatch):
    monkeypatch.setenv(data.ENV_OFFLINE, "1")
    with pytest.raises(DataNotFoundError) as info:
        data.annotation_dir("v2")
    message = str(info.value)
    assert data.ENV_ANNOTATION_DIR_V2 in message
    assert "vfs fetch --version v2" in message
    assert "VFS_OFFLINE" in message


def test_env_pointing_nowhere(monkeypatch, tmp_path):
    monkeypatch.setenv(data.ENV_ANNOTATION_DIR, str(tmp_path / "missing"))
    with pytest.raises(DataNotFoundError, match=data.ENV_ANNOTATION_DIR):
        data.annotation_dir("v1")


def test_unknown_version():
    with pytest.raises(ValueError, match="v3"):
        data.annotation_dir("v3")


def test_data_root(monkeypatch, tmp_path):
    assert data.data_root() is None
    monkeypatch.setenv(data.ENV_DATA_ROOT, str(tmp_path))
    with pytest.raises(DataNotFoundError, match="dicom"):
        data.data_root()
    (tmp_path / "dicom").mkdir()
    assert data.data_root() == tmp_path


@pytest.fixture
def mirror(tmp_path, v1_dir, monkeypatch):
    """A local HTTP server laid out like the upstream raw-file URLs, with 5 files."""
    names = sorted(p.name for p in v1_dir.glob("*.json"))[:5]
    source = data.SOURCES["v1"]
    folder = tmp_path / "www" / source.repository / source.commit / "annotation"
    folder.mkdir(parents=True)
    for name in names:
        shutil.copy(v1_dir / name, folder)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=tmp_path / "www")
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(data.AnnotationSource, "base_url", property(
        lambda self: f"{url}/{self.repository}/{self.commit}/annotation/"))
    full = data.registry("v1")
    monkeypatch.setattr(data, "registry", lambda version: {n: full[n] for n in names})
    yield folder, names
    server.shutdown()


def test_download_checks_hashes_and_fills_the_cache(mirror, v1_dir, capsys):
    folder, names = mirror
    assert main(["fetch", "--version", "v1"]) == 0
    cached = data.cache_dir() / "annotations" / "v1"
    assert capsys.readouterr().out.strip() == f"v1: {cached}"
    for name in names:
        assert (cached / name).read_bytes() == (v1_dir / name).read_bytes()
    # a second call is served from the cache even with downloads forbidden
    assert data.annotation_dir("v1", download=False) == cached


def test_tampered_download_is_rejected(mirror):
    folder, names = mirror
    with (folder / names[2]).open("a") as fh:
        fh.write(" ")
    with pytest.raises(DownloadError, match=names[2]):
        data.fetch("v1")
    assert not (data.cache_dir() / "annotations" / "v1" / names[2]).exists()


def test_unreachable_server(monkeypatch):
    monkeypatch.setattr(data.AnnotationSource, "base_url",
                        property(lambda self: "http://127.0.0.1:9/annotation/"))
    monkeypatch.setattr(data, "registry", lambda version: {"X.json": "0" * 64})
    with pytest.raises(DataNotFoundError, match=data.ENV_ANNOTATION_DIR):
        data.annotation_dir("v1")


def test_cli_reports_errors_without_traceback(monkeypatch, capsys):
    monkeypatch.setenv(data.ENV_OFFLINE, "1")
    assert main(["fetch", "--version", "v1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vfs fetch: DataNotFoundError:") and "Traceback" not in err
