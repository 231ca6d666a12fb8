"""Give every notebook the same launch header: badges and a Colab install cell.

Usage::

    python docs/notebook_header.py            # update notebooks/**/*.ipynb in place
    python docs/notebook_header.py --check    # exit 1 and list the notebooks that differ

Every lesson and solution gets, at its top,

1. a markdown cell with an "Open in Colab" and a "launch binder" badge, both pointing at
   the notebook's own path in the repository;
2. a three-line code cell that installs the package with ``%pip`` only on Colab
   (``"google.colab" in sys.modules``): locally and on Binder it does nothing and prints
   nothing.

Both cells carry the tag ``vfs-header`` (found and replaced on the next run, so the
script is idempotent) and ``remove-cell`` (the course site has its own launch buttons,
so Jupyter Book leaves them out). Every notebook's kernelspec is set to ``python3``.
Nothing is executed. The repository URL is read from one place, ``[project.urls]
Source`` in ``pyproject.toml``.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["BRANCH", "HEADER_TAG", "KERNELSPEC", "apply", "badge_source", "binder_url",
           "colab_url", "install_source", "main", "notebooks", "repository"]

REPO = Path(__file__).resolve().parents[1]
#: The branch the badges open.
BRANCH = "main"
#: Tag of the cells this script owns.
HEADER_TAG = "vfs-header"
#: The one kernelspec every notebook uses.
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}

COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
BINDER_BADGE = "https://mybinder.org/badge_logo.svg"


def repository(pyproject: Path = REPO / "pyproject.toml") -> tuple[str, str]:
    """(owner, name) of the GitHub repository named by ``[project.urls] Source``."""
    with open(pyproject, "rb") as fh:
        url = tomllib.load(fh)["project"]["urls"]["Source"]
    match = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?", url)
    if not match:
        raise SystemExit(f"{pyproject}: [project.urls] Source must be a GitHub repository URL "
                         f"(https://github.com/<owner>/<name>), found {url!r}")
    return match.group(1), match.group(2)


def colab_url(path: str, repo: tuple[str, str]) -> str:
    """Colab's URL for the notebook at repository path ``path``."""
    return f"https://colab.research.google.com/github/{repo[0]}/{repo[1]}/blob/{BRANCH}/{path}"


def binder_url(path: str, repo: tuple[str, str]) -> str:
    """mybinder.org's URL that opens ``path`` in JupyterLab."""
    return f"https://mybinder.org/v2/gh/{repo[0]}/{repo[1]}/{BRANCH}?labpath={path}"


def badge_source(path: str, repo: tuple[str, str]) -> str:
    """The badge cell's markdown."""
    return (f"[![Open In Colab]({COLAB_BADGE})]({colab_url(path, repo)}) "
            f"[![launch binder]({BINDER_BADGE})]({binder_url(path, repo)})")


def install_source(repo: tuple[str, str]) -> str:
    """The install cell's code, MONAI's tutorials' way: a ``%pip install`` that runs only
    on Colab. Anywhere else (a local Jupyter, Binder, a kernel of the wrong environment)
    it does nothing and prints nothing: it never installs into an environment it was not
    meant for. Where pip fails, pip's own message says why."""
    spec = f"vfs-tutorials @ git+https://github.com/{repo[0]}/{repo[1]}@{BRANCH}"
    return _INSTALL.replace("PACKAGE", spec)


_INSTALL = (
    "# Colab only: install the lessons' package (locally and on Binder it is there already)\n"
    "import sys\n\n"
    'if "google.colab" in sys.modules:\n'
    '    %pip install --quiet "PACKAGE"'
)


def _cell(kind: str, source: str, role: str) -> dict:
    cell = {"cell_type": kind, "id": f"vfs-header-{role}",
            "metadata": {"tags": [HEADER_TAG, "remove-cell"]},
            "source": source.splitlines(keepends=True)}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def _is_header(cell: dict) -> bool:
    return HEADER_TAG in cell.get("metadata", {}).get("tags", [])


def apply(nb: dict, path: str, repo: tuple[str, str]) -> dict:
    """Return ``nb`` with a fresh header for repository path ``path`` (idempotent)."""
    old = {c.get("id"): c for c in nb["cells"] if _is_header(c)}
    cells = [c for c in nb["cells"] if not _is_header(c)]
    header = [_cell("markdown", badge_source(path, repo), "badges"),
              _cell("code", install_source(repo), "install")]
    for cell in header:   # an executed notebook keeps its header cell's execution count
        prev = old.get(cell["id"])
        if (cell["cell_type"] == "code" and prev is not None
                and "".join(prev.get("source", "")) == "".join(cell["source"])):
            cell.update(execution_count=prev.get("execution_count"),
                        outputs=prev.get("outputs", []))
    out = dict(nb, cells=header + cells)
    out["metadata"] = dict(nb.get("metadata", {}), kernelspec=dict(KERNELSPEC))
    # cell ids need nbformat >= 4.5
    if (out.get("nbformat"), out.get("nbformat_minor", 0)) < (4, 5):
        out["nbformat"], out["nbformat_minor"] = 4, 5
    ids = set()
    for i, cell in enumerate(out["cells"]):
        if not cell.get("id") or cell["id"] in ids:
            cell["id"] = f"cell-{i}"
        ids.add(cell["id"])
    return out


def notebooks(root: Path = REPO) -> list[Path]:
    """Every notebook under ``root/notebooks`` (lessons and solutions), checkpoints excluded."""
    return sorted(p for p in (root / "notebooks").rglob("*.ipynb")
                  if ".ipynb_checkpoints" not in p.parts)


def _dump(nb: dict) -> str:
    # the layout Jupyter itself writes (sorted keys, 1-space indent, non-ASCII kept), so
    # diffs stay small
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO, help="repository root")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 when a notebook lacks its header")
    args = parser.parse_args(argv)
    repo = repository(args.root / "pyproject.toml")
    stale = []
    for path in notebooks(args.root):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(args.root).as_posix()
        new = _dump(apply(json.loads(text), rel, repo))
        if new != text:
            stale.append(rel)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    verb = "lack an up-to-date header" if args.check else "updated"
    print(f"{len(stale)} notebook(s) {verb}" + "".join(f"\n  {p}" for p in stale))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
