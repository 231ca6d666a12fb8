"""Check every lesson's front matter: prerequisites, estimated time, last updated.

Usage::

    python docs/check_front_matter.py                 # every notebooks/NN_*.ipynb
    python docs/check_front_matter.py notebooks/03_x.ipynb ...

A lesson states, in its opening markdown (the cells before its first code cell other
than the launch header), three lines an instructor can plan with::

    **Prerequisites:** lessons 00 (the data card) and 02 (matching).   (or: none / basic Python)
    **Estimated time:** 30 minutes.
    **Last updated:** 2026-11-29

Rules: each field present once and not empty; the time a whole number of minutes
between 1 and 180; the date a real ISO date, not in the future; every lesson number named
under "Prerequisites" (a two-digit number after the word "lesson"/"lessons") an existing
lesson that comes before this one. Prints one line per problem (``path: field: what to
do``) and exits 1 when there is any.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from pathlib import Path

__all__ = ["FIELDS", "FrontMatterError", "check", "check_notebook", "front_matter", "main"]

REPO = Path(__file__).resolve().parents[1]
FIELDS = ("Prerequisites", "Estimated time", "Last updated")
LESSON_NAME = re.compile(r"(\d{2})[a-z]?_.+\.ipynb")
_FIELD = re.compile(r"\*\*(Prerequisites|Estimated time|Last updated):\*\*[ \t]*(.*)")
_MINUTES = re.compile(r"(?:about\s+)?(\d+)\s*(?:minutes?|min)\b\.?", re.IGNORECASE)
_LESSON_REFS = re.compile(r"\blessons?\b((?:[^.;]*?\b\d{2}\b)+)", re.IGNORECASE)


class FrontMatterError(ValueError):
    """A notebook that cannot be read as a notebook."""


def _opening_markdown(nb: dict) -> list[str]:
    texts = []
    for cell in nb.get("cells", []):
        if "vfs-header" in cell.get("metadata", {}).get("tags", []):
            continue
        if cell.get("cell_type") == "code":
            break
        if cell.get("cell_type") == "markdown":
            src = cell.get("source", "")
            texts.append("".join(src) if isinstance(src, list) else src)
    return texts


def front_matter(nb: dict) -> dict[str, list[str]]:
    """Field name -> the values found (all of them, so duplicates can be reported)."""
    found: dict[str, list[str]] = {}
    for text in _opening_markdown(nb):
        for line in text.splitlines():
            match = _FIELD.search(line)
            if match:
                found.setdefault(match.group(1), []).append(match.group(2).strip())
    return found


def check(nb: dict, number: int | None, lessons: set[int], today: dt.date) -> list[str]:
    """Problems of one notebook's front matter, as ``field: message`` strings."""
    found = front_matter(nb)
    problems = []
    for field in FIELDS:
        values = found.get(field, [])
        if not values:
            problems.append(f"{field}: missing; add a line '**{field}:** ...' to the opening "
                            "markdown")
        elif len(values) > 1:
            problems.append(f"{field}: stated {len(values)} times; keep one")
        elif not values[0]:
            problems.append(f"{field}: empty")
    if problems:
        return problems
    minutes = _MINUTES.fullmatch(found["Estimated time"][0])
    if not minutes:
        problems.append(f"Estimated time: {found['Estimated time'][0]!r} is not 'N minutes'")
    elif not 1 <= int(minutes.group(1)) <= 180:
        problems.append(f"Estimated time: {minutes.group(1)} minutes is outside 1-180")
    text = found["Last updated"][0].rstrip(".")
    try:
        date = dt.date.fromisoformat(text) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) else None
    except ValueError:
        date = None
    if date is None:
        problems.append(f"Last updated: {text!r} is not a date YYYY-MM-DD")
    elif date > today:
        problems.append(f"Last updated: {date} is in the future")
    for refs in _LESSON_REFS.findall(found["Prerequisites"][0]):
        for ref in map(int, re.findall(r"\b(\d{2})\b", refs)):
            if ref not in lessons:
                problems.append(f"Prerequisites: lesson {ref:02d} does not exist")
            elif number is not None and ref >= number:
                problems.append(f"Prerequisites: lesson {ref:02d} does not come before "
                                f"lesson {number:02d}")
    return problems


def _lesson_number(path: Path) -> int | None:
    match = LESSON_NAME.fullmatch(path.name)
    return int(match.group(1)) if match else None


def check_notebook(path: Path, lessons: set[int] | None = None,
                   today: dt.date | None = None) -> list[str]:
    """Problems of the notebook at ``path`` (lessons: the numbers of its sibling lessons)."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FrontMatterError(f"{path}: cannot read the notebook: {exc}") from exc
    if lessons is None:
        lessons = {n for p in path.parent.glob("*.ipynb") if (n := _lesson_number(p)) is not None}
    return check(nb, _lesson_number(path), lessons, today or dt.date.today())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path,
                        help="notebooks (default: every notebooks/NN_*.ipynb)")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(p for p in (REPO / "notebooks").glob("*.ipynb")
                                 if _lesson_number(p) is not None)
    bad = 0
    for path in paths:
        try:
            problems = check_notebook(path)
        except FrontMatterError as exc:
            problems = [str(exc)]
        for problem in problems:
            print(f"{path}: {problem}")
        bad += bool(problems)
    print(f"front matter: {len(paths) - bad} of {len(paths)} notebook(s) complete")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
