"""The :class:`Store`: one SQLite connection, one lock, every change one transaction.

See the package docstring (``cc_slurm_adapter.store``) for the state diagram and the
crash and resend rules.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from cc_slurm_adapter.errors import StoreError
from cc_slurm_adapter.slurm.record import JobRecord
from cc_slurm_adapter.store.schema import MIGRATIONS, Migration, migrate
from cc_slurm_adapter.store.states import (
    FINAL,
    HAS_START_IN_CCBACKEND,
    TRANSITIONS,
    Event,
    RunState,
    next_state,
)

__all__ = ["ANY_CLUSTER", "DUPLICATE_WINDOW_S", "NATS", "REST", "TARGETS", "Run", "Store",
           "Submission", "open_store"]

ANY_CLUSTER = "*"
"""The cursor row that holds upstream's lastRun mtime for every cluster without its own."""

DUPLICATE_WINDOW_S = 86400
"""cc-backend (every version) answers 422 to a start whose startTime is less than this
many seconds after a stored run of the same jobId and cluster (contract §4.2 step 5)."""
CACHE_KIB = 1024
"""SQLite page cache of the daemon's connection (PRAGMA cache_size), in KiB."""

_RUN_COLUMNS = ("id, cluster, job_id, start_time, sluid, restart_count, state, reason, phase,"
                " first_seen, last_seen, updated, start_acked, stop_time, snapshot_rank0,"
                " snapshot_rank1")
REST = "rest"
"""Outbox target: cc-backend's REST API (start_job / stop_job)."""
NATS = "nats"
"""Outbox target: the NATS subject (line-protocol events, cc-backend 1.5's NATS job API)."""
TARGETS = (REST, NATS)
_OPEN_STATES = tuple(s.value for s in RunState if s not in FINAL and s is not RunState.STOPPED)


@dataclass(frozen=True, slots=True)
class Run:
    """One run of one Slurm job, keyed as cc-backend keys it: (cluster, job_id, start_time)."""

    id: int
    cluster: str
    job_id: int
    start_time: int
    """The startTime every start and stop of this run carries; set once, never changed."""
    sluid: str | None
    restart_count: int | None
    state: RunState
    reason: str | None
    phase: str | None
    first_seen: float
    last_seen: float
    updated: float
    start_acked: float | None
    stop_time: int | None
    snapshot_rank: tuple[int, int] | None

    @property
    def label(self) -> str:
        return f"job {self.job_id} on {self.cluster} (startTime {self.start_time})"


@dataclass(frozen=True, slots=True)
class Submission:
    """One outbox entry handed to the sender by :meth:`Store.claim`."""

    id: int
    run_id: int
    kind: str
    """``"start"`` or ``"stop"``."""
    payload: bytes
    attempts: int
    """Failed attempts so far (for the backoff)."""
    cluster: str
    job_id: int
    start_time: int
    target: str = REST
    """``"rest"`` or ``"nats"``: where this entry goes."""


class _Ident(msgspec.Struct):
    """The identity fields of a start_job / stop_job body (all other keys ignored)."""

    jobId: int  # cc-backend's key names
    startTime: int | None = None
    stopTime: int | None = None


def _run(row: tuple[Any, ...]) -> Run:
    rank = None if row[14] is None else (int(row[14]), int(row[15]))
    return Run(id=row[0], cluster=row[1], job_id=row[2], start_time=row[3], sluid=row[4],
               restart_count=row[5], state=RunState(row[6]), reason=row[7], phase=row[8],
               first_seen=row[9], last_seen=row[10], updated=row[11], start_acked=row[12],
               stop_time=row[13], snapshot_rank=rank)


def _describe(path: str, exc: sqlite3.Error) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.DatabaseError) and any(
            m in text for m in ("not a database", "malformed", "corrupt")):
        return (f"state store {path} is damaged ({text}); it is left as it is: move it "
                "away to start with an empty store")
    return f"state store {path}: {text}"


class _Lock:
    """``flock`` on ``<db>.lock`` holding the owner's pid: one daemon per store."""

    def __init__(self, db_path: str) -> None:
        self.path = db_path + ".lock"
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"state store {db_path}: cannot open its lock file "
                             f"{self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            owner = os.pread(self.fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(self.fd)
            raise StoreError(f"another cc-slurm-adapter daemon (pid {owner}) holds "
                             f"{db_path}") from exc
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        # The lock file stays: unlinking it would let a third process lock a new inode
        # while a second one still holds the old.
        os.close(self.fd)


