"""The cc-backend version profiles (contract §1, §4, §5)."""

from __future__ import annotations

import pytest

from cc_slurm_adapter.errors import ConfigError
from cc_slurm_adapter.profiles import (
    DEFAULT_PROFILE,
    EXCLUSIVE_TO_SHARED,
    SharingKey,
    get_profile,
)


def test_default_is_v15() -> None:
    assert DEFAULT_PROFILE.name == "v1.5"
    assert get_profile("1.5") is DEFAULT_PROFILE


def test_unknown_profile() -> None:
    with pytest.raises(ConfigError, match="unknown cc-backend profile"):
        get_profile("v2.0")


@pytest.mark.parametrize(("profile", "key", "rejected"), [
    ("v1.5", "exclusive", True), ("v1.5", "shared", False), ("v1.5", "submitTime", False),
    ("v1.5", "SUBMITTIME", False),
    ("v1.4", "shared", True), ("v1.4", "submitTime", True), ("v1.4", "requestedMemory", True),
    ("v1.4", "exclusive", False), ("v1.4", "energy", False),
    ("v1.3", "energy", True), ("v1.3", "footprint", True), ("v1.3", "exclusive", False),
])
def test_key_rules(profile: str, key: str, rejected: bool) -> None:
    assert get_profile(profile).rejects_key(key) is rejected


def test_states_and_stop_rules() -> None:
    v15, v14, v13 = get_profile("v1.5"), get_profile("v1.4"), get_profile("v1.3")
    assert "stopped" not in v15.job_states and "node_fail" in v15.stop_states
    assert "stopped" in v14.job_states and "node_fail" not in v14.job_states
    assert (v15.stop.not_found_status, v14.stop.not_found_status) == (404, 422)
    assert v13.stop.combined_check and not v13.stop.allow_equal_times
    assert v15.sharing_key is SharingKey.SHARED and v14.sharing_key is SharingKey.EXCLUSIVE
    assert EXCLUSIVE_TO_SHARED[1] == "none"
