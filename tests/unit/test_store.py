"""The state store: state machine, outbox, snapshots, startTime, cursors, schema, lock, crashes.

Expected values come from the issue (the states and what each cc-backend answer means)
and the contract (§4.2: 422 within 86400 s of a stored run of the same jobId+cluster).
"""

from __future__ import annotations

import ast
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from cc_slurm_adapter.errors import StoreError
from cc_slurm_adapter.slurm.record import JobRecord, NodeResources
from cc_slurm_adapter.store import (
    SCHEMA_VERSION,
    TRANSITIONS,
    Event,
    RunState,
    Store,
    open_store,
)
from cc_slurm_adapter.store.schema import MIGRATIONS, migrate

from .fakes import Clock

S = RunState
T0 = 1_700_000_000
PACKAGE = Path(__file__).resolve().parents[2] / "src" / "cc_slurm_adapter"


def start_body(job_id: int, start: int, **extra: object) -> bytes:
    return json.dumps({"jobId": job_id, "cluster": "c", "user": "u", "startTime": start,
                       "numNodes": 1, "resources": [{"hostname": "n1"}], **extra}).encode()


def stop_body(job_id: int, start: int, stop: int | None = None) -> bytes:
    return json.dumps({"jobId": job_id, "cluster": "c", "startTime": start,
                       "stopTime": stop if stop is not None else start + 60,
                       "jobState": "completed"}).encode()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + 10_000)


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    s = open_store(tmp_path / "state.db", clock=clock)
    yield s
    s.close()


def seen(store: Store, job_id: int, start: int | None = None) -> int:
    return store.observe(cluster="c", job_id=job_id,
                         start_time=T0 + job_id if start is None else start).id


# --------------------------------------------------------------------- state machine


def test_the_transition_table_is_the_issues_state_machine() -> None:
    allowed = {(e, a, b) for e, moves in TRANSITIONS.items() for a, b in moves.items()}
    assert allowed == {
        (Event.ENQUEUE_START, S.SEEN, S.START_PENDING),
        (Event.ENQUEUE_START, S.STARTED, S.START_PENDING),     # reconcile: cc-backend lacks it
        (Event.ENQUEUE_STOP, S.START_PENDING, S.STOP_PENDING),  # ended before the start's ack
        (Event.ENQUEUE_STOP, S.STARTED, S.STOP_PENDING),
        (Event.ENQUEUE_STOP, S.STOPPED, S.STOP_PENDING),       # reconcile: still running there
        (Event.ACK_START, S.START_PENDING, S.STARTED),
        (Event.ACK_START, S.STOP_PENDING, S.STOP_PENDING),
        (Event.ACK_STOP, S.STOP_PENDING, S.STOPPED),
        (Event.REJECT, S.START_PENDING, S.REJECTED),
        (Event.REJECT, S.STOP_PENDING, S.REJECTED),
        (Event.STOP_NOT_FOUND, S.STOP_PENDING, S.STOP_PENDING),
        *((Event.UNREPRESENTABLE, a, S.UNREPRESENTABLE)
          for a in (S.SEEN, S.START_PENDING, S.STARTED, S.STOP_PENDING)),
    }
    # rejected and unrepresentable are final
    assert not any(a in (S.REJECTED, S.UNREPRESENTABLE) for _, a, _ in allowed)


def test_happy_path_start_then_stop(store: Store) -> None:
    run = seen(store, 1)
    assert store.get_run(run).state is S.SEEN
    store.enqueue_start(run, start_body(1, T0 + 1))
    assert store.get_run(run).state is S.START_PENDING
    (sub,) = store.claim(10)
    assert (sub.kind, sub.job_id, sub.start_time, sub.attempts) == ("start", 1, T0 + 1, 0)
    assert sub.payload == start_body(1, T0 + 1)
    assert store.ack(sub.id)
    assert store.get_run(run).state is S.STARTED
    store.enqueue_stop(run, stop_body(1, T0 + 1, T0 + 100))
    assert store.get_run(run).stop_time == T0 + 100
    (sub,) = store.claim(10)
    assert sub.kind == "stop"
    assert store.ack(sub.id)
    assert store.get_run(run).state is S.STOPPED
    assert store.outbox_size() == 0