class Store:
    """The daemon's durable state. Build it with :func:`open_store`.

    Synchronous on purpose: each call is a short SQLite transaction (well under a
    millisecond on a local disk), so the asyncio loop calls it directly instead of
    through a thread; SQLite's connection is not shared with any other thread.
    """

    def __init__(self, conn: sqlite3.Connection, path: str, *, lock: _Lock | None,
                 clock: Callable[[], float], read_only: bool) -> None:
        self._conn = conn
        self.path = path
        self._lock = lock
        self._clock = clock
        self.read_only = read_only
        self._depth = 0
        self._doomed: str | None = None
        self.targets: tuple[str, ...] = (REST,)
        """The enabled outbox targets, the primary first (see :meth:`set_targets`)."""

    # ----------------------------------------------------------------- plumbing

    def close(self) -> None:
        """Close the database and release the lock (idempotent)."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            message = _describe(self.path, exc)
            if self._depth:
                self._doomed = message
            raise StoreError(message) from exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several calls into one transaction (e.g. a poll cycle's upserts, queued
        payloads and the cursor); nested calls join it, and any exception leaving the
        outermost block rolls all of it back.

        A call that refuses a request (an illegal move, a payload with another
        startTime) raises before it writes, so the caller may catch that StoreError
        and go on with the rest of the cycle. An SQLite failure (disk full …) dooms the
        whole transaction: every later call in it raises, and it is rolled back even if
        the caller caught the error.
        """
        if self.read_only:
            raise StoreError(f"state store {self.path} is open read-only")
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._q("BEGIN IMMEDIATE")
        self._depth, self._doomed = 1, None
        try:
            yield
        except BaseException:
            self._depth = 0
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise
        self._depth = 0
        if self._doomed is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise StoreError(f"{self._doomed} (the transaction is rolled back)")
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise StoreError(_describe(self.path, exc)) from exc

    def _q(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        if self._doomed is not None and self._depth:
            # SQLite may have rolled the transaction back already (SQLITE_FULL does):
            # a further statement would run in autocommit mode and stay.
            raise StoreError(f"{self._doomed} (the transaction is rolled back)")
        try:
            return self._conn.execute(sql, args)
        except sqlite3.Error as exc:
            message = _describe(self.path, exc)
            if self._depth:
                self._doomed = message
            raise StoreError(message) from exc

    def _get(self, run_id: int) -> Run:
        row = self._q(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"state store {self.path}: no job run with id {run_id}")
        return _run(row)

    def _move(self, run: Run, event: Event, reason: str | None = None) -> RunState:
        target = next_state(event, run.state, run.label)
        if target is not run.state or reason is not None:
            self._q("UPDATE runs SET state = ?, reason = coalesce(?, reason), updated = ? "
                    "WHERE id = ?", (target.value, reason, self._clock(), run.id))
        return target

    # ----------------------------------------------------------------- job runs

    def get_run(self, run_id: int) -> Run:
        return self._get(run_id)

    def find_run(self, cluster: str, job_id: int, start_time: int) -> Run | None:
        row = self._q(f"SELECT {_RUN_COLUMNS} FROM runs WHERE cluster = ? AND job_id = ? "
                      "AND start_time = ?", (cluster, job_id, start_time)).fetchone()
        return None if row is None else _run(row)

    def runs_of(self, cluster: str, job_id: int) -> list[Run]:
        """Every run of one job id, oldest start first (a handful at most)."""
        rows = self._q(f"SELECT {_RUN_COLUMNS} FROM runs WHERE cluster = ? AND job_id = ? "
                       "ORDER BY start_time, id", (cluster, job_id)).fetchall()
        return [_run(r) for r in rows]

    def runs_in(self, states: Iterable[RunState], *, cluster: str | None = None,
                after_id: int = 0, limit: int = 500) -> list[Run]:
        """One page of runs in ``states`` (ordered by id; pass the last id as ``after_id``
        for the next page), so a large store is never loaded at once."""
        values = [s.value for s in states]
        marks = ",".join("?" * len(values))
        where = f"state IN ({marks}) AND id > ?"
        args: list[Any] = [*values, after_id]
        if cluster is not None:
            where = "cluster = ? AND " + where
            args.insert(0, cluster)
        rows = self._q(f"SELECT {_RUN_COLUMNS} FROM runs WHERE {where} ORDER BY id LIMIT ?",
                       (*args, limit)).fetchall()
        return [_run(r) for r in rows]

    def counts(self) -> dict[RunState, int]:
        """Runs per state (every state present, 0 if none)."""
        found = dict(self._q("SELECT state, count(*) FROM runs GROUP BY state").fetchall())
        return {s: int(found.get(s.value, 0)) for s in RunState}

    def observe(self, *, cluster: str, job_id: int, start_time: int,
                sluid: str | None = None, restart_count: int | None = None,
                new_run: bool = False, phase: str | None = None,
                snapshot: bytes | None = None,
                rank: tuple[int, int] | None = None) -> Run:
        """Record that Slurm shows this job run; create it (SEEN) on first sight.

        Which stored run an observation belongs to, in this order:

        1. the run with the same ``sluid`` (Slurm 25.11/26.05 give one per run);
        2. the run with the same ``start_time``;
        3. the run with the same ``restart_count`` (Slurm counts requeues);
        4. unless ``new_run`` says the caller knows this is a later run, the newest run
           of the job id that is not over yet (not stopped, rejected or unrepresentable)
           and whose restart count does not differ: another source saw the same run
           with another start time, and the first one stays.

        Otherwise it is a new run. The stored ``start_time`` is never changed; sluid
        and restart_count are filled in when they were unknown. A ``snapshot`` replaces
        the stored one only if its ``rank`` is higher, or equal with other bytes.
        """
        now = self._clock()
        with self.transaction():
            run = self._match(cluster, job_id, start_time, sluid, restart_count, new_run)
            if run is None:
                cur = self._q(
                    "INSERT INTO runs (cluster, job_id, start_time, sluid, restart_count, state,"
                    " phase, first_seen, last_seen, updated) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (cluster, job_id, start_time, sluid, restart_count, RunState.SEEN.value,
                     phase, now, now, now))
                run_id = int(cur.lastrowid or 0)
            else:
                run_id = run.id
                self._q("UPDATE runs SET last_seen = ?, phase = coalesce(?, phase), "
                        "sluid = coalesce(sluid, ?), restart_count = coalesce(restart_count, ?)"
                        " WHERE id = ?", (now, phase, sluid, restart_count, run_id))
            if snapshot is not None:
                self._snapshot(run_id, snapshot, rank or (0, 0), now)
            return self._get(run_id)

    def observe_record(self, record: JobRecord, *, cluster: str | None = None,
                       new_run: bool = False) -> Run:
        """:meth:`observe` for a parsed record: its sluid, restart count and phase, and
        its msgpack encoding as the snapshot, ranked by ``record.detail_rank``.

        ``record.requeued`` is not a new-run sign: slurmdbd marks the run that *ended*
        by a requeue, slurmctld a job back in the queue (no start time yet)."""
        if record.start_time is None:
            raise StoreError(f"job {record.job_id} has no start time yet: not a run to store")
        name = cluster or record.cluster
        if name is None:
            raise StoreError(f"job {record.job_id}: no cluster name given")
        return self.observe(cluster=name, job_id=record.job_id, start_time=record.start_time,
                            sluid=record.sluid, restart_count=record.restart_count,
                            new_run=new_run, phase=record.phase.value,
                            snapshot=msgspec.msgpack.encode(record), rank=record.detail_rank)

    def _match(self, cluster: str, job_id: int, start_time: int, sluid: str | None,
               restart_count: int | None, new_run: bool) -> Run | None:
        if sluid is not None:
            row = self._q(f"SELECT {_RUN_COLUMNS} FROM runs WHERE sluid = ? AND cluster = ?",
                          (sluid, cluster)).fetchone()
            if row is not None:
                return _run(row)
        runs = self.runs_of(cluster, job_id)
        # a run that has another sluid is another run, whatever its start time
        candidates = [r for r in runs if sluid is None or r.sluid in (None, sluid)]
        for r in candidates:
            if r.start_time == start_time:
                return r
        if restart_count is not None:
            for r in reversed(candidates):
                if r.restart_count == restart_count:
                    return r
        if not new_run:
            for r in reversed(candidates):
                if r.state.value in _OPEN_STATES and (
                        restart_count is None or r.restart_count is None):
                    return r
        return None

    def conflicting_run(self, run: Run, window_s: int = DUPLICATE_WINDOW_S) -> Run | None:
        """Another run of the same job id that makes cc-backend answer 422 to this run's
        start (contract §4.2 step 5: ``start − existing.start < 24 h``, no absolute
        value), or None. The caller then marks ``run`` unrepresentable."""
        for other in self.runs_of(run.cluster, run.job_id):
            if (other.id != run.id and other.state in HAS_START_IN_CCBACKEND
                    and run.start_time - other.start_time < window_s):
                return other
        return None

    def mark_unrepresentable(self, run_id: int, reason: str) -> Run:
        """cc-backend cannot hold this run: drop its queued submissions, keep the reason."""
        with self.transaction():
            run = self._get(run_id)
            self._move(run, Event.UNREPRESENTABLE, reason)
            self._q("DELETE FROM outbox WHERE run_id = ?", (run_id,))
            return self._get(run_id)

    # ----------------------------------------------------------------- snapshots

    def _snapshot(self, run_id: int, data: bytes, rank: tuple[int, int], now: float) -> bool:
        old = self._q("SELECT snapshot_rank0, snapshot_rank1, snapshot FROM runs WHERE id = ?",
                      (run_id,)).fetchone()
        if old is not None and old[0] is not None:
            stored = (int(old[0]), int(old[1]))
            if rank < stored or (rank == stored and bytes(old[2]) == data):
                return False
        self._q("UPDATE runs SET snapshot = ?, snapshot_rank0 = ?, snapshot_rank1 = ?, "
                "snapshot_at = ? WHERE id = ?", (data, rank[0], rank[1], now, run_id))
        return True

    def save_snapshot(self, run_id: int, data: bytes, rank: tuple[int, int]) -> bool:
        """Keep ``data`` unless the stored snapshot is richer; True if it was stored."""
        with self.transaction():
            self._get(run_id)
            return self._snapshot(run_id, data, rank, self._clock())

    def snapshot(self, run_id: int) -> bytes | None:
        row = self._q("SELECT snapshot FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def snapshot_record(self, run_id: int) -> JobRecord | None:
        """The stored snapshot decoded as a JobRecord (as :meth:`observe_record` wrote it)."""
        data = self.snapshot(run_id)
        if data is None:
            return None
        try:
            return msgspec.msgpack.decode(data, type=JobRecord)
        except msgspec.DecodeError as exc:
            raise StoreError(f"state store {self.path}: snapshot of run {run_id} cannot be "
                             f"read: {exc}") from exc

    # ----------------------------------------------------------------- outbox

    def _ident(self, run: Run, payload: bytes, kind: str) -> _Ident:
        try:
            ident = msgspec.json.decode(payload, type=_Ident)
        except msgspec.DecodeError as exc:
            raise StoreError(f"{run.label}: {kind} payload is not a cc-backend body: "
                             f"{exc}") from exc
        if ident.jobId != run.job_id or ident.startTime != run.start_time:
            raise StoreError(f"{run.label}: {kind} payload says jobId {ident.jobId}, "
                             f"startTime {ident.startTime}; the run's startTime never changes")
        return ident

    # Targets. Each enabled target gets its own entry for every start and stop, sent and
    # acknowledged on its own, so an outage of one never holds the other back. The run's
    # state follows the *primary* target only (REST when ccRestSubmitJobs is on, else
    # NATS): its ack moves START_PENDING → STARTED and STOP_PENDING → STOPPED, its 400 is
    # REJECTED. The other target is tracked by its entries alone. Resends after a
    # reconciliation (cc-backend lacks a start, or still runs a stopped job) go to the
    # primary only: they answer what cc-backend's REST API said about the job.

    @property
    def primary(self) -> str:
        return self.targets[0]

    def set_targets(self, targets: Iterable[str]) -> int:
        """Enable ``targets`` (REST first when present: it is then the primary). Entries
        queued for a target that is no longer enabled (the config changed) move to the
        primary, unless it has the same entry already. Returns how many moved."""
        given = set(targets)
        wanted = [t for t in TARGETS if t in given]
        if given - set(TARGETS) or not wanted:
            raise StoreError(f"state store {self.path}: outbox targets must be some of "
                             f"{', '.join(TARGETS)}, not {sorted(given)}")
        self.targets = tuple(wanted)
        if self.read_only:
            return 0
        moved = 0
        with self.transaction():
            for gone in (t for t in TARGETS if t not in wanted):
                moved += self._q("UPDATE OR IGNORE outbox SET target = ? WHERE target = ?",
                                 (self.primary, gone)).rowcount
                self._q("DELETE FROM outbox WHERE target = ?", (gone,))
        return moved

    def _insert(self, run_id: int, kind: str, payload: bytes, now: float,
                target: str | None = None, *, if_missing: bool = False) -> int:
        """One entry; ``if_missing``: keep an existing one of the same run, kind and
        target (then 0 is returned)."""
        conflict = " ON CONFLICT (run_id, kind, target) DO NOTHING" if if_missing else ""
        cur = self._q("INSERT INTO outbox (run_id, kind, target, next_attempt, created, payload)"
                      f" VALUES (?,?,?,?,?,?){conflict}",
                      (run_id, kind, target or self.primary, now, now, payload))
        return int(cur.lastrowid or 0) if cur.rowcount else 0

    # ``runs.start_targets``: the targets this run's start was queued for, and ``!T`` for
    # a target that refused one of its events for good (it gets nothing more of it, so
    # never a stop whose start it refused).

    def _start_targets(self, run_id: int) -> list[str]:
        row = self._q("SELECT start_targets FROM runs WHERE id = ?", (run_id,)).fetchone()
        return [] if row is None or not row[0] else str(row[0]).split(",")

    def _write_start_targets(self, run_id: int, have: list[str], new: list[str]) -> None:
        if new != have:
            self._q("UPDATE runs SET start_targets = ? WHERE id = ?", (",".join(new), run_id))

    def _add_start_targets(self, run_id: int, targets: Iterable[str]) -> None:
        have = self._start_targets(run_id)
        wanted = set(targets)
        new = [t for t in TARGETS if (t in have or t in wanted) and f"!{t}" not in have]
        self._write_start_targets(run_id, have, new + [x for x in have if x.startswith("!")])

    def _refused_by(self, run_id: int, target: str) -> None:
        have = self._start_targets(run_id)
        new = [x for x in have if x not in (target, f"!{target}")] + [f"!{target}"]
        self._write_start_targets(run_id, have, new)

    def enqueue_start(self, run_id: int, payload: bytes) -> int:
        """Queue start_job (SEEN → START_PENDING) for every enabled target, or (STARTED →
        START_PENDING, a resend after reconciliation) for the primary one.
        ``payload``'s jobId/startTime must be the run's. Returns the primary's entry id."""
        with self.transaction():
            run = self._get(run_id)
            self._ident(run, payload, "start")
            target = next_state(Event.ENQUEUE_START, run.state, run.label)
            now = self._clock()
            self._q("UPDATE runs SET state = ?, updated = ?, start_payload = ?, "
                    "start_acked = NULL WHERE id = ?", (target.value, now, payload, run_id))
            targets = self.targets if run.state is RunState.SEEN else (self.primary,)
            entry = self._insert(run_id, "start", payload, now)
            for other in targets[1:]:
                self._insert(run_id, "start", payload, now, other, if_missing=True)
            self._add_start_targets(run_id, targets)
            return entry

    def enqueue_stop(self, run_id: int, payload: bytes) -> int:
        """Queue stop_job (→ STOP_PENDING) for every enabled target; a resend after
        reconciliation (STOPPED → STOP_PENDING) for the primary only. A target that never
        had this run's start queued (enabled since) gets the start first. A stop is not
        handed out while its target's start is still in the outbox. ``payload`` must
        carry the run's startTime. Returns the primary's entry id."""
        with self.transaction():
            run = self._get(run_id)
            ident = self._ident(run, payload, "stop")
            target = next_state(Event.ENQUEUE_STOP, run.state, run.label)
            now = self._clock()
            self._q("UPDATE runs SET state = ?, updated = ?, stop_time = ? WHERE id = ?",
                    (target.value, now, ident.stopTime, run_id))
            if run.state is RunState.STOPPED:
                return self._insert(run_id, "stop", payload, now)
            started = self._start_targets(run_id)
            targets = [t for t in self.targets if f"!{t}" not in started]
            start = self.start_payload(run_id)
            for t in targets:
                if t not in started and start is not None:
                    self._insert(run_id, "start", start, now, t, if_missing=True)
            if start is not None:
                self._add_start_targets(run_id, targets)
            entry = self._insert(run_id, "stop", payload, now)
            for other in targets:
                if other != self.primary:
                    self._insert(run_id, "stop", payload, now, other, if_missing=True)
            return entry

    _SUBMISSION = ("SELECT o.id, o.run_id, o.kind, o.payload, o.attempts, r.cluster, r.job_id,"
                   " r.start_time, o.target, o.next_attempt, (SELECT s.id FROM outbox s"
                   "  WHERE s.run_id = o.run_id AND s.kind = 'start' AND s.target = o.target)"
                   " FROM outbox o JOIN runs r ON r.id = o.run_id")

    @staticmethod
    def _submission(r: tuple[Any, ...]) -> Submission:
        return Submission(id=r[0], run_id=r[1], kind=r[2], payload=bytes(r[3]),
                          attempts=r[4], cluster=r[5], job_id=r[6], start_time=r[7],
                          target=r[8])

    def _lease(self, ids: list[int], now: float, lease_s: float) -> None:
        with self._guard():
            self._conn.executemany(
                "UPDATE outbox SET claimed_at = ?, next_attempt = ? WHERE id = ?",
                [(now, now + lease_s, i) for i in ids])

    def claim(self, limit: int, *, lease_s: float = 300.0, target: str = REST
              ) -> list[Submission]:
        """Hand out up to ``limit`` due entries of ``target``, oldest due first, for
        concurrent sending (the REST drain).

        A claimed entry is not handed out again for ``lease_s`` (or until :meth:`fail`);
        a stop waits while its run's start for the same target is in the outbox. Claims
        do not outlive the process: :func:`open_store` makes every claimed entry due
        again.
        """
        now = self._clock()
        with self.transaction():
            rows = self._q(
                f"{self._SUBMISSION} WHERE o.target = ? AND o.next_attempt <= ? AND NOT "
                "(o.kind = 'stop' AND EXISTS (SELECT 1 FROM outbox s WHERE s.run_id = "
                "o.run_id AND s.kind = 'start' AND s.target = o.target))"
                " ORDER BY o.next_attempt, o.id LIMIT ?", (target, now, limit)).fetchall()
            self._lease([r[0] for r in rows], now, lease_s)
        return [self._submission(r) for r in rows]

    def claim_in_order(self, limit: int, *, target: str = NATS, lease_s: float = 300.0
                       ) -> list[Submission]:
        """Hand out the oldest entries of ``target`` in creation order, for publishing one
        after the other (the NATS drain): nothing while the oldest is not due (backing
        off, or still claimed), and the batch ends at the first entry that is not due, so
        no entry overtakes an older one. A stop comes only after its start: in the same
        batch behind it, else once the start has left the outbox."""
        now = self._clock()
        with self.transaction():
            rows = self._q(f"{self._SUBMISSION} WHERE o.target = ? ORDER BY o.id LIMIT ?",
                           (target, limit)).fetchall()
            taken: list[tuple[Any, ...]] = []
            ids: set[int] = set()
            for r in rows:
                if r[9] > now:
                    break
                if r[2] == "stop" and r[10] is not None and r[10] not in ids:
                    continue  # its start (queued later, e.g. after a target switch) first
                taken.append(r)
                ids.add(r[0])
            self._lease([r[0] for r in taken], now, lease_s)
        return [self._submission(r) for r in taken]

    def release(self, entry_ids: Iterable[int]) -> None:
        """Claimed entries that were not sent (the batch stopped before them): due again
        at once, no attempt counted."""
        with self.transaction(), self._guard():
            self._conn.executemany(
                "UPDATE outbox SET next_attempt = min(next_attempt, ?), claimed_at = NULL "
                "WHERE id = ? AND claimed_at IS NOT NULL",
                [(self._clock(), i) for i in entry_ids])

    def retry_now(self, target: str) -> int:
        """Make the entries of ``target`` that are backing off due at once (the target
        is reachable again); claimed ones are left alone. Returns how many."""
        with self.transaction():
            return self._q("UPDATE outbox SET next_attempt = ? WHERE target = ? AND "
                           "claimed_at IS NULL AND next_attempt > ?",
                           (self._clock(), target, self._clock())).rowcount

    def _entry(self, entry_id: int) -> tuple[int, str, int, str] | None:
        row = self._q("SELECT run_id, kind, attempts, target FROM outbox WHERE id = ?",
                      (entry_id,)).fetchone()
        return None if row is None else (int(row[0]), str(row[1]), int(row[2]), str(row[3]))

    def _follow(self, run: Run, event: Event, reason: str | None = None) -> None:
        """Move the run on its primary target's answer. An entry queued before the
        targets changed may answer in a state that has no such move: the state stays."""
        if run.state in TRANSITIONS[event]:
            self._move(run, event, reason)

    def ack(self, entry_id: int) -> bool:
        """The target accepted the entry (REST 201/200, or 422 = it already has it; NATS:
        published, or acknowledged by JetStream): remove it and, for the primary target,
        move the run (START_PENDING → STARTED, STOP_PENDING → STOPPED). False if the
        entry is gone (its run was marked unrepresentable meanwhile)."""
        with self.transaction():
            entry = self._entry(entry_id)
            if entry is None:
                return False
            run_id, kind, _, target = entry
            if target == self.primary:
                run = self._get(run_id)
                if kind == "start":
                    self._follow(run, Event.ACK_START)
                    self._q("UPDATE runs SET start_acked = ? WHERE id = ?",
                            (self._clock(), run_id))
                else:
                    self._follow(run, Event.ACK_STOP)
            self._q("DELETE FROM outbox WHERE id = ?", (entry_id,))
            return True

    def fail(self, entry_id: int, *, retry_at: float, error: str) -> int:
        """A retryable failure (5xx, timeout, 401/403, NATS down): try again at
        ``retry_at``. Returns the attempt count (0 if the entry is gone)."""
        with self.transaction():
            entry = self._entry(entry_id)
            if entry is None:
                return 0
            self._q("UPDATE outbox SET attempts = attempts + 1, next_attempt = ?, "
                    "claimed_at = NULL, last_error = ? WHERE id = ?",
                    (retry_at, error[:2000], entry_id))
            return entry[2] + 1

    def reject(self, entry_id: int, reason: str) -> bool:
        """The target refused the entry for good (REST 400; NATS: a permanent refusal).
        From the primary target the run becomes REJECTED with ``reason`` and all its
        entries leave the outbox; nothing else waits for it. From another target only
        that target's entries of the run go (its stop is never sent without its start).
        False if the entry is gone."""
        with self.transaction():
            entry = self._entry(entry_id)
            if entry is None:
                return False
            run = self._get(entry[0])
            if entry[3] != self.primary:  # the caller logs the reason
                self._refused_by(run.id, entry[3])
                self._q("DELETE FROM outbox WHERE run_id = ? AND target = ?",
                        (run.id, entry[3]))
                return True
            self._follow(run, Event.REJECT, reason[:2000])
            self._q("DELETE FROM outbox WHERE run_id = ?", (run.id,))
            return True

    def stop_not_found(self, entry_id: int, error: str = "404: cc-backend has no such job") -> int:
        """404 on a REST stop (cc-backend 1.5: it never got the start): queue the run's
        start again for the same target, with the very payload sent before, ahead of
        this stop. Returns its id."""
        with self.transaction():
            entry = self._entry(entry_id)
            if entry is None or entry[1] != "stop":
                raise StoreError(f"state store {self.path}: outbox entry {entry_id} is not "
                                 "a queued stop")
            run = self._get(entry[0])
            target = entry[3]
            row = self._q("SELECT start_payload FROM runs WHERE id = ?", (run.id,)).fetchone()
            if row is None or row[0] is None:
                raise StoreError(f"{run.label}: no start payload kept to send again")
            if target == self.primary:
                self._move(run, Event.STOP_NOT_FOUND)
                self._q("UPDATE runs SET start_acked = NULL WHERE id = ?", (run.id,))
            now = self._clock()
            self._q("UPDATE outbox SET attempts = attempts + 1, next_attempt = ?, "
                    "claimed_at = NULL, last_error = ? WHERE id = ?", (now, error, entry_id))
            existing = self._q("SELECT id FROM outbox WHERE run_id = ? AND kind = 'start' "
                               "AND target = ?", (run.id, target)).fetchone()
            if existing is not None:
                return int(existing[0])
            return self._insert(run.id, "start", bytes(row[0]), now, target)

    def start_payload(self, run_id: int) -> bytes | None:
        """The start_job body last queued for this run (kept after its ack), so a resend
        after reconciliation carries the very same bytes; None if none was queued."""
        row = self._q("SELECT start_payload FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def outbox_entries(self, run_id: int, target: str | None = None
                       ) -> list[tuple[int, str, int]]:
        """``(id, kind, attempts)`` of one run's queued entries (of the primary target, or
        of ``target``), oldest first."""
        rows = self._q("SELECT id, kind, attempts FROM outbox WHERE run_id = ? AND target = ?"
                       " ORDER BY id", (run_id, target or self.primary)).fetchall()
        return [(int(a), str(b), int(c)) for a, b, c in rows]

    def outbox_size(self, target: str | None = None) -> int:
        """Queued entries of ``target``, or of every target."""
        if target is None:
            return int(self._q("SELECT count(*) FROM outbox").fetchone()[0])
        return int(self._q("SELECT count(*) FROM outbox WHERE target = ?",
                           (target,)).fetchone()[0])

    def next_due(self, target: str = REST) -> float | None:
        """When the earliest entry of ``target`` is due (its drain can sleep until
        then), or None."""
        row = self._q("SELECT min(next_attempt) FROM outbox WHERE target = ?",
                      (target,)).fetchone()
        return None if row[0] is None else float(row[0])

    def head_due(self, target: str = NATS) -> float | None:
        """When the oldest entry of ``target`` is due (:meth:`claim_in_order` hands out
        nothing before), or None."""
        row = self._q("SELECT next_attempt FROM outbox WHERE target = ? ORDER BY id LIMIT 1",
                      (target,)).fetchone()
        return None if row is None else float(row[0])

    # ----------------------------------------------------------------- cursors

    def get_cursor(self, cluster: str) -> int | None:
        """The sync cursor (epoch s) of ``cluster``, else upstream's imported one, else None."""
        row = self._q("SELECT cursor FROM cursors WHERE cluster IN (?, ?) "
                      "ORDER BY cluster = ? LIMIT 1", (cluster, ANY_CLUSTER, ANY_CLUSTER)
                      ).fetchone()
        return None if row is None else int(row[0])

    def set_cursor(self, cluster: str, cursor: int) -> None:
        """Advance the cursor. Call it inside the :meth:`transaction` that stores the
        cycle's results, so the cursor never runs ahead of them."""
        with self.transaction():
            self._q("INSERT INTO cursors (cluster, cursor, updated) VALUES (?,?,?) "
                    "ON CONFLICT (cluster) DO UPDATE SET cursor = excluded.cursor, "
                    "updated = excluded.updated", (cluster, int(cursor), self._clock()))

    def import_upstream_cursor(self, last_run_path: str | os.PathLike[str],
                               cluster: str | None = None) -> int | None:
        """On the first start only: take upstream's ``lastRunPath`` mtime as the cursor of
        ``cluster`` (or of every cluster, ``None``), so the switch from the Go daemon
        leaves no gap and sends no flood. Returns the imported cursor, or None when this
        store has run before, has a cursor already, or the file does not exist."""
        with self.transaction():
            done = self._q("SELECT value FROM meta WHERE key = 'upstream_cursor'").fetchone()
            has_cursor = self._q("SELECT 1 FROM cursors LIMIT 1").fetchone()
            value: int | None = None
            if done is None and has_cursor is None:
                try:
                    value = int(Path(last_run_path).stat().st_mtime)
                except FileNotFoundError:
                    value = None
                except OSError as exc:
                    raise StoreError(f"lastRunPath {last_run_path}: {exc.strerror}") from exc
                if value is not None:
                    self.set_cursor(cluster or ANY_CLUSTER, value)
            if done is None:
                self._q("INSERT INTO meta (key, value) VALUES ('upstream_cursor', ?)",
                        (f"{os.fspath(last_run_path)} {value}",))
            return value

    # ----------------------------------------------------------------- housekeeping

    def prune(self, before: float, limit: int = 10_000) -> int:
        """Delete up to ``limit`` finished runs (stopped, rejected, unrepresentable) last
        changed before ``before``. Keep at least slurmQueryMaxSpan plus one day: the
        24 h rule and the sacct overlap look back that far."""
        finished = [RunState.STOPPED.value, *(s.value for s in FINAL)]
        with self.transaction():
            cur = self._q("DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE state IN "
                          "(?,?,?) AND updated < ? AND NOT EXISTS (SELECT 1 FROM outbox o "
                          "WHERE o.run_id = runs.id) LIMIT ?)", (*finished, before, limit))
            return cur.rowcount


def open_store(path: str | os.PathLike[str], *, read_only: bool = False,
               clock: Callable[[], float] = time.time,
               migrations: tuple[Migration, ...] = MIGRATIONS) -> Store:
    """Open (or create) the store at ``path``: lock, WAL, migrations, stale claims reset.

    A second writer gets ``StoreError("another cc-slurm-adapter daemon (pid N) holds
    PATH")`` and the database is not touched. ``read_only`` (for ``status``, metrics)
    takes no lock and never writes. A damaged file is reported, never replaced.
    """
    name = os.fspath(path)
    if read_only:
        if not Path(name).exists():
            raise StoreError(f"state store {name} does not exist")
        try:
            conn = sqlite3.connect(f"file:{name}?mode=ro", uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(_describe(name, exc)) from exc
        store = Store(conn, name, lock=None, clock=clock, read_only=True)
        try:
            with store._guard():
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if version != len(migrations):
                raise StoreError(f"state store {name} has schema version {version}, this "
                                 f"cc-slurm-adapter reads {len(migrations)}")
        except BaseException:
            store.close()
            raise
        return store

    try:
        Path(name).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"state store {name}: cannot create its directory: "
                         f"{exc.strerror}") from exc
    lock = _Lock(name)
    try:
        conn = sqlite3.connect(name, isolation_level=None)
    except sqlite3.Error as exc:
        lock.release()
        raise StoreError(_describe(name, exc)) from exc
    store = Store(conn, name, lock=lock, clock=clock, read_only=False)
    try:
        with store._guard():
            # Reading the schema first: a file that is not a database fails here, before
            # any pragma could write to it.
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > len(migrations):
                raise StoreError(f"state store {name} has schema version {version}, newer "
                                 f"than this cc-slurm-adapter knows ({len(migrations)})")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"state store {name}: cannot use WAL mode (got {mode})")
            # The loop is level-triggered: a power loss may undo the last transaction and
            # the next cycle derives it again from Slurm, so NORMAL is enough.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 5000")
            # 1 MiB of page cache, not SQLite's 2 MiB: the hot pages (watched runs, due
            # outbox entries) fit, and every MiB counts against the daemon's 50 MB budget.
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            migrate(conn, migrations)
            # Only this process writes (the lock says so): every claim left in the file
            # belongs to a daemon that died; make those entries due again at once.
            conn.execute("UPDATE outbox SET next_attempt = claimed_at, claimed_at = NULL "
                         "WHERE claimed_at IS NOT NULL")
    except BaseException:
        store.close()
        raise
    return store

