"""The NATS drain end to end: recorded Slurm outputs → store → a fake publisher that
behaves like JetStream (drops a second message with the same Nats-Msg-Id), with REST
going to the cc-backend stand-in.

Expected values: the jobs that ran come from the recorded sacct JSON
(``expected_jobs``); the issue says each start and stop arrives once, the stop never
before its start, and an outage of one target never holds the other back.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cc_slurm_adapter.ccbackend import Backoff
from cc_slurm_adapter.store import NATS, REST, RunState

from .fakeslurm import FakeSlurm, expected_jobs
from .harness import Harness, fresh

__all__ = ["fresh"]  # the stand-in fixture, used here by name



@dataclass(frozen=True)
class Result:
    ok: bool
    retry: bool
    detail: str


class FakeJetStream:
    """A NatsPublisher stand-in: ``up`` False answers retry ("no servers available");
    a msg id seen before is acknowledged as a duplicate and not stored again."""

    def __init__(self, up: bool = True) -> None:
        self.up = up
        self.stream: list[tuple[str, dict[str, Any], str]] = []
        self.ids: set[str] = set()
        self.attempts = 0
        self.refuse: set[tuple[int, str]] = set()

    @property
    def connected(self) -> bool:
        return self.up

    async def publish(self, kind: str, payload: bytes, msg_id: str) -> Result:
        self.attempts += 1
        await asyncio.sleep(0)
        if not self.up:
            return Result(False, True, "nats: no servers available for connection")
        body = json.loads(payload)
        if (body["jobId"], kind) in self.refuse:
            return Result(False, False, "nats: maximum payload exceeded")
        if msg_id in self.ids:
            return Result(True, False, "duplicate")
        self.ids.add(msg_id)
        self.stream.append((kind, body, msg_id))
        return Result(True, False, "")

    def events(self) -> list[tuple[int, int, str]]:
        return [(b["jobId"], b["startTime"], k) for k, b, _ in self.stream]


def expected_events() -> dict[tuple[int, int], list[str]]:
    return {(j["jobId"], j["startTime"]): ["start_job", "stop_job"] for j in expected_jobs()}


def assert_each_event_once_in_order(pub: FakeJetStream) -> None:
    got: dict[tuple[int, int], list[str]] = {}
    for job_id, start, kind in pub.events():
        got.setdefault((job_id, start), []).append(kind)
    assert got == expected_events()          # once each, and the start first


@pytest.fixture
def si(fresh: Any) -> Any:
    return fresh


def setup(tmp_path: Path, si: Any, pub: FakeJetStream, *, rest: bool,
          backoff: Backoff | None = None) -> Harness:
    return Harness(tmp_path, si, FakeSlurm("24.11", "running1"), publisher=pub,
                   backoff=backoff, cc_rest_submit_jobs=rest, nats_server="nats.invalid")


@pytest.fixture
async def cleanup() -> AsyncIterator[list[Harness]]:
    made: list[Harness] = []
    yield made
    for s in made:
        await s.close()


async def test_nats_only_down_then_up_every_event_once_in_order(
        tmp_path: Path, si: Any, cleanup: list[Harness]) -> None:
    pub = FakeJetStream(up=False)
    s = setup(tmp_path, si, pub, rest=False)
    cleanup.append(s)
    await s.open()
    assert s.store is not None and s.daemon is not None
    assert s.store.targets == (NATS,)
    await s.cycle()
    for _ in range(3):
        await s.daemon.drain_once()
        await asyncio.sleep(0.06)                 # past the backoff: tried again
    await s.cycle("after")
    for _ in range(3):
        await s.daemon.drain_once()
        await asyncio.sleep(0.06)
    queued = s.store.outbox_size(NATS)
    assert pub.stream == [] and queued == 2 * len(expected_jobs())
    assert pub.attempts >= 3                      # retried while down, the head only
    assert pub.attempts < queued
    pub.up = True
    await s.drain_until(None)
    assert_each_event_once_in_order(pub)
    assert si.jobs() == []                        # ccRestSubmitJobs false: nothing on REST
    for job_id, start in expected_events():
        (run,) = [r for r in s.store.runs_of("testcluster", job_id) if r.start_time == start]
        assert run.state is RunState.STOPPED      # the run follows the NATS ack


async def test_rest_down_while_nats_flows(tmp_path: Path, si: Any,
                                          cleanup: list[Harness]) -> None:
    pub = FakeJetStream()
    s = setup(tmp_path, si, pub, rest=True)
    cleanup.append(s)
    await s.open()
    assert s.store is not None and s.daemon is not None
    si.set_fault("down")
    await s.cycle()
    await s.drain_until(NATS)
    await s.cycle("after")
    await s.drain_until(NATS)
    assert_each_event_once_in_order(pub)
    assert si.jobs() == [] and s.store.outbox_size(REST) > 0
    si.clear_fault()
    await s.drain_until(None, 30)
    report = si.check(expected_jobs())
    assert report.ok, report.to_json()
    assert_each_event_once_in_order(pub)


async def test_nats_down_while_rest_flows_then_the_same_json_follows(
        tmp_path: Path, si: Any, cleanup: list[Harness]) -> None:
    pub = FakeJetStream(up=False)
    s = setup(tmp_path, si, pub, rest=True)
    cleanup.append(s)
    await s.open()
    assert s.store is not None and s.daemon is not None
    await s.cycle()
    await s.drain_until(REST)
    await s.cycle("after")
    await s.drain_until(REST)
    report = si.check(expected_jobs())
    assert report.ok, report.to_json()
    assert pub.stream == [] and s.store.outbox_size(NATS) == 2 * len(expected_jobs())
    for job_id, start in expected_events():
        (run,) = [r for r in s.store.runs_of("testcluster", job_id) if r.start_time == start]
        assert run.state is RunState.STOPPED      # the run follows the REST ack
    pub.up = True
    await s.drain_until(NATS)
    assert_each_event_once_in_order(pub)
    # the same JSON as REST: the start body is the one REST sent (kept on the run)
    for kind, body, _ in pub.stream:
        found = s.store.find_run("testcluster", body["jobId"], body["startTime"])
        assert found is not None
        if kind == "start_job":
            assert json.loads(s.store.start_payload(found.id) or b"") == body


async def test_a_crash_between_publish_and_ack_is_a_resend_jetstream_drops(
        tmp_path: Path, si: Any, cleanup: list[Harness]) -> None:
    pub = FakeJetStream()
    s = setup(tmp_path, si, pub, rest=False)
    cleanup.append(s)
    await s.open()
    assert s.store is not None and s.daemon is not None and s.daemon.nats is not None
    await s.cycle("after")
    # one batch published, then the daemon dies before its answers are written
    batch = s.store.claim_in_order(100)
    assert batch
    for sub in batch:
        await s.daemon.nats._publish(sub)
    await s.close()
    s2 = setup(tmp_path, si, pub, rest=False)
    cleanup.append(s2)
    await s2.open()
    await s2.drain_until(None)
    assert pub.attempts == len(pub.stream) + len(batch)   # the batch went twice ...
    assert_each_event_once_in_order(pub)                  # ... and is stored once


async def test_a_refused_event_rejects_only_its_job(tmp_path: Path, si: Any,
                                                    cleanup: list[Harness]) -> None:
    pub = FakeJetStream()
    bad = expected_jobs()[0]
    pub.refuse.add((bad["jobId"], "start_job"))
    s = setup(tmp_path, si, pub, rest=False)
    cleanup.append(s)
    await s.open()
    assert s.store is not None
    await s.cycle("after")
    await s.drain_until(None)
    assert (bad["jobId"], bad["startTime"], "stop_job") not in pub.events()
    run = s.store.find_run("testcluster", bad["jobId"], bad["startTime"])
    assert run is not None and run.state is RunState.REJECTED
    assert "maximum payload exceeded" in (run.reason or "")
    expected = expected_events()
    del expected[(bad["jobId"], bad["startTime"])]
    got: dict[tuple[int, int], list[str]] = {}
    for job_id, start, kind in pub.events():
        got.setdefault((job_id, start), []).append(kind)
    assert got == expected


async def test_the_running_daemon_publishes_soon_after_nats_returns(
        tmp_path: Path, si: Any, cleanup: list[Harness]) -> None:
    pub = FakeJetStream(up=False)
    # a long backoff: only the reconnect can make the queue move within seconds
    s = setup(tmp_path, si, pub, rest=False, backoff=Backoff(60.0, 120.0))
    cleanup.append(s)
    daemon = await s.open()
    s.slurm.phase = "after"
    task = asyncio.create_task(daemon.run_until_stopped())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while pub.attempts == 0 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert pub.attempts >= 1 and pub.stream == []
        await asyncio.sleep(1.5)
        assert pub.attempts == 1                 # backing off, not hammering
        pub.up = True
        deadline = loop.time() + 5
        while len(pub.stream) < 2 * len(expected_jobs()) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert_each_event_once_in_order(pub)
    finally:
        daemon.stopping.set()
        await asyncio.wait_for(task, 30)


def test_a_daemon_without_nats_does_not_load_nats_py() -> None:
    """nats-py costs ~6 MB of RSS: only a daemon with natsServer set may import it."""
    import subprocess
    import sys

    code = ("import sys, cc_slurm_adapter.daemon, cc_slurm_adapter.daemon.loop; "
            "print(sorted(m for m in sys.modules if m == 'nats' or m.startswith('nats.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"
