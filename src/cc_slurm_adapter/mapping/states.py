"""Slurm job state → cc-backend ``jobState`` for each profile.

cc-backend answers 400 to a stop whose ``jobState`` is not in its list (contract §5.1,
§8.2). Upstream lower-cases the Slurm state and sends it, so ``requeued``,
``revoked``, ``special_exit`` and ``resizing`` are refused and block the batch. Here
every Slurm state lands on a state the profile accepts; where that loses meaning the
result carries a ``reason`` that the caller logs (once) and puts in the warnings.

Whether there is a stop at all is the job's phase (``slurm.phase``): only an ENDED job
gets a state here; pending, running (completing included) and unknown give ``None``.
An unknown or missing state is never a stop: the daemon asks Slurm again.

The table for ENDED jobs:

=================  ==============  ==============  ===================================
Slurm state        v1.5            v1.3 / v1.4     why
=================  ==============  ==============  ===================================
COMPLETED          completed       completed
CANCELLED          cancelled       cancelled
FAILED             failed          failed
TIMEOUT            timeout         timeout
OUT_OF_MEMORY      out_of_memory   out_of_memory
PREEMPTED          preempted       preempted
NODE_FAIL          node_fail       failed          v1.3/v1.4 have no node_fail
                                                   (upstream sends failed everywhere)
BOOT_FAIL          boot_fail       failed          v1.3/v1.4 have no boot_fail
DEADLINE           deadline        timeout         v1.3/v1.4: ended by a time limit
REQUEUED (sacct)   preempted       preempted       this run was ended and the job put
                                                   back in the queue (mostly preemption
                                                   with PreemptMode=REQUEUE)
REVOKED            cancelled       cancelled       federation: the sibling cluster runs it
SPECIAL_EXIT       failed          failed          requeued-held after a special exit
(sacct)                                            code
RESIZING (sacct)   completed       completed       this shape of the job ended; Slurm
                                                   opens a new record for the new shape
=================  ==============  ==============  ===================================

Not ended, so ``None``: PENDING, RESV_DEL_HOLD; RUNNING, SUSPENDED, STOPPED,
CONFIGURING, SIGNALING, POWER_UP_NODE; COMPLETING, STAGE_OUT, UPDATE_DB (on any base
state: cc-backend hears of the end once Slurm has finished it); in a slurmctld record
also REQUEUED, REQUEUE_HOLD, REQUEUE_FED, SPECIAL_EXIT (back in the queue) and
RESIZING (still running); UNKNOWN, a missing state and any name Slurm does not
document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cc_slurm_adapter.profiles import Profile
from cc_slurm_adapter.slurm.phase import Family, Phase, job_phase

__all__ = ["StateMapping", "map_state"]

_DIRECT: Final[dict[str, str]] = {
    "COMPLETED": "completed",
    "CANCELLED": "cancelled",
    "FAILED": "failed",
    "TIMEOUT": "timeout",
    "OUT_OF_MEMORY": "out_of_memory",
    "PREEMPTED": "preempted",
    "NODE_FAIL": "node_fail",
    "BOOT_FAIL": "boot_fail",
    "DEADLINE": "deadline",
}
# (state, reason) for the ways a run ends that cc-backend has no word for; checked on
# the state, then on the flags in this order (23.11+: ["PENDING", "REQUEUED"]).
_TRANSLATED: Final[dict[str, tuple[str, str]]] = {
    "REVOKED": ("cancelled", "revoked: a federation sibling runs the job; sent as cancelled"),
    "SPECIAL_EXIT": ("failed", "special_exit: requeued and held after a special exit "
                               "code; sent as failed"),
    "REQUEUED": ("preempted", "requeued: this run ended and the job went back to the "
                              "queue; sent as preempted"),
    "REQUEUE_HOLD": ("preempted", "requeue_hold: this run ended and the job went back to "
                                  "the queue, held; sent as preempted"),
    "REQUEUE_FED": ("preempted", "requeue_fed: this run ended and the job went back to "
                                 "the queue (federation); sent as preempted"),
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


def map_state(state: str, flags: tuple[str, ...] | frozenset[str], profile: Profile, *,
              family: Family = "db", phase: Phase | None = None) -> StateMapping:
    """Map a Slurm state and its flags onto ``profile``'s job states.

    ``phase`` is the record's phase when the caller has it; else it is worked out
    from ``state``/``flags`` for ``family`` (default: slurmdbd, the accounting view).
    """
    flag_names = tuple(flag.upper() for flag in flags)
    if phase is None:
        phase = job_phase(state, flag_names, family=family)
    if phase is not Phase.ENDED:
        return StateMapping(None)
    base = (state or "").upper()
    reason: str | None = None
    if base in _DIRECT:
        result = _DIRECT[base]
    else:
        names = (base, *flag_names)
        found = next((_TRANSLATED[name] for name in _TRANSLATED if name in names), None)
        if found is None:  # an ENDED phase always has a known name; kept for safety
            found = ("failed", f"Slurm state {base!r} has no cc-backend name; sent as failed")
        result, reason = found
    if result not in profile.job_states:
        older = _OLDER.get(result, "failed")
        reason = (f"{reason}; " if reason else "") + (
            f"{result} is not a cc-backend {profile.name} state; sent as {older}")
        result = older
    if result not in profile.job_states:  # cannot happen with the shipped profiles
        result = "completed" if "completed" in profile.job_states else sorted(
            profile.job_states)[0]
    return StateMapping(result, reason)
