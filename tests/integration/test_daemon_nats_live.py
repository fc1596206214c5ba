"""``cc-slurm-adapter -daemon`` with ``ccRestSubmitJobs: false`` → a real nats-server.

Black box (see daemon_harness.py): real Slurm jobs (held by a gate until their start
has arrived on NATS) → the daemon → Debian's ``nats-server`` started here on a free
port. Then nats-server is stopped for 60 s while the jobs end, and started again on
the same port and store directory:

* **JetStream** (``natsJetStream: true``, the daemon creates its stream): the stream
  holds every start and stop of the test's jobs exactly once, each with the
  ``Nats-Msg-Id`` built from (cluster, jobId, startTime, event).
* **core NATS**: the daemon publishes fire-and-forget; a JetStream stream that the
  *test* creates on the subject records what reached the server (it exists from the
  server's first instant after the restart, so unlike a subscriber it cannot miss a
  message). Every event arrives, the stops after the restart: the outbox re-sent what
  was queued while the server was down.

Both ways every message is the line protocol cc-backend 1.5 reads (contract §9.2)
with the REST JSON inside: the events are replayed over REST into a fresh stand-in,
which accepts them (201/200) and whose rows match sacct (user, account, start, end,
state, hosts, hwthreads). The expected values are sacct's, never the product's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cc_slurm_adapter.testing.ccbackend.standin import StandIn
from cc_slurm_adapter.testing.slurm_testbed import SlurmTestbed, selected_releases

from .conftest_nats import NATS_SERVER, NatsServer
from .daemon_harness import (
    Daemons,
    Gate,
    cancel_all,
    check_payloads,
    sacct_jobs,
    wait_for,
    wait_stopped,
)

nats = pytest.importorskip("nats")

pytestmark = pytest.mark.slurm

OUTAGE_S = 60.0
LINE = re.compile(r'^job,function=(start_job|stop_job)(,[^ ]*)? '
                  r'event="((?:[^"\\]|\\.)*)"( [0-9]+)?$', re.S)


async def _add_stream(url: str, name: str, subject: str) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(name=name, subjects=[subject])
    finally:
        await nc.close()


async def _read_stream(url: str, name: str) -> list[tuple[int, bytes, dict[str, str]]]:
    """(sequence, data, headers) of every message the stream holds."""
    nc = await nats.connect(url)
    try:
        jsm = nc.jsm()
        try:
            info = await jsm.stream_info(name)
        except nats.js.errors.NotFoundError:
            return []
        out: list[tuple[int, bytes, dict[str, str]]] = []
        if not info.state.messages:
            return out  # an empty stream has first_seq 0, which get_msg refuses
        for seq in range(max(1, info.state.first_seq), info.state.last_seq + 1):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                msg = await jsm.get_msg(name, seq)
                out.append((seq, msg.data or b"", dict(msg.headers or {})))
        return out
    finally:
        await nc.close()


def read_stream(url: str, name: str) -> list[tuple[int, bytes, dict[str, str]]]:
    return asyncio.run(_read_stream(url, name))


def parse(data: bytes) -> tuple[str, dict[str, Any]]:
    """cc-backend 1.5's reading of one message (contract §9.2): measurement ``job``,
    tag ``function``, string field ``event`` with ``\\`` and ``"`` escaped."""
    text = data.decode()
    match = LINE.match(text)
    assert match, f"not cc-backend's job line protocol: {text[:300]!r}"
    event = re.sub(r'\\(["\\])', r"\1", match.group(3))
    return match.group(1), json.loads(event)


def events_of(messages: list[tuple[int, bytes, dict[str, str]]], ids: set[int]
              ) -> list[tuple[int, str, dict[str, Any], dict[str, str]]]:
    """(seq, function, JSON, headers) of the messages about this test's jobs."""
    out = []
    for seq, data, headers in messages:
        kind, body = parse(data)
        if body.get("jobId") in ids:
            out.append((seq, kind, body, headers))
    return out


