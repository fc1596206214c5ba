"""Every job in every real Slurm JSON sample parses (21.08 → 25.11, and live recordings).

* ``../shared/slurm-json/`` (436 files; skipped with a reason when missing),
* ``tests/fixtures/slurm-json/`` (the standalone copy),
* ``tests/fixtures/slurm/<release>/`` (recordings from the live testbed, when present:
  drop files in and they are tested).

A job must have an id, a state and a cluster, or say in ``warnings`` why not.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cc_slurm_adapter.slurm import JobRecord, parse_gres_detail, parse_jobs
from cc_slurm_adapter.slurm.values import expand_hostlist

from .conftest import LIVE_FIXTURES, SLURM_JSON

_STARTED = frozenset({"RUNNING", "COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "NODE_FAIL",
                      "OUT_OF_MEMORY", "PREEMPTED", "SUSPENDED", "COMPLETING"})


def _json_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.json")):
        if path.name != "provenance.json":
            yield path


def check_job(job: JobRecord) -> None:
    assert job.job_id > 0
    assert job.state == job.state.upper() and job.state
    if job.state == "UNKNOWN":
        assert any(w.startswith("state:") for w in job.warnings)
    if job.cluster is None:
        assert any(w.startswith("cluster:") for w in job.warnings)
    # per-node resources only for hosts the job holds
    hosts = set(job.nodes)
    for res in job.resources:
        assert res.hostname
        if hosts:
            assert res.hostname in hosts, (res.hostname, job.nodes)
        for s, c in res.cores:
            assert s >= 0 and c >= 0
        for gpu in res.gpus:
            assert gpu.index >= 0
    for t in (job.submit_time, job.start_time, job.end_time):
        assert t is None or 0 < t < 2**32
    if job.start_time is not None and job.end_time is not None:
        assert job.end_time >= job.start_time


def _check_file(path: Path) -> list[JobRecord]:
    result = parse_jobs(path.read_bytes())
    for job in result.jobs:
        check_job(job)
    return result.jobs


def test_standalone_fixtures_parse() -> None:
    files = list(_json_files(SLURM_JSON))
    assert len(files) >= 15
    total = sum(len(_check_file(p)) for p in files)
    assert total >= 15


@pytest.mark.shared
def test_every_shared_sample_parses(shared_dir: Path) -> None:
    root = shared_dir / "slurm-json"
    files = list(_json_files(root))
    assert len(files) >= 400, "expected the 436-file sample set"
    jobs = 0
    for path in files:
        jobs += len(_check_file(path))
    assert jobs > 500


def test_live_recordings_parse() -> None:
    if not LIVE_FIXTURES.is_dir():
        pytest.skip("tests/fixtures/slurm/ (live testbed recordings) not present yet")
    files = list(_json_files(LIVE_FIXTURES))
    if not files:
        pytest.skip("tests/fixtures/slurm/ has no *.json recordings yet")
    for path in files:
        _check_file(path)


def _idx_count(detail: str) -> int:
    total = 0
    for entry in parse_gres_detail(detail) or ():
        if entry.name == "gpu" and entry.indices:
            total += len(entry.indices)
    return total


_SCENARIO_STATE = {
    "completed": "COMPLETED", "failed": "FAILED", "timeout": "TIMEOUT",
    "pending": "PENDING", "running": "RUNNING", "gpus-pending": "PENDING",
    "gpus-running": "RUNNING",
}


def _slurm_web_files(shared: Path) -> list[Path]:
    return sorted((shared / "slurm-json").glob("*/slurmrestd_v0.0.4*/slurm-*.json"))


@pytest.mark.shared
def test_slurm_web_sets_by_structure(shared_dir: Path) -> None:
    """Same scenario, different job in each release: compare structure, not values."""
    import json

    files = _slurm_web_files(shared_dir)
    assert len(files) >= 150
    gpu_nodes_seen = 0
    for path in files:
        raw = json.loads(path.read_bytes())
        raw_jobs = {j["job_id"]: j for j in raw.get("jobs") or []}
        jobs = parse_jobs(path.read_bytes()).jobs
        assert len(jobs) == len(raw_jobs), path
        scenario = path.stem.removeprefix("slurm-job-")
        for job in jobs:
            rj = raw_jobs[job.job_id]
            assert job.source == "slurmrestd"
            assert job.data_parser == path.parent.name.removeprefix("slurmrestd_")
            # hosts expand the same way as the reference library does
            assert job.nodes == (expand_hostlist(rj.get("nodes")) or ())
            if job.state in _STARTED and rj.get("nodes"):
                assert job.nodes and len(job.resources) == len(job.nodes), path
            details = rj.get("gres_detail") or []
            # GPU indices appear wherever gres_detail has them, on the right node
            for pos, detail in enumerate(details):
                want = _idx_count(detail)
                got = len(job.resources[pos].gpus) if pos < len(job.resources) else 0
                assert got == want, (path, pos, detail)
                gpu_nodes_seen += bool(want)
            if path.stem.startswith("slurm-job-") and scenario in _SCENARIO_STATE:
                assert job.state == _SCENARIO_STATE[scenario], path
            if scenario == "gpus-multi-nodes":
                assert len(job.nodes) == 2 and all(r.gpus for r in job.resources)
            if job.state == "PENDING":
                assert job.start_time is None and job.resources == ()
    assert gpu_nodes_seen > 50
