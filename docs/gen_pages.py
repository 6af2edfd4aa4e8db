"""Pages of the documentation site that are generated from the project itself.

Run by the ``gen-files`` plugin on every ``mkdocs build`` (see ``mkdocs.yml``); it writes
into the build's virtual docs folder only, never into ``docs/``:

* ``reference/api/*.md``: the API reference, one page per subpackage of ``src/tileunet``,
  one for its top-level modules and one for the public names of ``tileunet`` itself, each
  module a ``::: tileunet.x.y`` block that mkdocstrings renders from the docstrings. The
  package tree is walked, so a new module appears without editing anything.
* ``reference/cli.md``: every subcommand and flag of ``tileunet``, read from the argparse
  parser (``tileunet.cli.build_parser``), so the page cannot drift from the code.
* ``results/*.md``: ``benchmarks/RESULTS.md`` (which stays the source), one page per
  top-level section, with the figures it names copied next to it.
* ``reference/SUMMARY.md`` and ``results/SUMMARY.md``: the navigation of those sections
  (read by the ``literate-nav`` plugin).
"""

from __future__ import annotations

import argparse
import posixpath
import re
import sys
from pathlib import Path

import griffe
import mkdocs_gen_files
from mkdocs.structure.files import InclusionLevel

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = "tileunet"

#: modules that are not part of the documented API
SKIP_MODULES = {f"{PACKAGE}.__main__"}
#: the order of the API pages in the navigation (by the flow of data); a subpackage or
#: module not listed here comes after these, in alphabetical order
SUBPACKAGE_ORDER = ("io", "targets", "augment", "training", "inference", "evaluation",
                    "export", "napari")
MODULE_ORDER = ("model", "checkpoint", "losses", "device", "errors", "interrupt", "plots",
                "synthetic", "demo", "compat", "cli")

if str(SRC) not in sys.path:  # document this tree's code, installed or not
    sys.path.insert(0, str(SRC))


def ordered(names, preferred):
    """``names`` in the order of ``preferred``, the others after them, sorted."""
    rank = {name: i for i, name in enumerate(preferred)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def write(path: str, text: str) -> None:
    with mkdocs_gen_files.open(path, "w") as f:
        f.write(text)


CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`).+?(?<!`)\1(?!`)")


def escape_md(text: str) -> str:
    """Inline text for a Markdown table cell: line breaks joined, characters that Markdown
    or a table would read escaped outside code spans."""
    def plain(part: str) -> str:
        return re.sub(r"([\\`*_\[\]|])", r"\\\1", part).replace("<", "&lt;")

    text = " ".join(text.split())
    out, end = [], 0
    for span in CODE_SPAN.finditer(text):
        out += [plain(text[end:span.start()]), span.group(0)]  # a table keeps its pipes
        end = span.end()
    return "".join([*out, plain(text[end:])])


# ---------------------------------------------------------------------- API reference
def module_names(package_dir: Path, dotted: str) -> list[str]:
    """Every module of the package at ``package_dir``, the package itself first."""
    names = [dotted]
    for path in sorted(package_dir.iterdir()):
        if path.is_dir() and (path / "__init__.py").exists():
            names += module_names(path, f"{dotted}.{path.name}")
        elif path.suffix == ".py" and not path.name.startswith("_"):
            names.append(f"{dotted}.{path.stem}")
    return [n for n in names if n not in SKIP_MODULES]


def module_block(name: str, **options: object) -> str:
    lines = [f"::: {name}"]
    if options:
        lines.append("    options:")
        lines += [f"      {key}: {str(value).lower() if isinstance(value, bool) else value}"
                  for key, value in options.items()]
    return "\n".join(lines) + "\n"