@pytest.mark.parametrize(("state_calls", "illegal"), [
    ([], "enqueue_stop"),                      # no stop before a start was queued
    (["enqueue_start"], "enqueue_start"),      # one start in the outbox at a time
])
def test_illegal_transition_raises_and_writes_nothing(store: Store, state_calls: list[str],
                                                      illegal: str) -> None:
    run = seen(store, 7)
    bodies = {"enqueue_start": start_body(7, T0 + 7), "enqueue_stop": stop_body(7, T0 + 7)}
    for call in state_calls:
        getattr(store, call)(run, bodies[call])
    before = (store.get_run(run), store.outbox_entries(run))
    with pytest.raises(StoreError, match=r"job 7 on c \(startTime 1700000007\): cannot"):
        getattr(store, illegal)(run, bodies[illegal])
    assert (store.get_run(run), store.outbox_entries(run)) == before


def test_final_states_refuse_everything(store: Store) -> None:
    run = seen(store, 3)
    store.enqueue_start(run, start_body(3, T0 + 3))
    (sub,) = store.claim(1)
    assert store.reject(sub.id, "400: no such cluster: c")
    with pytest.raises(StoreError, match="cannot enqueue_start when rejected"):
        store.enqueue_start(run, start_body(3, T0 + 3))
    with pytest.raises(StoreError, match="cannot mark_unrepresentable when rejected"):
        store.mark_unrepresentable(run, "x")


# --------------------------------------------------------------------- outbox


def test_stop_is_not_sent_before_its_start_is_acknowledged(store: Store) -> None:
    run = seen(store, 2)
    store.enqueue_start(run, start_body(2, T0 + 2))
    store.enqueue_stop(run, stop_body(2, T0 + 2))      # the job ended before the start's ack
    assert store.get_run(run).state is S.STOP_PENDING
    (sub,) = store.claim(10)
    assert sub.kind == "start"
    assert store.claim(10) == []                     # the start is in flight: the stop waits
    store.ack(sub.id)
    assert store.get_run(run).state is S.STOP_PENDING
    (sub,) = store.claim(10)
    assert sub.kind == "stop"


def test_claim_is_oldest_first_in_batches_and_leases(store: Store, clock: Clock) -> None:
    runs = []
    for job in range(5):
        clock.now += 1
        runs.append(seen(store, job))
        store.enqueue_start(runs[-1], start_body(job, T0 + job))
    first = store.claim(2, lease_s=30)
    second = store.claim(2, lease_s=30)
    assert [s.job_id for s in first] == [0, 1]
    assert [s.job_id for s in second] == [2, 3]    # claimed entries are not handed out twice
    assert [s.job_id for s in store.claim(10, lease_s=30)] == [4]
    assert store.claim(10) == []
    clock.now += 31                                # a lease that ran out: due again
    assert [s.job_id for s in store.claim(10)] == [0, 1, 2, 3, 4]


def test_fail_backs_off_until_retry_at(store: Store, clock: Clock) -> None:
    run = seen(store, 4)
    store.enqueue_start(run, start_body(4, T0 + 4))
    (sub,) = store.claim(1)
    assert store.fail(sub.id, retry_at=clock.now + 8, error="500 Internal Server Error") == 1
    clock.now += 7
    assert store.claim(1) == []
    clock.now += 1
    (sub,) = store.claim(1)
    assert sub.attempts == 1
    assert store.fail(sub.id, retry_at=clock.now, error="timeout") == 2
    assert store.next_due() == clock.now


def test_a_rejected_job_never_blocks_the_others(store: Store) -> None:
    for job in range(51):
        store.enqueue_start(seen(store, job), start_body(job, T0 + job))
    batch = store.claim(100)
    assert len(batch) == 51
    bad = batch[0]
    assert store.reject(bad.id, "400: len(resources) does not equal numNodes (2 vs 1)")
    for sub in batch[1:]:
        assert store.ack(sub.id)
    rejected = store.get_run(bad.run_id)
    assert rejected.state is S.REJECTED
    assert rejected.reason == "400: len(resources) does not equal numNodes (2 vs 1)"
    assert store.counts()[S.STARTED] == 50
    assert store.outbox_size() == 0


