"""Property: for any record the parser can give, the mapper gives payloads the
stand-in accepts, or a skip with a reason, or nothing yet (not started). It never raises."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cc_slurm_adapter.mapping import map_job
from cc_slurm_adapter.profiles import PROFILES
from cc_slurm_adapter.slurm.record import GpuAlloc, JobRecord, NodeResources

from .conftest import Api, make_site

HOSTS = ["node1", "node2", "smt1", "smt2", "smt3", "smt4", "node1", "smt1", "stranger",
         "gpu1"]
STATES = ["COMPLETED", "RUNNING", "SUSPENDED", "COMPLETING", "PENDING", "CANCELLED",
          "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
          "OUT_OF_MEMORY", "REQUEUED", "RESIZING", "REVOKED", "SPECIAL_EXIT", "UNKNOWN",
          "SOMETHING_NEW"]
FLAGS = ["COMPLETING", "CONFIGURING", "REQUEUED", "STAGE_OUT", "SIGNALING", "RESIZING"]

text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30)
maybe_text = st.none() | text
epoch = st.integers(min_value=0, max_value=2**33)
small = st.none() | st.integers(min_value=0, max_value=64)

gpus = st.lists(st.builds(GpuAlloc, index=st.integers(0, 16), type=st.none() | st.just("a100"),
                          kind=st.sampled_from(["gpu", "shard", "mps"])), max_size=6)


@st.composite
def node(draw: st.DrawFn, hostname: str) -> NodeResources:
    sockets = draw(small)
    cps = draw(small)
    cores = draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40)), max_size=8))
    return NodeResources(
        hostname=hostname, cores=tuple(cores),
        cpu_ids=tuple(draw(st.lists(st.integers(0, 200), max_size=6))),
        sockets=sockets or None, cores_per_socket=cps or None,
        threads_per_core=draw(st.none() | st.integers(1, 4)),
        cpus=draw(st.none() | st.integers(0, 10_000)), gpus=tuple(draw(gpus)),
        memory_mb=draw(small))


@st.composite
def records(draw: st.DrawFn) -> JobRecord:
    # Half of the records are "plausible" (started, on a known cluster, with a user and
    # a host), so that many payloads reach the stand-in; the rest is anything.
    plausible = draw(st.booleans())
    hosts = draw(st.lists(st.sampled_from(HOSTS), unique=True, max_size=4,
                          min_size=1 if plausible else 0))
    with_resources = draw(st.booleans())
    resources = tuple(draw(node(h)) for h in hosts) if with_resources else ()
    started = st.integers(min_value=1, max_value=2**33)
    start = draw(started if plausible else st.one_of(st.none(), st.just(0), started))
    end = draw(st.none() | epoch | st.builds(lambda s, d: s + d, st.just(start or 0),
                                              st.integers(-1000, 10**6)))
    return JobRecord(
        source=draw(st.sampled_from(["sacct", "squeue", "scontrol", "slurmrestd"])),
        job_id=draw(st.integers(1, 2**32)),
        cluster="testcluster" if plausible else draw(
            st.sampled_from(["testcluster", None, "elsewhere"])),
        array_job_id=draw(st.none() | st.integers(0, 2**32)),
        array_task_id=draw(st.none() | st.integers(0, 1000)),
        user=draw(st.just("alice") if plausible else st.one_of(st.none(), st.just(""), text)),
        user_id=draw(st.none() | st.integers(0)),
        group=draw(maybe_text), account=draw(maybe_text), partition=draw(maybe_text),
        qos=draw(maybe_text), name=draw(maybe_text),
        submit_time=draw(st.none() | epoch), start_time=start, end_time=end,
        elapsed_s=draw(st.none() | st.integers(0, 10**7)),
        state=draw(st.sampled_from(STATES)),
        state_flags=draw(st.sampled_from([(), (), (), ()]) | st.tuples(st.sampled_from(FLAGS))),
        nodes=tuple(hosts), node_count=len(hosts) or None,
        cpus=draw(st.none() | st.integers(0, 2**32)), gpus=draw(st.none() | st.integers(0, 64)),
        resources=resources,
        requested_memory_mb=draw(st.none() | st.integers(0, 2**40)),
        time_limit_min=draw(st.none() | st.integers(0, 10**7)),
        unlimited_time=draw(st.booleans()),
        shared=draw(st.sampled_from([None, "exclusive", "user", "mcs", "topo",
                                     "oversubscribe", "weird"])),
        batch_script=draw(maybe_text), work_dir=draw(maybe_text), comment=draw(maybe_text),
        tres_alloc=draw(st.dictionaries(st.sampled_from(["cpu", "mem", "gres/gpu"]), text,
                                        max_size=3)),
    )


_ids = itertools.count(900_000_000)
SITES = {(p, tags, ignore): make_site(p, send_tags=tags, ignore=ignore)
         for p in PROFILES for tags in (False, True) for ignore in (None, "^node2$")}


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(record=records(), profile=st.sampled_from(list(PROFILES)), tags=st.booleans(),
       ignore=st.sampled_from([None, "^node2$"]))
def test_mapper_gives_accepted_payloads_or_a_reason(record: JobRecord, profile: str,
                                                    tags: bool, ignore: str | None,
                                                    apis: dict[str, Api]) -> None:
    mapped = map_job(record, SITES[(profile, tags, ignore)])  # must not raise
    if mapped.skip_reason is not None:
        assert mapped.start is None and mapped.stop is None
        assert mapped.warnings and mapped.warnings[0] == mapped.skip_reason
        return
    if mapped.start is None:
        assert mapped.stop is None  # not started yet: nothing at all
        return
    start: dict[str, Any] = dict(mapped.start, jobId=next(_ids))
    api = apis[profile]
    response = api.start(start)
    assert response.status_code == 201, (response.text, start)
    if mapped.stop is not None:
        stop = dict(mapped.stop, jobId=start["jobId"])
        assert stop["stopTime"] >= stop["startTime"] == start["startTime"]
        response = api.stop(stop)
        assert response.status_code == 200, (response.text, stop)
        (row,) = api.rows(start["jobId"], start["cluster"])
        assert row.job_state == stop["jobState"]


@settings(max_examples=300, deadline=None)
@given(record=records())
def test_mapper_without_topology_never_raises(record: JobRecord) -> None:
    for profile in PROFILES:
        mapped = map_job(record, make_site(profile, topology=False, gpus=False))
        assert (mapped.start is None) or mapped.start["numNodes"] == len(
            mapped.start["resources"]) >= 1
