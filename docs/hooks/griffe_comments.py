"""Griffe extension: an attribute's trailing comment is its docstring in the API reference.

ganforge documents dataclass fields and constants as a parameter table, one comment per line
(`z_dim: int = 512  # Input latent size.`); Python keeps no such comment, so the reference would show the
fields bare. An attribute written on one line, with no docstring of its own, takes its comment as docstring.
"""

from __future__ import annotations

import ast
import io
import tokenize
from typing import Any

import griffe


def trailing_comment(line: str) -> str | None:
    """The text of the comment that ends `line` (a `#` inside a string does not count), or None."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(line).readline))
    except (tokenize.TokenError, SyntaxError):
        return None
    comments = [t.string for t in tokens if t.type == tokenize.COMMENT]
    if not comments:
        return None
    return comments[-1].lstrip("#").strip() or None


class TrailingComments(griffe.Extension):
    def on_attribute_instance(
        self,
        *,
        node: ast.AST | griffe.ObjectNode,
        attr: griffe.Attribute,
        agent: griffe.Visitor | griffe.Inspector,
        **kwargs: Any,
    ) -> None:
        if attr.docstring is not None or attr.lineno is None or attr.lineno != attr.endlineno:
            return
        lines = attr.lines  # The source line(s) of the definition, comment included.
        comment = trailing_comment(lines[0]) if len(lines) == 1 else None
        if comment:
            attr.docstring = griffe.Docstring(comment, lineno=attr.lineno, endlineno=attr.lineno, parent=attr)
