"""pyproject.toml, environment.yml and binder/ describe the same environment.

environment.yml (conda users) must list the same packages as pyproject's dependencies
plus the ``notebooks`` extra, with the same version floors. binder/requirements.txt is
the lock ``make lock`` writes: exact pins for every package of the ``binder`` extra,
each allowed by pyproject, for the Python of binder/runtime.txt. binder's scripts must
be executable, install the package, fetch the annotations (the demo CT data is built at
first use, not into the image) and share one cache folder between the build and the
session. tests/test_binder_build.py builds it all for real (slow).
"""
from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

yaml = pytest.importorskip("yaml",
                           reason="PyYAML (installed with jupyterlab) parses the conda files")
from packaging.requirements import Requirement  # noqa: E402
from packaging.specifiers import SpecifierSet  # noqa: E402
from packaging.version import Version  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

#: pip name -> conda-forge name where they differ (lower case). The dev extra's
#: packages (SimpleITK, playwright, ...) are not part of the conda environment.
CONDA_NAMES: dict[str, str] = {}

#: conda entries that are not Python requirements of the package.
TOOLING = {"python", "pip"}


def _pyproject() -> dict:
    with open(REPO / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


def _pip_floors() -> dict[str, Version]:
    """conda name -> floor, from pyproject's dependencies and the notebooks extra."""
    project = _pyproject()["project"]
    floors = {}
    for text in project["dependencies"] + project["optional-dependencies"]["notebooks"]:
        req = Requirement(text)
        if req.name == project["name"]:
            continue
        lower = [s for s in req.specifier if s.operator in (">=", "==", "~=")]
        assert len(lower) == 1, f"pyproject.toml: {text!r} should have exactly one floor (>=)"
        name = req.name.lower()
        floors[CONDA_NAMES.get(name, name)] = Version(lower[0].version)
    return floors


def _conda_spec(path: Path) -> tuple[dict[str, str], list]:
    """(conda name -> version spec text, pip section) of a conda environment file."""
    env = yaml.safe_load(path.read_text())
    conda, pip = {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip.extend(dep.get("pip", []))
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", dep.strip())
        assert match, f"{path.name}: cannot read the dependency {dep!r}"
        name, spec = match.groups()
        assert name.lower() not in conda, f"{path.name}: {name} is listed twice"
        conda[name.lower()] = spec.strip()
    return conda, pip


def _conda_floors(path: Path) -> dict[str, Version]:
    conda, _ = _conda_spec(path)
    floors = {}
    for name, spec in conda.items():
        if name in TOOLING:
            continue
        match = re.fullmatch(r">=\s*([0-9][0-9A-Za-z.]*)", spec)
        assert match, (f"{path.relative_to(REPO)}: {name} should have a '>=' floor like "
                       f"pyproject.toml, found {spec!r}")
        floors[name] = Version(match.group(1))
    return floors


@pytest.fixture(scope="module", params=["environment.yml"])
def env_file(request) -> Path:
    path = REPO / request.param
    assert path.is_file(), f"{request.param} is missing"
    return path


def test_same_packages_as_pyproject(env_file):
    pip, conda = _pip_floors(), _conda_floors(env_file)
    where = env_file.relative_to(REPO)
    assert sorted(set(pip) - set(conda)) == [], f"{where} lacks packages pyproject.toml needs"
    assert sorted(set(conda) - set(pip)) == [], f"{where} has packages pyproject.toml lacks"


def test_same_floors_as_pyproject(env_file):
    pip, conda = _pip_floors(), _conda_floors(env_file)
    differ = {name: (str(conda[name]), str(pip[name])) for name in pip
              if name in conda and conda[name] != pip[name]}
    assert differ == {}, f"{env_file.relative_to(REPO)} floors (conda, pyproject) differ: {differ}"


def test_python_pin_is_allowed_by_requires_python(env_file):
    conda, _ = _conda_spec(env_file)
    match = re.fullmatch(r"=?=?\s*(3\.\d+)(\.\*)?", conda.get("python", ""))
    assert match, f"{env_file.relative_to(REPO)}: pin python to one minor version (python=3.11)"
    requires = SpecifierSet(_pyproject()["project"]["requires-python"])
    assert Version(match.group(1)) in requires


def test_conda_forge_only(env_file):
    env = yaml.safe_load(env_file.read_text())
    assert env["name"] == "vfs-tutorials"
    assert env["channels"] == ["conda-forge"]


def test_top_level_installs_the_checkout():
    _, top_pip = _conda_spec(REPO / "environment.yml")
    assert top_pip == ["-e ."]


def _lock() -> dict[str, Version]:
    pins = {}
    for line in (REPO / "binder" / "requirements.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", (
            f"binder/requirements.txt: {line!r} is not an exact pin; run make lock")
        pins[_norm(req.name)] = Version(specs[0].version)
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_binder_has_no_conda_file_that_would_shadow_the_lock():
    # repo2docker prefers environment.yml over requirements.txt in binder/
    assert not (REPO / "binder" / "environment.yml").exists()


def test_binder_lock_pins_every_package_pyproject_asks_for():
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    wanted = project["dependencies"] + extras["notebooks"] + [
        r for r in extras["binder"] if not r.startswith(project["name"])]
    pins = _lock()
    assert project["name"] not in pins, "the package itself is installed by postBuild"
    for text in wanted:
        req = Requirement(text)
        name = _norm(req.name)
        assert name in pins, f"binder/requirements.txt lacks {name}; run make lock"
        assert pins[name] in req.specifier, (
            f"binder/requirements.txt pins {name}=={pins[name]}, outside pyproject's {text!r}; "
            "run make lock")


def test_binder_lock_is_generated_for_the_runtime_python():
    header = (REPO / "binder" / "requirements.txt").read_text().splitlines()[:2]
    assert "make lock" in header[0]
    runtime = (REPO / "binder" / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-(3\.\d+)", runtime)
    assert match, f"binder/runtime.txt: {runtime!r} should read python-3.X"
    assert f"Python {match.group(1)}." in header[1]
    assert Version(match.group(1)) in SpecifierSet(_pyproject()["project"]["requires-python"])


def test_binder_has_the_dask_dashboard_in_jupyterlab():
    pins = _lock()
    assert {"jupyter-server-proxy", "dask-labextension"} <= set(pins)


@pytest.mark.parametrize("name", ["postBuild", "start"])
def test_binder_scripts_are_executable_bash(name):
    path = REPO / "binder" / name
    assert path.stat().st_mode & stat.S_IXUSR, f"binder/{name} is not executable (chmod +x)"
    assert path.read_text().startswith("#!/usr/bin/env bash\n")
    subprocess.run(["bash", "-n", str(path)], check=True)


def _fake_tools(folder: Path, fetch_status: int) -> Path:
    """``pip`` and ``vfs`` stand-ins that log their arguments and VFS_CACHE_DIR."""
    folder.mkdir()
    log = folder / "calls.log"
    exits = {"pip": "exit 0", "vfs": f'[ "$1" = fetch ] && exit {fetch_status}\nexit 0'}
    for tool, exit_line in exits.items():
        script = folder / tool
        script.write_text(f'#!/usr/bin/env bash\necho "{tool} $* | ${{VFS_CACHE_DIR:-unset}}"'
                          f' >> "{log}"\n{exit_line}\n')
        script.chmod(0o755)
    return log


def _run_post_build(tmp_path: Path, fetch_status: int) -> tuple[subprocess.CompletedProcess, list]:
    log = _fake_tools(tmp_path / "bin", fetch_status)
    env = {k: v for k, v in os.environ.items() if k != "VFS_CACHE_DIR"}
    env.update(HOME=str(tmp_path / "home"), PATH=f"{tmp_path / 'bin'}{os.pathsep}{env['PATH']}")
    done = subprocess.run([str(REPO / "binder" / "postBuild")], cwd=REPO, env=env,
                          capture_output=True, text=True)
    return done, log.read_text().splitlines()


def test_post_build_installs_and_fetches_but_builds_no_ct_data(tmp_path):
    done, calls = _run_post_build(tmp_path, fetch_status=0)
    assert done.returncode == 0, done.stderr
    cache = tmp_path / "home" / ".cache" / "vfs-tutorials"
    assert calls[0].startswith("pip install --no-deps -e .")
    # the demo CT data (0.9 GB) is built at first use, not into the image
    assert calls[1:] == [f"vfs fetch | {cache}"]


def test_post_build_survives_a_failed_fetch(tmp_path):
    done, calls = _run_post_build(tmp_path, fetch_status=1)
    assert done.returncode == 0, done.stderr
    assert "could not fetch the annotations" in done.stderr
    assert calls[-1].startswith("vfs fetch | ")


def test_start_sets_the_cache_postbuild_uses(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "VFS_CACHE_DIR"}
    env["HOME"] = str(tmp_path)
    out = subprocess.run([str(REPO / "binder" / "start"), "bash", "-c", 'echo "$VFS_CACHE_DIR"'],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(out) == tmp_path / ".cache" / "vfs-tutorials"
    # an explicit setting wins
    env["VFS_CACHE_DIR"] = str(tmp_path / "elsewhere")
    out = subprocess.run([str(REPO / "binder" / "start"), "bash", "-c", 'echo "$VFS_CACHE_DIR"'],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(tmp_path / "elsewhere")


def test_start_points_the_dask_dashboard_at_the_binder_proxy(tmp_path):
    pytest.importorskip("distributed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    env.update(HOME=str(tmp_path), JUPYTERHUB_SERVICE_PREFIX="/user/student-1/")
    link = subprocess.run(
        [str(REPO / "binder" / "start"), sys.executable, "-c",
         "from distributed.utils import format_dashboard_link as f; print(f('127.0.0.1', 8787))"],
        env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert link == "/user/student-1/proxy/8787/status"