def api_pages() -> list[tuple[str, str]]:
    """Writes the API pages; returns their (title, path relative to reference/)."""
    root = SRC / PACKAGE
    nav = []

    # the public names of the package itself: its docstring and its __all__, read as
    # mkdocstrings reads them (statically); an object is linked where it is rendered
    package = griffe.load(PACKAGE, search_paths=[str(SRC)], resolve_aliases=True,
                          resolve_external=False)
    rows = []
    for name in map(str, package.exports or ()):
        obj = package[name]
        target = obj.target_path if obj.is_alias else obj.path
        if obj.docstring and obj.docstring.value.strip():
            summary = escape_md(obj.docstring.value.strip().split("\n\n")[0])
            rows.append(f"| [`{name}`][{target}] | `{target}` | {summary} |")
        elif obj.is_attribute and obj.value is not None:
            value = str(obj.value)
            rows.append(f"| `{name}` | `{target}` | `{value}` |")
        else:  # mkdocstrings leaves out objects without a docstring
            rows.append(f"| `{name}` | `{target}` | (no docstring) |")
    write("reference/api/tileunet.md", "\n".join([
        f"# {PACKAGE}",
        "",
        module_block(PACKAGE, members=False, show_root_heading=False),
        "## Public names",
        "",
        f"`from {PACKAGE} import *` imports these names (`{PACKAGE}.__all__`); each is "
        "documented in the module that defines it.",
        "",
        "| Name | Defined as | Summary |",
        "| --- | --- | --- |",
        *rows,
        "",
    ]))
    nav.append((PACKAGE, "api/tileunet.md"))

    # the top-level modules
    modules = ordered([p.stem for p in root.glob("*.py")
                       if not p.name.startswith("_")
                       and f"{PACKAGE}.{p.stem}" not in SKIP_MODULES], MODULE_ORDER)
    write("reference/api/modules.md", "\n".join([
        "# Top-level modules",
        "",
        "The modules directly in the `tileunet` package: " + ", ".join(
            f"[`{PACKAGE}.{m}`](#{PACKAGE}.{m})" for m in modules) + ".",
        "",
        *(module_block(f"{PACKAGE}.{m}") for m in modules),
    ]))
    nav.append(("Top-level modules", "api/modules.md"))

    # one page per subpackage
    subpackages = ordered([p.name for p in root.iterdir()
                           if p.is_dir() and (p / "__init__.py").exists()], SUBPACKAGE_ORDER)
    for sub in subpackages:
        dotted = f"{PACKAGE}.{sub}"
        names = module_names(root / sub, dotted)
        blocks = [module_block(dotted, members=False, show_root_heading=False)]
        if len(names) > 1:
            blocks.append("Modules: " + ", ".join(f"[`{n}`](#{n})" for n in names[1:]) + ".\n")
        blocks += [module_block(n) for n in names[1:]]
        write(f"reference/api/{sub}.md", "\n".join([f"# {dotted}", "", *blocks]))
        nav.append((dotted, f"api/{sub}.md"))
    return nav


# ---------------------------------------------------------------------- CLI reference
def argument_name(action: argparse.Action) -> str:
    if action.option_strings:
        return ", ".join(f"`{s}`" for s in action.option_strings)
    return f"`{action.metavar or action.dest}`"


def argument_value(action: argparse.Action) -> str:
    if action.nargs == 0:  # a switch: store_true, store_const, help, version ...
        return "(switch)"
    if action.choices is not None:
        value = "one of " + ", ".join(f"`{c}`" for c in action.choices)
    elif not action.option_strings:  # a positional argument: its name says it
        value = ""
    else:
        metavar = action.metavar or action.dest.upper()
        value = f"`{metavar if isinstance(metavar, str) else ' '.join(metavar)}`"
    notes = []
    if action.type not in (None, str) and action.choices is None:
        notes.append(getattr(action.type, "__name__", "value"))
    if action.nargs in ("+", "*", "?"):
        notes.append({"+": "one or more", "*": "any number", "?": "optional"}[action.nargs])
    elif isinstance(action.nargs, int) and action.nargs > 1:
        notes.append(f"{action.nargs} values")
    if isinstance(action, argparse._AppendAction):
        notes.append("repeatable")
    return " ".join([value, *(f"({n})" for n in notes)]).strip()


def argument_default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    default = action.default
    if (default is None or default is argparse.SUPPRESS or default == []
            or (action.nargs == 0 and default is False)):
        return ""
    return f"`{default}`"


