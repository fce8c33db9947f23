"""Command-line options generated from the training schema (ganforge.training.config.TrainConfig).

`ganforge train` takes every field; `ganforge inspect` takes the model fields, under the same names.
An option's default is None on the command line ("not given"), so TOML files and presets fill what the
user did not type; --help shows the real default from the schema.
"""

from __future__ import annotations

import dataclasses
import inspect

import typer


def schema_option(f: dataclasses.Field, panel: str | None = None) -> inspect.Parameter:
    """One schema field as a Typer option: same name, help with its default, grouped in --help."""
    from ganforge.training.config import Opt, flag

    o: Opt = f.metadata["opt"]
    kinds = {k.strip() for k in str(f.type).split("|")}
    annotation: type = bool if kinds <= {"bool"} else int if kinds <= {"int", "None"} else str
    if kinds <= {"float", "None"} and not o.schedule:
        annotation = float
    default = f.default if f.default is not dataclasses.MISSING else None
    shown = o.none_means if default is None else default
    if isinstance(shown, bool):
        shown = "on" if shown else "off"
    text = o.help
    if o.choices and f.name != "preset":
        text += f" One of: {', '.join(c for c in o.choices if c != 'noaug')}."
    if shown not in (None, ""):
        text += f" \\[default: {shown}]"  # Escaped: --help renders Rich markup.
    names = [f"{flag(f.name)}/--no-{f.name.replace('_', '-')}"] if annotation is bool else [flag(f.name)]
    option = typer.Option(
        None, *names, help=text, metavar=o.metavar, show_default=False, rich_help_panel=panel or o.group
    )
    return inspect.Parameter(
        f.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=option,
        annotation=annotation | None if annotation is not bool else bool | None,
    )
