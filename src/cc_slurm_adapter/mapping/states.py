"""Slurm job state → cc-backend ``jobState`` for each profile.

cc-backend answers 400 to a stop whose ``jobState`` is not in its list (contract §5.1,
§8.2). Upstream lower-cases the Slurm state and sends it, so ``requeued``,
``revoked``, ``special_exit`` and ``resizing`` are refused and block the batch. Here
every Slurm state lands on a state the profile accepts; where that loses meaning the
result carries a ``reason`` that the caller logs (once) and puts in the warnings.

The table (``None`` = the job has not ended, no stop is sent):

=================  ==============  ==============  ===================================
Slurm state        v1.5            v1.3 / v1.4     why
=================  ==============  ==============  ===================================
COMPLETED          completed       completed
CANCELLED          cancelled       cancelled
FAILED             failed          failed
TIMEOUT            timeout         timeout
OUT_OF_MEMORY      out_of_memory   out_of_memory
PREEMPTED          preempted       preempted
NODE_FAIL          failed          failed          upstream's choice, kept (issue 7)
BOOT_FAIL          boot_fail       failed          v1.3/v1.4 have no boot_fail
DEADLINE           deadline        timeout         v1.3/v1.4: ended by a time limit
REQUEUED           preempted       preempted       this run was ended and the job put
                                                   back in the queue (mostly preemption
                                                   with PreemptMode=REQUEUE)
REVOKED            cancelled       cancelled       federation: the sibling cluster runs it
SPECIAL_EXIT       failed          failed          requeued-held after a special exit code
RESIZING           completed       completed       this shape of the job ended; Slurm
                                                   opens a new record for the new shape
anything else      failed          failed          unknown: reason logged
RUNNING, COMPLETING, CONFIGURING, SUSPENDED, STOPPED, SIGNALING, STAGE_OUT: None
(still running; ``completing`` stays running until the epilog is done)
PENDING: None (never started; see ``mapping.payload``)
=================  ==============  ==============  ===================================

A COMPLETING flag on a final base state (``["COMPLETED", "COMPLETING"]``) also keeps
the job running: cc-backend hears of the end once Slurm has finished it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cc_slurm_adapter.profiles import Profile

__all__ = ["LIVE_STATES", "StateMapping", "map_state"]

LIVE_STATES: Final[frozenset[str]] = frozenset({
    "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED", "SIGNALING",
    "STAGE_OUT", "RESV_DEL_HOLD", "POWER_UP_NODE",
})
"""Base states or flags meaning the job still holds its nodes."""
_LIVE_FLAGS: Final[frozenset[str]] = frozenset({"COMPLETING", "CONFIGURING", "STAGE_OUT",
                                                "SIGNALING"})

_DIRECT: Final[dict[str, str]] = {
    "COMPLETED": "completed",
    "CANCELLED": "cancelled",
    "FAILED": "failed",
    "TIMEOUT": "timeout",
    "OUT_OF_MEMORY": "out_of_memory",
    "PREEMPTED": "preempted",
    "BOOT_FAIL": "boot_fail",
    "DEADLINE": "deadline",
}
# (state, reason) for Slurm states cc-backend has no word for.
_TRANSLATED: Final[dict[str, tuple[str, str]]] = {
    "NODE_FAIL": ("failed", "node_fail is sent as failed, as upstream does"),
    "REQUEUED": ("preempted", "requeued: this run ended and the job went back to the "
                              "queue; sent as preempted"),
    "REVOKED": ("cancelled", "revoked: a federation sibling runs the job; sent as cancelled"),
    "SPECIAL_EXIT": ("failed", "special_exit: requeued and held after a special exit "
                               "code; sent as failed"),
    "RESIZING": ("completed", "resizing: this shape of the job ended (Slurm opens a new "
                              "record); sent as completed"),
}
# What a v1.5 state becomes for a profile that lacks it (v1.3/v1.4).
_OLDER: Final[dict[str, str]] = {
    "boot_fail": "failed",
    "deadline": "timeout",
    "node_fail": "failed",
    "pending": "failed",
    "suspended": "failed",
}


@dataclass(frozen=True, slots=True)
class StateMapping:
    """The outcome for one Slurm state."""

    state: str | None
    """The cc-backend state for the stop payload, or None while the job runs."""
    reason: str | None = None
    """Set when the Slurm state had to be translated (to be logged)."""


def map_state(state: str, flags: tuple[str, ...] | frozenset[str], profile: Profile,
              ) -> StateMapping:
    """Map a Slurm base state and its flags onto ``profile``'s job states."""
    base = (state or "UNKNOWN").upper()
    if base in LIVE_STATES or base == "PENDING":
        return StateMapping(None)
    if any(flag.upper() in _LIVE_FLAGS for flag in flags):
        return StateMapping(None)
    reason: str | None = None
    if base in _DIRECT:
        result = _DIRECT[base]
    elif base in _TRANSLATED:
        result, reason = _TRANSLATED[base]
    else:
        result, reason = "failed", f"unknown Slurm state {base!r}; sent as failed"
    if result not in profile.job_states:
        older = _OLDER.get(result, "failed")
        reason = (f"{reason}; " if reason else "") + (
            f"{result} is not a cc-backend {profile.name} state; sent as {older}")
        result = older
    if result not in profile.job_states:  # cannot happen with the shipped profiles
        result = "completed" if "completed" in profile.job_states else sorted(
            profile.job_states)[0]
    return StateMapping(result, reason)
