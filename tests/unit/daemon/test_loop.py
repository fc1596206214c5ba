"""The loop end to end: recorded Slurm outputs (FakeRunner) → store → the stand-in."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cc_slurm_adapter.ccbackend import Backoff
from cc_slurm_adapter.daemon.loop import chunks, window
from cc_slurm_adapter.store import RunState

from .fakeslurm import FakeSlurm, expected_jobs
from .harness import Harness, fresh, make_config

__all__ = ["Harness", "fresh", "make_config"]  # fresh: a fixture, used here by name

@pytest.fixture
async def harness(tmp_path: Path, fresh: Any) -> AsyncIterator[Harness]:
    h = Harness(tmp_path, fresh, FakeSlurm("24.11", "running1"))
    yield h
    await h.close()


def hwthreads_of(si: Any) -> dict[int, list[list[int]]]:
    return {row.job_id: [r.get("hwthreads") for r in row.resources] for row in si.jobs()}


async def test_happy_path_every_job_arrives_with_hwthreads(harness: Harness) -> None:
    await harness.open()
    await harness.cycle()
    await harness.drain_all()
    harness.slurm.phase = "after"
    await harness.cycle()
    await harness.drain_all()
    report = harness.si.check(expected_jobs())
    assert report.ok, report.to_json()
    hw = hwthreads_of(harness.si)
    # running1: jobs 1-4 ran on node1 (1x2x1) and node2 (2x2x2); details captured
    for job_id in (1, 2, 3, 4):
        assert all(h for h in hw[job_id]), (job_id, hw[job_id])
    assert 10 not in hw  # held, cancelled before it ever ran


async def test_slurm_calls_per_cycle_are_bounded(harness: Harness) -> None:
    await harness.open()
    await harness.cycle()  # the first: a 7-day catch-up (no cursor), 28 chunks
    harness.slurm.phase = "running2"  # job 8 starts: one detail call
    before = harness.slurm.runner.calls
    await harness.cycle()
    # window sacct, squeue listing, details (+ topology, scripts): 2-5 per cycle
    assert 3 <= harness.slurm.runner.calls - before <= 5
    harness.slurm.phase = "running2"
    before = harness.slurm.runner.calls
    await harness.cycle()
    assert harness.slurm.runner.calls - before == 2


async def test_started_running_jobs_are_not_reread_until_they_end(harness: Harness) -> None:
    """A job started in cc-backend and still running since the same start is left unread
    in the next windows (its record would change nothing), and still gets its stop."""
    await harness.open()
    await harness.cycle()  # running1: jobs 1-4 run; details captured, starts queued
    await harness.drain_all()
    assert harness.daemon is not None
    source = harness.daemon.clusters[0].source
    seen: list[Any] = []
    window_of = source.accounting_window

    async def spy(start: float, end: float, unchanged: Any = None) -> Any:
        result = await window_of(start, end, unchanged)
        seen.append(result)
        return result

    source.accounting_window = spy  # type: ignore[method-assign]
    await harness.cycle("running2")
    # the recording: job 3 still runs in running2 with running1's start; 1, 2, 4 ended
    running1 = {j["job_id"]: j["time"]["start"] for j in
                FakeSlurm("24.11", "running1").sacct_doc()["jobs"]}
    job3 = next(j for j in harness.slurm.sacct_doc()["jobs"] if j["job_id"] == 3)
    assert job3["state"]["current"] == ["RUNNING"] and job3["time"]["start"] == running1[3]
    assert seen[-1].unchanged == (3,)
    assert {r.job_id for r in seen[-1].jobs} >= {1, 2, 4, 8}
    await harness.drain_all()
    await harness.cycle("after")
    await harness.drain_all()
    report = harness.si.check(expected_jobs())
    assert report.ok, report.to_json()
    ended = next(j for j in harness.slurm.sacct_doc()["jobs"] if j["job_id"] == 3)
    row = next(r for r in harness.si.jobs() if r.job_id == 3)
    assert (row.job_state, row.stop_time) == (ended["state"]["current"][0].lower(),
                                              ended["time"]["end"])


@pytest.mark.parametrize("fault", [
    {"mode": "down"},
    {"mode": "error", "status": 500, "rate": 0.3, "seed": 7},
    {"mode": "drop", "rate": 0.5, "seed": 3},
    {"mode": "expired"},
])
async def test_faults_lose_and_duplicate_nothing(harness: Harness,
                                                 fault: dict[str, Any]) -> None:
    await harness.open()
    harness.si.set_fault(**fault)
    await harness.cycle()
    assert harness.daemon is not None
    for _ in range(3):
        await harness.daemon.drain_once()
    harness.slurm.phase = "after"
    await harness.cycle()
    for _ in range(3):
        await harness.daemon.drain_once()
    if fault["mode"] in ("down", "expired"):
        assert harness.si.jobs() == []
        assert harness.store is not None and harness.store.outbox_size() > 0
        harness.si.clear_fault()
    await harness.drain_all(30)
    harness.si.clear_fault()
    await harness.drain_all(30)
    report = harness.si.check(expected_jobs())
    assert report.ok, report.to_json()


async def test_rejected_job_never_blocks_the_others(harness: Harness) -> None:
    # no topology (GET /api/clusters/ fails), so the mapping cannot see it coming:
    # cc-backend itself answers 400 for a host in no sub-cluster (contract §4.2)
    harness.si.set_fault("error", status=503, paths=["/api/clusters/"])
    await harness.open()
    harness.si.clear_fault()
    assert harness.daemon is not None and harness.daemon.topology is None
    harness.slurm.phase = "after"
    # 50 good jobs and one on a host cc-backend has in no sub-cluster (400)
    base = harness.slurm.sacct_doc()["jobs"][0]
    import copy

    for i in range(50):
        job = copy.deepcopy(base)
        job["job_id"] = 1000 + i
        harness.slurm.extra_sacct.append(job)
    bad = copy.deepcopy(base)
    bad["job_id"] = 2000
    bad["nodes"] = "othernode7"
    harness.slurm.extra_sacct.append(bad)
    harness.slurm.phase = "after"
    await harness.cycle()
    await harness.drain_all()
    assert harness.store is not None
    run = harness.store.runs_of("testcluster", 2000)[0]
    assert run.state is RunState.REJECTED and "400" in (run.reason or "")
    stored = {row.job_id for row in harness.si.jobs()}
    assert set(range(1000, 1050)) <= stored and 2000 not in stored


async def test_restart_mid_drain_resends_without_duplicate(harness: Harness) -> None:
    await harness.open()
    await harness.cycle()
    assert harness.store is not None and harness.daemon is not None
    claimed = harness.store.claim(2)  # claimed, "sent", then the daemon dies
    assert claimed
    await harness.close()
    harness2 = Harness(harness.tmp_path, harness.si, harness.slurm)
    await harness2.open()
    harness.slurm.phase = "after"
    await harness2.cycle()
    await harness2.drain_all()
    await harness2.close()
    report = harness.si.check(expected_jobs())
    assert report.ok, report.to_json()


async def test_daemon_down_past_minjobage_started_and_ended_jobs_arrive(
        harness: Harness) -> None:
    harness.slurm.phase = "purged"  # first sight after everything ended and was purged
    await harness.open()
    await harness.cycle()
    await harness.drain_all()
    report = harness.si.check(expected_jobs())
    assert report.ok, report.to_json()
    hosts = {row.job_id: [r["hostname"] for r in row.resources] for row in harness.si.jobs()}
    assert hosts[5] == ["node1", "node2"]  # sacct: node[1-2]


async def test_started_job_gone_from_window_and_slurmctld_is_asked_by_id(
        harness: Harness) -> None:
    await harness.open()
    await harness.cycle()
    await harness.drain_all()
    # the window no longer holds jobs 1-4 (the fake returns no window records) and
    # slurmctld has purged them: sacct -j brings their end
    harness.slurm.phase = "purged"
    doc_jobs = harness.slurm.sacct_doc()["jobs"]
    orig = harness.slurm.handle

    def handle(argv: tuple[str, ...]) -> Any:
        if argv[0] == "sacct" and "-S" in argv:
            import json
            doc = harness.slurm.sacct_doc()
            doc["jobs"] = [j for j in doc_jobs if j["job_id"] not in (1, 2, 3, 4)]
            return json.dumps(doc).encode()
        return orig(argv)

    harness.slurm.runner.handler = handle
    await harness.cycle()
    id_calls = [a for a in harness.slurm.runner.argvs if a[0] == "sacct" and "-j" in a]
    assert id_calls and id_calls[-1][id_calls[-1].index("-j") + 1] == "1,2,3,4"
    await harness.drain_all()
    report = harness.si.check(expected_jobs())
    assert report.ok, report.to_json()


async def test_failed_chunk_keeps_the_cursor(harness: Harness) -> None:
    await harness.open()
    assert harness.store is not None and harness.daemon is not None
    cs = harness.daemon.clusters[0]
    now = int(harness.daemon.clock())
    harness.store.set_cursor(cs.name, now - 20 * 3600)  # a 20 h catch-up: 4 chunks
    harness.slurm.fail_after = {"sacct": 1}  # the first chunk works, the second fails
    assert await harness.daemon.poll(cs) is None
    cursor = harness.store.get_cursor(cs.name)
    start, _, _ = window(now - 20 * 3600, now, poll_interval=60, max_span=604800)
    # the first chunk's end, not further (the last chunk is a whole 6 h before now)
    assert cursor == now - 3 * 6 * 3600 and cursor > start
    harness.slurm.fail_after = {}
    assert await harness.daemon.poll(cs) is not None
    assert (harness.store.get_cursor(cs.name) or 0) >= now


async def test_slurmdbd_down_keeps_running_jobs_resources(harness: Harness) -> None:
    await harness.open()
    assert harness.store is not None and harness.daemon is not None
    harness.slurm.fail = {"sacct"}
    assert await harness.daemon.poll(harness.daemon.clusters[0]) is None
    runs = [harness.store.runs_of("testcluster", j) for j in (1, 2, 3, 4)]
    assert all(r and r[0].snapshot_rank and r[0].snapshot_rank[0] >= 2 for r in runs)
    assert harness.store.get_cursor("testcluster") is None
    harness.slurm.fail = set()
    harness.slurm.phase = "purged"
    await harness.cycle()
    await harness.drain_all()
    hw = hwthreads_of(harness.si)
    for job_id in (1, 2, 3, 4):
        assert all(h for h in hw[job_id]), (job_id, hw[job_id])


def test_window_overlap_and_cap() -> None:
    now = 1_000_000_000
    assert window(now - 60, now, poll_interval=60, max_span=604800) == (
        now - 60 - 120, now, None)
    assert window(now - 60, now, poll_interval=10, max_span=604800)[0] == now - 60 - 60
    start, end, skipped = window(now - 8 * 86400, now, poll_interval=60, max_span=604800)
    assert (start, end) == (now - 604800, now) and skipped == now - 8 * 86400 - 120
    # a recent cursor whose overlap (2 x a 3600 s poll) reaches past a short cap: the
    # window starts at the cap, and nothing was skipped
    assert window(now - 60, now, poll_interval=3600, max_span=3600) == (
        now - 660, now, None)  # the overlap is capped at MAX_OVERLAP_S (600 s)
    assert window(now - 60, now, poll_interval=3600, max_span=300) == (now - 300, now, None)
    assert chunks(0, 20 * 3600) == [(0, 7200), (7200, 28800), (28800, 50400),
                                    (50400, 72000)]
    assert chunks(100, 200) == [(100, 200)]


async def test_eight_days_down_is_capped_with_a_warning(
        harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    await harness.open()
    assert harness.store is not None and harness.daemon is not None
    cs = harness.daemon.clusters[0]
    now = int(harness.daemon.clock())
    harness.store.set_cursor(cs.name, now - 8 * 86400)
    with caplog.at_level(logging.WARNING, "cc_slurm_adapter.daemon"):
        assert await harness.daemon.poll(cs) is not None
    assert caplog.text.count("longer ago than slurmQueryMaxSpan") == 1
    windows = [a for a in harness.slurm.runner.argvs if a[0] == "sacct" and "-S" in a
               and "1970-01-02T00:00:00" not in a]
    assert len(windows) == 28  # 7 days in 6 h chunks


async def test_jobs_that_ended_between_polls_get_slurmctld_details(
        tmp_path: Path, fresh: Any) -> None:
    # first sight 10 s after the last job of the recording ended (sacct_after), within
    # MinJobAge (300 s on the recording testbed): slurmctld still holds every job
    ended_last = 1795629701  # job 9's end in tests/fixtures/slurm/24.11/sacct_after.json
    h = Harness(tmp_path, fresh, FakeSlurm("24.11", "after"), clock=lambda: ended_last + 10)
    try:
        await h.open()
        await h.cycle()
        await h.drain_all()
        assert h.si.check(expected_jobs()).ok
        hw = hwthreads_of(h.si)
        for job_id in (5, 7, 8, 9):  # never seen running by the daemon
            assert all(x for x in hw[job_id]), (job_id, hw[job_id])
    finally:
        await h.close()


async def test_reconcile_restarts_a_job_cc_backend_lost(harness: Harness) -> None:
    await harness.open()
    await harness.cycle()
    await harness.drain_all()
    harness.si.commit_cache()
    harness.si._app().store.clear()  # cc-backend restored from an older backup
    assert harness.daemon is not None
    cs = harness.daemon.clusters[0]
    # within the grace (cc-backend 1.5 lists a new job only after its commit): nothing
    assert await harness.daemon.reconcile(cs)
    assert harness.store is not None and harness.store.outbox_size() == 0
    harness.daemon.engine.clock = lambda: time.time() + 600
    assert await harness.daemon.reconcile(cs)
    assert harness.store.outbox_size() == 4
    await harness.drain_all()
    assert sorted(row.job_id for row in harness.si.jobs()) == [1, 2, 3, 4]
    # and the reverse: a job Slurm shows as ended that cc-backend still runs
    harness.slurm.phase = "after"
    await harness.cycle()
    await harness.drain_all()
    assert harness.si.check(expected_jobs()).ok


async def test_several_clusters_each_get_their_own_source(tmp_path: Path, fresh: Any) -> None:
    slurm = FakeSlurm("24.11", "running1")
    orig = slurm.handle

    def handle(argv: tuple[str, ...]) -> Any:
        if argv[0] == "sacctmgr":
            return b"testcluster\nother\n"
        return orig(argv)

    slurm.runner.handler = handle
    h = Harness(tmp_path, fresh, slurm)
    try:
        daemon = await h.open()
        assert [c.name for c in daemon.clusters] == ["testcluster", "other"]
        await h.cycle()
        windows = [a for a in slurm.runner.argvs if a[0] == "sacct" and "-E" in a
                   and "1970-01-02T00:00:01" not in a]
        assert {a[a.index("-M") + 1] for a in windows} == {"testcluster", "other"}
        assert h.store is not None
        assert h.store.get_cursor("testcluster") and h.store.get_cursor("other")
    finally:
        await h.close()


async def test_stop_finishes_the_batch_on_the_wire(harness: Harness) -> None:
    harness.slurm.phase = "after"
    await harness.open()
    assert harness.daemon is not None and harness.store is not None
    await harness.cycle()
    queued = harness.store.outbox_size()
    harness.si.set_fault("delay", seconds=1.0)
    task = asyncio.create_task(harness.daemon.run_until_stopped())
    await asyncio.sleep(0.5)  # the first batch is on the wire, answers held back 1 s
    harness.daemon.stopping.set()
    await asyncio.wait_for(task, 30)
    harness.si.clear_fault()
    # every answer that came back is written: acked starts are STARTED in the store,
    # and nothing cc-backend stored is still queued as unsent
    in_cc = {row.job_id for row in harness.si.jobs()}
    assert in_cc, "the batch in flight was not finished"
    assert harness.store.outbox_size() < queued
    for job_id in in_cc:
        run = harness.store.runs_of("testcluster", job_id)[0]
        assert run.state in (RunState.STARTED, RunState.STOP_PENDING, RunState.STOPPED)
        assert run.start_acked is not None


async def test_after_an_outage_the_first_success_makes_every_queued_entry_due(
        tmp_path: Path, fresh: Any) -> None:
    """Entries that failed during an outage wait out their own backoff; once cc-backend
    answers again they are all due at once, so the backlog drains in one go instead of
    trickling in over the backoff cap."""
    h = Harness(tmp_path, fresh, FakeSlurm("24.11", "running1"))
    try:
        await h.open()
        assert h.daemon is not None and h.store is not None
        h.daemon.backoff = Backoff(600.0, 600.0)  # every failure waits ten minutes:
        h.daemon.rand = lambda: 0.999  # (full jitter draws from [0, ceiling): not here)
        h.si.set_fault("down")
        await h.cycle()
        queued = h.store.outbox_size()
        assert queued > 1
        for _ in range(3):
            await h.daemon.drain_once()
        due = h.store.next_due()
        assert h.si.jobs() == [] and due is not None and due > time.time() + 60
        h.si.clear_fault()
        # the oldest entry's backoff ends (set from outside, as a clock would): its
        # success must release all the others
        import sqlite3

        with contextlib.closing(sqlite3.connect(h.config.state_path)) as other, other:
            other.execute("UPDATE outbox SET next_attempt = 0 "
                          "WHERE id = (SELECT min(id) FROM outbox)")
        await h.daemon.drain_once()
        await h.daemon.drain_once()
        assert h.store.outbox_size() == 0, "the rest still waited for their backoff"
    finally:
        await h.close()
