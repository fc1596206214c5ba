"""The state table: every Slurm state lands on a state the profile accepts."""

from __future__ import annotations

import pytest

from cc_slurm_adapter.mapping import map_state
from cc_slurm_adapter.profiles import PROFILES, V13, V14, V15
from cc_slurm_adapter.slurm.phase import Family

FAMILIES: tuple[Family, ...] = ("ctld", "db")

# Slurm state → (v1.5, v1.3/v1.4, translated?)
TABLE = [
    ("COMPLETED", "completed", "completed", False),
    ("CANCELLED", "cancelled", "cancelled", False),
    ("FAILED", "failed", "failed", False),
    ("TIMEOUT", "timeout", "timeout", False),
    ("OUT_OF_MEMORY", "out_of_memory", "out_of_memory", False),
    ("PREEMPTED", "preempted", "preempted", False),
    ("NODE_FAIL", "node_fail", "failed", None),
    ("BOOT_FAIL", "boot_fail", "failed", None),
    ("DEADLINE", "deadline", "timeout", None),
    ("REQUEUED", "preempted", "preempted", True),
    ("REVOKED", "cancelled", "cancelled", True),
    ("SPECIAL_EXIT", "failed", "failed", True),
    ("RESIZING", "completed", "completed", True),
    ("REQUEUE_HOLD", "preempted", "preempted", True),
    ("REQUEUE_FED", "preempted", "preempted", True),
]
# No stop at all (phase UNKNOWN): a name Slurm does not document, or no state.
UNKNOWN_STATES = ["LAUNCH_FAILED", "UNKNOWN", "", "WEIRD_NEW_STATE", "RECONFIG_FAIL"]


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
            assert result not in ("requeued", "stopped")


@pytest.mark.parametrize("state", UNKNOWN_STATES)
def test_unknown_state_is_never_a_stop(state: str) -> None:
    for profile in PROFILES.values():
        for family in FAMILIES:
            assert map_state(state, (), profile, family=family).state is None


def test_node_fail_boot_fail_deadline_per_profile() -> None:
    # contract §8.2: v1.5 accepts node_fail, boot_fail and deadline; v1.3/v1.4 do not
    for state, v15, older in (("NODE_FAIL", "node_fail", "failed"),
                              ("BOOT_FAIL", "boot_fail", "failed"),
                              ("DEADLINE", "deadline", "timeout")):
        got = map_state(state, (), V15)
        assert (got.state, got.reason) == (v15, None)
        for profile in (V14, V13):
            old = map_state(state, (), profile)
            assert old.state == older
            assert old.reason is not None and f"{v15} is not a cc-backend" in old.reason


@pytest.mark.parametrize(("state", "flags", "db", "ctld"), [
    # sacct keeps the run that was requeued/resized as its own ended record;
    # slurmctld's job is pending again / still running
    ("REQUEUED", (), "preempted", None),
    ("PENDING", ("REQUEUED",), "preempted", None),
    ("REQUEUE_HOLD", (), "preempted", None),
    ("SPECIAL_EXIT", (), "failed", None),
    ("RESIZING", (), "completed", None),
    ("RUNNING", ("RESIZING",), "completed", None),
    ("REVOKED", (), "cancelled", "cancelled"),
    ("CANCELLED", ("REQUEUED",), "cancelled", None),
])
def test_family_decides_requeue_and_resize(state: str, flags: tuple[str, ...],
                                           db: str | None, ctld: str | None) -> None:
    assert map_state(state, flags, V15, family="db").state == db
    assert map_state(state, flags, V15, family="ctld").state == ctld
