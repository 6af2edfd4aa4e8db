"""Doctests in docstrings shown as code in the API reference.

The numpy docstring parser turns ``>>>`` lines into code only in an ``Examples`` section;
elsewhere (a module's docstring, say) Markdown would read them as nested quotes. This
extension of the docstring loader (listed in ``mkdocs.yml`` under the mkdocstrings
options) wraps each such doctest (``>>>`` lines and their output, up to a blank line) in
a ``pycon`` code fence. The code is not changed: only the text the site renders.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_FENCE = re.compile(r"^\s*(```|~~~)")
_UNDERLINE = re.compile(r"^\s*-{3,}\s*$")


def fence_doctests(text: str) -> str:
    """``text`` with every doctest outside an ``Examples`` section and outside code fences
    put in a code fence."""
    lines = text.split("\n")
    out: list[str] = []
    in_fence = in_examples = False
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if not in_fence and line.strip() and _UNDERLINE.match(nxt):  # a section title
            in_examples = line.strip().lower() in ("examples", "example")
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and not in_examples and line.lstrip().startswith(">>>"):
            indent = line[: len(line) - len(line.lstrip())]
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i])
                i += 1
            if out and out[-1].strip():
                out.append("")
            out += [f"{indent}```pycon", *block, f"{indent}```"]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    """Fences the doctests of every docstring as it is loaded (see the module's text)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
