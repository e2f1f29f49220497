"""Versioned prompt templates: `<root>/<name>/v<N>.md`, referenced as `name@vN`.

Placeholders are `{{name}}` or `{{detail.some.path}}`. Rendering is one pass over the template
text, so a value that itself contains `{{…}}` (an object's text, an event field) is never
expanded again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)\s*\}\}")
REF_RE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9_-]{0,63})@v(?P<version>[1-9][0-9]{0,3})$")
MAX_TEMPLATE_BYTES = 50_000


class TemplateError(ValueError):
    """A template is missing, malformed, or uses a placeholder it may not use."""


class RenderError(ValueError):
    """A value the template needs is not in the event."""


@dataclass(frozen=True)
class Template:
    name: str
    version: int
    text: str

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.version}"

    def placeholders(self) -> list[str]:
        return [m.group(1) for m in PLACEHOLDER_RE.finditer(self.text)]

    def check(self, allowed: Callable[[str], bool]) -> None:
        unknown = sorted({p for p in self.placeholders() if not allowed(p)})
        if unknown:
            raise TemplateError(
                f"template {self.ref} uses unknown placeholder(s): "
                + ", ".join("{{" + p + "}}" for p in unknown)
            )

    def render(self, lookup: Callable[[str], str]) -> str:
        return PLACEHOLDER_RE.sub(lambda m: lookup(m.group(1)), self.text)


def parse_ref(ref: str) -> tuple[str, int]:
    match = REF_RE.match(ref)
    if not match:
        raise TemplateError(f"{ref!r} is not a template reference like 'name@v1'")
    return match.group("name"), int(match.group("version"))


class TemplateStore:
    """Templates shipped with the deployment, read from a directory."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._cache: dict[str, Template] = {}

    def get(self, ref: str) -> Template:
        if ref in self._cache:
            return self._cache[ref]
        name, version = parse_ref(ref)
        path = self._root / name / f"v{version}.md"
        try:
            raw = path.read_bytes()
        except OSError:
            raise TemplateError(f"template {ref} not found (expected {path})") from None
        if len(raw) > MAX_TEMPLATE_BYTES:
            raise TemplateError(f"template {ref} is larger than {MAX_TEMPLATE_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise TemplateError(f"template {ref} is not UTF-8") from None
        template = Template(name=name, version=version, text=text)
        self._cache[ref] = template
        return template


def lookup_path(data: Any, path: Iterable[str]) -> Any:
    """`data["a"]["b"]` for path `a.b` (list items by index); KeyError when absent."""
    current = data
    for part in path:
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise KeyError(part)
    return current


def as_text(value: Any) -> str:
    """A value as it appears in a prompt: strings as-is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
