"""How fast NatsPublisher sends job events to a real nats-server: core NATS vs JetStream.

Usage: python bench/bench_nats.py [--events 10000] [--in-flight 1,16]

Starts Debian's nats-server (JetStream on, file store in a temp dir) on a free port,
then for each mode and each in-flight count publishes ``--events`` stop/start events
of ~0.6 kB through :class:`NatsPublisher` (``in-flight`` concurrent publish() calls):

* core NATS: each publish() returns after a flush round trip (the server has read it);
  a subscriber counts what arrived;
* JetStream: each publish() waits for the stream's ack (Nats-Msg-Id set); the stream's
  message count is checked afterwards.

Prints events/s for each and the ratios, plus the cost of building one line-protocol
message alone. Everything printed is measured in this run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import nats

from cc_slurm_adapter.config import Config
from cc_slurm_adapter.nats import NatsPublisher, event_message, message_id

T0 = 1_700_000_000


def payload(job_id: int) -> bytes:
    doc = {"jobId": job_id, "cluster": "testcluster", "user": "bench", "project": "bench",
           "startTime": T0 + job_id, "numNodes": 1, "numHwthreads": 64, "walltime": 3600,
           "partition": "main", "arrayJobId": 0, "shared": "none",
           "resources": [{"hostname": "node0001", "hwthreads": list(range(64))}],
           "metaData": {"jobName": f"bench job {job_id}", "slurmInfo": "x" * 80}}
    return json.dumps(doc, separators=(",", ":")).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_mode(port: int, jetstream: bool, events: int, in_flight: int,
                   run: int) -> float:
    subject = f"bench{run}"
    cfg = dataclasses.replace(Config(), nats_server="127.0.0.1", nats_port=port,
                              nats_subject=subject, nats_jet_stream=jetstream,
                              nats_stream_name=f"BENCH{run}")
    nc = await nats.connect(f"nats://127.0.0.1:{port}")
    got = 0

    async def count(_msg: object) -> None:
        nonlocal got
        got += 1

    if not jetstream:
        await nc.subscribe(subject, cb=count)
        await nc.flush()
    pub = NatsPublisher(cfg)
    await pub.start()
    while not pub.connected:
        await asyncio.sleep(0.01)
    bodies = [payload(i) for i in range(events)]
    # the stream is created on connect; warm it up outside the timing
    warm = await pub.publish("start_job", payload(-1), "warm")
    assert warm.ok, warm
    queue = iter(range(events))
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for i in queue:
            result = await pub.publish("start_job", bodies[i],
                                       message_id("testcluster", i, T0 + i, "start_job"))
            failures += not result.ok
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed = time.perf_counter() - t0
    if jetstream:
        info = await nc.jetstream().stream_info(f"BENCH{run}")
        stored = info.state.messages - 1
    else:
        deadline = time.monotonic() + 10
        while got < events + 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        stored = got - 1
    await pub.close()
    await nc.close()
    assert failures == 0 and stored == events, (failures, stored)
    return events / elapsed


async def main_async(events: int, in_flights: list[int]) -> None:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", tmp],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            body = payload(1)
            n = 100_000
            t0 = time.perf_counter()
            for _ in range(n):
                event_message("start_job", body)
            per = (time.perf_counter() - t0) / n * 1e6
            print(f"event_message: {per:.2f} us per {len(body)}-byte payload")
            run = 0
            for in_flight in in_flights:
                rates = {}
                for jetstream in (False, True):
                    run += 1
                    rates[jetstream] = await run_mode(port, jetstream, events, in_flight, run)
                core, js = rates[False], rates[True]
                print(f"in-flight {in_flight:>3}: core NATS {core:>8.0f} events/s, "
                      f"JetStream (acked) {js:>8.0f} events/s, core/JetStream "
                      f"{core / js:.2f}x")
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--in-flight", default="1,16",
                        help="comma-separated concurrent publish() counts")
    args = parser.parse_args()
    asyncio.run(main_async(args.events, [int(x) for x in args.in_flight.split(",")]))


if __name__ == "__main__":
    main()
