"""binder/ builds the environment and the data the way repo2docker would (slow).

repo2docker with ``binder/requirements.txt`` and ``binder/runtime.txt``: a fresh
environment of that Python gets ``pip install -r binder/requirements.txt``, the
repository is copied in, ``binder/postBuild`` runs from the repository root with a
fresh HOME, and every session starts through ``binder/start``. This test does the same
with a clean virtual environment (packages from the package index) in a temporary
folder and a copy of the checkout's tracked files, then:

- checks the installed set is consistent (``pip check``) and holds the dashboard
  extensions (jupyter-server-proxy's and dask-labextension's server extensions enabled);
- measures what the build leaves: the environment, and HOME (the annotations only: the
  demo CT data is built at first use, not into the image);
- runs a lesson's setup through ``binder/start`` as a session would (first use), and
  measures the data it builds and the time it takes.

It needs the network to the package index and takes minutes, so it runs only with
``VFS_SLOW_TESTS=1``; the sizes are printed (``-s``) and written to
``<tmp>/binder-sizes.json``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("VFS_SLOW_TESTS") != "1",
                       reason="slow: builds the Binder environment from the package index "
                              "(set VFS_SLOW_TESTS=1)"),
]

#: mybinder.org's guidance for data in an image is tens to a few hundred MB.
MAX_IMAGE_DATA_MB = 300


def _du_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()
               and not p.is_symlink()) / 1e6


def _copy_checkout(dst: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    return dst


def test_binder_builds_in_a_clean_environment(tmp_path):
    runtime = (REPO / "binder" / "runtime.txt").read_text().strip().removeprefix("python-")
    if "{}.{}".format(*sys.version_info[:2]) != runtime:
        pytest.skip(f"binder/runtime.txt asks for Python {runtime}, this is {sys.version}")
    env_dir, home, repo = tmp_path / "env", tmp_path / "home", tmp_path / "repo"
    home.mkdir()
    _copy_checkout(repo)
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    bin_dir = env_dir / "bin"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VFS_", "VIRTUAL_ENV", "PYTHON", "DASK_"))}
    env.update(HOME=str(home), PATH=f"{bin_dir}{os.pathsep}{env['PATH']}",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    run = {"env": env, "cwd": repo, "capture_output": True, "text": True}

    t0 = time.perf_counter()
    done = subprocess.run([str(bin_dir / "pip"), "install", "-q", "-r",
                           "binder/requirements.txt"], **run)
    assert done.returncode == 0, done.stderr[-3000:]
    env_seconds = time.perf_counter() - t0
    done = subprocess.run(["binder/postBuild"], **run)
    assert done.returncode == 0, done.stderr[-3000:]
    # mybinder.org reaches the annotations' host; a machine without that network builds
    # the image without them, and the lessons use the synthetic dataset
    fetched = "could not fetch the annotations" not in done.stderr
    check = subprocess.run([str(bin_dir / "pip"), "check"], **run)
    assert check.returncode == 0, check.stdout
    extensions = subprocess.run([str(bin_dir / "jupyter"), "server", "extension", "list"],
                                **run)
    listing = re.sub(r"\x1b\[[0-9;]*m", "", extensions.stdout + extensions.stderr)
    for ext in ("jupyter_server_proxy", "dask_labextension"):
        assert f"{ext} enabled" in listing, listing[-3000:]

    home_mb, env_mb = _du_mb(home), _du_mb(env_dir)
    assert home_mb < MAX_IMAGE_DATA_MB, f"postBuild left {home_mb:.0f} MB in HOME"

    # a session's first lesson: the setup cell, through binder/start
    t0 = time.perf_counter()
    done = subprocess.run(["binder/start", str(bin_dir / "python"), "-c",
                           "from vfs_utils import tutorial; print(tutorial.setup())"], **run)
    first_use_seconds = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr[-3000:]
    mode = "phantom" if fetched else "synthetic"
    assert f"Data mode: {mode}" in done.stdout, done.stdout
    sizes = {"annotations_fetched": fetched, "data_mode": mode,
             "environment_install_s": round(env_seconds, 1), "environment_mb": round(env_mb),
             "image_home_mb": round(home_mb, 1),
             "first_use_s": round(first_use_seconds, 1),
             "home_after_first_use_mb": round(_du_mb(home))}
    (tmp_path / "binder-sizes.json").write_text(json.dumps(sizes, indent=1))
    print("binder build:", json.dumps(sizes))
