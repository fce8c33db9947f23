"""MkDocs hook: `<!-- train-config-options -->` becomes a table of every TrainConfig field, read from the code.

Each row is a field's name, type, default and meaning: the help text of its `opt(...)` metadata where fields
declare one, else the comment after the field in the source. Fields are listed in declaration order, grouped
under the group their metadata names (when they name one).
"""

from __future__ import annotations

import dataclasses
import html
import inspect
import re

MARK = "<!-- train-config-options -->"


def _cell(text: object) -> str:
    """Markdown for a table cell: pipes escaped, and `<` `>` outside code spans shown as written (not as HTML)."""
    parts = str(text).replace("|", "\\|").replace("\n", " ").split("`")
    return "`".join(html.escape(p, quote=False) if i % 2 == 0 else p for i, p in enumerate(parts))


def _code(text: object) -> str:
    """Inline code that may hold `|` (a backslash before it would show inside a code span)."""
    return "<code>" + html.escape(str(text)).replace("|", "&#124;") + "</code>"


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return _code(repr(f.default))
    if f.default_factory is not dataclasses.MISSING:
        return _code(repr(f.default_factory()))
    return "required"


def options_table() -> str:
    from ganforge.training.config import TrainConfig

    comments = dict(re.findall(r"^\s+(\w+):[^#\n]*#\s*(.+)$", inspect.getsource(TrainConfig), flags=re.M))
    groups: dict[str | None, list[str]] = {}  # Group -> rows, in order of first appearance.
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata.get("opt")
        help_text = getattr(meta, "help", None) or comments.get(f.name, "")
        if getattr(meta, "none_means", None):
            help_text += f" Unset (None): {meta.none_means}."
        row = f"| `{f.name}` | {_code(f.type)} | {_default(f)} | {_cell(help_text)} |"
        groups.setdefault(getattr(meta, "group", None), []).append(row)
    rows = []
    for group, group_rows in groups.items():
        rows += [f"| **{_cell(group)}** | | | |"] if group else []
        rows += group_rows
    return "\n".join(["| field | type | default | meaning |", "|---|---|---|---|", *rows])


def on_page_markdown(markdown, page, config, files):
    return markdown.replace(MARK, options_table()) if MARK in markdown else markdown
