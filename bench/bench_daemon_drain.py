"""Backlog drain of the daemon: 10,000 finished jobs queued while cc-backend was down.

Usage: python bench/bench_daemon_drain.py [--jobs 10000] [--in-flight 16]

The jobs go through the real engine (records → store → outbox: one start and one stop
each), then ``Daemon.drain`` sends them to the stand-in running as its own process.
Reports jobs/s (a job = its start and its stop), the time until the outbox is empty and
the CPU seconds of this process and of the stand-in, all measured in this run.
Aim (issue 11): >= 500 jobs/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from cc_slurm_adapter.ccbackend import Backoff, CCBackendClient
from cc_slurm_adapter.config import Config
from cc_slurm_adapter.daemon.loop import Daemon
from cc_slurm_adapter.slurm.phase import Phase
from cc_slurm_adapter.slurm.record import JobRecord, NodeResources
from cc_slurm_adapter.slurm.runner import FakeRunner
from cc_slurm_adapter.store import open_store
from cc_slurm_adapter.testing.ccbackend import StandInProcess

T0 = 1_790_000_000


def record(job_id: int) -> JobRecord:
    res = NodeResources(hostname="node2", cpu_ids=(0, 1), cpus=2, sockets=2,
                        cores_per_socket=2, threads_per_core=2)
    return JobRecord(source="sacct", job_id=job_id, cluster="testcluster", user="bench",
                     account="bench", partition="debug", state="COMPLETED",
                     phase=Phase.ENDED, start_time=T0 + job_id, end_time=T0 + job_id + 60,
                     nodes=("node2",), node_count=1, cpus=2, resources=(res,))


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main(jobs: int, in_flight: int, workers: int) -> None:
    with StandInProcess(["--commit-interval", "0"]) as standin, \
            tempfile.TemporaryDirectory() as tmp:
        config = Config(cc_rest_url=standin.url, cc_rest_jwt=standin.token,
                        state_path=f"{tmp}/state.db")
        store = open_store(config.state_path)
        client = CCBackendClient(standin.url, standin.token, max_in_flight=in_flight)
        daemon = Daemon(config, store=store, client=client,
                        runner=FakeRunner(lambda argv: b""), backoff=Backoff(0.1, 1.0))
        t = time.perf_counter()
        with store.transaction():
            daemon.engine.apply("testcluster", [record(i) for i in range(1, jobs + 1)])
        queued = time.perf_counter() - t
        print(f"engine: {jobs} jobs queued ({store.outbox_size()} entries) in {queued:.2f} s")
        assert standin.proc is not None
        pid = standin.proc.pid
        c0, s0, t0 = time.process_time(), cpu_of(pid), time.perf_counter()
        sent = 0
        while store.outbox_size():
            sent += sum(await asyncio.gather(*(daemon.drain() for _ in range(workers))))
            if store.outbox_size():
                await asyncio.sleep(0.05)
        wall = time.perf_counter() - t0
        print(f"drain: {sent} requests, {jobs} jobs in {wall:.2f} s = {jobs / wall:.0f} jobs/s"
              f" ({sent / wall:.0f} requests/s); in flight {in_flight}, {workers} drain loops")
        print(f"CPU: daemon {time.process_time() - c0:.2f} s, stand-in "
              f"{cpu_of(pid) - s0:.2f} s")
        report = standin.check()
        print(f"stand-in audit: ok={report['ok']} duplicates={len(report['duplicates'])} "
              f"never stopped={len(report['neverStopped'])}")
        await client.aclose()
        store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2,
                        help="concurrent drain loops (as the daemon runs them)")
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.in_flight, args.workers))
