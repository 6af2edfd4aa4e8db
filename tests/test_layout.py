"""The package's layout: no import cycles (lazy imports included) and no module that
reaches into another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tileunet"
ROOT = "tileunet"


def module_name(path: Path) -> str:
    """``tileunet.io.images`` for ``src/tileunet/io/images.py``; a package is named by
    its ``__init__``: ``tileunet.io``."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _target(name: str, modules: dict[str, Path]) -> str:
    """The module of ``name``: itself, else the longest module path it starts with
    (``tileunet.io.images.read_image`` -> ``tileunet.io.images``)."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _imports() -> dict[str, set[tuple[str, str | None]]]:
    """For each module: (module it imports, name taken from it or None), every import
    statement anywhere in the file."""
    modules = _modules()
    found: dict[str, set[tuple[str, str | None]]] = {}
    for name, path in modules.items():
        edges: set[tuple[str, str | None]] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == ROOT:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    if sub in modules:  # from tileunet.io import images
                        edges.add((sub, None))
                    else:
                        edges.add((_target(node.module, modules), alias.name))
            elif isinstance(node, ast.Import):
                edges.update((_target(a.name, modules), None) for a in node.names
                             if a.name.split(".")[0] == ROOT)
        found[name] = {(m, n) for m, n in edges if m != name}
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
    """Packages' ``__init__`` modules aside: importing a module imports its packages
    first, which is no dependency of the module on them."""
    modules = _modules()
    inits = {m for m, p in modules.items() if p.name == "__init__.py"}
    graph = {m: {d for d, _ in edges} - inits for m, edges in _imports().items()
             if m not in inits}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_only_the_entry_point_imports_the_command_line():
    """The library decides; ``tileunet.cli`` parses flags and prints (``__main__`` runs it)."""
    users = sorted(m for m, edges in _imports().items() if "tileunet.cli" in {d for d, _ in edges})
    assert users == ["tileunet.__main__"]


def test_module_names_follow_the_tree(tmp_path):
    assert module_name(PACKAGE / "io" / "images.py") == "tileunet.io.images"
    assert module_name(PACKAGE / "io" / "__init__.py") == "tileunet.io"
    assert _target("tileunet.io.images.read_image", _modules()) == "tileunet.io.images"


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
    long = sorted(f"{m}:{name} has {n} lines of code"
                  for m, p in _modules().items() for name, n in _code_lines(p).items()
                  if n > MAX_LINES)
    assert long == []


def test_the_line_counter_skips_docstrings_and_comments(tmp_path):
    src = tmp_path / "m.py"
    src.write_text('def f():\n    """Doc\n    string."""\n    # note\n\n    return 1\n')
    assert _code_lines(src) == {"f:1": 2}
