"""Small readers over synthesized templates."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Template


def find_one(template: Template, type_: str, properties: dict[str, Any]) -> tuple[str, Any]:
    """The one resource of a type whose properties include `properties`."""
    found = template.find_resources(type_, {"Properties": properties})
    assert len(found) == 1, f"expected one {type_} with {properties}, found {list(found)}"
    return next(iter(found.items()))
