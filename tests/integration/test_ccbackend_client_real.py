"""The cc-backend client against the REAL cc-backend v1.5.4 (../shared/cc-backend).

The server runs with ``--commit-interval 2s`` so its job cache (a started job sits in
``job_cache`` until the commit worker moves it into ``job``) is seen within seconds.
Expected status codes come from the contract and from what this server answers
(../shared/cc-backend/README.md), not from the client.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cc_slurm_adapter.ccbackend import CCBackendClient, OutcomeKind
from cc_slurm_adapter.errors import CCBackendStatusError
from cc_slurm_adapter.topology import Topology

from ..conftest import SHARED_DIR

pytestmark = pytest.mark.shared

CC_DIR = (SHARED_DIR / "cc-backend") if SHARED_DIR is not None else None
CLUSTER_JSON = (Path(__file__).resolve().parents[2] / "src" / "cc_slurm_adapter" / "testing"
                / "data" / "testcluster.cluster.json")
T0 = 1_700_000_000
COMMIT_SECONDS = 2.0


@dataclass(frozen=True)
class RealServer:
    url: str
    token: str
    pid: int
    log: str


@pytest.fixture(scope="module")
def real_ccbackend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    if CC_DIR is None or not (CC_DIR / "bin" / "cc-backend").is_file():
        pytest.skip("the real cc-backend binary (../shared/cc-backend/bin/cc-backend) is "
                    "missing; set CCSA_SHARED_DIR to the shared folder to run these tests")
    work = tmp_path_factory.mktemp("cc-backend") / "srv"
    done = subprocess.run(
        [str(CC_DIR / "start.sh"), str(work), "--cluster-json", str(CLUSTER_JSON),
         "--commit-interval", f"{COMMIT_SECONDS:g}s"],
        capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        pytest.fail(f"start.sh failed: {done.stderr.strip()[-2000:]}")
    info = json.loads(done.stdout.strip().splitlines()[-1])
    server = RealServer(info["url"], info["token"], int(info["pid"]), info["log"])
    try:
        yield server
    finally:
        os.kill(server.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(server.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(server.pid, signal.SIGKILL)


def start_body(job_id: int, start_time: int = T0, host: str = "node1") -> dict[str, object]:
    return {"jobId": job_id, "cluster": "testcluster", "user": "alice", "project": "p1",
            "startTime": start_time, "numNodes": 1, "resources": [{"hostname": host}],
            "partition": "main", "walltime": 3600, "shared": "none",
            "metaData": {"jobName": f"client-test-{job_id}"}}


def stop_body(job_id: int, start_time: int = T0) -> dict[str, object]:
    return {"jobId": job_id, "cluster": "testcluster", "startTime": start_time,
            "stopTime": start_time + 60, "jobState": "completed"}


async def _until_committed(cc: CCBackendClient, job_ids: set[int]) -> None:
    """Wait until GET ?state=running lists every job (after the commit worker ran)."""
    deadline = time.monotonic() + 10 * COMMIT_SECONDS + 5
    while True:
        listed = {j["jobId"] async for j in cc.running_jobs("testcluster", page_size=50)}
        if job_ids <= listed:
            return
        assert time.monotonic() < deadline, f"not listed after commits: {job_ids - listed}"
        await asyncio.sleep(0.3)


async def test_start_then_job_cache_500_until_committed_then_422(
        real_ccbackend: RealServer) -> None:
    async with CCBackendClient(real_ccbackend.url, real_ccbackend.token, timeout=10) as cc:
        first = await cc.start_job(start_body(1001))
        assert (first.kind, first.status) == (OutcomeKind.DONE, 201)
        # Resent at once: the job is still in job_cache → 500 (UNIQUE constraint), RETRY.
        resent = await cc.start_job(start_body(1001))
        assert (resent.kind, resent.status) == (OutcomeKind.RETRY, 500)
        assert "UNIQUE constraint failed: job_cache" in resent.body
        # The caller keeps retrying; once the commit worker ran, 422 = already there.
        statuses = [500]
        deadline = time.monotonic() + 10 * COMMIT_SECONDS + 5
        while True:
            out = await cc.start_job(start_body(1001))
            statuses.append(out.status or 0)
            if out.kind is not OutcomeKind.RETRY:
                break
            assert time.monotonic() < deadline, f"no 422 after {statuses}"
            await asyncio.sleep(0.25)
        assert (out.kind, out.status) == (OutcomeKind.DONE, 422)
        assert set(statuses[:-1]) == {500}
        # Exactly one job exists.
        await _until_committed(cc, {1001})
        runs = [j async for j in cc.running_jobs("testcluster") if j["jobId"] == 1001]
        assert len(runs) == 1 and runs[0]["startTime"] == T0


async def test_stop_200_then_twice_422_done(real_ccbackend: RealServer) -> None:
    async with CCBackendClient(real_ccbackend.url, real_ccbackend.token, timeout=10) as cc:
        assert (await cc.start_job(start_body(1002))).status == 201
        stop = await cc.stop_job(stop_body(1002))  # found in job_cache (§5.2)
        assert (stop.kind, stop.status) == (OutcomeKind.DONE, 200)
        twice = await cc.stop_job(stop_body(1002))
        assert (twice.kind, twice.status) == (OutcomeKind.DONE, 422)
        assert "already been stopped" in twice.detail


async def test_stop_unknown_needs_start_then_both_done(real_ccbackend: RealServer) -> None:
    async with CCBackendClient(real_ccbackend.url, real_ccbackend.token, timeout=10) as cc:
        unknown = await cc.stop_job(stop_body(1003))
        assert (unknown.kind, unknown.status) == (OutcomeKind.NEEDS_START, 404)
        assert (await cc.start_job(start_body(1003))).status == 201
        assert (await cc.stop_job(stop_body(1003))).status == 200


async def test_rejections_are_400(real_ccbackend: RealServer) -> None:
    async with CCBackendClient(real_ccbackend.url, real_ccbackend.token, timeout=10) as cc:
        no_cluster = await cc.start_job({**start_body(1004), "cluster": "nosuch"})
        assert (no_cluster.kind, no_cluster.status) == (OutcomeKind.REJECTED, 400)
        assert "no such cluster: nosuch" in no_cluster.detail
        no_host = await cc.start_job(start_body(1005, host="elsewhere1"))
        assert (no_host.kind, no_host.status) == (OutcomeKind.REJECTED, 400)
        assert "no subcluster found" in no_host.detail
        legacy = await cc.start_job({**start_body(1006), "exclusive": 1})  # §1: v1.5 unknown
        assert (legacy.kind, legacy.status) == (OutcomeKind.REJECTED, 400)


async def test_bad_token_is_auth(real_ccbackend: RealServer) -> None:
    bad = real_ccbackend.token[:-4] + ("AAAA" if not real_ccbackend.token.endswith("AAAA")
                                       else "BBBB")
    async with CCBackendClient(real_ccbackend.url, bad, timeout=10) as cc:
        out = await cc.start_job(start_body(1007))
        assert (out.kind, out.status) == (OutcomeKind.AUTH, 401)
        assert real_ccbackend.token not in out.body + out.detail
        with pytest.raises(CCBackendStatusError) as info:
            await cc.get_clusters()
        assert info.value.status == 401


async def test_get_clusters(real_ccbackend: RealServer) -> None:
    async with CCBackendClient(real_ccbackend.url, real_ccbackend.token, timeout=10) as cc:
        clusters = await cc.get_clusters()
    assert [c["name"] for c in clusters] == ["testcluster"]
    topo = Topology.from_json(clusters)
    assert topo.for_host("testcluster", "node1") is not None


async def test_running_jobs_paging(real_ccbackend: RealServer) -> None:
    ids = set(range(2000, 2007))
    async with CCBackendClient(real_ccbackend.url, real_ccbackend.token, timeout=10) as cc:
        for i, job_id in enumerate(sorted(ids)):
            assert (await cc.start_job(start_body(job_id, T0 + 1000 + i))).status == 201
        await _until_committed(cc, ids)
        assert (await cc.stop_job(stop_body(2006, T0 + 1006))).status == 200
        paged = [j async for j in cc.running_jobs("testcluster", page_size=2)]
        one_page = [j async for j in cc.running_jobs("testcluster", page_size=500)]
        assert [(j["jobId"], j["startTime"]) for j in paged] == \
            [(j["jobId"], j["startTime"]) for j in one_page]
        listed = {j["jobId"] for j in paged}
        assert ids - {2006} <= listed and 2006 not in listed
        assert all(j["jobState"] == "running" for j in paged)
        assert [j async for j in cc.running_jobs("nosuchcluster", page_size=2)] == []
