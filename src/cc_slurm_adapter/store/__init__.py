"""The daemon's durable state: SQLite (WAL) at ``statePath``.

What it holds, per **job run** (cc-backend's identity: cluster, jobId, startTime; plus
Slurm's ``sluid`` where 25.11/26.05 give one):

* the run's state (below), with the reason when cc-backend rejected it or cannot
  hold it;
* the **startTime** sent for it: written once when the run is first seen, by
  whichever source (hook, squeue, sacct) saw it first, and never changed. Every
  start and stop payload is checked against it before it is queued;
* the **outbox**: start_job / stop_job bodies cc-backend has not acknowledged yet;
* the **resource snapshot** taken while slurmctld still knew the job; a later, poorer
  view (lower ``detail_rank``, e.g. sacct after MinJobAge) never replaces it;
* the **sync cursor** per cluster (epoch seconds), which only the caller advances.

State diagram (``states.TRANSITIONS`` is the table; any other move raises
``StoreError`` before anything is written)::

                enqueue_start                ack_start
     SEEN ─────────────────────► START_PENDING ──────────► STARTED
                                   │      ▲                 │   │
                                   │      └─ enqueue_start ─┘   │  (reconcile: cc-backend
                      enqueue_stop │                            │   lacks a running job)
                                   ▼                            │ enqueue_stop
     REJECTED ◄──── reject ──── STOP_PENDING ◄──────────────────┘
     (400; also from               │   ▲   ⟲ ack_start; stop_not_found (404: the start
      START_PENDING)               │   │     is queued again, ahead of the stop)
                          ack_stop ▼   │ enqueue_stop (reconcile: cc-backend still
                                STOPPED    shows it running)

     SEEN, START_PENDING, STARTED, STOP_PENDING ── mark_unrepresentable ──► UNREPRESENTABLE
                                   (e.g. a requeued run cc-backend 1.5 cannot register)

REJECTED and UNREPRESENTABLE are final. A stop may be queued while its start is still
pending (a job that ended before cc-backend acknowledged it): ``claim`` does not hand
the stop out until the start is acknowledged, so cc-backend always sees start, then stop.

**Targets.** Every outbox entry has a target: ``rest`` (cc-backend's REST API) or
``nats`` (the NATS subject). Each enabled target (``set_targets``: REST when
ccRestSubmitJobs is on, NATS when natsServer is set) gets its own copy of every start
and stop, claimed, retried and acknowledged on its own, so an outage of one never holds
the other back. The run's state above follows the **primary** target only: REST when it
is enabled, else NATS; the other target is tracked by its entries alone. Resends after a
reconciliation (STARTED → START_PENDING, STOPPED → STOP_PENDING) and the 404 → start
rule concern the primary only (REST 404 exists on REST only). Per target, a stop is
never handed out while that target's start is still queued, and a target that never had
the start queued (it was enabled since) gets it queued ahead of the stop. REST entries
go out concurrently (``claim``); NATS entries in creation order, one after the other,
the oldest holding back the rest while it backs off (``claim_in_order``). When a target
is disabled, its entries move to the primary (``set_targets``).

**One transaction per change.** Every method that writes is one SQLite transaction;
``transaction()`` groups several (a poll cycle's upserts, snapshots, queued payloads
and the cursor) into one, with nested calls as savepoints. A crash at any instruction
therefore leaves either the state before or the state after each change.

**The no-duplicate path after a crash.** An entry leaves the outbox only in the
transaction that records cc-backend's answer (``ack``). If the daemon dies after
sending and before ``ack``, the entry is still there; ``open_store`` makes every
claimed entry due again and it is sent once more with the very same bytes (same
jobId, cluster, startTime). cc-backend answers 422 ("already exists" / "already
stopped"), which the client treats as done, so the resend creates no second job.
(cc-backend 1.5 answers 500 to a resent start until its commit worker has run: the
client keeps retrying until the 422 comes.)

**Requeues.** cc-backend answers 422 to any start of the same jobId and cluster within
24 h of a stored one (contract §4.3). ``conflicting_run`` finds such an earlier run;
the caller then marks the new run unrepresentable with the reason, once.

**One process.** ``open_store`` takes an exclusive ``flock`` on ``<statePath>.lock``
(which holds the owner's pid) before it opens the database; a second daemon gets
``StoreError("another cc-slurm-adapter daemon (pid N) holds PATH")`` and touches
nothing. Read-only openers (``status``, metrics) take no lock.

**Synchronous API.** SQLite calls here are short (tens of microseconds to a
millisecond on a local disk), so the asyncio loop calls the store directly; queries go
by index and page (``runs_in``), so memory does not grow with the store.

Errors: every ``sqlite3`` error becomes a one-line ``StoreError`` naming the path
(disk full, permission, a damaged file: reported and left in place, never replaced).
"""

from cc_slurm_adapter.store.core import (
    ANY_CLUSTER,
    DUPLICATE_WINDOW_S,
    NATS,
    REST,
    TARGETS,
    Run,
    Store,
    Submission,
    open_store,
)
from cc_slurm_adapter.store.schema import LATEST as SCHEMA_VERSION
from cc_slurm_adapter.store.states import TRANSITIONS, Event, RunState

__all__ = [
    "ANY_CLUSTER",
    "DUPLICATE_WINDOW_S",
    "NATS",
    "REST",
    "SCHEMA_VERSION",
    "TARGETS",
    "TRANSITIONS",
    "Event",
    "Run",
    "RunState",
    "Store",
    "Submission",
    "open_store",
]