def test_404_on_stop_queues_the_same_start_again_ahead_of_the_stop(store: Store) -> None:
    run = seen(store, 5)
    body = start_body(5, T0 + 5, metaData={"jobScript": "#!/bin/sh"})
    store.enqueue_start(run, body)
    store.ack(store.claim(1)[0].id)
    store.enqueue_stop(run, stop_body(5, T0 + 5))
    (stop,) = store.claim(1)
    store.stop_not_found(stop.id)
    assert store.get_run(run).state is S.STOP_PENDING
    assert store.get_run(run).start_acked is None
    (again,) = store.claim(10)            # only the start: the stop waits behind it
    assert (again.kind, again.payload) == ("start", body)
    store.ack(again.id)
    (stop2,) = store.claim(10)
    assert (stop2.id, stop2.kind, stop2.attempts) == (stop.id, "stop", 1)
    store.ack(stop2.id)
    assert store.get_run(run).state is S.STOPPED


def test_entries_of_an_unrepresentable_run_are_dropped(store: Store) -> None:
    run = seen(store, 6)
    store.enqueue_start(run, start_body(6, T0 + 6))
    (sub,) = store.claim(1)
    store.mark_unrepresentable(run, "requeued within 24 h")
    assert store.outbox_size() == 0
    assert not store.ack(sub.id)          # a late answer for it changes nothing
    assert store.fail(sub.id, retry_at=0, error="x") == 0
    assert store.get_run(run).reason == "requeued within 24 h"


# --------------------------------------------------------------------- identity, startTime


def test_start_time_is_fixed_by_the_first_source(store: Store) -> None:
    first = store.observe(cluster="c", job_id=9, start_time=T0 + 9, phase="running")
    # another source reports the same run with another start time: the first one stays
    other = store.observe(cluster="c", job_id=9, start_time=T0 + 10, phase="running")
    assert other.id == first.id
    assert other.start_time == T0 + 9
    with pytest.raises(StoreError, match="startTime 1700000010; the run's startTime"):
        store.enqueue_start(first.id, start_body(9, T0 + 10))
    store.enqueue_start(first.id, start_body(9, T0 + 9))
    with pytest.raises(StoreError, match="stop payload says jobId 9, startTime None"):
        store.enqueue_stop(first.id, json.dumps({"jobId": 9, "stopTime": T0 + 99}).encode())
    with pytest.raises(StoreError, match="stop payload is not a cc-backend body"):
        store.enqueue_stop(first.id, b"not json")


def test_a_requeued_run_is_a_new_run_and_cc_backend_1_5_cannot_take_it(store: Store) -> None:
    first = store.observe(cluster="c", job_id=20, start_time=T0, restart_count=0)
    store.enqueue_start(first.id, start_body(20, T0))
    store.ack(store.claim(1)[0].id)
    # requeued one hour later: Slurm counts the restart
    second = store.observe(cluster="c", job_id=20, start_time=T0 + 3600, restart_count=1)
    assert second.id != first.id
    assert second.start_time == T0 + 3600
    assert store.conflicting_run(second) == store.get_run(first.id)
    store.mark_unrepresentable(second.id, "cc-backend 1.5 answers 422 to a second run of "
                               "job 20 within 24 h of the first")
    assert store.get_run(second.id).state is S.UNREPRESENTABLE
    assert store.get_run(first.id).state is S.STARTED
    # contract §4.2: the rule is start - existing < 86400; a day later it is accepted
    later = store.observe(cluster="c", job_id=20, start_time=T0 + 86400, restart_count=2)
    assert store.conflicting_run(later) is None


def test_sluid_tells_runs_apart(store: Store) -> None:
    a = store.observe(cluster="c", job_id=30, start_time=T0, sluid="sA")
    b = store.observe(cluster="c", job_id=30, start_time=T0 + 5, sluid="sB")
    assert a.id != b.id
    assert store.observe(cluster="c", job_id=30, start_time=T0 + 7, sluid="sA").id == a.id


# --------------------------------------------------------------------- snapshots


def record(resources: tuple[NodeResources, ...], nodes: tuple[str, ...]) -> JobRecord:
    return JobRecord(source="squeue", job_id=40, cluster="c", start_time=T0,
                     state="RUNNING", nodes=nodes, resources=resources)