@pytest.mark.parametrize("jetstream", [True, False], ids=["jetstream", "core"])
def test_nats_only_every_event_survives_a_60s_nats_outage(
        slurm_cluster: SlurmTestbed, standin: StandIn, daemons: Daemons, tmp_path: Path,
        jetstream: bool) -> None:
    if NATS_SERVER is None:
        pytest.skip("nats-server is not installed (Debian package nats-server)")
    if slurm_cluster.release != selected_releases()[0]:
        # a slow fault scenario (a 60 s outage per variant): on one release, like the
        # daemon's other fault scenarios; the publisher does not depend on the release
        pytest.skip(f"the NATS outage scenario runs on {selected_releases()[0]} only")
    tb = slurm_cluster
    server = NatsServer(tmp_path / "nats").start()
    subject = f"ccsa.jobs.{int(time.time())}"
    stream = "CCSA_LIVE" if jetstream else "CCSA_CAPTURE"
    if not jetstream:
        asyncio.run(_add_stream(server.url, stream, subject))
    gate = Gate(tb, "nats")
    ids: list[int] = []
    try:
        daemon = daemons.new(standin.url, standin.token, ccRestSubmitJobs=False,
                             natsServer="127.0.0.1", natsPort=server.port,
                             natsSubject=subject, natsJetStream=jetstream,
                             natsStreamName=stream).start()
        for i in range(3):
            ids.append(tb.submit(["-J", f"dnats-{i}", "-t", "5", "--wrap", gate.hold()],
                                 user="testuser"))
        for job_id in ids:
            tb.wait_state(job_id, "RUNNING", timeout=120)
        wanted = set(ids)

        def kinds() -> dict[int, list[str]]:
            got: dict[int, list[str]] = {j: [] for j in wanted}
            for _, kind, body, _ in events_of(read_stream(server.url, stream), wanted):
                got[body["jobId"]].append(kind)
            return got

        wait_for(lambda: all("start_job" in k for k in kinds().values()), 90,
                 "the starts on NATS", daemon=daemon, describe=kinds)
        before = max(seq for seq, *_ in events_of(read_stream(server.url, stream), wanted))

        # nats-server down for 60 s while the jobs end
        server.stop()
        down_at = time.monotonic()
        gate.open()
        for job_id in ids:
            tb.wait_sacct(job_id, timeout=120)
        time.sleep(max(0.0, down_at + OUTAGE_S - time.monotonic()))
        daemon.assert_alive()
        server.start()

        wait_for(lambda: all("stop_job" in k for k in kinds().values()), 120,
                 "the stops on NATS after the restart", daemon=daemon, describe=kinds)
        time.sleep(2 * 2)  # two poll intervals: a late duplicate would show by now
        events = events_of(read_stream(server.url, stream), wanted)
        got = kinds()
        if jetstream:
            # 0 lost, 0 duplicates, start before stop
            assert got == {j: ["start_job", "stop_job"] for j in ids}, got
            for _, kind, body, headers in events:
                msg_id = headers.get("Nats-Msg-Id", "")
                assert msg_id.split(":")[1:] == [str(body["jobId"]),
                                                  str(body["startTime"]), kind], msg_id
        else:
            # every event arrived, each start before its stop; resends are allowed
            for job_id, seen in got.items():
                assert seen and seen[0] == "start_job" and "stop_job" in seen, (job_id, seen)
                assert set(seen) == {"start_job", "stop_job"}, (job_id, seen)
        stops = [seq for seq, kind, _, _ in events if kind == "stop_job"]
        assert min(stops) > before      # the stops were queued, and sent after the restart

        # the REST JSON inside: a fresh stand-in takes the events over REST, and its rows
        # are what sacct recorded
        jobs = [job for job_id in ids for job in sacct_jobs(tb, job_id)]
        with StandIn(commit_interval=0.2) as replay, httpx.Client(
                base_url=replay.url, timeout=10,
                headers={"Authorization": f"Bearer {replay.token}"}) as client:
            firsts: dict[tuple[int, str], dict[str, Any]] = {}
            for _, kind, body, _ in events:
                firsts.setdefault((body["jobId"], kind), body)
            for kind in ("start_job", "stop_job"):
                for job_id in ids:
                    resp = client.post(f"/api/jobs/{kind}/", json=firsts[(job_id, kind)])
                    assert resp.status_code in (200, 201), (kind, resp.text)
            rows = wait_stopped(replay, ids, tb.cluster, daemon=None, timeout=30)
            check_payloads(rows, jobs)
        assert "Traceback" not in daemon.run_stderr()
        assert daemon.stop() == 0
    finally:
        cancel_all(tb, ids)
        gate.remove()
        server.stop()
