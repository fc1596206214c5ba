"""The one model of a job's phase: pending, running, ended or unknown.

Every part of the project that asks "is this job still live?" asks :func:`job_phase`
(parsers to decide which start/end times are facts, the Slurm source to decide which
jobs need a detail call, the mapping to decide whether a stop may be sent).

Slurm's states (``job_state_codes.html``): a job has one **base state** (PENDING,
RUNNING, SUSPENDED, COMPLETED, CANCELLED, FAILED, TIMEOUT, NODE_FAIL, PREEMPTED,
BOOT_FAIL, DEADLINE, OUT_OF_MEMORY) and any number of **flags** (COMPLETING,
CONFIGURING, EXPEDITING, LAUNCH_FAILED, POWER_UP_NODE, RECONFIG_FAIL, REQUEUED,
REQUEUE_FED, REQUEUE_HOLD, RESIZING, RESV_DEL_HOLD, REVOKED, SIGNALING, SPECIAL_EXIT,
STAGE_OUT, STOPPED, UPDATE_DB). Three encodings reach us:

* 23.11+ JSON (data_parser v0.0.40+): a list, base first, then the flags
  (``["COMPLETED", "COMPLETING"]``, ``["PENDING", "REQUEUED"]``);
* ≤ 23.02 JSON, ``scontrol show job -o`` and ``squeue -o %T`` of every release: one
  string from ``job_state_string()``, which names the *flag* instead of the base when
  one of its flags is set (``"COMPLETING"``, ``"REQUEUED"``, ``"RESIZING"`` …). The
  base is then not known and the flag alone decides;
* sacct's stored run states: slurmdbd keeps REQUEUED, RESIZING and REVOKED as the
  state of a run that ended that way.

The table (``family`` = who wrote the record: ``ctld`` = slurmctld: squeue, scontrol,
slurmrestd ``/slurm``; ``db`` = slurmdbd: sacct, slurmrestd ``/slurmdb``):

=============================================  ==========  ==========  ==============
state or flag                                  ctld        db          requeue marker
=============================================  ==========  ==========  ==============
PENDING, RESV_DEL_HOLD                         pending     pending
RUNNING, SUSPENDED, STOPPED, CONFIGURING,      running     running
POWER_UP_NODE, SIGNALING
COMPLETING, STAGE_OUT, UPDATE_DB (any base)    running     running     (still finishing:
                                                                       the end time is
                                                                       real, no stop yet)
RESIZING                                       running     ended       (db: that shape
                                                                       ended; Slurm opens
                                                                       a new record)
REQUEUED, REQUEUE_HOLD, REQUEUE_FED,           pending     ended       yes
SPECIAL_EXIT (any base)
REVOKED (any base)                             ended       ended
COMPLETED, CANCELLED, FAILED, TIMEOUT,         ended       ended
NODE_FAIL, PREEMPTED, BOOT_FAIL, DEADLINE,
OUT_OF_MEMORY
missing, UNKNOWN, any other name               unknown     unknown
=============================================  ==========  ==========  ==============

Flags that say nothing about the phase (EXPEDITING, LAUNCH_FAILED, RECONFIG_FAIL and
any flag Slurm adds later) leave the base state to decide. Unknown is never a stop:
the caller waits and asks Slurm again.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Final, Literal

__all__ = [
    "BASE_STATES",
    "FINAL_STATES",
    "KNOWN_NAMES",
    "Family",
    "Phase",
    "family_of",
    "is_finishing",
    "is_requeue",
    "job_phase",
]

Family = Literal["ctld", "db"]


class Phase(StrEnum):
    """Where a job is in its life, as far as cc-backend cares."""

    PENDING = "pending"
    """Not started (or back in the queue after a requeue): no start, no stop."""
    RUNNING = "running"
    """Holds its nodes (running, suspended, or still completing): a start, no stop."""
    ENDED = "ended"
    """Slurm says this run is over: a stop, once the end time is known."""
    UNKNOWN = "unknown"
    """No state, or one we cannot place: never a stop; ask again."""


BASE_STATES: Final = frozenset({
    "PENDING", "RUNNING", "SUSPENDED", "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT",
    "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY",
})
"""Slurm's base states (``JOB_STATE_BASE``)."""
FINAL_STATES: Final = frozenset({
    "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
    "DEADLINE", "OUT_OF_MEMORY",
})
"""Base states of a job that has ended."""