def test_a_poorer_later_view_does_not_replace_the_snapshot(store: Store) -> None:
    rich = record((NodeResources(hostname="n1", cpu_ids=(0, 1)),
                   NodeResources(hostname="n2", cpu_ids=(0, 1))), ("n1", "n2"))
    # 24.11: a COMPLETING job releases its nodes one by one, then sacct knows only hosts
    fewer = record((NodeResources(hostname="n2", cpu_ids=(0, 1)),), ("n2",))
    hosts_only = JobRecord(source="sacct", job_id=40, cluster="c", start_time=T0,
                           state="COMPLETED", nodes=("n1", "n2"))
    run = store.observe_record(rich)
    store.observe_record(fewer)
    store.observe_record(hosts_only)
    assert store.snapshot_record(run.id) == rich
    assert store.get_run(run.id).phase == hosts_only.phase.value


def test_a_richer_view_replaces_the_snapshot(store: Store) -> None:
    run = seen(store, 41)
    assert store.save_snapshot(run, b"hosts", (1, 2))
    assert store.save_snapshot(run, b"cores", (3, 2))
    assert not store.save_snapshot(run, b"fewer", (3, 1))
    assert store.snapshot(run) == b"cores"
    assert store.get_run(run).snapshot_rank == (3, 2)


def test_runs_in_pages_by_cluster_and_state(store: Store) -> None:
    for job in range(5):
        store.observe(cluster="a" if job % 2 else "b", job_id=job, start_time=T0 + job)
    first = store.runs_in([S.SEEN], cluster="b", limit=2)
    assert [r.job_id for r in first] == [0, 2]
    rest = store.runs_in([S.SEEN], cluster="b", after_id=first[-1].id, limit=2)
    assert [r.job_id for r in rest] == [4]
    assert store.runs_in([S.STARTED]) == []


def test_prune_drops_only_old_finished_runs(store: Store, clock: Clock) -> None:
    done, rejected, running = seen(store, 90), seen(store, 91), seen(store, 92)
    for run, job in ((done, 90), (rejected, 91), (running, 92)):
        store.enqueue_start(run, start_body(job, T0 + job))
    subs = {s.run_id: s for s in store.claim(10)}
    store.ack(subs[done].id)
    store.enqueue_stop(done, stop_body(90, T0 + 90))
    store.ack(store.claim(1)[0].id)
    store.reject(subs[rejected].id, "400")
    store.ack(subs[running].id)
    clock.now += 100
    assert store.prune(before=clock.now - 200) == 0     # too recent
    assert store.prune(before=clock.now) == 2
    assert [r.job_id for r in store.runs_in(list(S))] == [92]


# --------------------------------------------------------------------- cursor, transactions


def test_cursor_and_results_commit_together_or_not_at_all(store: Store) -> None:
    store.set_cursor("c", T0)

    class Crash(Exception):
        pass

    with pytest.raises(Crash), store.transaction():
        seen(store, 50)
        store.set_cursor("c", T0 + 60)
        raise Crash
    assert store.get_cursor("c") == T0
    assert store.find_run("c", 50, T0 + 50) is None
    with store.transaction():
        seen(store, 50)
        store.set_cursor("c", T0 + 60)
    assert store.get_cursor("c") == T0 + 60
    assert store.find_run("c", 50, T0 + 50) is not None


def test_an_illegal_move_inside_a_cycle_keeps_the_rest(store: Store) -> None:
    with store.transaction():
        run = seen(store, 51)
        with pytest.raises(StoreError):
            store.enqueue_stop(run, stop_body(51, T0 + 51))
        store.enqueue_start(run, start_body(51, T0 + 51))
    assert store.get_run(run).state is S.START_PENDING


def test_upstream_last_run_mtime_becomes_the_cursor_once(tmp_path: Path, clock: Clock) -> None:
    last_run = tmp_path / "lastrun"
    last_run.touch()
    os.utime(last_run, (T0 + 123.7, T0 + 123.7))
    with open_store(tmp_path / "a.db", clock=clock) as s:
        assert s.import_upstream_cursor(last_run) == T0 + 123
        assert s.get_cursor("any-cluster") == T0 + 123    # for all clusters
        s.set_cursor("c1", T0 + 500)
        assert s.get_cursor("c1") == T0 + 500             # a cluster's own cursor wins
        assert s.get_cursor("c2") == T0 + 123
    os.utime(last_run, (T0 + 999, T0 + 999))
    with open_store(tmp_path / "a.db", clock=clock) as s:
        assert s.import_upstream_cursor(last_run) is None  # only on the first start
        assert s.get_cursor("c2") == T0 + 123
    with open_store(tmp_path / "b.db", clock=clock) as s:
        assert s.import_upstream_cursor(last_run, "c1") == T0 + 999
        assert (s.get_cursor("c1"), s.get_cursor("c2")) == (T0 + 999, None)
    with open_store(tmp_path / "c.db", clock=clock) as s:
        assert s.import_upstream_cursor(tmp_path / "missing") is None
        assert s.get_cursor("c1") is None


