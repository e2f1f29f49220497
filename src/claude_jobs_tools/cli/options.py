"""`claude-jobs submit`'s job-option flags, made from `claude_jobs.job_options.JobOptions`.

Each option's flag and help come from its `RunOption`; how its value is read comes from its
type: a list is given as `--flag a,b` or repeated (`--flag ''` for an empty one), an object (or
a list of objects: each value one, or a JSON list of them) as inline JSON or `@file.json`,
anything else as itself.
"""

from __future__ import annotations

import functools
import inspect
import json
import types
import typing
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from claude_jobs.job_options import JobOptions, RunOption, run_options


def flag_of(name: str, option: RunOption) -> str:
    return option.flag or "--" + name.replace("_", "-")


def value_type(annotation: Any) -> Any:
    """The option's type without `Annotated` and `None`: `list`, `dict` or a scalar type."""
    if typing.get_origin(annotation) is typing.Annotated:
        return value_type(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        kinds = [value_type(a) for a in typing.get_args(annotation) if a is not type(None)]
        if len(kinds) != 1:
            raise TypeError(f"no CLI flag for {annotation!r}")
        return kinds[0]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return dict  # a JSON object
    if typing.get_origin(annotation) is typing.Literal:
        return type(typing.get_args(annotation)[0])
    return typing.get_origin(annotation) or annotation


def _parameter(name: str, option: RunOption) -> inspect.Parameter:
    kind = value_type(JobOptions.model_fields[name].annotation)
    shown = {list: list[str] | None, dict: str | None}.get(kind, kind | None)
    flag = typer.Option(flag_of(name, option), help=option.help, show_default=False)
    return inspect.Parameter(
        name,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=None,
        annotation=Annotated[shown, flag],
    )


def parameters() -> Iterator[inspect.Parameter]:
    for name, option in run_options():
        yield _parameter(name, option)


def parse(name: str, given: Any) -> Any:
    """A flag's value as the API takes it (None: not given)."""
    if given is None:
        return None
    kind = value_type(JobOptions.model_fields[name].annotation)
    if kind is list and _objects(name):  # each value: a JSON object, a JSON list of them, @file
        items: list[Any] = []
        for part in given:
            loaded = _json(name, part)
            items.extend(loaded if isinstance(loaded, list) else [loaded])
        return items
    if kind is list:
        return [item.strip() for part in given for item in part.split(",") if item.strip()]
    if kind is dict:
        return _json(name, given)
    return given


def _objects(name: str) -> bool:
    """Whether a list option's items are objects (models), given as JSON."""
    annotation = JobOptions.model_fields[name].annotation
    args = typing.get_args(annotation)
    item = args[0] if args else None
    return isinstance(item, type) and issubclass(item, BaseModel)


def _json(name: str, given: Any) -> Any:
    raw = str(given)
    if raw.startswith("@"):
        with open(raw[1:], encoding="utf-8") as handle:
            raw = handle.read()
    try:
        return json.loads(raw)
    except ValueError as exc:
        hint = flag_of(name, dict(run_options())[name])
        raise typer.BadParameter(f"not JSON: {exc}", param_hint=hint) from None


def with_job_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`command` gets a flag for each job option after its first parameter, and receives them
    parsed as `options` (a dict of the options given)."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "options"]
    added = list(parameters())
    names = [p.name for p in added]

    @functools.wraps(command)
    def run(**kwargs: Any) -> Any:
        given = {name: parse(name, kwargs.pop(name, None)) for name in names}
        options = {name: value for name, value in given.items() if value is not None}
        return command(**kwargs, options=options)

    shown = [*own[:1], *added, *own[1:]]
    run.__signature__ = signature.replace(parameters=shown)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in shown}
    return run
