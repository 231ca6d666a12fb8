"""Every notebook opens with its own launch badges and a Colab install cell.

The header is written by ``docs/notebook_header.py``; these tests read the notebooks
themselves, and compute the expected URLs here from pyproject's ``[project.urls]
Source`` (not with the script's helpers), so a wrong URL in the script fails them.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (REPO / "notebooks").rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts)
IDS = [p.relative_to(REPO).as_posix() for p in NOTEBOOKS]

with open(REPO / "pyproject.toml", "rb") as _fh:
    SOURCE = tomllib.load(_fh)["project"]["urls"]["Source"]
OWNER_REPO = SOURCE.removeprefix("https://github.com/").rstrip("/")

LINK = re.compile(r"\[!\[([^\]]*)\]\(([^)]+)\)\]\(([^)]+)\)")


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _text(cell: dict) -> str:
    return "".join(cell["source"])


def _header(nb: dict) -> tuple[dict, dict]:
    return nb["cells"][0], nb["cells"][1]


pytestmark = pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks yet")


def test_source_url_is_a_github_repository():
    assert re.fullmatch(r"[\w.-]+/[\w.-]+", OWNER_REPO), SOURCE


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_badges_point_at_the_notebook_itself(path):
    rel = path.relative_to(REPO).as_posix()
    badges, _ = _header(_load(path))
    assert badges["cell_type"] == "markdown", f"{rel}: the first cell must be the badge cell"
    links = {alt: target for alt, _img, target in LINK.findall(_text(badges))}
    assert links.get("Open In Colab") == (
        f"https://colab.research.google.com/github/{OWNER_REPO}/blob/main/{rel}"), (
        f"{rel}: wrong or missing Colab badge; run python docs/notebook_header.py")
    assert links.get("launch binder") == (
        f"https://mybinder.org/v2/gh/{OWNER_REPO}/main?labpath={rel}"), (
        f"{rel}: wrong or missing Binder badge; run python docs/notebook_header.py")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_install_cell_comes_second_and_is_hidden_from_the_site(path):
    rel = path.relative_to(REPO).as_posix()
    badges, install = _header(_load(path))
    assert install["cell_type"] == "code", f"{rel}: the second cell must be the install cell"
    assert 'if "google.colab" in sys.modules:' in _text(install)
    assert len([ln for ln in _text(install).splitlines() if ln and ln[0] != "#"]) == 3
    assert f"git+https://github.com/{OWNER_REPO}@main" in _text(install)
    assert install["outputs"] == [], f"{rel}: the install cell must not print"
    for cell in (badges, install):
        assert "remove-cell" in cell["metadata"].get("tags", []), rel


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_one_header_and_one_kernelspec(path):
    nb = _load(path)
    tagged = [c for c in nb["cells"] if "vfs-header" in c["metadata"].get("tags", [])]
    assert len(tagged) == 2
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


def _run_install_cell(source: str, colab: bool = True) -> subprocess.CompletedProcess:
    """Run the cell as IPython would (its ``%pip`` turned into Python by IPython's own
    input transformer) in a fresh interpreter with a ``get_ipython`` that only records
    the magics it is asked to run; ``colab`` fakes google.colab."""
    from IPython.core.inputtransformer2 import TransformerManager

    prelude = (
        "import sys, types\n"
        "calls = []\n"
        "class Shell:\n"
        "    def run_line_magic(self, name, line):\n"
        "        calls.append((name, line))\n"
        "get_ipython = Shell\n"
    )
    if colab:
        prelude += "sys.modules['google.colab'] = types.ModuleType('google.colab')\n"
    code = (prelude + TransformerManager().transform_cell(source)
            + "\nprint(repr(calls), file=sys.stderr)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=REPO, check=True)


def test_install_cell_does_nothing_outside_colab():
    """A local Jupyter, Binder or a kernel of the wrong environment gets nothing installed."""
    _, install = _header(_load(NOTEBOOKS[0]))
    done = _run_install_cell(_text(install), colab=False)
    assert done.stdout == ""
    assert done.stderr.strip() == "[]"


def test_install_cell_installs_from_the_repository_on_colab():
    _, install = _header(_load(NOTEBOOKS[0]))
    done = _run_install_cell(_text(install))
    calls = eval(done.stderr.strip())  # noqa: S307 - our own repr of a list of tuples
    assert len(calls) == 1 and calls[0][0] == "pip"
    assert calls[0][1].split()[:2] == ["install", "--quiet"]
    assert calls[0][1].endswith(f'"vfs-tutorials @ git+https://github.com/{OWNER_REPO}@main"')
    assert done.stdout == ""


def test_header_script_is_idempotent_and_up_to_date(tmp_path):
    """--check on the checkout finds nothing to change; a stale copy is fixed once."""
    script = REPO / "docs" / "notebook_header.py"
    check = subprocess.run([sys.executable, str(script), "--check"], capture_output=True,
                           text=True, cwd=REPO)
    assert check.returncode == 0, check.stdout
    # a copy with a badge for the wrong path and no install cell
    (tmp_path / "notebooks" / "solutions").mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[project.urls]\nSource = "https://github.com/me/course"\n')
    nb = {"cells": [{"cell_type": "markdown", "id": "old", "source": ["[![Open In Colab](x)](y)"],
                     "metadata": {"tags": ["vfs-header", "remove-cell"]}},
                    {"cell_type": "markdown", "id": "t", "source": ["# Title"], "metadata": {}}],
          "metadata": {"kernelspec": {"name": "python", "display_name": "Py"}},
          "nbformat": 4, "nbformat_minor": 5}
    target = tmp_path / "notebooks" / "solutions" / "07_x_solutions.ipynb"
    target.write_text(json.dumps(nb))
    run = [sys.executable, str(script), "--root", str(tmp_path)]
    assert subprocess.run(run + ["--check"], capture_output=True).returncode == 1
    subprocess.run(run, check=True, capture_output=True)
    first = target.read_text()
    subprocess.run(run, check=True, capture_output=True)
    assert target.read_text() == first
    assert subprocess.run(run + ["--check"], capture_output=True).returncode == 0
    fixed = json.loads(first)
    assert [_text(c) for c in fixed["cells"][2:]] == ["# Title"]
    assert ("https://colab.research.google.com/github/me/course/blob/main/"
            "notebooks/solutions/07_x_solutions.ipynb") in _text(fixed["cells"][0])
    assert fixed["metadata"]["kernelspec"]["name"] == "python3"


def test_header_script_keeps_an_executed_install_cell(tmp_path):
    """Run on an executed notebook, the script changes nothing (the count stays)."""
    script = REPO / "docs" / "notebook_header.py"
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[project.urls]\nSource = "https://github.com/me/course"\n')
    target = tmp_path / "notebooks" / "01_x.ipynb"
    nb = {"cells": [{"cell_type": "markdown", "id": "t", "source": ["# Title"], "metadata": {}}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    target.write_text(json.dumps(nb))
    run = [sys.executable, str(script), "--root", str(tmp_path)]
    subprocess.run(run, check=True, capture_output=True)
    executed = json.loads(target.read_text())
    install = executed["cells"][1]
    assert install["cell_type"] == "code" and install["execution_count"] is None
    install["execution_count"] = 1          # what a kernel leaves behind
    target.write_text(json.dumps(executed, sort_keys=True, indent=1, ensure_ascii=False) + "\n")
    assert subprocess.run(run + ["--check"], capture_output=True).returncode == 0
    subprocess.run(run, check=True, capture_output=True)
    assert json.loads(target.read_text())["cells"][1]["execution_count"] == 1
