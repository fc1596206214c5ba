"""Payload fields against cc-backend's Go types (issue 10 point 7, "values outside").

Bounds from the contract (§2.3, §8.1: int64 for jobId, arrayJobId, walltime,
requestedMemory, submitTime, startTime; int32 for numNodes, numHwthreads, numAcc) and
the swagger's ``minimum: 1``; the hostnames are the ones the hostile tester sent.
Every payload that comes out is also sent to the stand-in, which must accept it.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from cc_slurm_adapter.mapping import map_job
from cc_slurm_adapter.mapping.checks import check_start, check_stop, hostname_problem
from cc_slurm_adapter.slurm.record import JobRecord, NodeResources

from .conftest import Api, make_site

_ids = itertools.count(700_000)
T0 = 1_700_000_000
INT64 = 2**63 - 1
INT32 = 2**31 - 1


def record(**kw: Any) -> JobRecord:
    base: dict[str, Any] = {
        "source": "sacct", "job_id": next(_ids), "cluster": "testcluster", "user": "alice",
        "account": "proj", "partition": "batch", "name": "job", "submit_time": T0 - 10,
        "start_time": T0, "end_time": T0 + 600, "state": "COMPLETED", "nodes": ("node1",),
        "node_count": 1, "cpus": 1, "time_limit_min": 60, "requested_memory_mb": 1000,
    }
    base.update(kw)
    return JobRecord(**base)


def accepted(api: Api, mapped: Any) -> None:
    assert mapped.start is not None
    response = api.start(mapped.start)
    assert response.status_code == 201, response.text
    if mapped.stop is not None:
        response = api.stop(mapped.stop)
        assert response.status_code == 200, response.text


BAD_HOSTS = ["node1\nnode2", "node[1-2,", ",,,", "[1-2]", "", " node1", "node 1",
             "no\x00de", "node\t1", "a" * 256, "node1,node2", "nodé\u200b"]


@pytest.mark.parametrize("name", BAD_HOSTS, ids=repr)
def test_not_a_hostname(name: str) -> None:
    assert hostname_problem(name) is not None


@pytest.mark.parametrize("name", ["node1", "gpu-a100-07", "n.example.org", "a" * 255])
def test_hostnames(name: str) -> None:
    assert hostname_problem(name) is None


@pytest.mark.parametrize("name", BAD_HOSTS, ids=repr)
def test_job_with_no_valid_host_is_skipped(name: str) -> None:
    mapped = map_job(record(nodes=(name,)), make_site(topology=False))
    assert mapped.start is None and mapped.stop is None
    assert mapped.skip_reason == "no valid host name"


def test_bad_host_is_left_out_and_counts_follow(apis: dict[str, Api]) -> None:
    res = (NodeResources(hostname="node1", cpus=2), NodeResources(hostname="node[1-2,", cpus=2))
    mapped = map_job(record(nodes=("node1", "node[1-2,"), node_count=2, cpus=4,
                            resources=res), make_site())
    assert mapped.start is not None
    assert [r["hostname"] for r in mapped.start["resources"]] == ["node1"]
    assert mapped.start["numNodes"] == 1
    assert mapped.start["numHwthreads"] == 2  # node1's CPUs, not the job's 4
    assert any("node[1-2," in w for w in mapped.warnings)
    accepted(apis["v1.5"], mapped)


@pytest.mark.parametrize(("field", "kw", "key"), [
    ("walltime", {"time_limit_min": 2**63 // 60 + 1}, "walltime"),
    ("arrayJobId", {"array_job_id": 2**63, "array_task_id": 1}, "arrayJobId"),
    ("requestedMemory", {"requested_memory_mb": 2**63}, "requestedMemory"),
    ("submitTime", {"submit_time": 2**63}, "submitTime"),
    ("numHwthreads", {"cpus": INT32 + 1}, "numHwthreads"),
    ("numAcc", {"gpus": INT32 + 1}, "numAcc"),
])
def test_out_of_range_optional_field_is_left_out(field: str, kw: dict[str, Any], key: str,
                                                 apis: dict[str, Api]) -> None:
    mapped = map_job(record(**kw), make_site())
    assert mapped.start is not None
    assert key not in mapped.start
    assert any(w.startswith(f"{field} ") and "left out" in w for w in mapped.warnings)
    accepted(apis["v1.5"], mapped)


@pytest.mark.parametrize("kw", [{"job_id": 2**63}, {"start_time": 2**63}])
def test_out_of_range_identity_skips_the_job(kw: dict[str, Any]) -> None:
    mapped = map_job(record(**kw), make_site())
    assert mapped.start is None and mapped.stop is None
    assert mapped.skip_reason is not None and "outside cc-backend's range" in mapped.skip_reason


def test_out_of_range_stop_time_gives_no_stop() -> None:
    mapped = map_job(record(end_time=2**63), make_site())
    assert mapped.start is not None and mapped.stop is None
    assert any("stopTime" in w for w in mapped.warnings)


def test_hwthreads_out_of_range_are_left_out() -> None:
    payload: dict[str, Any] = {
        "jobId": 1, "startTime": T0, "numNodes": 1, "numHwthreads": 3,
        "resources": [{"hostname": "n1", "hwthreads": [0, 2**63, -1],
                       "accelerators": ["00000000:01:00.0", "", "a\nb"]}]}
    checked = check_start(payload)
    assert checked.payload is not None
    assert checked.payload["resources"] == [{"hostname": "n1", "hwthreads": [0],
                                             "accelerators": ["00000000:01:00.0"]}]
    assert checked.payload["numHwthreads"] == 1
    assert payload["resources"][0]["hwthreads"] == [0, 2**63, -1]  # input untouched
    assert len(checked.warnings) == 2


@pytest.mark.parametrize("value", [True, 1.5, "1", None, -1, 0])
def test_wrong_types_and_bounds(value: Any) -> None:
    assert check_start({"jobId": value, "startTime": T0, "numNodes": 1,
                        "resources": [{"hostname": "n1"}]}).payload is None
    assert check_stop({"jobId": 1, "startTime": T0, "stopTime": value}).payload is None


def test_in_range_payload_is_unchanged() -> None:
    payload: dict[str, Any] = {"jobId": INT64, "startTime": T0, "numNodes": 1, "walltime": INT64,
               "numHwthreads": INT32, "resources": [{"hostname": "n1", "hwthreads": [INT64]}]}
    checked = check_start(payload)
    assert checked.payload == payload and checked.warnings == ()
