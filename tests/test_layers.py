"""The layering of automl/ written at the top of automl/__init__.py holds: no upward import and no import cycle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import automl

PACKAGE = Path(automl.__file__).parent


def layers_of_docstring() -> dict[str, int]:
    """``{module or package: layer index}`` from the ``- layer: a, b, c`` lines of automl's docstring."""
    lines = re.findall(r"^- (\w+): (.+)$", automl.__doc__, flags=re.M)
    return {name.strip(): i for i, (_, names) in enumerate(lines) for name in names.split(",")}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name relative to it (``train.loop``; ``__init__`` for the package)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "_migrations" in path.parts:
            continue
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file (top level, functions, TYPE_CHECKING).
    automl imports absolutely (``from automl.train import loop``), so relative imports are not read."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            targets = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            if parts[0] != "automl":
                continue
            # the longest prefix that is a module: `from automl.train import loop` is train.loop, `from automl
            # import hookimpl` the package itself
            inner = [".".join(parts[1:n]) for n in range(len(parts), 1, -1)]
            found.add(next((m for m in inner if m in known), "__init__"))
    found.discard(name)
    return found


def layer(name: str, layers: dict[str, int]) -> int | None:
    parts = name.split(".")
    return next((layers[".".join(parts[:n])] for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in layers),
                None)


def upward(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    """Each import of a module from a layer above its own, as ``a -> b``."""
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if layer(b, layers) > layer(a, layers))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def the_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_every_module_has_a_layer():
    layers = layers_of_docstring()
    assert len(set(layers.values())) >= 9, "the layer table at the top of automl/__init__.py was not read"
    assert not [name for name in modules() if layer(name, layers) is None]


def test_no_module_imports_from_a_layer_above_its_own():
    assert upward(the_graph(), layers_of_docstring()) == []


def test_no_imports_go_round_in_a_cycle():
    assert cycles(the_graph()) == []


def test_the_checks_see_an_upward_import_and_a_cycle():
    # The two checks above pass on the package; here they must fail on a graph that breaks each rule.
    layers = {"records": 0, "trick": 1, "study": 6}
    graph = {"records": {"study.compare"}, "study.compare": {"trick"}, "trick": {"records"}}
    assert upward(graph, layers) == ["records -> study.compare"]
    assert cycles(graph) == [["records", "study.compare", "trick"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_are_read_from_functions_and_type_checking_blocks_too():
    graph = the_graph()
    assert "trick" in graph["hookspecs"]  # under TYPE_CHECKING only
    assert "host" in graph["train.datasets"]  # a function-level `from automl.host import get_host`
