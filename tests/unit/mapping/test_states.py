"""The state table: every Slurm state lands on a state the profile accepts."""

from __future__ import annotations

import pytest

from cc_slurm_adapter.mapping import map_state
from cc_slurm_adapter.profiles import PROFILES, V13, V14, V15

# Slurm state → (v1.5, v1.3/v1.4, translated?)
TABLE = [
    ("COMPLETED", "completed", "completed", False),
    ("CANCELLED", "cancelled", "cancelled", False),
    ("FAILED", "failed", "failed", False),
    ("TIMEOUT", "timeout", "timeout", False),
    ("OUT_OF_MEMORY", "out_of_memory", "out_of_memory", False),
    ("PREEMPTED", "preempted", "preempted", False),
    ("NODE_FAIL", "failed", "failed", True),
    ("BOOT_FAIL", "boot_fail", "failed", None),
    ("DEADLINE", "deadline", "timeout", None),
    ("REQUEUED", "preempted", "preempted", True),
    ("REVOKED", "cancelled", "cancelled", True),
    ("SPECIAL_EXIT", "failed", "failed", True),
    ("RESIZING", "completed", "completed", True),
    ("LAUNCH_FAILED", "failed", "failed", True),
    ("UNKNOWN", "failed", "failed", True),
    ("", "failed", "failed", True),
]


@pytest.mark.parametrize(("slurm", "v15", "older", "translated"), TABLE)
def test_state_table(slurm: str, v15: str, older: str, translated: bool | None) -> None:
    got = map_state(slurm, (), V15)
    assert got.state == v15
    if translated is not None:
        assert (got.reason is not None) == translated
    for profile in (V14, V13):
        old = map_state(slurm, (), profile)
        assert old.state == older
        assert old.state in profile.job_states
        if v15 != older:
            assert old.reason and profile.name in old.reason


@pytest.mark.parametrize("state", ["RUNNING", "PENDING", "SUSPENDED", "COMPLETING",
                                   "CONFIGURING", "STOPPED", "running"])
def test_live_states_have_no_stop(state: str) -> None:
    for profile in PROFILES.values():
        assert map_state(state, (), profile).state is None


@pytest.mark.parametrize("flag", ["COMPLETING", "CONFIGURING", "STAGE_OUT", "completing"])
def test_completing_flag_keeps_running(flag: str) -> None:
    assert map_state("COMPLETED", (flag,), V15).state is None


def test_other_flags_do_not_matter() -> None:
    assert map_state("CANCELLED", ("REQUEUED",), V15).state == "cancelled"
    assert map_state("cancelled", (), V15).state == "cancelled"


def test_never_requeued_or_stopped() -> None:
    for profile in PROFILES.values():
        for state in ("REQUEUED", "REVOKED", "SPECIAL_EXIT", "RESIZING", "NODE_FAIL"):
            result = map_state(state, (), profile).state
            assert result in profile.job_states
            assert result not in ("requeued", "stopped", "node_fail")
