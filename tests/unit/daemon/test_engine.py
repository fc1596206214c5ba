"""The sync decisions with hand-made records (no Slurm, no HTTP)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cc_slurm_adapter.daemon.engine import Engine, EngineSettings
from cc_slurm_adapter.mapping import Site, reset_log_once
from cc_slurm_adapter.slurm.phase import Phase
from cc_slurm_adapter.slurm.record import JobRecord, NodeResources
from cc_slurm_adapter.store import RunState, Store, open_store

from ..fakes import Clock

CLUSTER = "testcluster"


def rec(job_id: int, state: str = "RUNNING", phase: Phase = Phase.RUNNING, *,
        start: int | None = 1_800_000_000, end: int | None = None,
        nodes: tuple[str, ...] = ("node1",), source: str = "sacct",
        **kw: Any) -> JobRecord:
    return JobRecord(source=source, job_id=job_id, cluster=CLUSTER, user="alice",
                     account="proj", partition="debug", state=state, phase=phase,
                     start_time=start, end_time=end, nodes=nodes, node_count=len(nodes),
                     cpus=2, **kw)


def detail(job_id: int, **kw: Any) -> JobRecord:
    # node1 of the testbed: Sockets=1 CoresPerSocket=2 ThreadsPerCore=1 (fixtures README)
    res = NodeResources(hostname="node1", cpu_ids=(0, 1), cpus=2, sockets=1,
                        cores_per_socket=2, threads_per_core=1)
    return rec(job_id, source="squeue", resources=(res,), **kw)


@pytest.fixture
def clock() -> Clock:
    return Clock(2_000_000_000.0)


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    s = open_store(tmp_path / "state.db", clock=clock)
    yield s
    s.close()


@pytest.fixture
def engine(store: Store, clock: Clock) -> Engine:
    reset_log_once()
    return Engine(store, lambda c: Site(cluster=c), clock=clock,
                  settings=EngineSettings(provisional_wait_s=600))


def outbox(store: Store, job_id: int) -> list[tuple[str, dict[str, Any]]]:
    """(kind, payload) of one job's queued entries, in the order claim hands them out."""
    out = []
    for run in store.runs_of(CLUSTER, job_id):
        for entry_id, kind, _ in store.outbox_entries(run.id):
            out.append((entry_id, kind, run.id))
    rows = []
    for _entry_id, kind, run_id in sorted(out):
        payload = store.start_payload(run_id) if kind == "start" else None
        rows.append((kind, json.loads(payload) if payload else {}))
    return rows


def claim_all(store: Store) -> list[tuple[str, dict[str, Any]]]:
    """Claim, ack in order, until empty: what cc-backend would see, in order."""
    seen: list[tuple[str, dict[str, Any]]] = []
    while True:
        batch = store.claim(100)
        if not batch:
            return seen
        for sub in batch:
            seen.append((sub.kind, msgspec.json.decode(sub.payload)))
            store.ack(sub.id)


def test_cancelled_seconds_after_start_gets_start_then_stop(engine: Engine,
                                                           store: Store) -> None:
    with store.transaction():
        report = engine.apply(CLUSTER, [rec(17, "CANCELLED", Phase.ENDED,
                                            end=1_800_000_003)])
    assert (report.starts, report.stops) == (1, 1)
    sent = claim_all(store)
    assert [k for k, _ in sent] == ["start", "stop"]
    start, stop = sent[0][1], sent[1][1]
    assert start["startTime"] == 1_800_000_000 and start["resources"] == [
        {"hostname": "node1"}]
    # contract §5.1: the stop names the run by its startTime; §8.2 state "cancelled"
    assert stop == {"jobId": 17, "cluster": CLUSTER, "startTime": 1_800_000_000,
                    "stopTime": 1_800_000_003, "jobState": "cancelled"}
    assert store.runs_of(CLUSTER, 17)[0].state is RunState.STOPPED


def test_started_and_ended_while_down_arrives_with_sacct_hosts(engine: Engine,
                                                              store: Store) -> None:
    with store.transaction():
        engine.apply(CLUSTER, [rec(18, "COMPLETED", Phase.ENDED, end=1_800_000_100,
                                   nodes=("node1", "node2"))])
    sent = claim_all(store)
    assert [k for k, _ in sent] == ["start", "stop"]
    assert [r["hostname"] for r in sent[0][1]["resources"]] == ["node1", "node2"]
    assert sent[0][1]["numNodes"] == 2
    assert sent[1][1]["jobState"] == "completed"


def test_second_cycle_queues_nothing_again(engine: Engine, store: Store) -> None:
    records = [rec(19, "COMPLETED", Phase.ENDED, end=1_800_000_100)]
    with store.transaction():
        engine.apply(CLUSTER, records)
    claim_all(store)
    with store.transaction():
        report = engine.apply(CLUSTER, records)
    assert (report.starts, report.stops) == (0, 0)
    assert store.outbox_size() == 0


