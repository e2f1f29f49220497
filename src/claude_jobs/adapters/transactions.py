"""TransactWriteItems on the jobs table: retried on conflicts, cancellations by condition told
apart item by item."""

from __future__ import annotations

import random
import time
import uuid
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

#: Tries of a transaction that DynamoDB cancels because another one held the same item (a
#: tenant's counter is shared by its jobs' writes).
TRANSACTION_TRIES = 6


class Cancelled(Exception):
    """A transaction cancelled by a condition: the reason code of each item, in order."""

    def __init__(self, codes: list[str]) -> None:
        super().__init__(", ".join(codes))
        self.codes = codes

    def failed(self, index: int) -> bool:
        return len(self.codes) > index and self.codes[index] == "ConditionalCheckFailed"


def transact(client: DynamoDBClient, items: list[dict[str, Any]]) -> None:
    """One TransactWriteItems: retried while another transaction holds one of its items
    (nothing was written then); Cancelled when a condition does not hold. Each try has its
    own request token, so a retry by the SDK after a lost answer is not applied twice."""
    for attempt in range(TRANSACTION_TRIES):
        try:
            client.transact_write_items(
                TransactItems=items,  # type: ignore[arg-type]
                ClientRequestToken=uuid.uuid4().hex,
            )
            return
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            codes = [
                str(r.get("Code") or "None") for r in exc.response.get("CancellationReasons", [])
            ]
            if "TransactionConflict" in codes and attempt + 1 < TRANSACTION_TRIES:
                time.sleep(random.uniform(0, 0.02 * 2**attempt))  # noqa: S311
                continue
            if "ConditionalCheckFailed" in codes:
                raise Cancelled(codes) from None
            raise
