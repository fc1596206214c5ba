"""Payload rules on hand-made records, each checked against the stand-in."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import msgspec
import pytest

from cc_slurm_adapter.mapping import map_job, stop_payload
from cc_slurm_adapter.profiles import PROFILES
from cc_slurm_adapter.slurm.record import GpuAlloc, JobRecord, NodeResources

from .conftest import Api, make_site

_ids = itertools.count(500_000)
T0 = 1_700_000_000


def record(**kw: Any) -> JobRecord:
    base: dict[str, Any] = {
        "source": "squeue", "job_id": next(_ids), "cluster": "testcluster", "user": "alice",
        "user_id": 1000, "account": "proj", "partition": "batch", "qos": "normal",
        "name": "job", "submit_time": T0 - 10, "start_time": T0, "end_time": T0 + 600,
        "state": "COMPLETED", "nodes": ("node1",), "node_count": 1, "cpus": 1,
        "time_limit_min": 60, "requested_memory_mb": 1000,
    }
    base.update(kw)
    return JobRecord(**base)


def smt_record(**kw: Any) -> JobRecord:
    res = (NodeResources(hostname="smt1", cores=((0, 1), (1, 2)), sockets=2,
                         cores_per_socket=4, threads_per_core=2, cpus=4),
           NodeResources(hostname="smt2", cores=((0, 0),), sockets=2, cores_per_socket=4,
                         threads_per_core=2, cpus=2))
    return record(nodes=("smt1", "smt2"), node_count=2, cpus=6, resources=res, **kw)


def roundtrip(api: Api, mapped: Any) -> None:
    """Start then stop through the stand-in; both must be accepted."""
    assert mapped.start is not None
    started = api.start(mapped.start)
    assert started.status_code == 201, started.text
    if mapped.stop is not None:
        stopped = api.stop(mapped.stop)
        assert stopped.status_code == 200, stopped.text


@pytest.mark.parametrize("profile", list(PROFILES))
def test_smt_job_sends_all_sibling_threads(profile: str, apis: dict[str, Api]) -> None:
    mapped = map_job(smt_record(), make_site(profile))
    assert mapped.start is not None
    assert mapped.start["resources"] == [
        {"hostname": "smt1", "hwthreads": [1, 6, 9, 14]},
        {"hostname": "smt2", "hwthreads": [0, 8]},
    ]
    assert mapped.start["numHwthreads"] == 6
    assert mapped.warnings == ()
    roundtrip(apis[profile], mapped)
    row = apis[profile].rows(mapped.job_id, "testcluster")[0]
    assert row.resources == mapped.start["resources"]
    assert row.job_state == "completed"


def test_smt_fallback_is_logged_once_per_host(caplog: pytest.LogCaptureFixture) -> None:
    site = make_site(topology=False)
    with caplog.at_level(logging.INFO, logger="cc_slurm_adapter.mapping"):
        first = map_job(smt_record(), site)
        second = map_job(smt_record(), site)
    assert first.start is not None
    assert first.start["resources"][0]["hwthreads"] == [1, 6, 9, 14]  # same as cc-backend's
    assert any("smt1" in w and "arithmetic" in w for w in first.warnings)
    assert any("smt1" in w for w in second.warnings)  # every job says it ...
    assert sum("smt1: hwthreads" in r.getMessage() for r in caplog.records) == 1  # logged once


@pytest.mark.parametrize("profile", list(PROFILES))
def test_profile_keys(profile: str, apis: dict[str, Api]) -> None:
    mapped = map_job(record(shared="exclusive"), make_site(profile))
    start = mapped.start
    assert start is not None
    if profile == "v1.5":
        assert start["shared"] == "none" and "exclusive" not in start
        assert start["submitTime"] == T0 - 10 and start["requestedMemory"] == 1000
    else:
        assert start["exclusive"] == 1 and "shared" not in start
        assert "submitTime" not in start and "requestedMemory" not in start
    assert set(start) <= PROFILES[profile].start_keys
    assert "energy" not in start and "tags" not in start and "jobState" not in start
    assert start["metaData"]["jobName"] == "job"
    assert start["metaData"]["slurmInfo"].startswith(f"JobId={mapped.job_id} JobName=job")
    roundtrip(apis[profile], mapped)


@pytest.mark.parametrize(("shared", "v15", "exclusive"), [
    ("exclusive", "none", 1), ("user", "single_user", 2), ("oversubscribe", "multi_user", 0),
    ("mcs", "multi_user", 0), ("topo", "none", 1), (None, "multi_user", 0)])
def test_sharing(shared: str | None, v15: str, exclusive: int) -> None:
    rec = record(shared=shared)
    assert map_job(rec, make_site("v1.5")).start["shared"] == v15  # type: ignore[index]
    assert map_job(rec, make_site("v1.4")).start["exclusive"] == exclusive  # type: ignore[index]


@pytest.mark.parametrize("profile", list(PROFILES))
def test_tags_only_when_enabled(profile: str, apis: dict[str, Api]) -> None:
    off = map_job(record(), make_site(profile))
    assert off.start is not None and "tags" not in off.start
    on = map_job(record(), make_site(profile, send_tags=True))
    assert on.start is not None
    tag = on.start["tags"][0]
    assert tag["type"] == "qos" and tag["name"] == "normal"
    assert ("scope" in tag) == (profile != "v1.3")
    roundtrip(apis[profile], on)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_ignore_hosts_drops_nodes_and_adjusts_counts(profile: str,
                                                    apis: dict[str, Api]) -> None:
    res = (NodeResources(hostname="node1", cores=((0, 0),), sockets=1, cores_per_socket=2,
                         gpus=(GpuAlloc(index=0),)),
           # node2 is the testbed's SMT node: 2 sockets x 2 cores x 2 threads.
           NodeResources(hostname="node2", cores=((0, 0), (0, 1)), sockets=2,
                         cores_per_socket=2, threads_per_core=2, gpus=(GpuAlloc(index=1),)))
    rec = record(nodes=("node1", "node2"), node_count=2, cpus=3, gpus=2, resources=res)
    mapped = map_job(rec, make_site(profile, ignore=r"^node1$"))
    assert mapped.start is not None
    assert mapped.start["numNodes"] == 1
    assert mapped.start["resources"] == [{"hostname": "node2", "hwthreads": [0, 1, 4, 5],
                                          "accelerators": ["00000000:02:00.0"]}]
    assert mapped.start["numHwthreads"] == 4 and mapped.start["numAcc"] == 1
    assert any("ignoreHosts" in w for w in mapped.warnings)
    roundtrip(apis[profile], mapped)


def test_all_hosts_ignored_is_a_skip(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cc_slurm_adapter.mapping"):
        mapped = map_job(record(nodes=("node1", "node2")), make_site(ignore="^node"))
    assert mapped.start is None and mapped.stop is None
    assert mapped.skip_reason and "ignoreHosts" in mapped.skip_reason
    assert mapped.warnings[0] == mapped.skip_reason
    assert any("skipped" in r.getMessage() for r in caplog.records)


def test_pending_job_has_no_payloads_and_is_not_skipped() -> None:
    mapped = map_job(record(state="PENDING", start_time=None, end_time=None, nodes=()),
                     make_site())
    assert (mapped.start, mapped.stop, mapped.skip_reason, mapped.warnings) == (
        None, None, None, ())


def test_never_started_then_cancelled_is_skipped() -> None:
    # Slurm writes start == end for a job cancelled while pending, and no nodes
    rec = record(state="CANCELLED", start_time=T0, end_time=T0, nodes=())
    mapped = map_job(rec, make_site())
    assert mapped.start is None and mapped.stop is None
    assert mapped.skip_reason and "never started" in mapped.skip_reason


def test_running_job_has_start_only() -> None:
    mapped = map_job(record(state="RUNNING", end_time=None), make_site())
    assert mapped.start is not None and mapped.stop is None


def test_completing_stays_running() -> None:
    mapped = map_job(record(state="COMPLETED", state_flags=("COMPLETING",)), make_site())
    assert mapped.start is not None and mapped.stop is None


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize(("state", "source"), [
    *((s, src) for s in ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY",
                         "PREEMPTED", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "REVOKED")
      for src in ("squeue", "sacct")),
    # sacct's stored run states: that run ended (slurmctld: pending again / still running)
    ("REQUEUED", "sacct"), ("SPECIAL_EXIT", "sacct"), ("RESIZING", "sacct")])
def test_every_state_is_accepted_on_stop(state: str, source: str, profile: str,
                                         apis: dict[str, Api]) -> None:
    mapped = map_job(record(state=state, source=source), make_site(profile))
    assert mapped.stop is not None
    assert mapped.stop["jobState"] in PROFILES[profile].job_states
    roundtrip(apis[profile], mapped)
    row = apis[profile].rows(mapped.job_id, "testcluster")[0]
    assert row.job_state == mapped.stop["jobState"]


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize(("state", "flags"), [
    ("REQUEUED", ()), ("PENDING", ("REQUEUED",)), ("SPECIAL_EXIT", ()),
    ("RESIZING", ()), ("RUNNING", ("RESIZING",)), ("WEIRD_NEW_STATE", ()), ("UNKNOWN", ())])
def test_ctld_requeue_resize_and_unknown_give_no_stop(state: str, flags: tuple[str, ...],
                                                      profile: str) -> None:
    mapped = map_job(record(state=state, state_flags=flags, source="squeue"),
                     make_site(profile))
    assert mapped.stop is None
    assert mapped.skip_reason is None  # not "never": the daemon asks again


@pytest.mark.parametrize("profile", list(PROFILES))
# (None, 30): slurmdbd's elapsed of a record without an end is now - start, not a duration
@pytest.mark.parametrize(("end", "elapsed"), [(None, None), (0, None), (None, 0), (None, 30)])
def test_ended_without_end_time_gives_no_stop(profile: str, end: int | None,
                                              elapsed: int | None) -> None:
    mapped = map_job(record(end_time=end, elapsed_s=elapsed, state="CANCELLED",
                            source="sacct"), make_site(profile))
    assert mapped.start is not None and mapped.stop is None
    assert any("end time not known yet" in w for w in mapped.warnings)


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize(("end", "elapsed"), [(T0 - 50, None), (T0, None), (T0 + 30, 30)])
def test_stop_time_never_before_start(profile: str, end: int | None, elapsed: int | None,
                                      apis: dict[str, Api]) -> None:
    mapped = map_job(record(end_time=end, elapsed_s=elapsed, state="CANCELLED"),
                     make_site(profile))
    assert mapped.stop is not None
    stop, start = mapped.stop["stopTime"], mapped.stop["startTime"]
    if profile == "v1.5":
        assert stop >= start
    else:
        assert stop > start
    if elapsed:
        assert stop == start + elapsed
    roundtrip(apis[profile], mapped)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_stop_closes_exactly_the_started_run(profile: str, apis: dict[str, Api]) -> None:
    api = apis[profile]
    job_id = next(_ids)
    first = map_job(record(job_id=job_id, start_time=T0, end_time=T0 + 100), make_site(profile))
    # the same job id runs again more than a day later (ids wrap, or a late requeue)
    later = T0 + 2 * 86400
    second = map_job(record(job_id=job_id, start_time=later, end_time=later + 100,
                            state="FAILED"), make_site(profile))
    assert first.start and second.start and first.stop and second.stop
    assert api.start(first.start).status_code == 201
    api.standin.commit_cache()
    assert api.start(second.start).status_code == 201
    api.standin.commit_cache()
    assert api.stop(first.stop).status_code == 200  # names the first run by startTime
    rows = {r.start_time: r.job_state for r in api.rows(job_id, "testcluster")}
    assert rows == {T0: "completed", later: "running"}
    assert api.stop(second.stop).status_code == 200
    rows = {r.start_time: r.job_state for r in api.rows(job_id, "testcluster")}
    assert rows == {T0: "completed", later: "failed"}


def test_cluster_override_and_missing_cluster() -> None:
    rec = record(cluster=None)
    assert map_job(rec, make_site()).skip_reason == \
        "no cluster name (Slurm gave none; use --cluster)"
    mapped = map_job(rec, make_site(cluster="testcluster"))
    assert mapped.start is not None and mapped.start["cluster"] == "testcluster"
    assert mapped.stop is not None and mapped.stop["cluster"] == "testcluster"


def test_missing_user_uses_uid_or_skips() -> None:
    mapped = map_job(record(user=None, user_id=4242), make_site())
    assert mapped.start is not None and mapped.start["user"] == "4242"
    assert map_job(record(user=None, user_id=None), make_site()).skip_reason == "no user name"


def test_array_task_and_meta() -> None:
    rec = record(array_job_id=77, array_task_id=3, batch_script="#!/bin/sh\nsleep 1\n",
                 name=None, unlimited_time=True, time_limit_min=None)
    start = map_job(rec, make_site()).start
    assert start is not None
    assert start["arrayJobId"] == 77
    assert start["metaData"]["jobScript"] == "#!/bin/sh\nsleep 1\n"
    assert start["metaData"]["jobName"] == ""
    assert "ArrayJobId=77 ArrayTaskId=3" in start["metaData"]["slurmInfo"]
    assert "walltime" not in start


def test_stop_payload_uses_the_start_time_that_was_sent() -> None:
    rec = record(start_time=T0 + 5)
    got = stop_payload(rec, make_site(), start_time=T0)
    assert got.stop == {"jobId": rec.job_id, "cluster": "testcluster", "startTime": T0,
                        "stopTime": T0 + 600, "jobState": "completed"}
    assert stop_payload(msgspec.structs.replace(rec, start_time=None),
                        make_site()).skip_reason


def test_gpu_fallback_logged_once_per_host(caplog: pytest.LogCaptureFixture) -> None:
    res = (NodeResources(hostname="smt1", gpus=(GpuAlloc(index=1),)),)
    rec = record(nodes=("smt1",), resources=res, gpus=1)
    with caplog.at_level(logging.INFO, logger="cc_slurm_adapter.mapping"):
        for _ in range(3):
            mapped = map_job(rec, make_site())
    assert mapped.start is not None
    assert mapped.start["resources"][0]["accelerators"] == ["1"]
    assert sum("gpuPciAddrs" in r.getMessage() for r in caplog.records) == 1


def test_host_unknown_to_ccbackend_is_a_skip_with_topology_only() -> None:
    rec = record(nodes=("stranger1",))
    mapped = map_job(rec, make_site())
    assert mapped.skip_reason == ("host stranger1 is in no sub-cluster of testcluster "
                                  "in cc-backend's cluster config")
    assert map_job(record(cluster="nowhere"), make_site()).skip_reason == (
        "cluster 'nowhere' is not in cc-backend's cluster config")
    assert map_job(rec, make_site(topology=False)).start is not None
    assert map_job(rec, make_site(check_hosts=False)).start is not None


def test_counts_out_of_int32_are_left_out() -> None:
    mapped = map_job(record(cpus=2**31), make_site())
    assert mapped.start is not None and "numHwthreads" not in mapped.start
    assert any("numHwthreads" in w for w in mapped.warnings)
