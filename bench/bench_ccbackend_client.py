"""How fast the cc-backend client drains a backlog of start_job requests.

Usage: python bench/bench_ccbackend_client.py [--jobs 10000] [--in-flight 16]

1. Against the stand-in running as its own process: ``--in-flight`` workers pull jobs
   from a queue and call ``CCBackendClient.start_job`` (the client's own limit is the
   same number). Reports jobs/s and the CPU seconds of this process (the client) and
   of the stand-in process over the run, so the busier side shows who the bottleneck
   is (on 2 cores, a side near 1.0 CPU-s per wall-s is saturated).
   CPU per job is the figure that does not depend on what else the machine runs.
2. The client alone against ``httpx.MockTransport`` (no sockets, no server): the
   client's own ceiling.

Everything printed is measured in this run. Aim for the drain: >= 500 jobs/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import httpx

from cc_slurm_adapter.ccbackend import CCBackendClient, OutcomeKind
from cc_slurm_adapter.testing.ccbackend import StandInProcess

T0 = 1_700_000_000


def start_body(job_id: int) -> dict[str, Any]:
    """A realistic start payload (~0.5 kB, one node with hwthreads and metadata)."""
    return {"jobId": job_id, "cluster": "testcluster", "user": "bench", "project": "bench",
            "startTime": T0, "numNodes": 1, "numHwthreads": 8, "partition": "main",
            "walltime": 3600, "shared": "none", "arrayJobId": 0,
            "resources": [{"hostname": f"node{job_id % 2 + 1}",
                           "hwthreads": [0, 1, 2, 3, 4, 5, 6, 7]}],
            "metaData": {"jobName": f"bench-{job_id}", "jobScript": "#!/bin/bash\nsrun a\n"}}


def proc_cpu(pid: int) -> float:
    """utime + stime of a process in seconds (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drain(cc: CCBackendClient, jobs: int, in_flight: int) -> dict[str, int]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for job_id in range(1, jobs + 1):
        queue.put_nowait(job_id)
    kinds: dict[str, int] = {}

    async def worker() -> None:
        while True:
            try:
                job_id = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            out = await cc.start_job(start_body(job_id))
            key = f"{out.kind.value}:{out.status}"
            kinds[key] = kinds.get(key, 0) + 1

    async with asyncio.TaskGroup() as tg:
        for _ in range(in_flight):
            tg.create_task(worker())
    return kinds


async def against_standin(jobs: int, in_flight: int) -> dict[str, Any]:
    with StandInProcess(["--commit-interval", "0"]) as proc:
        assert proc.proc is not None
        server_pid = proc.proc.pid
        async with CCBackendClient(proc.url, proc.token, max_in_flight=in_flight,
                                   timeout=30) as cc:
            await cc.start_job(start_body(0))  # warm up: connect, first request
            cpu0, srv0, t0 = time.process_time(), proc_cpu(server_pid), time.perf_counter()
            kinds = await drain(cc, jobs, in_flight)
            wall = time.perf_counter() - t0
            cpu, srv = time.process_time() - cpu0, proc_cpu(server_pid) - srv0
        report = proc.check([{"jobId": i, "cluster": "testcluster", "startTime": T0}
                             for i in range(1, jobs + 1)])
    return {"jobs": jobs, "in_flight": in_flight, "seconds": round(wall, 2),
            "jobs_per_s": round(jobs / wall), "outcomes": kinds,
            "client_cpu_s_per_wall_s": round(cpu / wall, 2),
            "standin_cpu_s_per_wall_s": round(srv / wall, 2),
            "client_cpu_ms_per_job": round(cpu / jobs * 1000, 3),
            "standin_cpu_ms_per_job": round(srv / jobs * 1000, 3),
            "lost": len(report["lost"]), "duplicates": len(report["duplicates"])}


async def client_alone(jobs: int, in_flight: int) -> dict[str, Any]:
    answer = b'{"msg":"success"}\n'

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, content=answer,
                              headers={"Content-Type": "application/json"})

    async with CCBackendClient("http://cc.invalid", "bench-token", max_in_flight=in_flight,
                               transport=httpx.MockTransport(handler)) as cc:
        cpu0, t0 = time.process_time(), time.perf_counter()
        kinds = await drain(cc, jobs, in_flight)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    assert kinds == {f"{OutcomeKind.DONE.value}:201": jobs}, kinds
    return {"jobs": jobs, "seconds": round(wall, 2), "jobs_per_s": round(jobs / wall),
            "client_cpu_ms_per_job": round(cpu / jobs * 1000, 3)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--in-flight", type=int, default=16)
    args = p.parse_args()
    real = asyncio.run(against_standin(args.jobs, args.in_flight))
    print(json.dumps({"against_standin_process": real}))
    alone = asyncio.run(client_alone(args.jobs, args.in_flight))
    print(json.dumps({"client_alone_mock_transport": alone}))
    # CPU per job does not depend on what else runs on the machine; wall time does.
    side = ("stand-in" if real["standin_cpu_ms_per_job"] > real["client_cpu_ms_per_job"]
            else "client")
    verdict = "meets" if real["jobs_per_s"] >= 500 else "misses"
    print(f"drain: {real['jobs_per_s']} jobs/s ({verdict} the 500 jobs/s aim); "
          f"bottleneck by CPU per job: {side} ({real['client_cpu_ms_per_job']} ms client, "
          f"{real['standin_cpu_ms_per_job']} ms stand-in; one free core for the client "
          f"allows {round(1000 / real['client_cpu_ms_per_job'])} jobs/s); client alone on "
          f"a mock transport: {alone['jobs_per_s']} jobs/s; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
