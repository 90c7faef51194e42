"""A small HTTP/1.1 keep-alive load generator, run as its own process by the `http` scenario.

    python -m bench.loadgen SPEC_JSON  ->  one JSON line of results on stdout

It speaks just enough HTTP/1.1 (Content-Length bodies, keep-alive) to spend far less CPU
per request than a full client, so on a small machine the server, not the client, is what
gets measured. SPEC: {"host", "port", "connections", "seconds", "warmup",
"requests": [{"method", "path", "headers", "body"}, ...], "rate"}: each connection cycles
through the requests from its own offset. Without "rate" every connection sends its next
request as soon as the last one is answered (throughput at saturation); with "rate" the
connections together send that many requests per second on a fixed schedule, and latency
counts from the scheduled time, so a stalled server is not hidden by a waiting client.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any


def _encode(host: str, req: dict[str, Any]) -> bytes:
    body = req.get("body")
    data = json.dumps(body).encode() if body is not None else b""
    head = [f"{req.get('method', 'GET')} {req['path']} HTTP/1.1", f"Host: {host}"]
    head += [f"{k}: {v}" for k, v in (req.get("headers") or {}).items()]
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


async def _response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            raise RuntimeError("chunked responses are not supported by the load generator")
    if length:
        await reader.readexactly(length)
    return status


async def _connection(
    spec: dict[str, Any], offset: int, start: float, stop: float, out: dict[str, Any]
) -> None:
    host, port = spec["host"], spec["port"]
    wires = [_encode(host, r) for r in spec["requests"]]
    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    interval = spec["connections"] / spec["rate"] if spec.get("rate") else 0.0
    due = time.perf_counter() + interval * offset / spec["connections"]
    try:
        while True:
            t0 = time.perf_counter()
            if interval:
                if due > t0:
                    await asyncio.sleep(due - t0)
                t0, due = due, due + interval
            if t0 >= stop:
                break
            writer.write(wires[i % len(wires)])
            status = await _response(reader)
            t1 = time.perf_counter()
            i += 1
            if t0 < start:
                continue
            out["latencies"].append(t1 - t0)
            out["statuses"][status] = out["statuses"].get(status, 0) + 1
    finally:
        writer.close()


async def _main(spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"latencies": [], "statuses": {}}
    begin = time.perf_counter()
    start = begin + spec.get("warmup", 1.0)
    stop = start + spec["seconds"]
    await asyncio.gather(
        *(_connection(spec, n, start, stop, out) for n in range(spec["connections"]))
    )
    lat = sorted(out["latencies"])

    def pct(q: float) -> float:
        return lat[max(0, int(q * len(lat) + 0.999999) - 1)] if lat else 0.0

    return {
        "rate": spec.get("rate"),
        "requests": len(lat),
        "seconds": spec["seconds"],
        "per_s": len(lat) / spec["seconds"],
        "p50_ms": pct(0.50) * 1000,
        "p99_ms": pct(0.99) * 1000,
        "statuses": {str(k): v for k, v in sorted(out["statuses"].items())},
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_main(json.loads(sys.argv[1])))))
