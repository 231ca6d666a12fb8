"""Build the course site with Jupyter Book 1 (``make site``).

Usage::

    python docs/build_book.py                 # build into _site/ (incremental)
    python docs/build_book.py --out DIR       # elsewhere
    python docs/build_book.py --no-solutions  # leave the Solutions part out (graded work)
    python docs/build_book.py --toc-only      # print the generated _toc.yml

The book's source is assembled in ``_build/book/src`` from

- ``docs/book/`` (the landing page, the course pages, ``_static/``, ``_config.yml``),
- ``docs/references.bib`` (the one bibliography), and
- ``notebooks/`` (every lesson, and its solutions unless left out, as they are committed),

with a ``_toc.yml`` generated from the notebooks found: the course pages, the lessons in
number order, their solutions in a part of their own, so renumbering or adding a lesson needs
no edit here. The key points page gathers every lesson's "Key takeaways" section and the
glossary takes lesson 00's, at build time, so neither can drift from the lessons.
Files are copied only when they changed, so Sphinx rebuilds only the changed pages. The
notebooks are not executed (``execute_notebooks: "off"``): the committed outputs are the
ones ``make nbtest`` checks with nbval. The repository URL of the launch buttons comes from
``[project.urls] Source`` in ``pyproject.toml``.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

import yaml

__all__ = ["COURSE_PAGES", "assemble", "build", "lesson_section", "lesson_tree", "main", "toc"]

REPO = Path(__file__).resolve().parents[1]
LESSON = re.compile(r"(\d+)[a-z]?_.+")
#: The course pages of ``docs/book/``, in sidebar order (the landing page is ``index``).
COURSE_PAGES = ["syllabus", "setup", "classroom", "instructor_notes", "key_points", "glossary"]
#: The marker in a course page that the build replaces with sections of the lessons.
FILL = re.compile(r"^<!-- fill: (key takeaways|glossary) -->$", re.M)


def _number(stem: str) -> str | None:
    match = LESSON.fullmatch(stem)
    return match.group(1) if match else None


def lesson_tree(notebooks: Path) -> list[tuple[str, list[str]]]:
    """[(lesson path, [solution paths])] relative to the book root, in lesson order.

    A solution belongs to the lesson whose name its own starts with
    (``04_heights_solutions`` -> ``04_heights``), else to the first lesson with its number.
    Solutions that match no lesson are listed after the lessons, on their own.
    """
    lessons = sorted((p for p in notebooks.glob("*.ipynb") if _number(p.stem)),
                     key=lambda p: (int(_number(p.stem)), p.stem))
    tree: dict[str, list[str]] = {p.stem: [] for p in lessons}
    orphans = []
    for sol in sorted((notebooks / "solutions").glob("*.ipynb")):
        owner = next((stem for stem in tree if sol.stem.startswith(stem)), None)
        if owner is None:
            owner = next((stem for stem in tree if _number(stem) == _number(sol.stem)), None)
        (tree[owner] if owner else orphans).append(f"notebooks/solutions/{sol.stem}")
    out = [(f"notebooks/{stem}", sols) for stem, sols in tree.items()]
    out += [(path, []) for path in orphans]
    return out


def toc(notebooks: Path, solutions: bool = True) -> dict:
    """The ``_toc.yml`` (jb-book format) for the notebooks found; ``solutions=False`` leaves
    their part out."""
    tree = lesson_tree(notebooks)
    lessons = [{"file": lesson} for lesson, _ in tree]
    parts = [{"caption": "Course", "chapters": [{"file": p} for p in COURSE_PAGES]},
             {"caption": "Lessons", "chapters": lessons}]
    sols = [{"file": s} for _, group in tree for s in group]
    if solutions and sols:
        parts.append({"caption": "Solutions", "chapters": sols})
    parts.append({"caption": "About", "chapters": [{"file": "references"}]})
    return {"format": "jb-book", "root": "index", "parts": parts}


def _markdown(nb: Path) -> list[str]:
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


def lesson_section(nb: Path, heading: str) -> str | None:
    """The text under a lesson's ``## <heading>`` (to the next ``## `` heading), or None."""
    for text in _markdown(nb):
        match = re.search(rf"^## {re.escape(heading)}[ \t]*\n(.*?)(?=^## |\Z)", text,
                          re.M | re.S | re.I)
        if match:
            return match.group(1).strip()
    return None


