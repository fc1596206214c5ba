"""Regression snapshot of the mapping for real Slurm output (25 jobs, Slurm 21.08 → 26.05).

``tests/fixtures/mapping/golden.json`` holds v1.5 payloads that were **produced by the
mapper** (``map_job`` on the named Slurm files) and then reviewed by a person against
the Slurm JSON and the mapping rules. It is a regression snapshot, not an oracle: it
catches an unintended change of the mapping, but not a wrong rule that was already in
the mapper when the snapshot was taken (its first entry says so, and is skipped here).
The independent check, with values written by hand from the raw Slurm output, is
``test_handwritten.py``. slurmInfo is masked; its text is checked for its first line.
The v1.4/v1.3 payloads must equal the v1.5 snapshot with the documented profile
differences. Every payload of every profile goes through the stand-in, and the stop
closes exactly the job that was started.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from cc_slurm_adapter.mapping import map_job
from cc_slurm_adapter.profiles import PROFILES, SHARED_TO_EXCLUSIVE
from cc_slurm_adapter.slurm import parse_jobs
from cc_slurm_adapter.slurm.record import JobRecord

from .conftest import FIXTURES, MAPPING, Api, make_site

_DOC: list[dict[str, Any]] = json.loads((MAPPING / "golden.json").read_text())
PROVENANCE: str = _DOC[0]["_provenance"]
GOLDEN: list[dict[str, Any]] = _DOC[1:]
CASES = {case["name"]: case for case in GOLDEN}


def _record(case: dict[str, Any], shared_dir: Path | None) -> JobRecord:
    path = case["file"]
    if path.startswith("shared:"):
        if shared_dir is None:
            pytest.skip("needs ../shared")
        real = shared_dir / "slurm-json" / path.removeprefix("shared:")
    else:
        real = FIXTURES / path
    if not real.exists():
        pytest.skip(f"{path} is not recorded in this checkout")
    return next(j for j in parse_jobs(real.read_bytes()).jobs if j.job_id == case["jobId"])


@pytest.fixture
def shared_or_none(request: pytest.FixtureRequest) -> Path | None:
    try:
        path: Path = request.getfixturevalue("shared_dir")
    except pytest.skip.Exception:
        return None
    return path


def _masked(start: dict[str, Any] | None) -> dict[str, Any] | None:
    if start is None:
        return None
    out = copy.deepcopy(start)
    out["metaData"]["slurmInfo"] = "<slurmInfo>"
    return out


def _for_profile(golden: dict[str, Any], profile: str) -> dict[str, Any]:
    """The golden v1.5 start payload as the older profile must send it."""
    out = copy.deepcopy(golden)
    if profile != "v1.5":
        out["exclusive"] = SHARED_TO_EXCLUSIVE[out.pop("shared")]
        out.pop("submitTime", None)
        out.pop("requestedMemory", None)
    return out


def test_golden_says_how_it_was_made() -> None:
    assert "REGRESSION SNAPSHOT, NOT AN ORACLE" in PROVENANCE
    assert "produced by running the mapper" in PROVENANCE
    assert all("name" in case and "_provenance" not in case for case in GOLDEN)


def test_golden_covers_the_issue_cases() -> None:
    assert len(GOLDEN) >= 12
    names = set(CASES)
    assert {"gpu-multi-node-pci", "gpu-multi-types-smt", "gpu-multi-node-ignore-hosts",
            "array-task-requeued", "never-started-cancelled", "pending",
            "testbed-26.05-timeout-smt", "testbed-26.05-cancelled-running-zero-length"} <= names
    states = {c["stop_job"]["jobState"] for c in GOLDEN if c["stop_job"]}
    assert {"timeout", "failed", "completed", "preempted", "cancelled"} <= states


@pytest.mark.parametrize("name", list(CASES))
def test_golden_v15(name: str, shared_or_none: Path | None) -> None:
    case = CASES[name]
    record = _record(case, shared_or_none)
    mapped = map_job(record, make_site("v1.5", ignore=case.get("ignoreHosts"),
                                        testbed=case.get("testbed", False)))
    assert _masked(mapped.start) == case["start_job"]
    assert mapped.stop == case["stop_job"]
    assert list(mapped.warnings) == case["warnings"]
    if mapped.start is not None:
        info = mapped.start["metaData"]["slurmInfo"]
        assert info.startswith(f"JobId={record.job_id} JobName=")
        assert f"Partition={record.partition}" in info


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("name", list(CASES))
def test_golden_accepted_by_standin(name: str, profile: str, apis: dict[str, Api],
                                    shared_or_none: Path | None) -> None:
    case = CASES[name]
    record = _record(case, shared_or_none)
    mapped = map_job(record, make_site(profile, ignore=case.get("ignoreHosts"),
                                         testbed=case.get("testbed", False)))
    if case["start_job"] is None:
        assert mapped.start is None and mapped.stop is None
        return
    assert _masked(mapped.start) == _for_profile(case["start_job"], profile)
    assert mapped.start is not None
    api = apis[profile]
    api.reset()
    response = api.start(mapped.start)
    assert response.status_code == 201, response.text
    cluster = mapped.start["cluster"]
    (row,) = api.rows(record.job_id, cluster)
    assert row.resources == mapped.start["resources"]
    assert row.num_nodes == mapped.start["numNodes"]
    if mapped.stop is None:
        assert row.job_state == "running"
        return
    expected_stop = dict(case["stop_job"])
    if profile != "v1.5" and expected_stop["stopTime"] <= expected_stop["startTime"]:
        expected_stop["stopTime"] = expected_stop["startTime"] + 1
    if profile != "v1.5":  # contract §8.2: v1.3/v1.4 lack these three states
        older = {"node_fail": "failed", "boot_fail": "failed", "deadline": "timeout"}
        expected_stop["jobState"] = older.get(expected_stop["jobState"],
                                              expected_stop["jobState"])
    assert mapped.stop == expected_stop
    response = api.stop(mapped.stop)
    assert response.status_code == 200, response.text
    (row,) = api.rows(record.job_id, cluster)
    assert row.job_state == mapped.stop["jobState"]
    assert row.start_time == mapped.stop["startTime"]
    assert row.duration == mapped.stop["stopTime"] - mapped.stop["startTime"]