# --------------------------------------------------------------------- schema


def test_new_store_has_the_latest_schema_and_its_indexes(store: Store, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "state.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"outbox_due", "outbox_target", "runs_state", "runs_cluster_state"} <= indexes
    plan = " ".join(str(r) for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM outbox WHERE target = 'rest' AND next_attempt <= 1 "
        "ORDER BY next_attempt, id LIMIT 5"))
    assert "outbox_due" in plan
    plan = " ".join(str(r) for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM outbox WHERE target = 'nats' ORDER BY id LIMIT 5"))
    assert "outbox_target" in plan and "TEMP B-TREE" not in plan
    conn.close()


def test_a_v1_database_is_upgraded(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=1) == (0, 1)
    conn.execute("INSERT INTO runs (cluster, job_id, start_time, state, first_seen, last_seen,"
                 " updated) VALUES ('c', 60, ?, 'started', 1, 1, 1)", (T0,))
    conn.close()
    with open_store(path, clock=clock) as s:
        run = s.find_run("c", 60, T0)
        assert run is not None
        assert run.state is S.STARTED
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT 1 FROM sqlite_master WHERE name='outbox_due'").fetchone()
    conn.close()


def test_a_failing_migration_leaves_the_old_version(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "m.db"
    open_store(path, clock=clock).close()

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        conn.execute("SELECT * FROM no_such_table")

    with pytest.raises(StoreError, match=f"state store {path}: no such table"):
        open_store(path, clock=clock, migrations=(*MIGRATIONS, broken))
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT 1 FROM sqlite_master WHERE name='half_done'").fetchone() is None
    conn.close()
    open_store(path, clock=clock).close()     # and the lock was released


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 9")
    conn.close()
    with pytest.raises(StoreError, match="schema version 9, newer than this"):
        open_store(path)


def test_a_damaged_file_is_reported_and_left_in_place(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    garbage = b"this is not an SQLite database\n" * 200
    path.write_bytes(garbage)
    with pytest.raises(StoreError) as err:
        open_store(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"state store {path} is damaged (file is not a database)")
    assert path.read_bytes() == garbage
    assert not (tmp_path / "state.db-wal").exists()


def test_disk_full_is_one_clear_line(store: Store) -> None:
    store._conn.execute("PRAGMA max_page_count = 20")   # an unreachable disk-full
    run = seen(store, 70)
    with pytest.raises(StoreError, match=r"state store .*state\.db: database or disk is full"):
        store.enqueue_start(run, start_body(70, T0 + 70, metaData={"jobScript": "x" * 200_000}))
    assert store.get_run(run).state is S.SEEN
    assert store.outbox_size() == 0


def test_an_sqlite_failure_dooms_the_whole_transaction(store: Store) -> None:
    store._conn.execute("PRAGMA max_page_count = 20")
    with pytest.raises(StoreError, match=r"disk is full \(the transaction is rolled back\)"), \
            store.transaction():
        run = seen(store, 71)
        with pytest.raises(StoreError, match="database or disk is full"):
            store.enqueue_start(run, start_body(71, T0 + 71, metaData={"x": "x" * 200_000}))
        store.set_cursor("c", T0)           # the caller went on: this must not stay
    assert store.find_run("c", 71, T0 + 71) is None
    assert store.get_cursor("c") is None


# --------------------------------------------------------------------- one process


HOLDER = """
import sys, time
from cc_slurm_adapter.store import open_store
s = open_store(sys.argv[1])
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_daemon_refuses_and_touches_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        files = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.iterdir()}
        with pytest.raises(StoreError) as err:
            open_store(path)
        assert str(err.value) == (f"another cc-slurm-adapter daemon (pid {child.pid}) "
                                  f"holds {path}")
        assert {p.name: (p.stat().st_mtime_ns, p.read_bytes())
                for p in tmp_path.iterdir()} == files
        with open_store(path, read_only=True) as reader:     # status may still read
            assert reader.outbox_size() == 0
            with pytest.raises(StoreError, match="read-only"):
                reader.set_cursor("c", 1)
    finally:
        child.kill()
        child.communicate()
    open_store(path).close()                # the lock died with its holder


# --------------------------------------------------------------------- crashes


def test_a_crash_between_send_and_ack_resends_the_same_bytes(tmp_path: Path,
                                                             clock: Clock) -> None:
    path = tmp_path / "state.db"
    with open_store(path, clock=clock) as s:
        run = seen(s, 80)
        s.enqueue_start(run, start_body(80, T0 + 80))
        (sent,) = s.claim(10, lease_s=3600)
        # ... POST start_job, cc-backend commits it, the daemon dies before ack()
    with open_store(path, clock=clock) as s:
        (again,) = s.claim(10)              # due at once, not after the lease
        assert (again.id, again.payload) == (sent.id, sent.payload)
        # cc-backend answers 422 (already exists): the client treats it as done
        assert s.ack(again.id)
        assert s.get_run(run).state is S.STARTED


def start_of(j: int) -> bytes:
    return json.dumps({"jobId": j, "cluster": "c", "startTime": T0 + j}).encode()


def stop_of(j: int) -> bytes:
    return json.dumps({"jobId": j, "startTime": T0 + j, "stopTime": T0 + j + 9}).encode()


def workload(s: Store, rng: random.Random, steps: int | None) -> None:
    """The daemon's calls in a random mix, on 300 job ids plus 5 new runs per poll cycle."""
    cycle = (s.get_cursor("c") or -1) + 1
    step = 0
    while steps is None or step < steps:
        step += 1
        op = rng.random()
        if op < 0.1:
            # a poll cycle: its results and the cursor in one transaction
            with s.transaction():
                for k in range(5):
                    s.observe(cluster="c", job_id=100_000 + cycle * 5 + k,
                              start_time=T0 + 100_000 + cycle * 5 + k)
                s.set_cursor("c", cycle)
            cycle += 1
            continue
        j = rng.randrange(300)
        run = s.observe(cluster="c", job_id=j, start_time=T0 + j, snapshot=b"x" * 300,
                        rank=(rng.randrange(4), 1))
        if op < 0.35 and run.state in (S.SEEN, S.STARTED):
            s.enqueue_start(run.id, start_of(j))
        elif op < 0.55 and run.state in (S.START_PENDING, S.STARTED, S.STOPPED):
            s.enqueue_stop(run.id, stop_of(j))
        elif op < 0.57 and run.state in (S.SEEN, S.START_PENDING, S.STARTED, S.STOP_PENDING):
            s.mark_unrepresentable(run.id, "test")
        else:
            for sub in s.claim(rng.randrange(1, 8)):
                r = rng.random()
                if r < 0.7:
                    s.ack(sub.id)
                elif r < 0.85:
                    s.fail(sub.id, retry_at=0, error="500")
                elif r < 0.88:
                    s.reject(sub.id, "400")
                elif sub.kind == "stop":
                    s.stop_not_found(sub.id)


def fork_worker(path: Path, seed: int, *, kill_at: int = 0, steps: int | None = None) -> int:
    """A child process running :func:`workload`; with ``kill_at`` it dies (like SIGKILL:
    no cleanup, no rollback) just before its ``kill_at``-th SQL statement."""
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        s = open_store(path)
        count = 0

        def trace(_statement: str) -> None:
            nonlocal count
            count += 1
            if count == kill_at:
                os._exit(9)

        if kill_at:
            s._conn.set_trace_callback(trace)
        workload(s, random.Random(seed), steps)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


PENDING_OK: dict[RunState, list[tuple[str, ...]]] = {
    S.SEEN: [()], S.START_PENDING: [("start",)], S.STARTED: [()],
    S.STOP_PENDING: [("stop",), ("start", "stop")], S.STOPPED: [()], S.REJECTED: [()],
    S.UNREPRESENTABLE: [()],
}


def check_invariants(path: Path) -> tuple[int, int]:
    """What must hold after any crash; returns (runs, cursor)."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kinds: dict[int, list[str]] = {}
        for run_id, kind, payload in conn.execute(
                "SELECT run_id, kind, payload FROM outbox ORDER BY kind"):
            kinds.setdefault(run_id, []).append(kind)
            body = json.loads(payload)
            start = conn.execute("SELECT start_time FROM runs WHERE id=?", (run_id,)).fetchone()
            assert start is not None, "an outbox entry without its run"
            assert body["startTime"] == start[0]
        runs = 0
        for run_id, job_id, start, state in conn.execute(
                "SELECT id, job_id, start_time, state FROM runs"):
            runs += 1
            assert start == T0 + job_id, "the startTime changed"
            pending = tuple(kinds.get(run_id, []))
            assert pending in PENDING_OK[S(state)], (job_id, state, pending)
        row = conn.execute("SELECT cursor FROM cursors WHERE cluster='c'").fetchone()
        cursor = -1 if row is None else int(row[0])
        cycle_runs = conn.execute("SELECT count(*) FROM runs WHERE job_id >= 100000").fetchone()
        assert cycle_runs[0] == 5 * (cursor + 1), "the cursor ran ahead of (or behind) results"
        return runs, cursor
    finally:
        conn.close()


def test_sigkill_at_random_times_leaves_a_consistent_store(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    rng = random.Random(11)
    for round_ in range(15):
        pid = fork_worker(path, round_)
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WTERMSIG(status) == signal.SIGKILL, "the worker stopped by itself"
        check_invariants(path)
        with open_store(path) as s:        # the next start completes it: claims are reset
            assert s._conn.execute(
                "SELECT count(*) FROM outbox WHERE claimed_at IS NOT NULL").fetchone()[0] == 0
    runs, cursor = check_invariants(path)
    assert runs > 100 and cursor > 5, (runs, cursor)     # the workers did real work


def test_a_crash_before_any_sql_statement_leaves_a_consistent_store(tmp_path: Path) -> None:
    """Kill the worker just before its 1st, 4th, … 499th SQL statement (35 calls are
    about 500 statements), with 13 workloads: each kind of boundary between two
    statements of every call is a crash point many times."""
    path = tmp_path / "state.db"
    killed = 0
    for kill_at in range(1, 500, 3):
        pid = fork_worker(path, kill_at % 13, kill_at=kill_at, steps=35)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        assert code in (0, 9), code
        killed += code == 9
        check_invariants(path)
    assert killed > 140, killed


# --------------------------------------------------------------------- memory, layering


RSS = """
import sys
from cc_slurm_adapter.store import RunState, open_store
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
base = rss()
s = open_store(sys.argv[1])
s.counts(); s.claim(50); s.runs_in([RunState.STARTED], cluster="c", limit=500)
s.next_due(); s.get_cursor("c")
print(rss() - base)
"""


def fill(path: Path, jobs: int) -> None:
    with open_store(path) as s, s.transaction():
        for j in range(jobs):
            run = s.observe(cluster="c", job_id=j, start_time=T0 + j,
                            snapshot=b"s" * 400, rank=(3, 1))
            s.enqueue_start(run.id, start_body(j, T0 + j))
            if j % 2:
                s.ack(s.claim(1)[0].id)


def test_memory_does_not_grow_with_the_store(tmp_path: Path) -> None:
    small, large = tmp_path / "small.db", tmp_path / "large.db"
    fill(small, 100)
    fill(large, 20_000)
    grew = [int(subprocess.run([sys.executable, "-c", RSS, str(p)], capture_output=True,
                               text=True, check=True).stdout) for p in (small, large)]
    # SQLite's page cache is bounded (2 MB by default): the opening cost is the same
    assert grew[1] - grew[0] < 3_000, grew    # kB


def test_store_imports_only_errors_and_the_slurm_record() -> None:
    allowed = {"cc_slurm_adapter.errors", "cc_slurm_adapter.slurm.record",
               "cc_slurm_adapter.slurm.phase"}
    third_party = {"msgspec"}
    for path in (PACKAGE / "store").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                top = name.split(".")[0]
                if name.startswith("cc_slurm_adapter."):
                    assert name in allowed or name.startswith("cc_slurm_adapter.store"), name
                else:
                    assert top in sys.stdlib_module_names or top in third_party, name


# --------------------------------------------------------------------- hypothesis


class StoreMachine(RuleBasedStateMachine):
    """Random sequences of the daemon's calls, with restarts, against a model of the
    issue's rules: what each answer does to the run and to its outbox entries."""

    runs = Bundle("runs")

    def __init__(self) -> None:
        super().__init__()
        import tempfile
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name) / "state.db"
        self.clock = Clock(T0 + 10_000)
        self.store = open_store(self.path, clock=self.clock)
        self.state: dict[int, RunState] = {}
        self.job: dict[int, int] = {}
        self.pending: dict[int, list[str]] = {}
        self.claimed: dict[int, tuple[int, str]] = {}
        self.next_job = 0

    def teardown(self) -> None:
        self.store.close()
        self.dir.cleanup()

    @rule(target=runs)
    def new_run(self) -> int:
        self.next_job += 1
        run = self.store.observe(cluster="c", job_id=self.next_job,
                                 start_time=T0 + self.next_job)
        self.state[run.id] = S.SEEN
        self.job[run.id] = self.next_job
        self.pending[run.id] = []
        return run.id

    @rule(run=runs)
    def enqueue_start(self, run: int) -> None:
        ok = self.state[run] in (S.SEEN, S.STARTED)
        try:
            self.store.enqueue_start(run, start_body(self.job[run], T0 + self.job[run]))
        except StoreError:
            assert not ok
            return
        assert ok
        self.state[run] = S.START_PENDING
        self.pending[run].append("start")

    @rule(run=runs)
    def enqueue_stop(self, run: int) -> None:
        ok = self.state[run] in (S.START_PENDING, S.STARTED, S.STOPPED)
        try:
            self.store.enqueue_stop(run, stop_body(self.job[run], T0 + self.job[run]))
        except StoreError:
            assert not ok
            return
        assert ok
        self.state[run] = S.STOP_PENDING
        self.pending[run].append("stop")

    @rule(run=runs)
    def unrepresentable(self, run: int) -> None:
        ok = self.state[run] not in (S.STOPPED, S.REJECTED, S.UNREPRESENTABLE)
        try:
            self.store.mark_unrepresentable(run, "r")
        except StoreError:
            assert not ok
            return
        assert ok
        self.state[run] = S.UNREPRESENTABLE
        self.pending[run] = []

    @rule(n=st.integers(1, 5))
    def claim(self, n: int) -> None:
        for sub in self.store.claim(n):
            assert sub.id not in self.claimed
            assert sub.kind in self.pending[sub.run_id]
            if sub.kind == "stop":
                assert "start" not in self.pending[sub.run_id]
            self.claimed[sub.id] = (sub.run_id, sub.kind)

    @precondition(lambda self: self.claimed)
    @rule(data=st.data(), answer=st.sampled_from(["ack", "fail", "reject", "404"]))
    def answer(self, data: st.DataObject, answer: str) -> None:
        entry = data.draw(st.sampled_from(sorted(self.claimed)))
        run, kind = self.claimed.pop(entry)
        gone = kind not in self.pending[run]
        if answer == "ack":
            assert self.store.ack(entry) is not gone
            if not gone:
                self.pending[run].remove(kind)
                if kind == "stop":
                    self.state[run] = S.STOPPED
                elif self.state[run] is S.START_PENDING:
                    self.state[run] = S.STARTED
        elif answer == "fail":
            self.store.fail(entry, retry_at=self.clock.now, error="500")
        elif answer == "reject":
            assert self.store.reject(entry, "400") is not gone
            if not gone:
                self.state[run], self.pending[run] = S.REJECTED, []
        elif kind == "stop" and not gone:
            self.store.stop_not_found(entry)
            self.pending[run] = ["start", "stop"]
        else:
            self.store.fail(entry, retry_at=self.clock.now, error="500")

    @rule()
    def restart(self) -> None:
        self.store.close()
        self.store = open_store(self.path, clock=self.clock)
        self.claimed = {}

    @rule()
    def tick(self) -> None:
        self.clock.now += 400        # past the default lease: claims expire
        self.claimed = {}

    @invariant()
    def store_matches_model(self) -> None:
        for run, state in self.state.items():
            assert self.store.get_run(run).state is state
            kinds = sorted(k for _, k, _ in self.store.outbox_entries(run))
            assert kinds == sorted(self.pending[run])
            assert kinds in [sorted(p) for p in PENDING_OK[state]]


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])


def test_page_cache_is_one_mib(tmp_path: Path) -> None:
    """The daemon's connection keeps SQLite's page cache at 1 MiB (its RSS budget);
    SQLite's default is 2 MiB (``PRAGMA cache_size`` -2000)."""
    store = open_store(tmp_path / "state.db")
    try:
        assert store._conn.execute("PRAGMA cache_size").fetchone()[0] == -1024
    finally:
        store.close()
