"""The emulator's update expressions: parsed once, copied cheaply, with moto's answers.

`claude_jobs_tools.local.dynamodb_expressions` keeps moto's parsed update expressions, copies
the tree its validator works on node by node, and builds each tree walker's table of node types
once. The answers must be moto's own: the same scenario of updates (functions, nested paths,
sets, lists, removals, transactions, and each kind of refused expression) run by a process with
the patch and one without gives the same answers and leaves the same items, and a kept tree is
never changed by the updates that use it.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from claude_jobs_tools.local import dynamodb_expressions
from tests.support.tables import create_table, mocked_dynamodb

TABLE = "t"
ROOT = Path(__file__).resolve().parents[2]


def _update(expression: str, values: dict[str, Any] | None = None, **extra: Any) -> Any:
    def call(client: Any) -> Any:
        kwargs: dict[str, Any] = {
            "TableName": TABLE,
            "Key": {"pk": {"S": extra.pop("key", "a")}},
            "UpdateExpression": expression,
            "ReturnValues": "ALL_NEW",
            **extra,
        }
        if values:
            kwargs["ExpressionAttributeValues"] = values
        return client.update_item(**kwargs)

    return call


def _transact(*updates: dict[str, Any]) -> Any:
    def call(client: Any) -> Any:
        return client.transact_write_items(
            TransactItems=[{"Update": {"TableName": TABLE, **u}} for u in updates]
        )

    return call


N1, N5, S_X = {"N": "1"}, {"N": "5"}, {"S": "x"}
KEY_A, KEY_B = {"pk": {"S": "a"}}, {"pk": {"S": "b"}}
#: Two updates in one transaction, the second conditional on b's `a` being 1.
TRANSACTION = _transact(
    {
        "Key": KEY_A,
        "UpdateExpression": "SET n = n + :one",
        "ExpressionAttributeValues": {":one": N1},
    },
    {
        "Key": KEY_B,
        "UpdateExpression": "SET a = a + :one",
        "ConditionExpression": "a = :one",
        "ExpressionAttributeValues": {":one": N1},
    },
)
#: Updates that succeed, some with the same expression again (its kept tree), and each kind
#: of expression moto refuses.
SCENARIO: list[Callable[[Any], Any]] = [
    _update("SET n = :one, s = :x", {":one": N1, ":x": S_X}),
    _update("SET n = n + :five", {":five": N5}),
    _update("SET n = n + :five", {":five": N5}),
    _update("SET n = n - :one", {":one": N1}),
    _update("SET c = if_not_exists(c, :one)", {":one": N1}),
    _update("SET c = if_not_exists(c, :five)", {":five": N5}),
    _update("SET l = list_append(if_not_exists(l, :e), :v)", {":e": {"L": []}, ":v": {"L": [N1]}}),
    _update("SET l = list_append(if_not_exists(l, :e), :v)", {":e": {"L": []}, ":v": {"L": [N5]}}),
    _update("SET l = list_append(:v, l)", {":v": {"L": [S_X]}}),
    _update("SET m = :m", {":m": {"M": {"x": {"M": {"y": N1}}, "z": {"L": [N1, N5]}}}}),
    _update("SET m.x.y = :five, m.z[1] = :one", {":five": N5, ":one": N1}),
    _update("SET #w.#x.q = :one", {":one": N1}, ExpressionAttributeNames={"#w": "m", "#x": "x"}),
    _update("REMOVE l[0], m.z[0]"),
    _update("ADD tags :t, tally :five", {":t": {"SS": ["p", "q"]}, ":five": N5}),
    _update("DELETE tags :t", {":t": {"SS": ["p"]}}),
    _update("SET n = :one REMOVE s ADD tally :one", {":one": N1}),
    _update("SET n = :one", {":one": N1}, ConditionExpression="n = :one"),
    _update("SET n = :five", {":five": N5}, ConditionExpression="n = :five"),
    _update("SET a = :one", {":one": N1}, key="b"),
    TRANSACTION,
    TRANSACTION,  # (its condition fails the second time: cancelled, nothing written)
    # refused: syntax, a value not given, overlapping paths, a key attribute, a type, a path
    # into nothing, a function of a missing attribute, two SET clauses
    _update("SET n = ", {":one": N1}),
    _update("SET n = :missing, s = :one", {":one": N1}),
    _update("SET n = :one, n = :five", {":one": N1, ":five": N5}),
    _update("SET pk = :x", {":x": S_X}),
    _update("SET c = c + :x", {":x": S_X}),
    _update("SET nothing.deeper = :one", {":one": N1}),
    _update("SET l2 = list_append(l2, :v)", {":v": {"L": [N1]}}),
    _update("SET n = :one SET s = :x", {":one": N1, ":x": S_X}),
    _update("SET n = :one", {":one": N1}),
]


def run_scenario() -> list[Any]:
    """Each step's answer (attributes, or the error's code and message), then both items."""
    answers: list[Any] = []
    with mocked_dynamodb() as client:
        create_table(client, TABLE, ("pk", "S"))
        for step in SCENARIO:
            try:
                answers.append(step(client).get("Attributes"))
            except ClientError as exc:
                error = exc.response["Error"]
                answers.append([error.get("Code"), error.get("Message")])
        for key in (KEY_A, KEY_B):
            answers.append(client.get_item(TableName=TABLE, Key=key).get("Item"))
    return answers


def _answers_of_a_process(patched: bool) -> list[Any]:
    program = (
        "import json, sys\n"
        "from claude_jobs_tools.local import dynamodb_expressions\n"
        f"if {patched}: dynamodb_expressions.install()\n"
        "from tests.integration.test_emulator_expressions import run_scenario\n"
        "print(json.dumps(run_scenario(), sort_keys=True))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    done = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers: list[Any] = json.loads(done.stdout)
    return answers


def test_updates_answer_as_moto_does_without_the_patch() -> None:
    # Given the same scenario of updates, run in a process with the patch and one without
    plain = _answers_of_a_process(patched=False)
    patched = _answers_of_a_process(patched=True)
    # Then every answer and both items are the same
    assert len(plain) == len(SCENARIO) + 2
    for step, (expected, got) in enumerate(zip(plain, patched, strict=True)):
        assert got == expected, f"step {step}"
    # and the scenario did succeed and refuse where it was meant to
    refused = [a for a in plain[: len(SCENARIO)] if isinstance(a, list)]
    assert len(refused) == 10, refused


def _shape(node: Any) -> Any:
    children = getattr(node, "children", None)
    if children is None:
        return repr(node)
    return [type(node).__name__, id(node.parent), [_shape(child) for child in children]]


def test_a_kept_expression_is_parsed_once_and_never_changed_by_its_updates() -> None:
    # Given the patch, and an expression whose validation replaces nodes of its tree (values,
    # a function, an addition)
    dynamodb_expressions.install()
    parser: Any = importlib.import_module("moto.dynamodb.parsing.expressions")
    make = parser.UpdateExpressionParser.make
    expression = "SET n = if_not_exists(n, :zero) + :one, l = list_append(l, :v) REMOVE gone"
    parsed = parser.UpdateExpressionParser.parsed
    parsed.cache_clear()
    tree = make(expression)
    before = _shape(tree)
    with mocked_dynamodb() as client:
        create_table(client, TABLE, ("pk", "S"))
        client.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "l": {"L": []}})
        # When it is used by several updates
        for _ in range(3):
            client.update_item(
                TableName=TABLE,
                Key=KEY_A,
                UpdateExpression=expression,
                ExpressionAttributeValues={":zero": {"N": "0"}, ":one": N1, ":v": {"L": [N1]}},
            )
        item = client.get_item(TableName=TABLE, Key=KEY_A)["Item"]
    # Then they all used the one tree, parsed once, which is as it was
    assert make(expression) is tree
    assert parsed.cache_info().misses == 1
    assert _shape(tree) == before
    # and the updates were applied three times
    assert item["n"] == {"N": "3"} and item["l"] == {"L": [N1, N1, N1]}
