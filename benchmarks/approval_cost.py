"""What one job waiting for approval costs per hour on AWS, next to an always-on waiting worker.

Pure arithmetic over measured sizes (`bench_approvals.py` measures them) and the one price
table (`aws_prices.py`). A waiting job holds no compute: it is
- its item in the jobs table (storage: item bytes + DynamoDB's 100-byte overhead),
- its session transcript in S3 (storage),
- its share of the reconciler's reads: every run finds the unfinished jobs in a keys-only index
  and reads each of their items consistently (1 read unit per 4 KB), so each run reads the
  item once (its index entry, ~100 B, is left out).
The reconciler runs whether or not a job waits; its marginal duration per item is not counted.

The always-on alternatives (what peers do: a process that waits holds its resources):
- the worker Lambda held for the wait at the worker's memory (Lambda bills GB-seconds; a wait
  over 15 minutes would need chained invocations, priced the same per second);
- a small always-on container: a Fargate task (Linux/ARM) of `FARGATE_VCPU` vCPU and
  `FARGATE_GB` GB, as container-based agents keep one per waiting session.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks import aws_prices as price

GB = 1024**3
SECONDS_PER_HOUR = 3600
#: The always-on container assumed for the comparison.
FARGATE_VCPU = 1.0
FARGATE_GB = 2.0


@dataclass(frozen=True)
class WaitingJob:
    item_bytes: int  # the job item as stored while it waits (measured)
    session_bytes: int  # its transcript in S3 (measured)
    sweeps_per_hour: float  # reconciler runs an hour (the deployment's schedule)


def waiting_cost_per_hour(job: WaitingJob) -> dict[str, float]:
    """USD an hour of one waiting job, by line."""
    item_gb = (job.item_bytes + price.DYNAMODB_ITEM_OVERHEAD_BYTES) / GB
    read_units = job.sweeps_per_hour * job.item_bytes / price.DYNAMODB_READ_UNIT_BYTES
    return {
        "DynamoDB item storage": item_gb * price.DYNAMODB_PER_GB_MONTH / price.HOURS_PER_MONTH,
        "S3 session storage": job.session_bytes
        / GB
        * price.S3_PER_GB_MONTH
        / price.HOURS_PER_MONTH,
        "reconciler reads": read_units * price.DYNAMODB_PER_MILLION_RRU / 1e6,
        "compute": 0.0,
    }


def lambda_held_per_hour(memory_mb: int) -> float:
    """USD an hour of a Lambda function of `memory_mb` held running (arm64)."""
    return memory_mb / 1024 * SECONDS_PER_HOUR * price.LAMBDA_ARM_PER_GB_SECOND


def fargate_per_hour(vcpu: float = FARGATE_VCPU, gb: float = FARGATE_GB) -> float:
    return vcpu * price.FARGATE_ARM_PER_VCPU_HOUR + gb * price.FARGATE_ARM_PER_GB_HOUR


def render(job: WaitingJob, worker_memory_mb: int, label: str = "") -> str:
    lines = waiting_cost_per_hour(job)
    waiting = sum(lines.values())
    held = lambda_held_per_hour(worker_memory_mb)
    container = fargate_per_hour()
    rows = [
        f"AWS cost of one job waiting for approval, per hour{label} ({price.SOURCE})",
        f"  from: item {job.item_bytes:,} B (measured), session {job.session_bytes:,} B,"
        f" {job.sweeps_per_hour:g} reconciler runs an hour",
    ]
    for name, value in lines.items():
        rows.append(f"  {name:<34} ${value:.10f}")
    rows.append(f"  {'waiting job (total)':<34} ${waiting:.10f}")
    rows.append(
        f"  {f'worker Lambda held ({worker_memory_mb} MB arm64)':<34} ${held:.6f}"
        f"   {held / waiting:,.0f}x the waiting job"
    )
    rows.append(
        f"  {f'Fargate task ({FARGATE_VCPU:g} vCPU, {FARGATE_GB:g} GB arm)':<34}"
        f" ${container:.6f}   {container / waiting:,.0f}x the waiting job"
    )
    rows.append(
        f"  a day of waiting: ${24 * waiting:.8f} vs ${24 * held:.4f} (Lambda held),"
        f" ${24 * container:.4f} (Fargate)"
    )
    return "\n".join(rows)
