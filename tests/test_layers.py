"""lib's import graph: no module imports from a higher layer (lib.LAYERS), and nothing cycles."""

import ast
from pathlib import Path

import pytest

import lib

ROOT = Path(lib.__file__).parent


def unit(module: str) -> str:
    """A dotted ``lib`` module name as a unit of :data:`lib.LAYERS` (``lib.tooling.x`` ->
    ``tooling``)."""
    return module.split(".")[1] if module.count(".") else module


def imports(path: Path, package: str) -> set[str]:
    """Every ``lib`` module a file imports, at the top or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("lib.")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the file's package
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            if base == "lib":
                out |= {f"lib.{a.name}" for a in node.names}
            elif base.startswith("lib."):
                out.add(base)
    return out


def graph() -> dict[str, set[str]]:
    edges = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        package = ".".join(parts[:-1])
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name == "lib":
            continue
        edges[unit(name)] = edges.get(unit(name), set()) | {
            unit(m) for m in imports(path, package) if m != "lib"} - {unit(name)}
    return edges


def test_every_module_has_a_layer():
    placed = [u for layer in lib.LAYERS for u in layer]
    assert len(placed) == len(set(placed)), "a module is placed twice"
    assert set(graph()) == set(placed), "place every module of lib in lib.LAYERS"


def test_no_module_imports_from_a_higher_layer():
    level = {u: i for i, layer in enumerate(lib.LAYERS) for u in layer}
    upward = sorted(f"{a} -> {b}" for a, deps in graph().items() for b in deps
                    if level.get(b, -1) > level[a])
    assert not upward, f"imports from a higher layer: {upward}"


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle():
    assert find_cycle(graph()) is None, " -> ".join(find_cycle(graph()))


@pytest.mark.parametrize("edges, cycle", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
])
def test_the_cycle_finder_finds_cycles(edges, cycle):
    assert find_cycle(edges) == cycle


def test_imports_inside_functions_and_relative_imports_are_seen(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("import lib.cache\nfrom lib import models\n\ndef g():\n"
                 "    from lib.whitening import covariance\n    from .runner import main\n")
    assert imports(f, "lib.tooling") == {"lib.cache", "lib.models", "lib.whitening",
                                         "lib.tooling.runner"}
