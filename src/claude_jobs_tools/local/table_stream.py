"""Read the jobs table's stream as Lambda's event source mapping would deliver it.

For the local stack (the emulator has no event source mappings) and for tests: `poll()` returns
the new records of every shard, shaped like the `Records` of a DynamoDB stream Lambda event.
With the account-id endpoint mode botocore uses for streams, the streams client must be built
with `account_id_endpoint_mode="disabled"` unless `AWS_ENDPOINT_URL` points at an emulator.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


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
    elif isinstance(created, float):  # raw JSON (see sources.StreamPoller)
        data["ApproximateCreationDateTime"] = int(created)
    shaped["dynamodb"] = data
    shaped["eventSourceARN"] = stream_arn
    return shaped


class StreamReader:
    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table_name: str,
        *,
        streams: Any | None = None,
        start: str = "TRIM_HORIZON",  # or LATEST: only what is written from now on
    ) -> None:
        self._streams = streams or streams_client()
        self._start = start
        table = dynamodb.describe_table(TableName=table_name)["Table"]
        self.stream_arn: str = table["LatestStreamArn"]
        self._iterators: dict[str, str | None] = {}

    def poll(self, limit: int = 100) -> list[dict[str, Any]]:
        description = self._streams.describe_stream(StreamArn=self.stream_arn)
        for shard in description["StreamDescription"]["Shards"]:
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self._streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType=self._start
                )["ShardIterator"]
        records: list[dict[str, Any]] = []
        for shard_id, iterator in list(self._iterators.items()):
            if iterator is None:
                continue
            response = self._streams.get_records(ShardIterator=iterator, Limit=limit)
            self._iterators[shard_id] = response.get("NextShardIterator")
            records.extend(lambda_record(r, self.stream_arn) for r in response.get("Records", []))
        return records
