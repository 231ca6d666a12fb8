"""docs/check_front_matter.py: prerequisites, estimated time and last-updated date.

The checker is tested on small synthetic notebooks, then run over every real lesson.
"""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "docs"))
try:
    import check_front_matter as fm
finally:
    sys.path.remove(str(REPO / "docs"))

TODAY = dt.date(2026, 11, 29)
GOOD = ("**Prerequisites:** lessons 00 (the data card) and 02 (matching).\n"
        "**Estimated time:** 30 minutes.\n"
        "**Last updated:** 2026-11-20\n")


def _nb(opening: str, *, header: bool = True, later: str = "") -> dict:
    cells = []
    if header:
        cells += [{"cell_type": "markdown", "metadata": {"tags": ["vfs-header"]},
                   "source": ["[![Open In Colab](x)](y)"]},
                  {"cell_type": "code", "metadata": {"tags": ["vfs-header"]},
                   "source": "import importlib.util", "outputs": []}]
    cells += [{"cell_type": "markdown", "metadata": {}, "source": f"# 04 · Title\n\n{opening}"},
              {"cell_type": "code", "metadata": {}, "source": "source = 1", "outputs": []},
              {"cell_type": "markdown", "metadata": {}, "source": later}]
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _check(opening: str, number: int = 4, lessons=(0, 1, 2, 3, 4, 5), **kw) -> list[str]:
    return fm.check(_nb(opening, **kw), number, set(lessons), TODAY)


def test_complete_front_matter_passes():
    assert _check(GOOD) == []
    assert fm.front_matter(_nb(GOOD)) == {
        "Prerequisites": ["lessons 00 (the data card) and 02 (matching)."],
        "Estimated time": ["30 minutes."], "Last updated": ["2026-11-20"]}


def test_fields_may_be_spread_over_the_opening_cells_but_not_after_code():
    nb = _nb("**Prerequisites:** none\n")
    nb["cells"].insert(3, {"cell_type": "markdown", "metadata": {},
                           "source": ["**Estimated time:** 5 min\n",
                                      "**Last updated:** 2026-01-02"]})
    assert fm.check(nb, 4, {4}, TODAY) == []
    # the same lines after the first code cell do not count
    late = _nb("**Prerequisites:** none\n", later="**Estimated time:** 5 min\n"
               "**Last updated:** 2026-01-02")
    assert fm.check(late, 4, {4}, TODAY) == [
        "Estimated time: missing; add a line '**Estimated time:** ...' to the opening markdown",
        "Last updated: missing; add a line '**Last updated:** ...' to the opening markdown"]


@pytest.mark.parametrize("field", fm.FIELDS)
def test_each_missing_field_is_named(field):
    opening = "\n".join(line for line in GOOD.splitlines() if f"**{field}:**" not in line)
    problems = _check(opening)
    assert len(problems) == 1 and problems[0].startswith(f"{field}: missing")


def test_duplicate_and_empty_fields():
    assert _check(GOOD + "**Estimated time:** 40 minutes\n") == [
        "Estimated time: stated 2 times; keep one"]
    assert _check(GOOD.replace("30 minutes.", "")) == ["Estimated time: empty"]


@pytest.mark.parametrize(("time", "message"), [
    ("half an hour", "Estimated time: 'half an hour' is not 'N minutes'"),
    ("0 minutes", "Estimated time: 0 minutes is outside 1-180"),
    ("240 min", "Estimated time: 240 minutes is outside 1-180"),
])
def test_estimated_time_must_be_plausible_minutes(time, message):
    assert _check(GOOD.replace("30 minutes.", time)) == [message]


@pytest.mark.parametrize("ok", ["about 45 minutes", "1 minute", "180 min", "20 minutes."])
def test_estimated_time_accepted_forms(ok):
    assert _check(GOOD.replace("30 minutes.", ok)) == []


@pytest.mark.parametrize(("date", "message"), [
    ("2026-02-30", "Last updated: '2026-02-30' is not a date YYYY-MM-DD"),
    ("29.11.2026", "Last updated: '29.11.2026' is not a date YYYY-MM-DD"),
    ("2026-11-30", "Last updated: 2026-11-30 is in the future"),
])
def test_last_updated_must_be_a_past_iso_date(date, message):
    assert _check(GOOD.replace("2026-11-20", date)) == [message]


def test_prerequisite_lessons_must_exist_and_come_first():
    assert _check(GOOD, number=2) == [
        "Prerequisites: lesson 02 does not come before lesson 02"]
    assert _check(GOOD, lessons=(1, 2, 3, 4)) == ["Prerequisites: lesson 00 does not exist"]
    assert _check(GOOD.replace("lessons 00 (the data card) and 02 (matching).",
                               "basic Python 3.10 and pandas")) == []


def test_cli_reports_each_problem_and_exits_1(tmp_path):
    (tmp_path / "00_a.ipynb").write_text(json.dumps(_nb(
        GOOD.replace("lessons 00 (the data card) and 02 (matching).", "none"))))
    (tmp_path / "01_b.ipynb").write_text(json.dumps(_nb("no front matter here")))
    (tmp_path / "02_c.ipynb").write_text("{not json")
    script = REPO / "docs" / "check_front_matter.py"
    done = subprocess.run([sys.executable, str(script), *sorted(map(str, tmp_path.iterdir()))],
                          capture_output=True, text=True)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert sum(line.startswith(f"{tmp_path / '01_b.ipynb'}: ") for line in lines) == 3
    assert any(line.startswith(f"{tmp_path / '02_c.ipynb'}: ") and "cannot read" in line
               for line in lines)
    assert not any("00_a.ipynb" in line for line in lines)
    assert lines[-1] == "front matter: 1 of 3 notebook(s) complete"
    ok = subprocess.run([sys.executable, str(script), str(tmp_path / "00_a.ipynb")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout


LESSONS = sorted(p for p in (REPO / "notebooks").glob("[0-9]*.ipynb"))


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_real_lessons_carry_front_matter(path):
    assert fm.check_notebook(path) == []
