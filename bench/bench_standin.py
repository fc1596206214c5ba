"""How many start+stop pairs per second the cc-backend stand-in accepts.

Usage: python bench/bench_standin.py [--pairs 4000] [--connections 8] [--profile v1.5]

The stand-in runs as its own process (as in the adapter benchmarks); the client is a
minimal keep-alive HTTP/1.1 client on asyncio streams, so the client costs little.
Each connection sends start, waits for 201, sends stop, waits for 200. Everything
printed is measured in this run. Target: >= 1,000 pairs/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from cc_slurm_adapter.testing.ccbackend import StandInProcess
from cc_slurm_adapter.testing.ccbackend.auth import KeyPair, TokenVerifier


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   head: bytes, body: bytes) -> int:
    writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
    status_line = await reader.readuntil(b"\r\n")
    headers = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in headers.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return int(status_line.split(b" ", 2)[1])


async def _worker(host: str, port: int, token: str, ids: range, start_time: int,
                  statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    auth = f"X-Auth-Token: {token}\r\nContent-Type: application/json\r\n"
    start_head = (f"POST /api/jobs/start_job/ HTTP/1.1\r\nHost: {host}\r\n{auth}"
                  "Content-Length: ").encode()
    stop_head = (f"POST /api/jobs/stop_job/ HTTP/1.1\r\nHost: {host}\r\n{auth}"
                 "Content-Length: ").encode()
    try:
        for job_id in ids:
            start = {"jobId": job_id, "cluster": "testcluster", "user": "bench",
                     "project": "bench", "startTime": start_time, "numNodes": 1,
                     "numHwthreads": 2, "partition": "main", "walltime": 3600,
                     "resources": [{"hostname": f"node{job_id % 2 + 1}", "hwthreads": [0, 1]}],
                     "metaData": {"jobName": f"bench-{job_id}"}}
            stop = {"jobId": job_id, "cluster": "testcluster", "startTime": start_time,
                    "stopTime": start_time + 60, "jobState": "completed"}
            for head, body in ((start_head, start), (stop_head, stop)):
                status = await _request(reader, writer, head, json.dumps(body).encode())
                statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()
        await writer.wait_closed()


async def _run(url: str, token: str, pairs: int, connections: int, first_id: int
               ) -> tuple[float, dict[int, int]]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    statuses: dict[int, int] = {}
    per = pairs // connections
    tasks = [
        _worker(host, int(port), token, range(first_id + i * per, first_id + (i + 1) * per),
                1_700_000_000, statuses)
        for i in range(connections)
    ]
    t0 = time.perf_counter()
    await asyncio.gather(*tasks)
    return time.perf_counter() - t0, statuses


def _token_cost() -> tuple[float, float]:
    keys = KeyPair()
    verifier = TokenVerifier(keys.public_key)
    tokens = [keys.make_token(sub=f"u{i}") for i in range(500)]
    t0 = time.perf_counter()
    for tok in tokens:
        verifier.verify(tok)
    cold = (time.perf_counter() - t0) / len(tokens)
    t0 = time.perf_counter()
    for _ in range(20):
        for tok in tokens:
            verifier.verify(tok)
    warm = (time.perf_counter() - t0) / (20 * len(tokens))
    return cold, warm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=4000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--profile", default="v1.5")
    ap.add_argument("--db", default=None, help="SQLite file (default: in memory)")
    args = ap.parse_args()

    cold, warm = _token_cost()
    print(f"token check: {cold * 1e3:.3f} ms verified, {warm * 1e6:.2f} us cached "
          f"({cold / warm:.0f}x faster with the cache)")

    extra = ["--db", args.db] if args.db else []
    with StandInProcess(["--profile", args.profile, *extra]) as proc:
        # warm-up (imports, SQLite pages, connection setup)
        asyncio.run(_run(proc.url, proc.token, 200, 4, 10_000_000))
        elapsed, statuses = asyncio.run(
            _run(proc.url, proc.token, args.pairs, args.connections, 1))
    done = (args.pairs // args.connections) * args.connections
    rate = done / elapsed
    ok = statuses.get(201, 0) == done and statuses.get(200, 0) == done
    print(f"profile {args.profile}, {args.connections} connections, cpus={os.cpu_count()}: "
          f"{done} start+stop pairs in {elapsed:.2f} s = {rate:,.0f} pairs/s "
          f"({2 * rate:,.0f} requests/s, {elapsed / (2 * done) * 1e6:.0f} us/request)")
    print(f"statuses: {dict(sorted(statuses.items()))} -> {'all accepted' if ok else 'ERRORS'}")
    print(f"target 1,000 pairs/s: {'met' if rate >= 1000 else 'NOT met'} "
          f"({rate / 1000:.2f}x the target)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
