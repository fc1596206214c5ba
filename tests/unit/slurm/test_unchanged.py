"""``parse_jobs(unchanged=...)``: sacct jobs still running since a start the caller holds
are left unread; everything else is read in full. Expected values come from the recorded
sacct JSON itself (tests/fixtures/slurm/<release>/sacct_running2.json)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from cc_slurm_adapter.slurm.parse import parse_jobs

from .conftest import LIVE_FIXTURES


def _doc(release: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((LIVE_FIXTURES / release / "sacct_running2.json")
                                     .read_bytes())
    return doc


def _by_id(doc: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {int(j["job_id"]): j for j in doc["jobs"]}


def _running(job: dict[str, Any]) -> bool:
    current = job["state"]["current"]
    return current in ("RUNNING", ["RUNNING"]) and job["time"]["end"] == 0


@pytest.mark.parametrize("release", ["22.05", "24.11", "26.05"])
def test_running_since_the_held_start_is_left_unread(release: str) -> None:
    doc = _doc(release)
    jobs = _by_id(doc)
    # the recording: job 3 runs (22.05 writes the state as a string, 23.02+ as a list),
    # job 8 runs too, job 1 has completed
    assert _running(jobs[3]) and _running(jobs[8]) and not _running(jobs[1])
    held = {3: jobs[3]["time"]["start"],          # same start: unread
            8: jobs[8]["time"]["start"] + 1,      # another start (another run): read
            1: jobs[1]["time"]["start"]}          # ended since: read
    result = parse_jobs(json.dumps(doc).encode(), source="sacct", unchanged=held)
    assert result.unchanged == (3,)
    read = {r.job_id for r in result.jobs}
    assert 3 not in read
    assert {1, 8} <= read
    # nothing else changes: without ``unchanged`` the same jobs, plus job 3
    full = parse_jobs(json.dumps(doc).encode(), source="sacct")
    assert {r.job_id for r in full.jobs} == read | {3}
    assert full.unchanged == ()


@pytest.mark.parametrize("mutate", [
    pytest.param(lambda j: j["state"].__setitem__("current", ["RUNNING", "REQUEUED"]),
                 id="state-with-a-flag"),
    pytest.param(lambda j: j["state"].__setitem__("current", ["SUSPENDED"]), id="suspended"),
    pytest.param(lambda j: j["time"].__setitem__("end", j["time"]["start"] + 5),
                 id="has-an-end"),
    pytest.param(lambda j: j.__setitem__("state", "RUNNING"), id="state-not-an-object"),
    pytest.param(lambda j: j.__setitem__("time", None), id="no-times"),
    pytest.param(lambda j: j.__setitem__("job_id", "3x"), id="odd-job-id"),
])
def test_anything_but_plain_running_is_read_in_full(mutate: Any) -> None:
    doc = _doc("24.11")
    job = copy.deepcopy(_by_id(doc)[3])
    start = job["time"]["start"]
    mutate(job)
    doc["jobs"] = [job]
    result = parse_jobs(json.dumps(doc).encode(), source="sacct", unchanged={3: start})
    assert result.unchanged == ()


def test_non_utf8_bytes_in_an_unchanged_job_do_not_lose_it() -> None:
    doc = _doc("24.11")
    job = _by_id(doc)[3]
    job["name"] = "NAMEMARK"
    raw = json.dumps({**doc, "jobs": [job]}).encode().replace(b"NAMEMARK", b"x\xe9y")
    result = parse_jobs(raw, source="sacct", unchanged={3: job["time"]["start"]})
    # the bad byte sits in a key the three-key read skips: job 3 is still accounted for
    assert result.unchanged == (3,)
    assert result.jobs == []
    # and without ``unchanged`` it is read, the byte replaced (as before)
    assert [r.job_id for r in parse_jobs(raw, source="sacct").jobs] == [3]
