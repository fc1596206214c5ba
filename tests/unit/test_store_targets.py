"""The outbox per target (issue 13, "Durability"): REST and NATS entries tracked on their
own, NATS in creation order, the run's state following the primary target, and the v3
migration from a v2 store that holds rows.

Expected values come from the issue: each enabled target gets every start and stop;
``ccRestSubmitJobs: false`` means NATS only; an outage of one target never holds the
other back; NATS never gets a job's stop before its start.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
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
from cc_slurm_adapter.store import NATS, REST, SCHEMA_VERSION, RunState, Store, open_store
from cc_slurm_adapter.store.schema import MIGRATIONS, migrate

from .fakes import Clock

S = RunState
T0 = 1_700_000_000


def start_body(job_id: int) -> bytes:
    return json.dumps({"jobId": job_id, "cluster": "c", "startTime": T0 + job_id,
                       "numNodes": 1}).encode()


def stop_body(job_id: int) -> bytes:
    return json.dumps({"jobId": job_id, "cluster": "c", "startTime": T0 + job_id,
                       "stopTime": T0 + job_id + 60, "jobState": "completed"}).encode()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + 10_000)


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    s = open_store(tmp_path / "state.db", clock=clock)
    s.set_targets([REST, NATS])
    yield s
    s.close()


def seen(store: Store, job_id: int) -> int:
    return store.observe(cluster="c", job_id=job_id, start_time=T0 + job_id).id


def kinds(store: Store, run: int, target: str) -> list[str]:
    return [k for _, k, _ in store.outbox_entries(run, target)]


# --------------------------------------------------------------------- migration v2 → v3


def test_a_v2_store_with_rows_is_migrated_in_one_transaction(tmp_path: Path,
                                                             clock: Clock) -> None:
    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    assert migrate(conn, target=2) == (0, 2)
    for rid, job, state, payload in ((1, 1, "stop_pending", start_body(1)),
                                     (2, 2, "start_pending", start_body(2)),
                                     (3, 3, "seen", None)):
        conn.execute("INSERT INTO runs (id, cluster, job_id, start_time, state, first_seen, "
                     "last_seen, updated, start_payload) VALUES (?,?,?,?,?,1,1,1,?)",
                     (rid, "c", job, T0 + job, state, payload))
    for eid, rid, kind, body, attempts in ((4, 1, "stop", stop_body(1), 3),
                                           (5, 2, "start", start_body(2), 0),
                                           (9, 2, "stop", stop_body(2), 0)):
        conn.execute("INSERT INTO outbox (id, run_id, kind, attempts, next_attempt, "
                     "created, last_error, payload) VALUES (?,?,?,?,?,?,?,?)",
                     (eid, rid, kind, attempts, 5.0, 1.0, "500" if attempts else None, body))
    conn.execute("DELETE FROM outbox WHERE id = 9")   # ids up to 9 were handed out
    conn.close()

    with open_store(path, clock=clock) as s:
        assert s.outbox_entries(1, REST) == [(4, "stop", 3)]
        assert s.outbox_entries(2, REST) == [(5, "start", 0)]
        assert s.outbox_entries(1, NATS) == []
        assert s.get_run(1).state is S.STOP_PENDING
        s.set_targets([REST, NATS])
        new = s.enqueue_start(3, start_body(3))
        assert new > 9                                   # no id is handed out twice
        assert [(e.id, e.target) for e in s.claim(10)] == [(4, REST), (5, REST), (new, REST)]
        (nats,) = s.claim_in_order(10)
        assert (nats.run_id, nats.kind, nats.target) == (3, "start", NATS)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    rows = conn.execute("SELECT id, target, payload, last_error FROM outbox WHERE id < 9 "
                        "ORDER BY id").fetchall()
    assert rows == [(4, "rest", stop_body(1), "500"), (5, "rest", start_body(2), None)]
    # the runs whose start was queued under v2 had it queued for REST
    assert dict(conn.execute("SELECT id, start_targets FROM runs").fetchall()) == {
        1: "rest", 2: "rest", 3: "rest,nats"}
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        conn.execute("INSERT INTO outbox (run_id, kind, target, next_attempt, created, "
                     "payload) VALUES (2, 'start', 'rest', 1, 1, x'00')")
    conn.close()


def test_a_v3_migration_that_fails_leaves_the_v2_store_as_it_was(tmp_path: Path,
                                                                 clock: Clock) -> None:
    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=2)
    conn.execute("INSERT INTO runs (id, cluster, job_id, start_time, state, first_seen, "
                 "last_seen, updated) VALUES (1, 'c', 1, ?, 'start_pending', 1, 1, 1)", (T0,))
    conn.execute("INSERT INTO outbox (run_id, kind, next_attempt, created, payload) "
                 "VALUES (1, 'start', 1, 1, x'7b7d')")
    conn.close()

    def dies_at_the_end(c: sqlite3.Connection) -> None:
        MIGRATIONS[2](c)
        raise sqlite3.OperationalError("disk I/O error")   # e.g. the disk fails

    with pytest.raises(StoreError, match="disk I/O error"):
        open_store(path, clock=clock, migrations=(*MIGRATIONS[:2], dies_at_the_end))
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    columns = [r[1] for r in conn.execute("PRAGMA table_info(outbox)")]
    assert "target" not in columns
    assert conn.execute("SELECT run_id, kind FROM outbox").fetchall() == [(1, "start")]
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'outbox_v3'"
                        ).fetchone() is None
    conn.close()
    with open_store(path, clock=clock) as s:             # and the next start migrates it
        assert s.outbox_entries(1, REST)[0][1] == "start"


# --------------------------------------------------------------------- targets


def test_each_enabled_target_gets_every_start_and_stop(store: Store) -> None:
    run = seen(store, 1)
    store.enqueue_start(run, start_body(1))
    store.enqueue_stop(run, stop_body(1))
    assert kinds(store, run, REST) == kinds(store, run, NATS) == ["start", "stop"]
    assert store.outbox_size() == 4 and store.outbox_size(NATS) == 2


def test_the_run_follows_the_rest_ack_and_nats_only_its_entries(store: Store) -> None:
    run = seen(store, 1)
    store.enqueue_start(run, start_body(1))
    (nats,) = store.claim_in_order(10)
    assert store.ack(nats.id)
    assert store.get_run(run).state is S.START_PENDING      # NATS alone does not move it
    (rest,) = store.claim(10)
    assert store.ack(rest.id)
    assert store.get_run(run).state is S.STARTED
    store.enqueue_stop(run, stop_body(1))
    (rest,) = store.claim(10)
    assert store.ack(rest.id)
    assert store.get_run(run).state is S.STOPPED
    assert kinds(store, run, NATS) == ["stop"]              # still owed to NATS


def test_with_nats_only_the_run_follows_the_nats_ack(tmp_path: Path, clock: Clock) -> None:
    with open_store(tmp_path / "n.db", clock=clock) as s:
        s.set_targets([NATS])
        run = seen(s, 1)
        s.enqueue_start(run, start_body(1))
        assert s.claim(10) == []                             # nothing for REST
        (sub,) = s.claim_in_order(10)
        s.ack(sub.id)
        assert s.get_run(run).state is S.STARTED and s.get_run(run).start_acked
        s.enqueue_stop(run, stop_body(1))
        (sub,) = s.claim_in_order(10)
        s.ack(sub.id)
        assert s.get_run(run).state is S.STOPPED and s.outbox_size() == 0


def test_rest_down_does_not_hold_nats_back(store: Store, clock: Clock) -> None:
    runs = [seen(store, j) for j in (1, 2)]
    for j, run in zip((1, 2), runs, strict=True):
        store.enqueue_start(run, start_body(j))
    for sub in store.claim(10):
        store.fail(sub.id, retry_at=clock.now + 3600, error="503")
    batch = store.claim_in_order(10)
    assert [(s.job_id, s.kind) for s in batch] == [(1, "start"), (2, "start")]
    for sub in batch:
        store.ack(sub.id)
    assert store.outbox_size(NATS) == 0 and store.outbox_size(REST) == 2


def test_nats_down_does_not_hold_rest_back(store: Store, clock: Clock) -> None:
    for j in (1, 2):
        store.enqueue_start(seen(store, j), start_body(j))
    head = store.claim_in_order(1)[0]
    store.fail(head.id, retry_at=clock.now + 3600, error="nats: no servers")
    assert store.claim_in_order(10) == []                  # the head holds the rest back
    assert [s.job_id for s in store.claim(10)] == [1, 2]    # REST goes on


def test_nats_entries_come_in_creation_order_and_wait_behind_a_failed_one(
        store: Store, clock: Clock) -> None:
    runs = {j: seen(store, j) for j in (1, 2, 3)}
    store.enqueue_start(runs[1], start_body(1))
    store.enqueue_start(runs[2], start_body(2))
    store.enqueue_stop(runs[1], stop_body(1))
    store.enqueue_start(runs[3], start_body(3))
    order = [(1, "start"), (2, "start"), (1, "stop"), (3, "start")]
    batch = store.claim_in_order(10)
    assert [(s.job_id, s.kind) for s in batch] == order
    assert store.claim_in_order(10) == []                  # one batch on the wire at a time
    # the first two went out, the third failed: it backs off, the fourth waits uncounted
    store.ack(batch[0].id)
    store.ack(batch[1].id)
    store.fail(batch[2].id, retry_at=clock.now + 30, error="nats: timeout")
    store.release([batch[3].id])
    assert store.claim_in_order(10) == []
    assert store.head_due(NATS) == clock.now + 30
    clock.now += 30
    again = store.claim_in_order(10)
    assert [(s.job_id, s.kind, s.attempts) for s in again] == [(1, "stop", 1), (3, "start", 0)]


def test_a_nats_stop_never_goes_before_its_start(store: Store, clock: Clock) -> None:
    run = seen(store, 1)
    store.enqueue_start(run, start_body(1))
    (start,) = store.claim_in_order(10)
    store.enqueue_stop(run, stop_body(1))       # the job ended while the start was out
    assert store.claim_in_order(10) == []       # start still claimed: the stop waits
    store.fail(start.id, retry_at=clock.now, error="nats: timeout")
    assert [s.kind for s in store.claim_in_order(10)] == ["start", "stop"]


def test_reconcile_resends_go_to_the_primary_only(store: Store) -> None:
    run = seen(store, 1)
    store.enqueue_start(run, start_body(1))
    for sub in [*store.claim(10), *store.claim_in_order(10)]:
        store.ack(sub.id)
    store.enqueue_start(run, start_body(1))     # STARTED → START_PENDING: cc-backend lacks it
    assert kinds(store, run, REST) == ["start"] and kinds(store, run, NATS) == []
    store.ack(store.claim(10)[0].id)
    store.enqueue_stop(run, stop_body(1))
    for sub in [*store.claim(10), *store.claim_in_order(10)]:
        store.ack(sub.id)
    store.enqueue_stop(run, stop_body(1))       # STOPPED → STOP_PENDING: still running there
    assert kinds(store, run, REST) == ["stop"] and kinds(store, run, NATS) == []


def test_404_requeues_the_start_for_rest_only(store: Store) -> None:
    run = seen(store, 1)
    store.enqueue_start(run, start_body(1))
    store.ack(store.claim(10)[0].id)
    store.enqueue_stop(run, stop_body(1))
    (stop,) = store.claim(10)
    store.stop_not_found(stop.id)
    assert kinds(store, run, REST) == ["stop", "start"]
    assert kinds(store, run, NATS) == ["start", "stop"]     # untouched


def test_a_target_enabled_later_gets_the_start_before_the_stop(tmp_path: Path,
                                                               clock: Clock) -> None:
    path = tmp_path / "s.db"
    with open_store(path, clock=clock) as s:           # REST only
        run = seen(s, 1)
        s.enqueue_start(run, start_body(1))
        s.ack(s.claim(10)[0].id)
    with open_store(path, clock=clock) as s:           # NATS enabled since
        s.set_targets([REST, NATS])
        s.enqueue_stop(run, stop_body(1))
        assert kinds(s, run, REST) == ["stop"]
        assert [(x.kind, x.payload) for x in s.claim_in_order(10)] == [
            ("start", start_body(1)), ("stop", stop_body(1))]


def test_a_disabled_target_hands_its_entries_to_the_primary(tmp_path: Path,
                                                            clock: Clock) -> None:
    path = tmp_path / "s.db"
    with open_store(path, clock=clock) as s:
        s.set_targets([REST, NATS])
        a, b = seen(s, 1), seen(s, 2)
        s.enqueue_start(a, start_body(1))
        s.enqueue_start(b, start_body(2))
        s.ack(s.claim_in_order(1)[0].id)               # job 1's start reached NATS
    with open_store(path, clock=clock) as s:           # ccRestSubmitJobs turned off
        assert s.set_targets([NATS]) == 1              # job 2's REST start moves
        assert [(x.job_id, x.kind) for x in s.claim_in_order(10)] == [(1, "start"),
                                                                      (2, "start")]
        assert s.outbox_size(REST) == 0 and s.outbox_size() == 2


def test_a_refusal_by_nats_drops_only_its_nats_entries(store: Store) -> None:
    run = seen(store, 1)
    store.enqueue_start(run, start_body(1))
    (nats,) = store.claim_in_order(10)
    assert store.reject(nats.id, "maximum payload exceeded")
    assert store.get_run(run).state is S.START_PENDING and kinds(store, run, REST) == ["start"]
    store.ack(store.claim(10)[0].id)
    store.enqueue_stop(run, stop_body(1))
    assert kinds(store, run, NATS) == []       # no stop whose start NATS refused
    assert kinds(store, run, REST) == ["stop"]
    other = seen(store, 2)                      # other jobs still go to NATS
    store.enqueue_start(other, start_body(2))
    assert kinds(store, other, NATS) == ["start"]


def test_a_refused_nats_stop_leaves_the_rest_of_the_job_to_rest(store: Store) -> None:
    run = seen(store, 1)
    store.enqueue_start(run, start_body(1))
    for sub in [*store.claim(10), *store.claim_in_order(10)]:
        store.ack(sub.id)
    store.enqueue_stop(run, stop_body(1))
    (stop,) = store.claim_in_order(10)
    assert store.reject(stop.id, "maximum payload exceeded")
    assert kinds(store, run, NATS) == [] and kinds(store, run, REST) == ["stop"]


def test_targets_are_checked(store: Store) -> None:
    with pytest.raises(StoreError, match="outbox targets must be some of rest, nats"):
        store.set_targets(["kafka"])
    with pytest.raises(StoreError, match="outbox targets"):
        store.set_targets([])
    store.set_targets([NATS, REST])
    assert store.targets == (REST, NATS) and store.primary == REST


def test_a_crash_between_publish_and_ack_gives_the_same_entry_again(tmp_path: Path,
                                                                    clock: Clock) -> None:
    path = tmp_path / "s.db"
    with open_store(path, clock=clock) as s:
        s.set_targets([NATS])
        s.enqueue_start(seen(s, 1), start_body(1))
        (sent,) = s.claim_in_order(10, lease_s=3600)
        # ... published, the daemon dies before ack()
    with open_store(path, clock=clock) as s:
        s.set_targets([NATS])
        (again,) = s.claim_in_order(10)
        assert (again.id, again.payload, again.cluster, again.job_id, again.start_time) == (
            sent.id, sent.payload, "c", 1, T0 + 1)


# --------------------------------------------------------------------- hypothesis


class TwoTargetMachine(RuleBasedStateMachine):
    """Random sequences of the daemon's calls with REST and NATS both on, against a
    model of the issue's rules: REST (the primary) moves the run, NATS is tracked by its
    entries alone, and NATS publishes a job's stop only after its start."""

    runs = Bundle("runs")

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name) / "state.db"
        self.clock = Clock(T0 + 10_000)
        self.store = self._open()
        self.state: dict[int, RunState] = {}
        self.job: dict[int, int] = {}
        self.pending: dict[tuple[int, str], list[str]] = {}
        self.rest_claimed: dict[int, tuple[int, str]] = {}
        self.published: dict[int, list[str]] = {}
        self.nats_refused: set[int] = set()
        self.next_job = 0

    def _open(self) -> Store:
        s = open_store(self.path, clock=self.clock)
        s.set_targets([REST, NATS])
        return s

    def teardown(self) -> None:
        self.store.close()
        self.dir.cleanup()

    @rule(target=runs)
    def new_run(self) -> int:
        self.next_job += 1
        run = seen(self.store, self.next_job)
        self.state[run], self.job[run] = S.SEEN, self.next_job
        self.pending[(run, REST)], self.pending[(run, NATS)] = [], []
        self.published[run] = []
        return run

    @rule(run=runs)
    def enqueue_start(self, run: int) -> None:
        before = self.state[run]
        try:
            self.store.enqueue_start(run, start_body(self.job[run]))
        except StoreError:
            assert before not in (S.SEEN, S.STARTED)
            return
        assert before in (S.SEEN, S.STARTED)
        self.state[run] = S.START_PENDING
        self.pending[(run, REST)].append("start")
        if before is S.SEEN:                       # a resend goes to REST only
            self.pending[(run, NATS)].append("start")

    @rule(run=runs)
    def enqueue_stop(self, run: int) -> None:
        before = self.state[run]
        try:
            self.store.enqueue_stop(run, stop_body(self.job[run]))
        except StoreError:
            assert before not in (S.START_PENDING, S.STARTED, S.STOPPED)
            return
        assert before in (S.START_PENDING, S.STARTED, S.STOPPED)
        self.state[run] = S.STOP_PENDING
        self.pending[(run, REST)].append("stop")
        if before is not S.STOPPED and run not in self.nats_refused:
            self.pending[(run, NATS)].append("stop")

    @rule(n=st.integers(1, 5))
    def claim_rest(self, n: int) -> None:
        for sub in self.store.claim(n):
            assert sub.target == REST and sub.id not in self.rest_claimed
            assert sub.kind in self.pending[(sub.run_id, REST)]
            if sub.kind == "stop":
                assert "start" not in self.pending[(sub.run_id, REST)]
            self.rest_claimed[sub.id] = (sub.run_id, sub.kind)

    @precondition(lambda self: self.rest_claimed)
    @rule(data=st.data(), answer=st.sampled_from(["ack", "fail", "reject", "404"]))
    def answer_rest(self, data: st.DataObject, answer: str) -> None:
        entry = data.draw(st.sampled_from(sorted(self.rest_claimed)))
        run, kind = self.rest_claimed.pop(entry)
        gone = kind not in self.pending[(run, REST)]
        if answer == "ack":
            assert self.store.ack(entry) is not gone
            if not gone:
                self.pending[(run, REST)].remove(kind)
                if kind == "stop":
                    self.state[run] = S.STOPPED
                elif self.state[run] is S.START_PENDING:
                    self.state[run] = S.STARTED
        elif answer == "reject":
            assert self.store.reject(entry, "400") is not gone
            if not gone:
                self.state[run] = S.REJECTED
                self.pending[(run, REST)], self.pending[(run, NATS)] = [], []
        elif answer == "404" and kind == "stop" and not gone:
            self.store.stop_not_found(entry)
            if "start" not in self.pending[(run, REST)]:
                self.pending[(run, REST)].append("start")
        else:
            self.store.fail(entry, retry_at=self.clock.now, error="500")

    @rule(n=st.integers(1, 6), ok=st.integers(0, 6), then=st.sampled_from(
        ["fail", "refuse", "stop"]))
    def drain_nats(self, n: int, ok: int, then: str) -> None:
        """One NATS batch as the drain answers it: published in order, the first
        failure ends it, the rest is released."""
        batch = self.store.claim_in_order(n)
        for i, sub in enumerate(batch):
            key = (sub.run_id, NATS)
            assert sub.target == NATS and sub.kind in self.pending[key]
            if sub.kind == "stop":        # only behind its start, in this very batch
                assert "start" not in self.pending[key] or any(
                    b.run_id == sub.run_id and b.kind == "start" for b in batch[:i])
        for i, sub in enumerate(batch):
            key = (sub.run_id, NATS)
            if i < ok:
                if sub.kind not in self.pending[key]:
                    continue              # dropped by a refusal earlier in this batch
                assert self.store.ack(sub.id)
                self.pending[key].remove(sub.kind)
                if sub.kind == "stop":
                    assert "start_job" in self.published[sub.run_id]
                self.published[sub.run_id].append(f"{sub.kind}_job")
                continue
            if then == "fail":
                self.store.fail(sub.id, retry_at=self.clock.now + 5, error="nats: down")
            elif then == "refuse" and sub.kind in self.pending[key]:
                assert self.store.reject(sub.id, "maximum payload exceeded")
                self.pending[key] = []
                self.nats_refused.add(sub.run_id)   # NATS gets nothing more of it
            self.store.release(s.id for s in batch[i + 1:])
            break

    @rule()
    def restart(self) -> None:
        self.store.close()
        self.store = self._open()
        self.rest_claimed = {}

    @rule()
    def tick(self) -> None:
        self.clock.now += 400        # past the default lease and every backoff
        self.rest_claimed = {}

    @invariant()
    def store_matches_model(self) -> None:
        for run, state in self.state.items():
            assert self.store.get_run(run).state is state
            for target in (REST, NATS):
                kinds = sorted(k for _, k, _ in self.store.outbox_entries(run, target))
                assert kinds == sorted(self.pending[(run, target)]), (run, target)


TestTwoTargetMachine = TwoTargetMachine.TestCase
TestTwoTargetMachine.settings = settings(max_examples=80, stateful_step_count=40,
                                         deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
