"""MkDocs hook: the guide pages are the README's `##` sections, cut out at build time (never copied by hand).

The README stays the one source of the guides; the site shows each section as a page with its headings raised
one level, and ARCHITECTURE.md as the page architecture.md. The build stops with a sentence when they drift:
a README section without a page below, a page whose section is gone, a hand-written copy in docs/, or a module
of the package that ARCHITECTURE.md's module map does not name. `<!-- readme:intro -->` in a docs page becomes
the README's opening paragraphs (the text before its first section).
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
ARCHITECTURE = ROOT / "ARCHITECTURE.md"
PACKAGE = ROOT / "ganforge"

# README section (its heading up to a colon, lower case) -> page. Add a line here when the README gains one.
PAGES = {
    "set-up commands": "getting-started.md",
    "what ganforge guarantees": "guarantees.md",
    "training": "training.md",
    "training controls": "training-controls.md",
    "using trained models": "using-models.md",
    "metrics": "metrics.md",
    "explorer": "explorer.md",
    "exploring a model": "exploring.md",
    "datasets": "datasets.md",
    "models and the inspector": "models.md",
    "performance": "performance.md",
    "development": "development.md",
}
INTRO_MARK = "<!-- readme:intro -->"
FENCE = re.compile(r"^\s*(```|~~~)")
_intro = {"text": ""}  # Filled by on_files, read by on_page_markdown.


def split_readme(text: str) -> tuple[str, dict[str, list[str]]]:
    """(text before the first `##` section, {section key: its lines, heading first}); fences are respected."""
    intro: list[str] = []
    sections: dict[str, list[str]] = {}
    current, fenced = intro, False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            key = line[3:].split(":", 1)[0].strip().lower()
            if key in sections:
                raise PluginError(f"README.md has two sections named {key!r}: give them different headings")
            current = sections[key] = []
        current.append(line)
    return "\n".join(line for line in intro if not line.startswith("# ")).strip(), sections


def as_page(lines: list[str]) -> str:
    """The section as a page: `## Title` becomes `# Title`, `###` becomes `##` (outside code blocks).

    Links into docs/ (pictures the README shows, such as `docs/images/demo-progress.png`) lose that prefix: the
    pages live in docs/ themselves."""
    out, fenced = [], False
    for line in lines:
        if FENCE.match(line):
            fenced = not fenced
        if not fenced:
            line = line.replace("](docs/", "](")
        out.append(line[1:] if not fenced and re.match(r"^#{2,6} ", line) else line)
    return "\n".join(out).rstrip() + "\n"


def unlisted_modules(architecture: str) -> list[str]:
    """Modules of the package (paths relative to ganforge/) that the module map does not name in backticks."""
    modules = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
    return [m for m in modules if f"`{m}`" not in architecture]


def guide_pages() -> dict[str, str]:
    """{page: markdown} of every page made from README.md and ARCHITECTURE.md; PluginError when they drifted."""
    intro, sections = split_readme(README.read_text(encoding="utf-8"))
    hook = f"docs/hooks/{Path(__file__).name}"
    unmapped = sorted(set(sections) - set(PAGES))
    if unmapped:
        raise PluginError(
            f"README section(s) {unmapped} have no docs page: add them to PAGES in {hook} and to the nav in mkdocs.yml"
        )
    gone = sorted(set(PAGES) - set(sections))
    if gone:
        raise PluginError(
            f"README.md has no section(s) {gone} any more: remove them from PAGES in {hook} and "
            f"from the nav in mkdocs.yml"
        )
    architecture = ARCHITECTURE.read_text(encoding="utf-8")
    unlisted = unlisted_modules(architecture)
    if unlisted:
        raise PluginError(
            f"ARCHITECTURE.md's module map does not name {', '.join(unlisted)}: add a row for each "
            f"(what it does, what it must not know)"
        )
    _intro["text"] = intro
    pages = {page: as_page(sections[key]) for key, page in PAGES.items()}
    pages["architecture.md"] = architecture
    return pages


def on_files(files, config):
    for page, markdown in guide_pages().items():
        if files.get_file_from_path(page) is not None:
            raise PluginError(
                f"docs/{page} exists, but that page is made at build time from README.md or "
                f"ARCHITECTURE.md: edit those instead and remove docs/{page}"
            )
        files.append(File.generated(config, page, content=markdown))
    return files


def on_page_markdown(markdown, page, config, files):
    return markdown.replace(INTRO_MARK, _intro["text"])
