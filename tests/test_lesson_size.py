"""Every lesson and solution notebook stays teachable: at most 40 cells."""
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").rglob("[0-9]*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_at_most_40_cells(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    assert len(cells) <= 40, f"{path.name} has {len(cells)} cells; split it (at most 40)"


def test_the_classifier_lesson_is_split_in_two():
    names = {p.name for p in NOTEBOOKS}
    assert {"06_classifier_evaluation.ipynb", "07_classifier_baselines.ipynb",
            "06_classifier_evaluation_solutions.ipynb",
            "07_classifier_baselines_solutions.ipynb"} <= names
    assert "06_classifier.ipynb" not in names
