"""moto's update expressions, parsed once per expression and copied cheaply.

Every `UpdateItem` (alone or in a transaction) makes moto parse its update expression into a
tree, deep-copy that tree, and walk the copy ten times to validate it against the item and
resolve its names and values. The stack writes the same few expressions all day (a claim, an
end, a spend), and on the local stack that was ~11 ms of the emulator's ~60 ms of CPU a job:
the parse ~0.2 ms, the deep copy ~0.5 ms (more than the parse), each walk rebuilding its
processor's table of node types and checking abstract classes at every node it visits.

`install()` changes how, not what:

- `UpdateExpressionParser.make` keeps the trees of the last `PARSED` expressions it parsed
  (an expression that does not parse raises as before, every time). moto never changes a
  parsed tree: its validator works on a copy, and the request checks only read it.
- The validator's copy of the tree is made node by node (each node's attributes, its children
  copied, their parent the copy), which is what `copy.deepcopy` made of a parsed tree; any
  other value it copies still goes through `copy.deepcopy`.
- A tree walker finds the processor of a node by the node's class, once per walker class and
  node class, not by rebuilding its table and asking `isinstance` of abstract classes at
  every node: each walker class's table is fixed (its node types to its own methods).

The walks, the checks, the errors and the writes are moto's own code.
"""

from __future__ import annotations

import copy
import functools
import importlib
import threading
from typing import Any

#: Parsed update expressions kept (an expression is a few hundred bytes of tree).
PARSED = 512

_installed = False
_lock = threading.Lock()


def install() -> None:
    """Patch moto's update-expression parsing and validation in this process (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        ast_nodes: Any = importlib.import_module("moto.dynamodb.parsing.ast_nodes")
        expressions: Any = importlib.import_module("moto.dynamodb.parsing.expressions")
        validators: Any = importlib.import_module("moto.dynamodb.parsing.validators")

        parser = expressions.UpdateExpressionParser
        parse = parser.make.__func__

        @functools.lru_cache(maxsize=PARSED)
        def parsed(expression: str) -> Any:
            return parse(parser, expression)

        def make(cls: type, expression: str) -> Any:
            if cls is not parser:  # (a subclass parses for itself)
                return parse(cls, expression)
            return parsed(expression)

        setattr(parser, "make", classmethod(make))  # noqa: B010 - moto's class, patched
        setattr(parser, "parsed", parsed)  # noqa: B010 - its cache, for inspection
        validators.deepcopy = _tree_copier(ast_nodes.Node)
        _walk_with_fixed_tables(ast_nodes.DepthFirstTraverser, ast_nodes.Node)
        _installed = True


def _tree_copier(node_type: type) -> Any:
    def copy_tree(value: Any, memo: Any = None) -> Any:
        if not isinstance(value, node_type):
            return copy.deepcopy(value, memo)
        tree: Any = value
        return _copy_node(tree, tree.parent, node_type)

    return copy_tree


def _copy_node(node: Any, parent: Any, node_type: type) -> Any:
    twin = object.__new__(type(node))
    twin.__dict__.update(node.__dict__)
    twin.parent = parent
    children = node.children
    if children is not None:
        twin.children = [
            _copy_node(child, twin, node_type)
            if isinstance(child, node_type)
            else _copy_value(child)
            for child in children
        ]
    return twin


def _copy_value(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return copy.deepcopy(value)


def _walk_with_fixed_tables(walker: type, node_type: type) -> None:
    """`DepthFirstTraverser`'s walk, each node's processor looked up by the node's class.

    moto's walk asks, at every node, `isinstance(node, <the walker's node types>)` (abstract
    classes: each check goes through `abc`) after building the walker's table again. The
    tables are fixed for each walker class, so the processor of a (walker class, node class)
    pair is found once, by moto's rule (the table's first class the node is an instance
    of), and kept."""
    processors: dict[tuple[type, type], Any] = {}
    nodes: dict[type, bool] = {}

    def processor_of(self: Any, kind: type) -> Any:
        key = (type(self), kind)
        if key not in processors:
            found = None
            for class_key, bound in self._processing_map().items():
                if issubclass(kind, class_key):
                    found = bound.__func__
                    break
            processors[key] = found
        return processors[key]

    def traverse_node_recursively(self: Any, node: Any, child_id: int = -1) -> Any:
        kind = type(node)
        is_node = nodes.get(kind)
        if is_node is None:
            is_node = nodes[kind] = issubclass(kind, node_type)
        if not is_node:
            return node
        parent_node = node.parent
        if node.children is not None:
            for i, child_node in enumerate(node.children):
                self.pre_processing_of_child(node, i)
                self.traverse_node_recursively(child_node, i)
        process = processor_of(self, kind)
        if process is not None:
            node = process(self, node)
            node.parent = parent_node
            if parent_node:
                parent_node.children[child_id] = node
        return node

    setattr(walker, "traverse_node_recursively", traverse_node_recursively)  # noqa: B010