def test_provisional_waits_then_bound(engine: Engine, store: Store, clock: Clock,
                                      caplog: pytest.LogCaptureFixture) -> None:
    placeholder = rec(13, "COMPLETED", Phase.ENDED, end=1_800_000_000, provisional=True)
    with store.transaction():
        report = engine.apply(CLUSTER, [placeholder])
    assert report.waiting == [13] and store.outbox_size() == 0
    # kept in the store, so the by-id query asks for it if it leaves the window
    assert engine.missing(CLUSTER, present=set()) == [13]
    clock.now += 599
    with store.transaction():
        assert engine.apply(CLUSTER, [placeholder]).waiting == [13]
    clock.now += 2
    with caplog.at_level(logging.WARNING, "cc_slurm_adapter.daemon"), store.transaction():
        report = engine.apply(CLUSTER, [placeholder])
    assert (report.starts, report.stops) == (1, 1)
    assert "still provisional after 601 s" in caplog.text


def test_provisional_replaced_by_final_record(engine: Engine, store: Store) -> None:
    with store.transaction():
        engine.apply(CLUSTER, [rec(13, "COMPLETED", Phase.ENDED, end=1_800_000_000,
                                   provisional=True)])
    with store.transaction():
        report = engine.apply(CLUSTER, [rec(13, "COMPLETED", Phase.ENDED,
                                            end=1_800_000_001)])
    assert (report.starts, report.stops) == (1, 1)
    assert claim_all(store)[1][1]["stopTime"] == 1_800_000_001


