"""Generates the client's typed job options (`src/claude_jobs_client/_options.py`) from
`claude_jobs.job_options.JobOptions`: `make client-options`. The client installs without
`claude_jobs` or pydantic, so it gets a plain TypedDict of the same fields."""

from __future__ import annotations

import json
import re
import sys
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from claude_jobs.job_options import JobOptions, run_options

TARGET = Path(__file__).resolve().parents[1] / "claude_jobs_client" / "_options.py"

_HEADER = '''"""A job's run options, as `Client.submit` takes them.

Generated from `claude_jobs.job_options.JobOptions` by `make client-options`: do not edit.
"""

from __future__ import annotations

{imports}


class JobOptions(TypedDict, total=False):
    """Options of `POST /v1/jobs`; left out (or None): the API's default."""
'''


def render_type(annotation: Any) -> str:
    """A JSON-facing type as the client spells it: lists as Sequence, objects as Mapping."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return render_type(args[0])
    if origin is typing.Literal:
        return "Literal[" + ", ".join(json.dumps(arg) for arg in args) + "]"
    if origin in (types.UnionType, typing.Union):
        return " | ".join(render_type(arg) for arg in args)
    if origin is list:
        return f"Sequence[{render_type(args[0])}]"
    if origin is dict:
        return f"Mapping[{render_type(args[0])}, {render_type(args[1])}]"
    if annotation is Any:
        return "Any"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "Mapping[str, Any]"  # a JSON object
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "Mapping[str, Any]"  # a JSON object (the API validates it)
    if isinstance(annotation, type) and annotation.__module__ == "builtins":
        return annotation.__name__
    raise TypeError(f"no client type for {annotation!r}")


def _imports(types_used: str) -> str:
    """The import lines the rendered types need (and no more: ruff checks the file)."""
    used = {name for name in _IMPORTABLE if re.search(rf"\b{name}\b", types_used)}
    lines = []
    for module in ("collections.abc", "typing"):
        names = sorted(n for n in used | {"TypedDict"} if _IMPORTABLE.get(n) == module)
        if names:
            lines.append(f"from {module} import {', '.join(names)}")
    return "\n".join(lines)


_IMPORTABLE = {
    "Mapping": "collections.abc",
    "Sequence": "collections.abc",
    "Any": "typing",
    "Literal": "typing",
    "TypedDict": "typing",
}


def render() -> str:
    lines, types_used = [], []
    for name, option in run_options():
        info = JobOptions.model_fields[name]
        rendered = render_type(info.annotation)
        if "None" not in rendered.split(" | "):
            rendered += " | None"
        types_used.append(rendered)
        about = info.description or option.help
        if about:
            lines.extend(
                textwrap.wrap(about, 96, initial_indent="    #: ", subsequent_indent="    #: ")
            )
        lines.append(f"    {name}: {rendered}")
    lines.extend(["", "", "#: The options' names, in the API's order.", "OPTION_NAMES = ("])
    lines.extend(f'    "{name}",' for name in JobOptions.model_fields)
    lines.append(")\n")
    body = "\n".join(lines)
    return _HEADER.format(imports=_imports(" ".join(types_used))) + "\n" + body


def main() -> None:
    TARGET.write_text(render(), encoding="utf-8")
    print(f"wrote {TARGET}", file=sys.stderr)


if __name__ == "__main__":
    main()
