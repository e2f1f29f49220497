"""The capacity ledger's arithmetic, checked against units computed by hand (no AWS, no clock)."""

from __future__ import annotations

import pytest

from benchmarks import aws_prices
from benchmarks.ledger import (
    DynamoRead,
    DynamoWrite,
    Invocation,
    Record,
    Request,
    Stated,
    after_design,
    before_design,
    cost_per_thousand,
    rates,
)

T = "jobs"
IX = "by_tenant_shard"


def tiny_mix() -> list[Record]:
    """One job: created (900 B, enters the index), claimed (900 → 1,100 B), finished in a
    transaction (1,100 → 5,000 B), a strongly consistent 5,000 B read, an eventually consistent
    control read, a Query of 3 index entries (150 B each) and a BatchGetItem of two items."""
    return [
        DynamoWrite(T, "j1", 0, 900, None, "t#1", 150, "t"),
        DynamoWrite(T, "j1", 900, 1100, "t#1", "t#1", 150, "t"),
        DynamoWrite(T, "j1", 1100, 5000, "t#1", "t#1", 150, "t", transactional=True),
        DynamoRead("GetItem", T, (5000,), True, partition="j1", tenant="t"),
        DynamoRead("GetItem", T, (5000,), False, partition="j1", tenant="t"),
        DynamoRead("Query", T, (150, 150, 150), False, index=IX, partition="t#1"),
        DynamoRead("BatchGetItem", T, (5000, 100), False, partition=T, tenant="t"),
        Request("s3", "PutObject", "tenant/t/jobs/j1/result.txt", 200 * 1024),
        Request("s3", "GetObject", "tenant/t/jobs/j1/result.txt", 200 * 1024),
        Request("sqs", "SendMessage", size=100),
        Request("apigateway", "POST /v1/jobs"),
        Invocation("worker", 1.0, 1024),
    ]


def test_the_after_design_charges_the_documented_units() -> None:
    # Given the tiny mix priced as the code runs it (KEYS_ONLY index over 4 shards)
    units = after_design(IX, 4).charge(tiny_mix())
    # Then writes: 1 + 2 (1,100 B) + 2 x 5 (5,000 B, transaction) on the table, and one index
    # entry: only the create changes the index key
    assert units.write[T] == 1 + 2 + 10
    assert units.write[f"{T}/{IX}"] == 1
    # And reads: 2 (5,000 B strong) + 1 (eventual) + 1 + 0.5 (BatchGet per item) on the table,
    # 0.5 for the Query (450 B summed, eventual) on the index
    assert units.read[T] == 2 + 1 + 1 + 0.5
    assert units.read[f"{T}/{IX}"] == 0.5
    assert units.partition_write[f"{T}/{IX}", "t#1"] == 1


def test_the_before_model_copies_every_write_into_one_tenant_partition() -> None:
    # Given the same records priced by the model of the previous layout
    units = before_design().charge(tiny_mix())
    # Then every write is copied whole into the tenant's one index partition
    assert units.write[T] == 13
    assert units.write[f"{T}/by_tenant"] == 1 + 2 + 5
    assert dict(units.partition_write)[f"{T}/by_tenant", "t"] == 8
    # And every GetItem is strongly consistent, the list one Query of the ALL index (5,100 B)
    assert units.read[T] == 2 + 2
    assert units.read[f"{T}/by_tenant"] == 1


def test_rates_keep_each_partition_and_quota_at_half() -> None:
    # Given the tiny mix as one job
    units = after_design(IX, 4).charge(tiny_mix())
    got = rates(units, 1, T, f"{T}/{IX}", 4)
    # Then one tenant: 500 WCU a partition / (1 index WCU / 4 shards) = 2,000 jobs/s, reads
    # allow 1,500 / (0.5 / 4) = 12,000
    assert got.per_tenant == pytest.approx(2000)
    assert got.tenant_bound.endswith("partition writes")
    # And overall: 20,000 units / 13 table WCU a job
    assert got.overall == pytest.approx(20_000 / 13)


def test_cost_per_thousand_jobs_adds_up_the_price_table() -> None:
    # Given the tiny mix as one job and stated inputs
    records = tiny_mix()
    units = after_design(IX, 4).charge(records)
    stated = Stated(
        agent_seconds=9.0, item_months=1.0, object_months=1.0, log_bytes_per_invocation=0
    )
    lines = cost_per_thousand(records, units, 1, stated)
    # Then each line is the hand-computed figure times 1,000
    assert lines["DynamoDB writes"] == pytest.approx(14 * aws_prices.DYNAMODB_PER_MILLION_WRU / 1e3)
    assert lines["DynamoDB reads"] == pytest.approx(5 * aws_prices.DYNAMODB_PER_MILLION_RRU / 1e3)
    s3 = aws_prices.S3_PER_THOUSAND_PUT + aws_prices.S3_PER_THOUSAND_GET
    assert lines["S3 requests"] == pytest.approx(s3)
    gb = 200 * 1024 / 1024**3
    assert lines["S3 storage"] == pytest.approx(gb * aws_prices.S3_PER_GB_MONTH * 1000)
    # 1 s measured + 9 s stated agent time at 1 GiB
    assert lines["Lambda compute"] == pytest.approx(10 * aws_prices.LAMBDA_ARM_PER_GB_SECOND * 1000)
    assert lines["SQS requests"] == pytest.approx(aws_prices.SQS_PER_MILLION_REQUESTS / 1e3)
    assert lines["API Gateway requests"] == pytest.approx(
        aws_prices.API_GATEWAY_REST_PER_MILLION / 1e3
    )


def test_a_second_keys_only_index_is_charged_when_its_key_changes_and_bounds_the_rate() -> None:
    # Given a job that enters the unfinished-jobs index when created, keeps its key while it
    # runs, and leaves it when it ends (each a 100 B entry in partition "open#3")
    opened = (("by_open", None, "open#3", 100),)
    kept = (("by_open", "open#3", "open#3", 100),)
    closed = (("by_open", "open#3", None, 100),)
    records: list[Record] = [
        DynamoWrite(T, "j1", 0, 900, None, "t#1", 150, "t", other_indexes=opened),
        DynamoWrite(T, "j1", 900, 1100, "t#1", "t#1", 150, "t", other_indexes=kept),
        DynamoWrite(T, "j1", 1100, 1100, "t#1", "t#1", 150, "t", other_indexes=closed),
    ]
    units = after_design(IX, 4).charge(records)
    # Then that index is written twice (its entry in, its entry out), in its own partition
    assert units.write[f"{T}/by_open"] == 2
    assert units.partition_write[f"{T}/by_open", "open#3"] == 2
    # And, shared by every tenant over 8 partitions, it bounds the overall rate when it is
    # the tightest: 500 WCU a partition / (2 / 8) = 2,000 jobs/s, under the table's quota
    # (20,000 / 5 WCU a job)
    got = rates(units, 1, T, f"{T}/{IX}", 4, {f"{T}/by_open": 8})
    assert got.overall == pytest.approx(2000)
    assert got.overall_bound == f"{T}/by_open partition writes"