def argument_help(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    if not action.help or action.help is argparse.SUPPRESS:
        return ""
    return escape_md(formatter._expand_help(action) if "%" in action.help else action.help)


def parser_sections(parser: argparse.ArgumentParser, anchor: str, level: int,
                    summary: str | None = None) -> list[str]:
    """The usage, description (else ``summary``) and arguments of ``parser``, then its
    subcommands."""
    width = 88
    formatter_class = parser.formatter_class
    formatter = formatter_class(prog=parser.prog, width=width)
    usage_formatter = formatter_class(prog=parser.prog, width=width)
    usage_formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    out = ["```text", usage_formatter.format_help().strip(), "```", ""]
    if parser.description or summary:
        out += [escape_md(parser.description or summary), ""]

    subcommands = []
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.help is not argparse.SUPPRESS
                   and not isinstance(a, argparse._SubParsersAction)]
        subcommands += [a for a in group._group_actions
                        if isinstance(a, argparse._SubParsersAction)]
        if not actions:
            continue
        title = group.title or "arguments"
        out += [f"**{escape_md(title[:1].upper() + title[1:])}**", ""]
        if group.description:
            out += [escape_md(group.description), ""]
        out += ["| Argument | Value | Default | Description |", "| --- | --- | --- | --- |"]
        out += [f"| {argument_name(a)} | {argument_value(a)} | {argument_default(a)} | "
                f"{argument_help(a, formatter)} |" for a in actions]
        out.append("")
    for group in parser._mutually_exclusive_groups:
        names = " ".join(argument_name(a) for a in group._group_actions)
        out += [f"Only one of {names} may be given"
                + (" (one is required)." if group.required else "."), ""]
    if parser.epilog:
        out += [escape_md(parser.epilog), ""]

    for subparsers in subcommands:
        helps = {a.dest: a.help for a in subparsers._choices_actions}
        out += ["| Command | Summary |", "| --- | --- |"]
        out += [f"| [`{name}`](#{anchor}-{name}) | {escape_md(helps.get(name) or '')} |"
                for name in subparsers.choices]
        out.append("")
        for name, sub in subparsers.choices.items():
            out += [f"{'#' * level} `{sub.prog}` {{ #{anchor}-{name} }}", ""]
            out += parser_sections(sub, f"{anchor}-{name}", level + 1, helps.get(name))
    return out


def cli_page() -> None:
    from tileunet.cli import build_parser

    parser = build_parser()
    write("reference/cli.md", "\n".join([
        "# Command line",
        "",
        f"`{parser.prog}` and its subcommands, with every argument. This page is generated "
        "from the program's argument parser; `tileunet COMMAND --help` prints the same.",
        "",
        *parser_sections(parser, parser.prog, 2),
    ]))


