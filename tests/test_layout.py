"""The package's layout: no import cycles (lazy imports included) and no module that
reaches into another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tileunet"


def _imports() -> dict[str, set[tuple[str, str | None]]]:
    """For each module: (module it imports, name taken from it or None), every import
    statement anywhere in the file."""
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    found: dict[str, set[tuple[str, str | None]]] = {}
    for path in PACKAGE.glob("*.py"):
        edges: set[tuple[str, str | None]] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tileunet"):
                parts = node.module.split(".")
                for alias in node.names:
                    if len(parts) == 1 and alias.name in modules:  # from tileunet import x
                        edges.add((alias.name, None))
                    else:
                        edges.add((parts[1] if len(parts) > 1 else "__init__", alias.name))
            elif isinstance(node, ast.Import):
                edges.update((a.name.split(".")[1], None) for a in node.names
                             if a.name.startswith("tileunet."))
        found[path.stem] = {(m, n) for m, n in edges if m != path.stem}
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    graph = {m: {d for d, _ in edges} - {"__init__"} for m, edges in _imports().items()
             if m != "__init__"}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_another_modules_private_names():
    private = sorted(f"{m} imports {d}.{n}" for m, edges in _imports().items()
                     for d, n in edges if n and n.startswith("_") and not n.startswith("__"))
    assert private == []


#: longest function body, in lines of code (docstrings, comments and blank lines not counted)
MAX_LINES = 80


def _code_lines(path: Path) -> dict[str, int]:
    """Lines of code of every function in ``path``, by ``name:line``."""
    text = path.read_text()
    tree, lines = ast.parse(text), text.split("\n")
    docs: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            docs.update(range(body[0].lineno, body[0].end_lineno + 1))
    return {f"{node.name}:{node.lineno}": sum(
                1 for i in range(node.lineno, node.end_lineno + 1)
                if i not in docs and lines[i - 1].strip()
                and not lines[i - 1].strip().startswith("#"))
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_no_function_is_longer_than_the_limit():
    long = sorted(f"{p.name}:{name} has {n} lines of code"
                  for p in PACKAGE.glob("*.py") for name, n in _code_lines(p).items()
                  if n > MAX_LINES)
    assert long == []


def test_the_line_counter_skips_docstrings_and_comments(tmp_path):
    src = tmp_path / "m.py"
    src.write_text('def f():\n    """Doc\n    string."""\n    # note\n\n    return 1\n')
    assert _code_lines(src) == {"f:1": 2}
