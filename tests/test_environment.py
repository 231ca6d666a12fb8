"""pyproject.toml, environment.yml and binder/ describe the same environment.

The conda files must list the same packages as pyproject's dependencies plus the
``notebooks`` extra, with the same version floors; binder's scripts must be
executable, install the package, fetch the annotations and prepare the data, and
share one cache folder between the build and the session.
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

yaml = pytest.importorskip("yaml", reason="PyYAML (installed with jupyterlab) parses the conda files")
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


@pytest.fixture(scope="module", params=["environment.yml", "binder/environment.yml"])
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


def test_binder_mirrors_top_level():
    top, top_pip = _conda_spec(REPO / "environment.yml")
    binder, binder_pip = _conda_spec(REPO / "binder" / "environment.yml")
    assert binder == top
    # conda users get the package from the checkout; repo2docker builds the environment
    # before the repository is copied in, so binder installs it in postBuild instead.
    assert top_pip == ["-e ."]
    assert binder_pip == []


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


def test_post_build_installs_fetches_and_prepares(tmp_path):
    done, calls = _run_post_build(tmp_path, fetch_status=0)
    assert done.returncode == 0, done.stderr
    cache = tmp_path / "home" / ".cache" / "vfs-tutorials"
    assert calls[0].startswith("pip install --no-deps -e .")
    assert calls[1:] == [f"vfs fetch | {cache}", f"vfs prepare | {cache}"]


def test_post_build_survives_a_failed_fetch(tmp_path):
    done, calls = _run_post_build(tmp_path, fetch_status=1)
    assert done.returncode == 0, done.stderr
    assert "could not fetch the annotations" in done.stderr
    assert calls[-1].startswith("vfs prepare | ")


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
