"""Read the jobs table's stream as Lambda's event source mapping would deliver it.

For the local stack (the emulator has no event source mappings: its notifier source polls this)
and for tests: `poll()` returns the new records of every shard, shaped like the `Records` of a
DynamoDB stream Lambda event.
With the account-id endpoint mode botocore uses for streams, the streams client must be built
with `account_id_endpoint_mode="disabled"` unless `AWS_ENDPOINT_URL` points at an emulator.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)


def streams_client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"))


def lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record as Lambda delivers it (epoch creation time, the source ARN)."""
    shaped = dict(record)
    data = dict(shaped.get("dynamodb", {}))
    created = data.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        data["ApproximateCreationDateTime"] = int(created.timestamp())
    elif isinstance(created, float):  # raw JSON (see StreamReader)
        data["ApproximateCreationDateTime"] = int(created)
    shaped["dynamodb"] = data
    shaped["eventSourceARN"] = stream_arn
    return shaped


class StreamReader:
    """The jobs table's stream in Lambda's record shape, read with a fresh shard iterator on
    every poll (after the last sequence number delivered), or with `keep_iterators`, on the
    iterator the last read of the shard returned (`NextShardIterator`, as Lambda's pollers do).

    A long-lived iterator does not work against plain moto: when a transaction fails (an
    idempotent replay does), moto puts back a copy of the table, stream included, and an
    iterator on the old stream never sees another record. The emulator's transactions put back
    items, not tables (`dynamodb_transactions`), so the local stack's pollers keep their
    iterators: an idle poll is one request, not two. A kept iterator that fails to read is
    dropped and the shard read again from after the last record delivered. Records are
    de-duplicated by `eventID`, since moto's sequence numbers can repeat (the records of a
    failed transaction are taken back). The stream's ARN and shards are read once and kept
    (they are the table's for good) until a poll fails.

    The emulator serves some records botocore cannot parse (a map with an empty key comes back
    malformed); their raw JSON is read instead, so such a record reaches the function (which may
    then fail on it, and the event source deals with that) instead of stopping every read of
    the stream."""

    def __init__(
        self,
        dynamodb: Any,
        table_name: str,
        streams: Any | None = None,
        *,
        keep_iterators: bool = False,
    ) -> None:
        self._dynamodb = dynamodb
        self._table = table_name
        self._streams = streams or streams_client()
        self._after: dict[str, str] = {}  # shard id → last sequence number delivered
        self._keep_iterators = keep_iterators
        self._iterators: dict[str, str] = {}  # shard id → the iterator to read it with next
        #: GetShardIterator requests made (a kept iterator saves one a poll).
        self.iterators_taken = 0
        #: eventID → the shard it came from (an on-failure record names it).
        self._seen: OrderedDict[str, str] = OrderedDict()
        self._body: bytes | None = None
        self._shards: tuple[str, list[str]] | None = None  # (stream ARN, shard ids)
        self._streams.meta.events.register(
            "before-parse.dynamodb-streams.GetRecords", self._keep_body
        )

    def _keep_body(self, response_dict: dict[str, Any], **_: Any) -> None:
        self._body = response_dict.get("body")

    def shard_of(self, record: dict[str, Any]) -> str:
        """The shard a delivered record came from ("" once forgotten)."""
        return self._seen.get(record.get("eventID", ""), "")

    def _get_records(self, iterator: str, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        """The records at `iterator`, and the iterator after them (None: the shard is closed)."""
        from botocore.exceptions import BotoCoreError, ClientError

        self._body = None
        try:
            answer = self._streams.get_records(ShardIterator=iterator, Limit=limit)
            return answer["Records"], answer.get("NextShardIterator")
        except (ClientError, BotoCoreError):
            raise
        except Exception:
            if not self._body:
                raise
            log.warning("the emulator served stream records botocore cannot parse; read raw")
            raw: dict[str, Any] = json.loads(self._body)
            return raw.get("Records", []), raw.get("NextShardIterator")

    def _fresh_iterator(self, stream_arn: str, shard_id: str) -> str:
        position: dict[str, str] = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after}
            if (after := self._after.get(shard_id))
            else {"ShardIteratorType": "TRIM_HORIZON"}
        )
        self.iterators_taken += 1
        iterator: str = self._streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard_id, **position
        )["ShardIterator"]
        return iterator

    def _read_shard(self, stream_arn: str, shard_id: str, limit: int) -> list[dict[str, Any]]:
        from botocore.exceptions import BotoCoreError, ClientError

        kept = self._iterators.pop(shard_id, None)
        if kept is not None:
            try:
                got, following = self._get_records(kept, limit)
            except (ClientError, BotoCoreError) as exc:
                log.info("a kept shard iterator failed (%s): reading the shard afresh", exc)
            else:
                self._keep(shard_id, following)
                return got
        got, following = self._get_records(self._fresh_iterator(stream_arn, shard_id), limit)
        self._keep(shard_id, following)
        return got

    def _keep(self, shard_id: str, iterator: str | None) -> None:
        if self._keep_iterators and iterator:
            self._iterators[shard_id] = iterator

    def _stream(self) -> tuple[str, list[str]]:
        if self._shards is None:
            table = self._dynamodb.describe_table(TableName=self._table)["Table"]
            stream_arn = table["LatestStreamArn"]
            shards = self._streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]
            self._shards = (stream_arn, [shard["ShardId"] for shard in shards["Shards"]])
        return self._shards

    def poll(self, limit: int = 100) -> list[dict[str, Any]]:
        try:
            return self._poll(limit)
        except Exception:
            self._shards = None  # read the stream's description again next time
            self._iterators.clear()
            raise

    def _poll(self, limit: int) -> list[dict[str, Any]]:
        stream_arn, shard_ids = self._stream()
        records: list[dict[str, Any]] = []
        for shard_id in shard_ids:
            got = self._read_shard(stream_arn, shard_id, limit)
            if not got:
                continue
            self._after[shard_id] = max((r["dynamodb"]["SequenceNumber"] for r in got), key=int)
            for record in got:
                if record["eventID"] in self._seen:
                    continue
                self._seen[record["eventID"]] = shard_id
                records.append(lambda_record(record, stream_arn))
        while len(self._seen) > 10_000:
            self._seen.popitem(last=False)
        return records