# ---------------------------------------------------------------------- results
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)((?:\s+\"[^\"]*\")?)\)")
FIGURE_SPAN = re.compile(r"(?<!\[)`((?:\.\./)?figures/[^`\s]+\.(?:png|jpe?g|svg|gif))`")
FENCE = re.compile(r"^\s*(```|~~~)")


def slugify(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def split_sections(text: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The lines before the first ``## `` heading, and each ``## `` section (heading, lines);
    headings inside fenced code do not count."""
    intro, sections, fenced = [], [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            sections.append((line[3:].strip(), []))
        elif sections:
            sections[-1][1].append(line)
        else:
            intro.append(line)
    return intro, sections


def shift_headings(lines: list[str]) -> list[str]:
    """``### x`` -> ``## x`` and so on (the section's own heading becomes the page's ``#``)."""
    out, fenced = [], False
    for line in lines:
        if FENCE.match(line):
            fenced = not fenced
        if not fenced and re.match(r"^#{3,6} ", line):
            line = line[1:]
        out.append(line)
    return out


def rewrite_links(lines: list[str], page: str, figures: set[str]) -> list[str]:
    """Links relative to ``benchmarks/`` made to work from ``page`` in the site: figures are
    copied along, pages of the site are linked, anything else (scripts, source files) is
    written as its path in the repository. Figures that the text only names (as
    ``figures/x.png``) are linked, and shown after the paragraph that first names them."""
    page_dir = posixpath.dirname(page)

    def link(match: re.Match) -> str:
        bang, text, target, title = match.groups()
        if re.match(r"^([a-z][a-z0-9+.-]*:|#)", target):  # a URL or an anchor
            return match.group(0)
        path, _, fragment = target.partition("#")
        repo_path = posixpath.normpath(posixpath.join("benchmarks", path))
        if repo_path.startswith("benchmarks/figures/") and (ROOT / repo_path).is_file():
            figures.add(repo_path)
            site_path = "results/" + repo_path.removeprefix("benchmarks/")
        elif repo_path.startswith("docs/") and (ROOT / repo_path).exists():
            site_path = repo_path.removeprefix("docs/")
        else:  # outside the site: the repository path, as text
            return f"{text} (`{repo_path}`)" if text and text != repo_path else f"`{repo_path}`"
        rel = posixpath.relpath(site_path, page_dir)
        return f"{bang}[{text}]({rel}{'#' + fragment if fragment else ''}{title})"

    shown: set[str] = set()
    for line in lines:
        for match in LINK.finditer(line):
            if match.group(1):
                shown.add(posixpath.normpath(posixpath.join("benchmarks", match.group(3))))

    out, pending, fenced = [], [], False
    for line in lines:
        if FENCE.match(line):
            fenced = not fenced
        if fenced:
            out.append(line)
            continue
        line = LINK.sub(link, line)

        def named(match: re.Match) -> str:
            repo_path = posixpath.normpath(posixpath.join("benchmarks", match.group(1)))
            if not (ROOT / repo_path).is_file():
                return match.group(0)
            figures.add(repo_path)
            if repo_path not in shown:
                shown.add(repo_path)
                pending.append(repo_path)
            rel = posixpath.relpath("results/" + repo_path.removeprefix("benchmarks/"), page_dir)
            return f"[`{match.group(1)}`]({rel})"

        line = FIGURE_SPAN.sub(named, line)
        if not line.strip() and pending:  # the end of a paragraph: show what it named
            for repo_path in pending:
                rel = posixpath.relpath("results/" + repo_path.removeprefix("benchmarks/"),
                                        page_dir)
                out += ["", f"![{posixpath.basename(repo_path)}]({rel})"]
            pending.clear()
        out.append(line)
    for repo_path in pending:
        rel = posixpath.relpath("results/" + repo_path.removeprefix("benchmarks/"), page_dir)
        out += ["", f"![{posixpath.basename(repo_path)}]({rel})"]
    return out


def results_pages() -> None:
    intro, sections = split_sections(RESULTS.read_text(encoding="utf-8"))
    figures: set[str] = set()
    nav, index = [], []
    for heading, lines in sections:
        title = heading.split(" — ")[0].strip()
        page = f"results/{slugify(title)}.md"
        body = rewrite_links(shift_headings(lines), page, figures)
        write(page, "\n".join([f"# {heading}", *body]).rstrip() + "\n")
        mkdocs_gen_files.set_edit_path(page, "../benchmarks/RESULTS.md")
        nav.append(f"* [{title}]({posixpath.basename(page)})")
        index.append(f"* [{escape_md(heading)}]({posixpath.basename(page)})")

    title, *rest = intro if intro and intro[0].startswith("# ") else ["# Results", *intro]
    body = rewrite_links(rest, "results/index.md", figures)
    write("results/index.md", "\n".join([
        title, *body, "",
        "The measurements, by topic. They are kept in `benchmarks/RESULTS.md` in the "
        "repository, next to the scripts that made them; these pages are generated from it.",
        "", *index, "",
    ]))
    write("results/SUMMARY.md", "\n".join(["* [Overview](index.md)", *nav, ""]))
    for repo_path in sorted(figures):
        with mkdocs_gen_files.open("results/" + repo_path.removeprefix("benchmarks/"), "wb") as f:
            f.write((ROOT / repo_path).read_bytes())


# ---------------------------------------------------------------------- navigation
def main() -> None:
    api = api_pages()
    cli_page()
    results_pages()
    write("reference/SUMMARY.md", "\n".join([
        "* [Command line](cli.md)",
        "* API",
        *(f"    * [{title}]({path})" for title, path in api),
        "",
    ]))
    # the navigation files are read by literate-nav, not published as pages
    files = mkdocs_gen_files.FilesEditor.current().files
    for nav_file in ("reference/SUMMARY.md", "results/SUMMARY.md"):
        files.get_file_from_path(nav_file).inclusion = InclusionLevel.EXCLUDED


main()
