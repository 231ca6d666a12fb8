"""The package layout: no module of the split packages is over ~600 lines without saying
why, no module-level import cycle, each package imports alone."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vfs_utils"

#: The packages split from flat modules.
PACKAGES = ["baseline", "morphometry", "phantom", "plotting"]


@pytest.mark.parametrize("package", PACKAGES)
def test_long_modules_say_why_they_are_one_piece(package):
    for path in sorted((PACKAGE / package).glob("*.py")):
        n = len(path.read_text(encoding="utf-8").splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        assert n <= 600 or "one piece" in doc, f"{path.name}: {n} lines"


def _module_imports(path: Path) -> set[Path]:
    """Files a module imports at module level (relative imports), resolved."""
    out = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.level:
            base = path.parent
            for _ in range(node.level - 1):
                base = base.parent
            parts = node.module.split(".") if node.module else []
            for extra in ([], *([a.name] for a in node.names)):
                target = base.joinpath(*parts, *extra)
                for candidate in (target.with_suffix(".py"), target / "__init__.py"):
                    if (parts or extra) and candidate.is_file():
                        out.add(candidate)
    return out


def test_no_module_level_import_cycle():
    graph = {p: _module_imports(p) for p in PACKAGE.rglob("*.py")}
    state: dict[Path, int] = {}
    cycles = []

    def visit(node: Path, stack: list[Path]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                # a package's __init__ importing its own modules is the package itself
                if not (cycle[0].name == "__init__.py" and all(
                        c.parent == cycle[0].parent for c in cycle)):
                    cycles.append([c.relative_to(PACKAGE).as_posix() for c in cycle])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


@pytest.mark.parametrize("module", ["vfs_utils.baseline", "vfs_utils.phantom",
                                    "vfs_utils.plotting", "vfs_utils.tutorial"])
def test_each_package_imports_alone_in_a_fresh_process(module):
    code = f"import sys, {module}; print('vfs_utils.plotting' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    # the baseline never needs the figures; the figures are plotting's alone
    if module in ("vfs_utils.baseline", "vfs_utils.phantom", "vfs_utils.tutorial"):
        assert out == "False"


def test_every_submodule_is_an_attribute_of_the_package():
    import vfs_utils

    files = sorted(p.stem for p in PACKAGE.iterdir() if not p.name.startswith("_")
                   and (p.suffix == ".py" or (p / "__init__.py").is_file()))
    assert {"agreement", "dicom", "matching", "readings"} <= set(files)
    assert list(vfs_utils._SUBMODULES) == files
    for name in files:
        assert getattr(vfs_utils, name).__name__ == f"vfs_utils.{name}"
        assert name in dir(vfs_utils)
    with pytest.raises(AttributeError):
        vfs_utils.no_such_module  # noqa: B018


def test_stub_lists_the_submodules_and_import_stays_light():
    import ast

    import vfs_utils

    stub = ast.parse((PACKAGE / "__init__.pyi").read_text())
    names = {a.name for node in stub.body if isinstance(node, ast.ImportFrom) and node.level == 1
             and node.module is None for a in node.names}
    assert names == set(vfs_utils._SUBMODULES)
    code = "import sys, vfs_utils; print(sorted({'numpy', 'pandas'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
