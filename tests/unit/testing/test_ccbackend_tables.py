"""The stand-in's own release tables (testing/ccbackend/contract.py) against the
product's profiles.py and against cc-backend's swagger files.

The stand-in is the oracle for the product, so its tables are written separately from
the contract; these tests say where the two disagree (then one of them is wrong: the
contract, the swagger and the real server decide which).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from cc_slurm_adapter import profiles
from cc_slurm_adapter.testing.ccbackend import contract

CCBACKEND_SRC = Path(contract.__file__).parent
# What the stand-in may take from the product's profiles module: the profile type and
# its lookup (to be told *which* release to copy), never a table.
ALLOWED_FROM_PROFILES = {"DEFAULT_PROFILE", "PROFILES", "Profile", "get_profile"}

FIELDS = ("release", "start_keys", "tag_keys", "job_states", "start_forces_running",
          "query_keys", "page_must_be_positive", "start_returns_db_id",
          "stop_start_time_as_string", "trailing_slash_redirect", "job_cache",
          "role_failure_status", "requires_sub", "nats_job_api", "go_job_type",
          "go_stop_type")
STOP_FIELDS = ("not_found_status", "not_running_status", "allow_equal_times",
               "combined_check", "default_state")


def _differences(name: str) -> list[str]:
    product = profiles.PROFILES[name]
    standin = contract.RELEASES[name]
    out: list[str] = []
    for field in FIELDS:
        ours, theirs = getattr(standin, field), getattr(product, field)
        if ours != theirs:
            if isinstance(ours, frozenset):
                out.append(f"{name}.{field}: only in stand-in {sorted(ours - theirs)}, "
                           f"only in profiles.py {sorted(theirs - ours)}")
            else:
                out.append(f"{name}.{field}: stand-in {ours!r}, profiles.py {theirs!r}")
    if standin.sharing_key != str(product.sharing_key):
        out.append(f"{name}.sharing_key: stand-in {standin.sharing_key!r}, "
                   f"profiles.py {str(product.sharing_key)!r}")
    for field in STOP_FIELDS:
        ours, theirs = getattr(standin.stop, field), getattr(product.stop, field)
        if ours != theirs:
            out.append(f"{name}.stop.{field}: stand-in {ours!r}, profiles.py {theirs!r}")
    if standin.stop_states != product.stop_states:
        out.append(f"{name}.stop_states differ")
    return out


@pytest.mark.parametrize("name", sorted(contract.RELEASES))
def test_release_tables_agree_with_profiles(name: str) -> None:
    assert name in profiles.PROFILES
    diffs = _differences(name)
    assert not diffs, "stand-in tables and profiles.py disagree:\n" + "\n".join(diffs)


def test_shared_tables_agree_with_profiles() -> None:
    assert contract.RESOURCE_KEYS == profiles.RESOURCE_KEYS
    assert contract.STOP_KEYS == profiles.STOP_JOB_KEYS
    assert contract.SHARED_VALUES == profiles.SHARED_VALUES
    assert contract.EXCLUSIVE_TO_SHARED == profiles.EXCLUSIVE_TO_SHARED
    assert set(contract.RELEASES) == set(profiles.PROFILES)


def test_the_comparison_can_fail() -> None:
    """A wrong table in profiles.py would be reported (the check is not vacuous)."""
    import dataclasses

    real = profiles.PROFILES["v1.5"]
    broken = dataclasses.replace(real, job_states=real.job_states | {"stopped"},
                                 start_keys=real.start_keys | {"exclusive"})
    saved = profiles.PROFILES["v1.5"]
    profiles.PROFILES["v1.5"] = broken
    try:
        diffs = _differences("v1.5")
    finally:
        profiles.PROFILES["v1.5"] = saved
    assert any("job_states" in d and "stopped" in d for d in diffs)
    assert any("start_keys" in d and "exclusive" in d for d in diffs)


def test_standin_takes_no_table_from_the_product() -> None:
    """No module of the stand-in imports a table from cc_slurm_adapter.profiles."""
    offenders: list[str] = []
    for path in sorted(CCBACKEND_SRC.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "cc_slurm_adapter.profiles":
                bad = {a.name for a in node.names} - ALLOWED_FROM_PROFILES
                offenders += [f"{path.name}: {n}" for n in sorted(bad)]
            if isinstance(node, ast.Import):
                offenders += [f"{path.name}: import {a.name}" for a in node.names
                              if a.name == "cc_slurm_adapter.profiles"]
    assert not offenders, offenders


def test_release_for_unknown_name() -> None:
    with pytest.raises(ValueError, match=r"knows no cc-backend release 'v2\.0'"):
        contract.release_for("v2.0")


# --- against the swagger files of each release (../shared/cc-backend-api) -------------

SWAGGER = {"v1.5": "swagger.json", "v1.4": "v1.4.4/swagger.json",
           "v1.3": "v1.3.1/swagger.json"}


def _definitions(shared_dir: Path, name: str) -> dict[str, Any]:
    path = shared_dir / "cc-backend-api" / SWAGGER[name]
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    defs: dict[str, Any] = json.loads(path.read_text())["definitions"]
    return defs


def _props(defs: dict[str, Any], name: str) -> frozenset[str]:
    return frozenset(defs[name]["properties"])


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(contract.RELEASES))
def test_release_tables_match_swagger(shared_dir: Path, name: str) -> None:
    defs = _definitions(shared_dir, name)
    release = contract.RELEASES[name]
    job_type = f"schema.{release.go_job_type}"
    stop_type = f"api.{release.go_stop_type}"
    assert _props(defs, job_type) == release.start_keys
    assert _props(defs, "schema.Tag") == release.tag_keys
    assert _props(defs, stop_type) == contract.STOP_KEYS
    assert _props(defs, "schema.Resource") == contract.RESOURCE_KEYS
    assert frozenset(defs["schema.JobState"]["enum"]) == release.job_states