_PENDING_NAMES: Final = frozenset({"PENDING", "RESV_DEL_HOLD"})
_RUNNING_NAMES: Final = frozenset({"RUNNING", "SUSPENDED", "STOPPED", "CONFIGURING",
                                   "POWER_UP_NODE", "SIGNALING"})
# The run is over but slurmctld has not finished it (epilog, burst-buffer stage-out,
# the accounting update): it keeps its nodes, so no stop until Slurm says it is done.
_FINISHING: Final = frozenset({"COMPLETING", "STAGE_OUT", "UPDATE_DB"})
# Flags that hold the nodes whatever the base says (a final base with COMPLETING).
_HOLDING_FLAGS: Final = _FINISHING | {"CONFIGURING", "SIGNALING", "POWER_UP_NODE"}
_REQUEUE: Final = frozenset({"REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SPECIAL_EXIT"})
_RESIZING: Final = "RESIZING"
_REVOKED: Final = "REVOKED"
_NEUTRAL_FLAGS: Final = frozenset({"EXPEDITING", "LAUNCH_FAILED", "RECONFIG_FAIL"})

KNOWN_NAMES: Final = (BASE_STATES | _PENDING_NAMES | _RUNNING_NAMES | _FINISHING | _REQUEUE
                      | {_RESIZING, _REVOKED} | _NEUTRAL_FLAGS)
"""Every state and flag name Slurm documents (for tables and tests)."""

_DB_SOURCES: Final = frozenset({"sacct", "slurmrestd-db"})


def family_of(source: str) -> Family:
    """``JobRecord.source`` → the family that wrote it."""
    return "db" if source in _DB_SOURCES else "ctld"


def _names(state: str | None, flags: Iterable[str]) -> tuple[str | None, frozenset[str]]:
    base = state.strip().upper() if isinstance(state, str) and state.strip() else None
    names = {f.strip().upper() for f in flags if isinstance(f, str) and f.strip()}
    if base is not None:
        names.add(base)
    return base, frozenset(names)


def is_requeue(state: str | None, flags: Iterable[str] = ()) -> bool:
    """True when Slurm marks the job (ctld) or this run (db) as requeued."""
    _base, names = _names(state, flags)
    return bool(names & _REQUEUE)


def is_finishing(state: str | None, flags: Iterable[str] = ()) -> bool:
    """True while a job that has ended is still completing (COMPLETING, STAGE_OUT,
    UPDATE_DB): its end time is real, but Slurm has not finished it yet."""
    _base, names = _names(state, flags)
    return bool(names & _FINISHING)


def job_phase(state: str | None, flags: tuple[str, ...] = (), *, family: Family) -> Phase:
    """The phase of a job whose state is ``state`` with ``flags`` (see the table).

    ``state`` is the base state, or the single name that ``job_state_string()`` printed
    (≤ 23.02, text outputs); ``flags`` the rest of a 23.11+ state list. Case and blanks
    do not matter. Pure: no I/O, no clock.
    """
    base, names = _names(state, flags)
    if base is None or base == "UNKNOWN":
        return Phase.UNKNOWN
    if _REVOKED in names:
        return Phase.ENDED  # federation: a sibling cluster runs it; over here
    if names & _REQUEUE:
        # slurmctld: back in the queue (23.11+: PENDING + REQUEUED). slurmdbd keeps the
        # run that was requeued as its own record, ended (with its end time).
        return Phase.PENDING if family == "ctld" else Phase.ENDED
    if _RESIZING in names:
        # slurmctld: the job still runs while its size changes. slurmdbd: this shape of
        # the job ended; the resized job is a new record.
        return Phase.RUNNING if family == "ctld" else Phase.ENDED
    if names & _HOLDING_FLAGS:
        return Phase.RUNNING
    if base in FINAL_STATES:
        return Phase.ENDED
    if base in _PENDING_NAMES:
        return Phase.PENDING
    if base in _RUNNING_NAMES:
        return Phase.RUNNING
    return Phase.UNKNOWN
