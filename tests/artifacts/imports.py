"""Which distributions a set of Python files needs: their imports, read from the source (AST).

Every `import x` / `from x import y` counts, at module level or inside a function (a lazy
import fails just the same when it runs), except those under `if TYPE_CHECKING:` (never
executed) and relative ones (the package itself).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

from infra.packaging import normalize

_installed = cache(packages_distributions)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for statement in node.orelse:
                self.visit(statement)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.names.update(alias.name.split(".")[0] for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            self.names.add(node.module.split(".")[0])


def imported_names(source: str) -> set[str]:
    """Top-level names of the absolute imports in `source` that run."""
    visitor = _Imports()
    visitor.visit(ast.parse(source))
    return visitor.names


def missing_distributions(
    files: Iterable[Path],
    provided: Iterable[str],
    *,
    first_party: Iterable[str] = ("claude_jobs",),
    root: Path,
    index: Mapping[str, list[str]] | None = None,
) -> dict[str, list[str]]:
    """`{file: [import name (distributions it comes from)…]}` for each import of `files` that
    is neither the standard library, nor first party, nor from a `provided` distribution.
    Distributions are looked up in the running environment (`packages_distributions()`)."""
    have = {normalize(name) for name in provided}
    dists = _installed() if index is None else index
    own = set(first_party)
    missing: dict[str, list[str]] = {}
    for path in sorted(files):
        for name in sorted(imported_names(path.read_text())):
            if name in sys.stdlib_module_names or name in own or name == "__future__":
                continue
            candidates = sorted({normalize(d) for d in dists.get(name, [])})
            if not have.intersection(candidates):
                found = ", ".join(candidates) or "no installed distribution"
                missing.setdefault(str(path.relative_to(root)), []).append(f"{name} ({found})")
    return missing
