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
    assert "vfs fetch --schema v2" in message
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
    with pytest.raises(DataNotFoundError, match="holds no study folder"):
        data.data_root()
    (tmp_path / "dicom" / "RLADD01").mkdir()
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
    assert main(["fetch", "--schema", "v1"]) == 0
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
    assert main(["fetch", "--schema", "v1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vfs fetch: DataNotFoundError:") and "Traceback" not in err


# ----------------------------------------------------------------------------- fetch re-checks
def test_fetch_rechecks_and_repairs_cached_files(mirror, v1_dir, monkeypatch):
    folder, names = mirror
    cached = data.fetch("v1")["v1"]
    damaged = cached / names[1]
    damaged.write_bytes(damaged.read_bytes() + b" ")
    # annotation_dir trusts a complete cache (no hashing on every lesson) ...
    assert data.annotation_dir("v1") == cached
    # ... fetch does not: offline it names the file, online it downloads it again
    monkeypatch.setenv(data.ENV_OFFLINE, "1")
    with pytest.raises(DownloadError, match=names[1]):
        data.fetch("v1")
    monkeypatch.delenv(data.ENV_OFFLINE)
    assert data.fetch("v1") == {"v1": cached}
    assert damaged.read_bytes() == (v1_dir / names[1]).read_bytes()


# ----------------------------------------------------------------------------- offline behaviour
@pytest.fixture
def counting_server(monkeypatch):
    """An HTTP server that answers 404 to everything and counts the requests."""
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_error(404)

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/annotation/"
    monkeypatch.setattr(data.AnnotationSource, "base_url", property(lambda self: url))
    monkeypatch.setattr(data, "registry", lambda version: {"X.json": "0" * 64})
    monkeypatch.setattr(data, "_failed", {})
    yield hits
    server.shutdown()


def test_one_attempt_then_a_remembered_failure(counting_server, capfd):
    hits = counting_server
    with pytest.raises(DataNotFoundError) as info:
        data.annotation_dir("v1")
    message = str(info.value)
    for name in ("VFS_OFFLINE=1", data.ENV_ANNOTATION_DIR, data.ENV_ANNOTATION_DIR_V2):
        assert name in message
    assert len(hits) == 1                                   # no retries
    assert "Downloading" not in capfd.readouterr().err      # no pooch noise
    # the same process and (through the cache) the next process do not try again
    for _ in range(2):
        with pytest.raises(DataNotFoundError, match="VFS_OFFLINE=1"):
            data.annotation_dir("v2")
        data._failed.clear()                                # as in a new process
    with pytest.raises(DataNotFoundError, match="not tried again"):
        data.annotation_dir("v1")
    assert len(hits) == 1
    # an explicit fetch tries again
    with pytest.raises(DataNotFoundError):
        data.fetch("v1")
    assert len(hits) == 2


def test_a_server_that_never_answers_costs_one_short_wait(monkeypatch):
    import socket

    accepted = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def accept():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)                     # held open, never answered
    threading.Thread(target=accept, daemon=True).start()
    port = listener.getsockname()[1]
    monkeypatch.setattr(data.AnnotationSource, "base_url",
                        property(lambda self: f"http://127.0.0.1:{port}/annotation/"))
    monkeypatch.setattr(data, "registry", lambda version: {"X.json": "0" * 64})
    monkeypatch.setattr(data, "_failed", {})
    monkeypatch.setattr(data, "READ_TIMEOUT", 0.2)
    try:
        with pytest.raises(DataNotFoundError, match="Timeout"):
            data.annotation_dir("v1")
        assert len(accepted) == 1                     # one attempt, not three
    finally:
        listener.close()
        for conn in accepted:
            conn.close()


def test_unwritable_cache_folder_is_named(monkeypatch, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    monkeypatch.setenv(data.ENV_CACHE_DIR, str(not_a_folder))
    monkeypatch.setattr(data, "registry", lambda version: {"X.json": "0" * 64})
    with pytest.raises(DataNotFoundError, match=data.ENV_CACHE_DIR):
        data.annotation_dir("v1")
    assert main(["fetch", "--schema", "v1"]) == 2


# ----------------------------------------------------------------------------- VFS_SHARED_DIR
def _snapshot(folder):
    """Every path under ``folder`` with its mtime and content hash."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        out[str(p)] = (st.st_mtime_ns, st.st_mode, digest)
    out[str(folder)] = folder.stat().st_mtime_ns
    return out


def _read_only(folder):
    for p in [folder, *folder.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)


def test_shared_dir_is_looked_in_and_never_written(monkeypatch, tmp_path, v1_dir, v2_dir):
    from vfs_utils import tutorial
    from vfs_utils.phantom import build_dataset

    shared = tmp_path / "shared"
    shutil.copytree(v1_dir, shared / "annotations" / "v1")
    shutil.copytree(v2_dir, shared / "annotations" / "v2")
    tiny = dict(seed=3, studies=1, image_size=64)
    build_dataset(shared / "demo" / "tiny", **tiny)          # what an instructor prepares
    _read_only(shared)
    before = _snapshot(shared)
    monkeypatch.setenv(data.ENV_SHARED_DIR, str(shared))
    try:
        # after the variable, before the cache and the download
        assert data.annotation_dir("v1") == shared / "annotations" / "v1"
        monkeypatch.setenv(data.ENV_ANNOTATION_DIR, str(v1_dir))
        assert data.annotation_dir("v1") == v1_dir
        monkeypatch.delenv(data.ENV_ANNOTATION_DIR)
        shutil.copytree(v1_dir, data.cache_dir() / "annotations" / "v1")
        assert data.annotation_dir("v1") == shared / "annotations" / "v1"
        assert data.fetch("all") == {v: shared / "annotations" / v for v in ("v1", "v2")}
        assert main(["fetch"]) == 0
        # demo datasets: a matching shared build is used as it is ...
        assert data.shared_demo_dir("tiny") == shared / "demo" / "tiny"
        assert tutorial._demo("tiny", None, **tiny)[0] == shared / "demo" / "tiny"
        # ... one with other parameters is built in the cache instead
        other, folders = tutorial._demo("tiny", None, **{**tiny, "seed": 4})
        assert other == data.demo_dir("tiny") and (other / "manifest.json").is_file()
        assert [p.name for p in (other / "dicom").iterdir()] == list(folders)
        assert data.shared_demo_dir("missing") is None
        assert _snapshot(shared) == before
    finally:
        for p in [shared, *shared.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


def test_a_damaged_shared_copy_is_reported_not_repaired(monkeypatch, tmp_path, v1_dir):
    shared = tmp_path / "shared"
    shutil.copytree(v1_dir, shared / "annotations" / "v1")
    name = sorted(p.name for p in v1_dir.glob("*.json"))[7]
    with (shared / "annotations" / "v1" / name).open("a") as fh:
        fh.write("\n")
    before = _snapshot(shared)
    monkeypatch.setenv(data.ENV_SHARED_DIR, str(shared))
    with pytest.raises(DownloadError, match=f"{name}.*{data.ENV_SHARED_DIR}"):
        data.fetch("v1")
    assert _snapshot(shared) == before
