"""The code stays readable by the project's own rules: no function over 60 lines in the page
(app.py, ui/), explorer/ or training/, and explorer/ never imports streamlit."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

LONGEST = 60
SOURCES = [ROOT / "app.py", *sorted((ROOT / "ui").rglob("*.py"))]
SOURCES += [*sorted((ROOT / "explorer").glob("*.py")), *sorted((ROOT / "training").rglob("*.py"))]


def functions(path: Path) -> list[tuple[str, int]]:
    """(name, lines) of every function defined in PATH, methods and nested ones included."""
    tree = ast.parse(path.read_text())
    return [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]


def test_no_function_is_longer_than_a_screen() -> None:
    long = [
        f"{path.relative_to(ROOT)}: {name} ({lines} lines)"
        for path in SOURCES
        for name, lines in functions(path)
        if lines > LONGEST
    ]
    assert not long, long


def test_the_page_s_computations_never_import_streamlit() -> None:
    for path in sorted((ROOT / "explorer").glob("*.py")):
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom)
        }
        assert "streamlit" not in imported, path
