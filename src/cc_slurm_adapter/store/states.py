"""The job-run state machine as a table: which event moves which state where.

Pure data plus one lookup. The store calls :func:`next_state` inside the
transaction of every change, so an illegal move raises before anything is written.
"""

from __future__ import annotations

from enum import StrEnum

from cc_slurm_adapter.errors import StoreError

__all__ = ["FINAL", "HAS_START_IN_CCBACKEND", "TRANSITIONS", "Event", "RunState", "next_state"]


class RunState(StrEnum):
    """Where one job run stands between Slurm and cc-backend."""

    SEEN = "seen"
    """Known to the store (seen running or ended in Slurm); nothing queued yet."""
    START_PENDING = "start_pending"
    """start_job is in the outbox, not acknowledged yet."""
    STARTED = "started"
    """cc-backend acknowledged the start (201, or 422 = already there)."""
    STOP_PENDING = "stop_pending"
    """stop_job is in the outbox (its start may still be queued before it)."""
    STOPPED = "stopped"
    """cc-backend acknowledged the stop (200, or 422 = already stopped)."""
    REJECTED = "rejected"
    """cc-backend answered 400 to one of its submissions; ``reason`` says why."""
    UNREPRESENTABLE = "unrepresentable"
    """cc-backend cannot hold this run (e.g. a requeue within 24 h); ``reason`` says why."""


class Event(StrEnum):
    ENQUEUE_START = "enqueue_start"
    ENQUEUE_STOP = "enqueue_stop"
    ACK_START = "ack_start"
    ACK_STOP = "ack_stop"
    REJECT = "reject"
    STOP_NOT_FOUND = "stop_not_found"
    UNREPRESENTABLE = "mark_unrepresentable"


S = RunState
TRANSITIONS: dict[Event, dict[RunState, RunState]] = {
    # STARTED → START_PENDING: reconciliation found the job running in Slurm but not in
    # cc-backend; the same payload (same startTime) goes again.
    Event.ENQUEUE_START: {S.SEEN: S.START_PENDING, S.STARTED: S.START_PENDING},
    # A stop may be queued behind a start that is still pending; it waits for the ack.
    # STOPPED → STOP_PENDING: reconciliation found cc-backend still showing it running.
    Event.ENQUEUE_STOP: {S.START_PENDING: S.STOP_PENDING, S.STARTED: S.STOP_PENDING,
                         S.STOPPED: S.STOP_PENDING},
    Event.ACK_START: {S.START_PENDING: S.STARTED, S.STOP_PENDING: S.STOP_PENDING},
    Event.ACK_STOP: {S.STOP_PENDING: S.STOPPED},
    Event.REJECT: {S.START_PENDING: S.REJECTED, S.STOP_PENDING: S.REJECTED},
    # 404 on stop (cc-backend 1.5): it never got the start; the start is queued again
    # ahead of the stop, the state stays.
    Event.STOP_NOT_FOUND: {S.STOP_PENDING: S.STOP_PENDING},
    Event.UNREPRESENTABLE: {S.SEEN: S.UNREPRESENTABLE, S.START_PENDING: S.UNREPRESENTABLE,
                            S.STARTED: S.UNREPRESENTABLE, S.STOP_PENDING: S.UNREPRESENTABLE},
}
del S

FINAL = frozenset({RunState.REJECTED, RunState.UNREPRESENTABLE})
"""No event leaves these states."""

HAS_START_IN_CCBACKEND = frozenset({RunState.START_PENDING, RunState.STARTED,
                                    RunState.STOP_PENDING, RunState.STOPPED})
"""States in which this run's start was (or is about to be) sent: cc-backend's 24 h
duplicate rule counts such a run against a later run of the same job id."""


def next_state(event: Event, state: RunState, what: str) -> RunState:
    """The state after ``event``; StoreError naming ``what`` (the run) if not allowed."""
    target = TRANSITIONS[event].get(state)
    if target is None:
        raise StoreError(f"{what}: cannot {event.value} when {state.value}")
    return target
