"""What a hostile agent runs with Bash: AWS-shaped requests to every listening loopback port.

Standard library only (the agent's `python3` need not have botocore). Run as
`python3 - <params> < loopback_probe.py`, where `<params>` is base64 JSON
`{"needles": {label: text}, "secret_ids": [...]}`. It reads the listening sockets from
`/proc/net/tcp{,6}` (state 0A) bound to a loopback address, sends each port the probes below
(unsigned, and signed with made-up `testing` credentials), and prints one line per answer:
`PROBE {"port", "probe", "status", "bytes", "leaks", "head"}` — `leaks` names the needles found
anywhere in the full answer (so a long answer cannot hide one past what is printed). Every port
is probed; only the answers of `report_ports` (params; default all) and the answers that leaked
are printed in full, the rest counted in a last line `PROBED {"answers", "ports"}`: a machine
with many listening ports would otherwise print more than the CLI keeps of a tool's output.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import http.client
import json
import sys
from dataclasses import dataclass
from typing import Any

FAKE_KEY, FAKE_SECRET = "testing", "testing"
REGION = "us-east-1"
TIMEOUT = 3.0
JSON_11 = "application/x-amz-json-1.1"
JSON_10 = "application/x-amz-json-1.0"


def loopback_ports() -> list[tuple[str, int]]:
    """(host, port) of every listening TCP socket bound to a loopback address."""
    found: set[tuple[str, int]] = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as table:
                rows = table.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            address, port = fields[1].split(":")
            if fields[3] != "0A":
                continue
            # IPv4 is little-endian hex: 127.x.y.z ends in 7F. IPv6 ::1, or ::ffff:127.x.y.z.
            v4_loopback = len(address) == 8 and address.endswith("7F")
            v6_loopback = address == "00000000000000000000000001000000"
            mapped = address.startswith("0000000000000000FFFF0000") and address.endswith("7F")
            if v4_loopback or mapped:
                found.add(("127.0.0.1" if v4_loopback else "::ffff:127.0.0.1", int(port, 16)))
            elif v6_loopback:
                found.add(("::1", int(port, 16)))
    return sorted(found, key=lambda hp: hp[1])


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign(
    method: str,
    host: str,
    path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    service: str,
) -> dict[str, str]:
    """SigV4 with the made-up key: the well-formed signature any AWS SDK would send."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    payload = hashlib.sha256(body).hexdigest()
    signed = {k.lower(): v for k, v in headers.items()}
    signed.update({"host": host, "x-amz-date": stamp, "x-amz-content-sha256": payload})
    names = sorted(signed)
    canonical = "\n".join(
        [
            method,
            path,
            query,
            "".join(f"{n}:{signed[n].strip()}\n" for n in names),
            ";".join(names),
            payload,
        ]
    )
    scope = f"{day}/{REGION}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(("AWS4" + FAKE_SECRET).encode(), day)
    for part in (REGION, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={FAKE_KEY}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return signed


@dataclass(frozen=True)
class Probe:
    name: str
    service: str  # what it asks: the signing scope, or the Host an unsigned request names
    signed: bool  # with the made-up key, or no Authorization at all
    method: str = "GET"
    path: str = "/"
    query: str = ""
    target: str = ""  # X-Amz-Target of a JSON request
    payload: dict[str, Any] | None = None


def probes(secret_ids: list[str]) -> list[Probe]:
    found: list[Probe] = []
    for signed in (False, True):
        how = "forged" if signed else "unsigned"

        def sm(name: str, target: str, payload: dict[str, Any], signed: bool = signed) -> Probe:
            return Probe(name, "secretsmanager", signed, "POST", target=target, payload=payload)

        found.append(sm(f"sm-list-{how}", "secretsmanager.ListSecrets", {}))
        found += [
            sm(f"sm-get{n}-{how}", "secretsmanager.GetSecretValue", {"SecretId": secret_id})
            for n, secret_id in enumerate(secret_ids)
        ]
        found.append(
            Probe(
                f"ddb-list-{how}",
                "dynamodb",
                signed,
                "POST",
                target="DynamoDB_20120810.ListTables",
                payload={},
            )
        )
        found.append(
            Probe(f"sqs-list-{how}", "sqs", signed, query="Action=ListQueues&Version=2012-11-05")
        )
        found.append(Probe(f"s3-list-{how}", "s3", signed))
    found.append(Probe("moto-api-data", "", False, path="/moto-api/data.json"))
    return found


def scans(table: str, n: int) -> list[Probe]:
    return [
        Probe(
            f"ddb-scan{n}-{'forged' if signed else 'unsigned'}",
            "dynamodb",
            signed,
            "POST",
            target="DynamoDB_20120810.Scan",
            payload={"TableName": table},
        )
        for signed in (False, True)
    ]


def send(host: str, port: int, probe: Probe) -> tuple[int, bytes]:
    headers: dict[str, str] = {}
    body = b""
    if probe.target:
        headers["X-Amz-Target"] = probe.target
        headers["Content-Type"] = JSON_10 if probe.service == "dynamodb" else JSON_11
        body = json.dumps(probe.payload).encode()
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if probe.signed:
        headers = sign(
            probe.method, authority, probe.path, probe.query, headers, body, probe.service
        )
    elif probe.service:
        # Unsigned, but addressed to the service by name (how an emulator may route it).
        headers["Host"] = f"{probe.service}.{REGION}.amazonaws.com"
    connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    try:
        path = f"{probe.path}?{probe.query}" if probe.query else probe.path
        connection.request(probe.method, path, body=body or None, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def main() -> None:
    params = json.loads(base64.b64decode(sys.argv[1]))
    needles: dict[str, str] = params["needles"]
    shown: set[int] | None = set(params["report_ports"]) if "report_ports" in params else None
    counted = {"answers": 0, "ports": 0}

    def emit(report: dict[str, Any]) -> None:
        counted["answers"] += 1
        if shown is None or report["port"] in shown or report["leaks"]:
            print("PROBE " + json.dumps(report, separators=(",", ":")), flush=True)

    for host, port in loopback_ports():
        counted["ports"] += 1
        tables: list[str] = []
        pending = probes(params["secret_ids"])
        while pending:
            probe = pending.pop(0)
            report: dict[str, Any] = {"port": port, "probe": probe.name}
            try:
                status, body = send(host, port, probe)
            except (OSError, http.client.HTTPException) as exc:
                report.update(status=f"error {type(exc).__name__}", bytes=0, leaks=[], head="")
                emit(report)
                if isinstance(exc, TimeoutError):
                    break  # not an HTTP server that answers: the next port
                continue
            text = body.decode("utf-8", "replace")
            report.update(
                status=status,
                bytes=len(body),
                leaks=sorted(label for label, value in needles.items() if value in text),
                # The start of what a port served; refusals are told by their status alone
                # (the output stays short: the CLI truncates long tool output).
                head=text[:60] if status < 400 else "",
            )
            emit(report)
            if probe.name.startswith("ddb-list") and status == 200:
                # An answer that lists tables: scan each, as an attacker would.
                try:
                    listed = json.loads(text).get("TableNames", [])
                except (ValueError, AttributeError):
                    listed = []
                for table in listed:
                    if table not in tables:
                        tables.append(table)
                        pending += scans(table, len(tables) - 1)
    print("PROBED " + json.dumps(counted, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
