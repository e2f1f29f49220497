"""Generates the client's typed job options (`src/claude_jobs_client/_options.py`) from
`claude_jobs.job_options.JobOptions`: `make client-options`. The client installs without
`claude_jobs` or pydantic, so it gets a plain TypedDict of the same fields."""

from __future__ import annotations

import sys
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

from claude_jobs.job_options import JobOptions, run_options

TARGET = Path(__file__).resolve().parents[1] / "claude_jobs_client" / "_options.py"

_HEADER = '''"""A job's run options, as `Client.submit` takes them.

Generated from `claude_jobs.job_options.JobOptions` by `make client-options`: do not edit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict


class JobOptions(TypedDict, total=False):
    """Options of `POST /v1/jobs`; left out (or None): the API's default."""
'''


def render_type(annotation: Any) -> str:
    """A JSON-facing type as the client spells it: lists as Sequence, objects as Mapping."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return render_type(args[0])
    if origin in (types.UnionType, typing.Union):
        return " | ".join(render_type(arg) for arg in args)
    if origin is list:
        return f"Sequence[{render_type(args[0])}]"
    if origin is dict:
        return f"Mapping[{render_type(args[0])}, {render_type(args[1])}]"
    if annotation is Any:
        return "Any"
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and annotation.__module__ == "builtins":
        return annotation.__name__
    raise TypeError(f"no client type for {annotation!r}")


def render() -> str:
    lines = [_HEADER]
    for name, option in run_options():
        info = JobOptions.model_fields[name]
        rendered = render_type(info.annotation)
        if "None" not in rendered.split(" | "):
            rendered += " | None"
        about = info.description or option.help
        if about:
            lines.extend(
                textwrap.wrap(about, 96, initial_indent="    #: ", subsequent_indent="    #: ")
            )
        lines.append(f"    {name}: {rendered}")
    lines.extend(["", "", "#: The options' names, in the API's order.", "OPTION_NAMES = ("])
    lines.extend(f'    "{name}",' for name in JobOptions.model_fields)
    lines.append(")\n")
    return "\n".join(lines)


def main() -> None:
    TARGET.write_text(render(), encoding="utf-8")
    print(f"wrote {TARGET}", file=sys.stderr)


if __name__ == "__main__":
    main()
