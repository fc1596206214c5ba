"""Every job in every real Slurm JSON sample parses (21.08 → 25.11, and live recordings).

* ``../shared/slurm-json/`` (436 files; skipped with a reason when missing),
* ``tests/fixtures/slurm-json/`` (the standalone copy),
* ``tests/fixtures/slurm/<release>/`` (recordings from the live testbed, when present:
  drop files in and they are tested).

A job must have an id, a state and a cluster, or say in ``warnings`` why not.

The oracles are not the product's own parsers: host lists are expanded with
ClusterShell's ``NodeSet`` (the product uses python-hostlist), and GPU counts come from
a small reading of Slurm's documented ``gres_detail`` syntax written here
(:func:`gpu_indices`), not from ``cc_slurm_adapter.slurm.gres``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ClusterShell.NodeSet import NodeSet  # type: ignore[import-untyped]

from cc_slurm_adapter.slurm import JobRecord, parse_jobs

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


def expected_hosts(nodes: Any) -> tuple[str, ...]:
    """The job's host list as ClusterShell expands it (an independent library)."""
    if not isinstance(nodes, str) or not nodes.strip() or nodes == "None assigned":
        return ()
    return tuple(NodeSet(nodes))


# One entry of ``gres_detail`` (``scontrol show job -d`` "GRES=" per node), as the
# Slurm docs write it: ``name[:type]:count(IDX:list)``, several entries joined by ","
# (a "," inside the parentheses belongs to the index list), the list made of
# ``n`` and ``n-m`` items; ``IDX:`` empty or ``N/A`` when the node has none of that type.
_GRES_ENTRY = re.compile(r"([^:,()]+)(?::([^:,()]+))?:(\d+)(?:\(([^()]*)\))?")


def gpu_indices(detail: str) -> list[int]:
    """The GPU device indices named by one ``gres_detail`` string (independent reading)."""
    out: list[int] = []
    pos = 0
    while pos < len(detail):
        match = _GRES_ENTRY.match(detail, pos)
        assert match, f"gres_detail {detail!r} does not follow the documented syntax"
        name, _type, count, inner = match.groups()
        pos = match.end() + (detail[match.end():match.end() + 1] == ",")
        if name != "gpu" or not inner or not inner.startswith("IDX:"):
            continue
        listed: list[int] = []
        for item in inner.removeprefix("IDX:").split(","):
            if not item or item == "N/A":
                continue
            low, _, high = item.partition("-")
            listed.extend(range(int(low), int(high or low) + 1))
        assert len(listed) == int(count), (detail, "IDX list and count disagree")
        out.extend(listed)
    return out


def test_gpu_indices_reads_the_documented_forms() -> None:
    # literals: what each form names (Slurm docs, gres.html / scontrol show job -d)
    assert gpu_indices("gpu:tesla:2(IDX:0-1)") == [0, 1]
    assert gpu_indices("gpu:8(IDX:0-7)") == [0, 1, 2, 3, 4, 5, 6, 7]
    assert gpu_indices("gpu:a100:2(IDX:0,2)") == [0, 2]
    assert gpu_indices("gpu:h100:1(IDX:0),gpu:h200:0(IDX:)") == [0]
    assert gpu_indices("gpu:h100:2(IDX:0-1),gpu:h200:4(IDX:2-5)") == [0, 1, 2, 3, 4, 5]
    assert gpu_indices("nic:1(IDX:0),gpu:1(IDX:3)") == [3]
    assert gpu_indices("gpu:0(IDX:N/A)") == []


def test_expected_hosts_literals() -> None:
    assert expected_hosts("node[1-2]") == ("node1", "node2")
    assert expected_hosts("ng[30103,30203,30706-30707]") == (
        "ng30103", "ng30203", "ng30706", "ng30707")
    assert expected_hosts("cn-00[10-11],gpu1") == ("cn-0010", "cn-0011", "gpu1")
    assert expected_hosts("") == () and expected_hosts(None) == ()


_SCENARIO_STATE = {
    "completed": "COMPLETED", "failed": "FAILED", "timeout": "TIMEOUT",
    "pending": "PENDING", "running": "RUNNING", "gpus-pending": "PENDING",
    "gpus-running": "RUNNING",
}


def _slurm_web_files(shared: Path) -> list[Path]:
    return sorted((shared / "slurm-json").glob("*/slurmrestd_v0.0.4*/slurm-*.json"))


def _check_hosts_and_gpus(path: Path) -> int:
    """Hosts and per-node GPU indices of every job in a slurmctld-JSON file against the
    independent readings above; returns how many nodes had GPU indices."""
    raw = json.loads(path.read_bytes())
    raw_jobs = {j["job_id"]: j for j in raw.get("jobs") or []}
    jobs = parse_jobs(path.read_bytes()).jobs
    assert len(jobs) == len(raw_jobs), path
    gpu_nodes = 0
    for job in jobs:
        rj = raw_jobs[job.job_id]
        assert job.nodes == expected_hosts(rj.get("nodes")), (path, job.job_id)
        if job.state in _STARTED and rj.get("nodes"):
            assert job.nodes and len(job.resources) == len(job.nodes), path
        # GPU indices appear wherever gres_detail has them, on the right node
        for pos, detail in enumerate(rj.get("gres_detail") or []):
            want = gpu_indices(detail)
            got = [g.index for g in job.resources[pos].gpus] if pos < len(job.resources) else []
            assert sorted(got) == sorted(want), (path, job.job_id, pos, detail)
            gpu_nodes += bool(want)
    return gpu_nodes


def _slurmctld_fixture_files() -> list[Path]:
    files = sorted(SLURM_JSON.glob("*/slurmrestd_v0.0.4*/slurm-*.json"))
    files += sorted(SLURM_JSON.glob("*/squeue_*.json"))
    if LIVE_FIXTURES.is_dir():
        for pattern in ("*/squeue_*.json", "*/scontrol_show_job_*.json"):
            files += sorted(LIVE_FIXTURES.glob(pattern))
    return files


def test_hosts_and_gpus_against_independent_readings() -> None:
    """Without ../shared: the standalone samples and the testbed recordings."""
    files = _slurmctld_fixture_files()
    assert len(files) >= 10
    assert sum(_check_hosts_and_gpus(p) for p in files) >= 5


@pytest.mark.shared
def test_slurm_web_sets_by_structure(shared_dir: Path) -> None:
    """Same scenario, different job in each release: compare structure, not values."""
    files = _slurm_web_files(shared_dir)
    assert len(files) >= 150
    gpu_nodes_seen = 0
    for path in files:
        gpu_nodes_seen += _check_hosts_and_gpus(path)
        scenario = path.stem.removeprefix("slurm-job-")
        for job in parse_jobs(path.read_bytes()).jobs:
            assert job.source == "slurmrestd"
            assert job.data_parser == path.parent.name.removeprefix("slurmrestd_")
            if path.stem.startswith("slurm-job-") and scenario in _SCENARIO_STATE:
                assert job.state == _SCENARIO_STATE[scenario], path
            if scenario == "gpus-multi-nodes":
                assert len(job.nodes) == 2 and all(r.gpus for r in job.resources)
            if job.state == "PENDING":
                assert job.start_time is None and job.resources == ()
    assert gpu_nodes_seen > 50