def _title(nb: Path) -> str:
    return next((t.splitlines()[0][2:].strip() for t in _markdown(nb) if t.startswith("# ")),
                nb.stem)


def _filled(text: str, notebooks: Path) -> str:
    """A course page with its fill markers replaced by the lessons' sections."""
    lessons = [notebooks.parent / f"{lesson}.ipynb" for lesson, _ in lesson_tree(notebooks)
               if lesson.startswith("notebooks/") and "/solutions/" not in lesson]

    def fill(match: re.Match) -> str:
        if match.group(1) == "glossary":
            return next((g for nb in lessons if (g := lesson_section(nb, "Glossary"))), "")
        blocks = []
        for nb in lessons:
            points = lesson_section(nb, "Key takeaways")
            if points:
                blocks.append(f"## {_title(nb)}\n\n{points}\n\n"
                              f"([the lesson](notebooks/{nb.name}))")
        return "\n\n".join(blocks)

    return FILL.sub(fill, text)


def _repository_url(root: Path) -> str:
    with open(root / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["project"]["urls"]["Source"].rstrip("/")


def _sync(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` unless identical (keeps mtimes for Sphinx's incremental build)."""
    if dst.exists() and filecmp.cmp(src, dst, shallow=False):
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def _write(path: Path, text: str) -> None:
    if not (path.exists() and path.read_text(encoding="utf-8") == text):
        path.write_text(text, encoding="utf-8")


def assemble(src: Path, root: Path = REPO, solutions: bool = True) -> Path:
    """Lay out the book's source in ``src``; returns ``src``."""
    src.mkdir(parents=True, exist_ok=True)
    book = root / "docs" / "book"
    wanted = set()
    for path in sorted(book.rglob("*")):
        if path.is_file() and path.name != "_config.yml":
            target = src / path.relative_to(book)
            if path.suffix == ".md" and FILL.search(path.read_text(encoding="utf-8")):
                target.parent.mkdir(parents=True, exist_ok=True)
                _write(target, _filled(path.read_text(encoding="utf-8"), root / "notebooks"))
            else:
                _sync(path, target)
            wanted.add(target)
    bib = root / "docs" / "references.bib"
    if bib.exists():
        _sync(bib, src / "references.bib")
        wanted.add(src / "references.bib")
    for nb in sorted((root / "notebooks").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in nb.parts or (not solutions and "solutions" in nb.parts):
            continue
        target = src / nb.relative_to(root)
        _sync(nb, target)
        wanted.add(target)
    for old in list((src / "notebooks").rglob("*.ipynb")) if (src / "notebooks").exists() else []:
        if old not in wanted:  # a renamed or removed notebook, or solutions left out
            old.unlink()
    config = yaml.safe_load((book / "_config.yml").read_text())
    config["repository"]["url"] = _repository_url(root)
    _write(src / "_config.yml", yaml.safe_dump(config, sort_keys=False))
    _write(src / "_toc.yml", yaml.safe_dump(toc(root / "notebooks", solutions), sort_keys=False))
    return src


def build(out: Path, root: Path = REPO, work: Path | None = None,
          solutions: bool = True) -> float:
    """Assemble and build the book, copy its HTML to ``out``; returns the seconds taken."""
    work = work or root / "_build" / ("book" if solutions else "book-no-solutions")
    start = time.perf_counter()
    src = assemble(work / "src", root, solutions)
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(src),
           "--path-output", str(work), "--builder", "html", "--warningiserror", "--keep-going"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-6000:] + done.stderr[-6000:])
        raise SystemExit(f"jupyter-book build failed ({done.returncode}); full log above")
    html = work / "_build" / "html"
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(html, out)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "_site", help="HTML output folder")
    parser.add_argument("--no-solutions", action="store_true",
                        help="leave the Solutions part out (for graded work)")
    parser.add_argument("--toc-only", action="store_true", help="print _toc.yml and stop")
    args = parser.parse_args(argv)
    solutions = not args.no_solutions
    if args.toc_only:
        print(yaml.safe_dump(toc(REPO / "notebooks", solutions), sort_keys=False), end="")
        return 0
    args.out = args.out.resolve()   # `make site` passes a relative folder
    seconds = build(args.out, solutions=solutions)
    pages = sum(1 for _ in args.out.rglob("*.html"))
    print(f"site: {pages} pages{'' if solutions else ', solutions left out,'} in {args.out} "
          f"({seconds:.1f} s); open "
          f"{(args.out / 'index.html').as_uri()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