def test_requeue_within_24h_is_unrepresentable_once(engine: Engine, store: Store,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    with store.transaction():
        engine.apply(CLUSTER, [rec(20, restart_count=0)])
    claim_all(store)  # the first run is started in cc-backend
    second = rec(20, start=1_800_003_600, restart_count=1)
    with caplog.at_level(logging.WARNING, "cc_slurm_adapter.daemon"), store.transaction():
        report = engine.apply(CLUSTER, [second])
    assert report.unrepresentable == 1 and report.starts == 0
    runs = store.runs_of(CLUSTER, 20)
    assert [r.state for r in runs] == [RunState.STOP_PENDING, RunState.UNREPRESENTABLE]
    assert "24 h" in (runs[1].reason or "")
    assert caplog.text.count("not sent") == 1
    # the first run is stopped (it went back to the queue), never started again
    sent = claim_all(store)
    assert [k for k, _ in sent] == ["stop"]
    assert sent[0][1]["startTime"] == 1_800_000_000
    assert sent[0][1]["stopTime"] == 1_800_003_600
    with store.transaction():
        report = engine.apply(CLUSTER, [second])
    assert (report.starts, report.stops, report.unrepresentable) == (0, 0, 0)
    assert store.outbox_size() == 0


def test_unknown_state_starts_but_never_stops(engine: Engine, store: Store) -> None:
    with store.transaction():
        report = engine.apply(CLUSTER, [rec(21, "NEW_STATE_2027", Phase.UNKNOWN,
                                            end=1_800_000_050)])
    assert (report.starts, report.stops) == (1, 0)
    assert store.runs_of(CLUSTER, 21)[0].state is RunState.START_PENDING


def test_poorer_view_after_richer_keeps_hwthreads(engine: Engine, store: Store) -> None:
    # cycle 1: slurmctld has the job, slurmdbd not yet: a snapshot, no start
    with store.transaction():
        report = engine.apply(CLUSTER, [], details=[detail(22)])
    assert (report.snapshots, report.starts) == (1, 0)
    # cycle 2: past MinJobAge, only sacct's hosts-only record (ended)
    with store.transaction():
        engine.apply(CLUSTER, [rec(22, "COMPLETED", Phase.ENDED, end=1_800_000_030)])
    sent = claim_all(store)
    assert sent[0][1]["resources"] == [{"hostname": "node1", "hwthreads": [0, 1]}]
    assert sent[1][0] == "stop"


def test_deferred_details_delay_the_start(engine: Engine, store: Store) -> None:
    with store.transaction():
        report = engine.apply(CLUSTER, [rec(23)], live={23: "RUNNING"}, deferred=[23])
    assert report.starts == 0 and report.deferred == 1
    with store.transaction():
        report = engine.apply(CLUSTER, [rec(23)], details=[detail(23)],
                              live={23: "RUNNING"})
    assert report.starts == 1
    assert claim_all(store)[0][1]["resources"][0]["hwthreads"] == [0, 1]


def test_catch_up_chunk_leaves_running_jobs_to_the_last(engine: Engine,
                                                        store: Store) -> None:
    with store.transaction():
        report = engine.apply(CLUSTER, [rec(24), rec(25, "COMPLETED", Phase.ENDED,
                                                    end=1_800_000_010)],
                              live={24: "RUNNING"}, hold_live=True)
    assert report.starts == 1 and store.runs_of(CLUSTER, 24) == []


def test_pending_and_never_started_send_nothing(engine: Engine, store: Store) -> None:
    with store.transaction():
        report = engine.apply(CLUSTER, [
            rec(26, "PENDING", Phase.PENDING, start=None, nodes=()),
            rec(27, "CANCELLED", Phase.ENDED, start=None, nodes=(), end=1_800_000_000)])
    assert report.seen == 0 and store.outbox_size() == 0


def test_one_bad_record_does_not_block_the_others(engine: Engine, store: Store) -> None:
    with store.transaction():
        engine.apply(CLUSTER, [rec(28)])
    # the stored start payload names startTime 1_800_000_000; a stop that would carry
    # another startTime is refused by the store: the other jobs still go through
    bad = rec(28, "COMPLETED", Phase.ENDED, end=1_800_000_001)
    original = engine._stop

    def broken(run: Any, record: JobRecord, site: Site, report: Any) -> None:
        if record.job_id == 28:
            store.enqueue_stop(run.id, b'{"jobId":28,"startTime":1,"stopTime":2}')
        original(run, record, site, report)

    engine._stop = broken  # type: ignore[method-assign]
    with store.transaction():
        report = engine.apply(CLUSTER, [bad, *(rec(100 + i) for i in range(5))])
    assert report.errors == 1 and report.starts == 5


def test_skipped_ended_job_is_unrepresentable(store: Store, clock: Clock) -> None:
    engine = Engine(store, lambda c: Site(cluster=c, is_ignored_host=lambda h: True),
                    clock=clock)
    with store.transaction():
        engine.apply(CLUSTER, [rec(29, "COMPLETED", Phase.ENDED, end=1_800_000_001)])
    run = store.runs_of(CLUSTER, 29)[0]
    assert run.state is RunState.UNREPRESENTABLE and "ignoreHosts" in (run.reason or "")


def test_missing_lists_watched_runs_not_seen(engine: Engine, store: Store) -> None:
    with store.transaction():
        engine.apply(CLUSTER, [rec(30), rec(31), rec(32, "COMPLETED", Phase.ENDED,
                                                     end=1_800_000_001)])
    assert engine.missing(CLUSTER, present={31}) == [30]


def test_reconcile_resends_identical_start_after_grace(engine: Engine, store: Store,
                                                      clock: Clock) -> None:
    with store.transaction():
        engine.apply(CLUSTER, [rec(40), rec(41)])
    claim_all(store)
    first = store.start_payload(store.runs_of(CLUSTER, 40)[0].id)
    clock.now += 100
    with store.transaction():
        lookup, resent = engine.reconcile(CLUSTER, [], {40: "RUNNING", 41: "RUNNING"})
    assert (lookup, resent) == ([], 0)  # within the grace: cc-backend 1.5's job cache
    clock.now += 300
    with store.transaction():
        lookup, resent = engine.reconcile(
            CLUSTER, [{"jobId": 41, "startTime": 1_800_000_000, "cluster": CLUSTER}],
            {40: "RUNNING", 41: "RUNNING"})
    assert (lookup, resent) == ([], 1)
    sent = claim_all(store)
    assert len(sent) == 1 and msgspec.json.encode(sent[0][1]) == msgspec.json.encode(
        msgspec.json.decode(first or b""))


def test_reconcile_stopped_but_running_in_ccbackend(engine: Engine, store: Store) -> None:
    ended = rec(42, "COMPLETED", Phase.ENDED, end=1_800_000_009)
    with store.transaction():
        engine.apply(CLUSTER, [ended])
    claim_all(store)
    cc = [{"jobId": 42, "startTime": 1_800_000_000}, {"jobId": 43, "startTime": 5}]
    with store.transaction():
        lookup, _ = engine.reconcile(CLUSTER, cc, {})
    assert lookup == [42, 43]
    with store.transaction():
        report = engine.apply(CLUSTER, [ended], force_stop={42})
    assert report.stops == 1
    assert [k for k, _ in claim_all(store)] == ["stop"]


def test_stop_not_found_twice_is_unrepresentable(engine: Engine, store: Store) -> None:
    with store.transaction():
        engine.apply(CLUSTER, [rec(44, "COMPLETED", Phase.ENDED, end=1_800_000_009)])
    start = store.claim(10)[0]
    store.ack(start.id)
    stop = store.claim(10)[0]
    assert engine.stop_not_found(stop.id, stop.run_id)
    start = store.claim(10)[0]
    assert start.kind == "start"
    store.ack(start.id)
    stop = store.claim(10)[0]
    assert not engine.stop_not_found(stop.id, stop.run_id)
    assert store.runs_of(CLUSTER, 44)[0].state is RunState.UNREPRESENTABLE
    assert store.outbox_size() == 0
