"""The shape the code keeps: no function in automl/ longer than a screen, every module saying what it is for."""

from __future__ import annotations

import ast
from pathlib import Path

import automl

PACKAGE = Path(automl.__file__).parent
LONGEST = 60
"""Lines of the longest function allowed in automl/, decorators and docstring included."""


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "_migrations" not in p.parts)


def test_no_function_in_the_package_is_longer_than_a_screen():
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if node.end_lineno - first + 1 > LONGEST:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} "
                                f"({node.end_lineno - first + 1} lines)")
    assert not long, f"functions over {LONGEST} lines: {long}"


def test_every_module_starts_with_a_sentence_of_what_it_is_for():
    missing = [str(p.relative_to(PACKAGE)) for p in _modules() if not ast.get_docstring(ast.parse(p.read_text()))]
    assert not missing
