"""CITATION.cff names the dataset and annotation papers the bibliography names.

(The file was validated against the CFF 1.2.0 schema with ``cffconvert --validate``; this
test keeps it in step with ``docs/references.bib``.)
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[1]


def _bib_entries() -> dict[str, dict[str, str]]:
    text = (REPO / "docs" / "references.bib").read_text(encoding="utf-8")
    entries = {}
    for key, body in re.findall(r"@\w+\{([^,]+),(.*?)\n\}", text, flags=re.S):
        fields = dict(re.findall(r"(\w+)\s*=\s*\{(.*?)\},?\n", body + "\n", flags=re.S))
        # BibTeX braces protect capitals ({MosMedData}); they are not part of the text
        entries[key.strip()] = {k.lower(): " ".join(v.replace("{", "").replace("}", "").split())
                                for k, v in fields.items()}
    return entries


def test_citation_file_is_cff_1_2_0_software():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0"
    assert cff["type"] == "software"
    assert cff["license"] == "MIT"
    assert cff["message"] and cff["authors"]


@pytest.mark.parametrize("key", ["Pisov2020", "Zakharov2023",
                                 "Morozov2018", "Petraikin2020"])
def test_dataset_papers_are_references_with_the_bibliography_title_and_doi(key):
    bib = _bib_entries()[key]
    refs = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))["references"]
    match = [r for r in refs if r["title"].lower() == bib["title"].lower()]
    assert len(match) == 1, f"CITATION.cff lacks {bib['title']!r}"
    assert str(match[0]["year"]) == bib["year"]
    assert match[0].get("doi") == bib.get("doi")
