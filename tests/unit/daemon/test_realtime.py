"""The real-time path (daemon/realtime.py) with hand-made records and a scripted Slurm.

Expected values come from the hand-made Slurm records (start and end times, states) and
from the contract (§5.1: a stop names the run by its startTime; §8.2: jobState is the
lower-cased Slurm state), never from the code under test.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

from cc_slurm_adapter.config import Config
from cc_slurm_adapter.daemon.engine import Engine, EngineSettings
from cc_slurm_adapter.daemon.realtime import MAX_IDS, Realtime, final_at_epilog, retry_delay
from cc_slurm_adapter.mapping import Site, reset_log_once
from cc_slurm_adapter.slurm.phase import Phase
from cc_slurm_adapter.slurm.record import JobRecord, NodeTopology, SlurmMeta
from cc_slurm_adapter.slurm.source import SlurmInfo
from cc_slurm_adapter.store import RunState, Store, open_store

from .fakeslurm import FIXTURES
from .test_engine import CLUSTER, claim_all, detail, rec

PROLOG, EPILOG = "prolog_slurmctld", "epilog_slurmctld"
START = 1_800_000_000
END = 1_800_000_042


class Counter:
    calls = 0


class FakeSource:
    """What the real-time path asks of a SlurmSource; answers come from ``ctld``."""

    def __init__(self, version: tuple[int, int, int]) -> None:
        major, minor, micro = version
        self.info = SlurmInfo(meta=SlurmMeta(release=f"{major}.{minor}.{micro}",
                                             major=major, minor=minor, micro=micro))
        self.runner = Counter()
        self.topology = {"node1": NodeTopology(hostname="node1", sockets=1,
                                               cores_per_socket=2, threads_per_core=1)}
        self.fetch_batch_scripts: bool | None = False
        self.ctld: dict[int, JobRecord] = {}
        self.detail_calls: list[list[int]] = []

    async def details(self, ids: Sequence[int]) -> list[JobRecord]:
        self.runner.calls += 1
        self.detail_calls.append(list(ids))
        await asyncio.sleep(0.001)
        return [self.ctld[i] for i in ids if i in self.ctld]

    async def refresh_topology(self) -> dict[str, NodeTopology]:
        self.runner.calls += 1
        return self.topology

    async def batch_scripts(self, jobs: Sequence[int | JobRecord]) -> dict[int, str]:
        self.runner.calls += 1
        return {}

    @property
    def wants_scripts(self) -> bool:
        return bool(self.fetch_batch_scripts)

    async def fit_topology(self, jobs: Sequence[JobRecord]) -> list[JobRecord]:
        if any(h not in self.topology for job in jobs for h in job.nodes):
            await self.refresh_topology()  # one node listing, as SlurmSource does
        return list(jobs)


@dataclass
class Sacct:
    """``sacct -j``: per job, the answers of successive calls (the last one repeats)."""

    source: FakeSource
    answers: dict[int, list[JobRecord | None]] = field(default_factory=dict)
    calls: list[tuple[float, list[int]]] = field(default_factory=list)
    asked: dict[int, int] = field(default_factory=dict)

    async def __call__(self, source: Any, ids: Sequence[int]) -> list[JobRecord]:
        self.source.runner.calls += 1
        self.calls.append((time.monotonic(), list(ids)))
        await asyncio.sleep(0.001)
        out = []
        for i in ids:
            seq = self.answers.get(i, [None])
            n = self.asked.get(i, 0)
            self.asked[i] = n + 1
            got = seq[min(n, len(seq) - 1)]
            if got is not None:
                out.append(got)
        return out

    def set(self, job_id: int, answers: list[JobRecord | None]) -> None:
        self.answers[job_id] = answers
        self.asked[job_id] = 0


@dataclass
class Cluster:
    name: str
    source: FakeSource


class Host:
    """The parts of loop.Daemon the real-time path uses, with a real store and engine."""

    def __init__(self, store: Store, engine: Engine, source: FakeSource,
                 config: Config) -> None:
        self.store, self.engine, self.config = store, engine, config
        self.clusters = [Cluster(CLUSTER, source)]
        self.wake_drain = asyncio.Event()
        self.wake_poll = asyncio.Event()
        self.stopping = asyncio.Event()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "state.db")
    yield s
    s.close()


@pytest.fixture
def engine(store: Store) -> Engine:
    reset_log_once()
    return Engine(store, lambda c: Site(cluster=c),
                  settings=EngineSettings(provisional_wait_s=600))


def make(store: Store, engine: Engine, version: tuple[int, int, int] = (24, 11, 5), *,
         retries: int = 10, delay: int = 1) -> tuple[Realtime, Host, FakeSource, Sacct]:
    source = FakeSource(version)
    sacct = Sacct(source)
    host = Host(store, engine, source, Config(cc_rest_url="http://cc.invalid",
                                              cc_rest_jwt="x", slurm_max_retries=retries,
                                              slurm_query_delay=delay))
    return Realtime(cast(Any, host), sacct), host, source, sacct


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def kinds(store: Store) -> list[tuple[str, int, dict[str, Any]]]:
    return [(k, p["jobId"], p) for k, p in claim_all(store)]


def running(job_id: int) -> JobRecord:
    return rec(job_id, start=START)


def ctld_running(job_id: int) -> JobRecord:
    # 24.11.5 at PrologSlurmctld time: ["RUNNING", "CONFIGURING"]
    return detail(job_id, start=START, state_flags=("CONFIGURING",))


# --------------------------------------------------------------------------- batching

async def test_a_burst_of_prologs_is_one_round_of_two_calls(store: Store,
                                                            engine: Engine) -> None:
    rt, host, source, sacct = make(store, engine)
    for j in range(100, 120):
        source.ctld[j] = ctld_running(j)
        sacct.answers[j] = [running(j)]
    task = asyncio.create_task(rt.run_forever())
    try:
        for j in range(100, 120):
            rt.event(j, PROLOG)
        await until(lambda: not rt.starts)
    finally:
        host.stopping.set()
        rt.wake.set()
        await task
    assert rt.rounds == 1 and source.runner.calls == 2
    assert len(sacct.calls) == 1 and sorted(sacct.calls[0][1]) == list(range(100, 120))
    assert source.detail_calls == [list(range(100, 120))]
    assert host.wake_drain.is_set()
    sent = kinds(store)
    assert sorted(j for k, j, _ in sent if k == "start") == list(range(100, 120))
    for _, _, payload in sent:
        assert payload["startTime"] == START
        # the slurmctld detail's CPU ids made it into the start (no start without them)
        assert payload["resources"][0]["hwthreads"] == [0, 1]


async def test_a_thousand_task_array_costs_a_bounded_number_of_calls(
        store: Store, engine: Engine) -> None:
    rt, _host, source, sacct = make(store, engine)
    ids = list(range(5000, 6200))
    for j in ids:
        source.ctld[j] = ctld_running(j)
        sacct.answers[j] = [running(j)]
    for j in ids:
        rt.event(j, PROLOG)
    while rt.starts:
        await rt.round()
    # 1,200 ids, at most MAX_IDS per -j list: 3 rounds of sacct + details
    assert rt.rounds == -(-len(ids) // MAX_IDS) == 3
    assert source.runner.calls == 6
    assert max(len(ids) for _, ids in sacct.calls) <= MAX_IDS
    assert len([k for k, _, _ in kinds(store) if k == "start"]) == len(ids)


# --------------------------------------------------------------------------- retry

def test_retry_delays_first_try_immediate_then_short_backoff() -> None:
    assert retry_delay(0) == 0.0
    assert [retry_delay(n) for n in (1, 2, 3)] == [0.05, 0.1, 0.2]
    assert retry_delay(20) == 1.0


async def test_no_sacct_record_yet_is_asked_again_at_once_then_backed_off(
        store: Store, engine: Engine) -> None:
    rt, host, source, sacct = make(store, engine)
    source.ctld[7] = ctld_running(7)
    sacct.answers[7] = [None, None, running(7)]  # slurmdbd has it on the third ask
    task = asyncio.create_task(rt.run_forever())
    try:
        t0 = time.monotonic()
        rt.event(7, PROLOG)
        await until(lambda: not rt.starts)
    finally:
        host.stopping.set()
        rt.wake.set()
        await task
    times = [t - t0 for t, _ in sacct.calls]
    assert len(times) == 3
    assert times[0] < 0.04  # no blind sleep before the first try
    assert 0.04 <= times[1] - times[0] < 0.5 and times[2] - times[1] >= 0.09
    sent = kinds(store)
    assert [(k, j) for k, j, _ in sent] == [("start", 7)]
    assert not host.wake_poll.is_set()


async def test_gives_up_after_retries_times_delay_and_wakes_the_poll(
        store: Store, engine: Engine) -> None:
    rt, host, source, _sacct = make(store, engine, retries=1, delay=1)
    source.ctld[8] = ctld_running(8)
    task = asyncio.create_task(rt.run_forever())
    try:
        t0 = time.monotonic()
        rt.event(8, PROLOG)
        await until(lambda: host.wake_poll.is_set(), timeout=5)
        took = time.monotonic() - t0
    finally:
        host.stopping.set()
        rt.wake.set()
        await task
    assert 0.9 <= took < 2.5 and not rt.starts and rt.given_up == 1
    assert kinds(store) == []
    # the snapshot is kept: the poll finds slurmctld's resources in the store
    run = store.runs_of(CLUSTER, 8)[0]
    assert run.state is RunState.SEEN and run.snapshot_rank is not None


async def test_provisional_placeholder_at_prolog_sends_nothing_until_final(
        store: Store, engine: Engine) -> None:
    rt, _host, source, sacct = make(store, engine, version=(22, 5, 8))
    source.ctld[9] = ctld_running(9)
    # 22.05.8's placeholder record (testbed README): provisional, then the real one
    sacct.answers[9] = [rec(9, start=START, provisional=True), running(9)]
    rt.event(9, PROLOG)
    await rt.round()
    assert kinds(store) == [] and 9 in rt.starts
    rt.starts[9].due = 0
    await rt.round()
    assert [(k, j) for k, j, _ in kinds(store)] == [("start", 9)] and not rt.starts


async def test_running_without_slurmctld_detail_is_not_started_without_hwthreads(
        store: Store, engine: Engine) -> None:
    rt, _host, source, sacct = make(store, engine)
    sacct.answers[10] = [running(10)]
    rt.event(10, PROLOG)
    await rt.round()
    assert kinds(store) == [] and 10 in rt.starts
    source.ctld[10] = ctld_running(10)
    rt.starts[10].due = 0
    await rt.round()
    sent = kinds(store)
    assert [(k, j) for k, j, _ in sent] == [("start", 10)]
    assert sent[0][2]["resources"][0]["hwthreads"] == [0, 1]


# --------------------------------------------------------------------------- epilog

async def _started(rt: Realtime, source: FakeSource, sacct: Sacct, job_id: int,
                   **kw: Any) -> None:
    source.ctld[job_id] = detail(job_id, start=START, state_flags=("CONFIGURING",), **kw)
    sacct.set(job_id, [rec(job_id, start=START, **kw)])
    rt.event(job_id, PROLOG)
    await rt.round()
    assert not rt.starts


async def test_completing_at_epilog_on_22_05_takes_state_and_end_from_sacct(
        store: Store, engine: Engine) -> None:
    rt, _host, source, sacct = make(store, engine, version=(22, 5, 8))
    await _started(rt, source, sacct, 11)
    claim_all(store)
    # 22.05: slurmctld prints COMPLETING alone; slurmdbd has no end yet, then COMPLETED
    source.ctld[11] = detail(11, state="COMPLETING", start=START, end=END)
    sacct.set(11, [running(11), rec(11, "COMPLETED", Phase.ENDED, start=START, end=END)])
    source.detail_calls.clear()
    rt.event(11, EPILOG)
    await rt.round()
    assert kinds(store) == [] and 11 in rt.ends
    assert source.detail_calls == []  # before 23.11 slurmctld cannot tell the end
    rt.ends[11].due = 0
    await rt.round()
    assert [(k, p) for k, _, p in kinds(store)] == [("stop", {
        "jobId": 11, "cluster": CLUSTER, "startTime": START, "stopTime": END,
        "jobState": "completed"})]
    assert not rt.ends


async def test_epilog_on_24_11_takes_slurmctlds_final_base_state(
        store: Store, engine: Engine) -> None:
    rt, _host, source, sacct = make(store, engine)
    await _started(rt, source, sacct, 12)
    claim_all(store)
    # 24.11.5 at EpilogSlurmctld time: ["FAILED", "COMPLETING"]; sacct not final yet
    source.ctld[12] = detail(12, state="FAILED", state_flags=("COMPLETING",),
                             phase=Phase.RUNNING, start=START, end=END)
    sacct.set(12, [running(12)])
    rt.event(12, EPILOG)
    await rt.round()
    assert [(k, p) for k, _, p in kinds(store)] == [("stop", {
        "jobId": 12, "cluster": CLUSTER, "startTime": START, "stopTime": END,
        "jobState": "failed"})]
    assert not rt.ends


def test_final_at_epilog_needs_a_final_base_and_only_completing() -> None:
    base = detail(1, start=START, end=END, phase=Phase.RUNNING)
    ended = final_at_epilog(msgspec.structs.replace(
        base, state="COMPLETED", state_flags=("COMPLETING",)))
    assert ended is not None and ended.phase is Phase.ENDED
    # ≤ 23.02's single name: no base, no end from slurmctld
    assert final_at_epilog(msgspec.structs.replace(base, state="COMPLETING")) is None
    assert final_at_epilog(msgspec.structs.replace(
        base, state="COMPLETED", state_flags=("COMPLETING", "STAGE_OUT"))) is None
    assert final_at_epilog(msgspec.structs.replace(
        base, state="COMPLETED", end_time=None, state_flags=("COMPLETING",))) is None


async def test_unknown_state_at_epilog_gives_no_stop(store: Store, engine: Engine) -> None:
    rt, _host, source, sacct = make(store, engine)
    await _started(rt, source, sacct, 13)
    claim_all(store)
    source.ctld[13] = detail(13, state="WEIRD", phase=Phase.UNKNOWN, start=START, end=END)
    sacct.set(13, [rec(13, "UNKNOWN", Phase.UNKNOWN, start=START, end=END)])
    rt.event(13, EPILOG)
    await rt.round()
    assert kinds(store) == [] and 13 in rt.ends


async def test_epilog_without_prolog_sends_start_then_stop(store: Store,
                                                           engine: Engine) -> None:
    rt, _host, source, sacct = make(store, engine)
    source.ctld[14] = detail(14, state="COMPLETED", state_flags=("COMPLETING",),
                             phase=Phase.RUNNING, start=START, end=END)
    sacct.answers[14] = [rec(14, "COMPLETED", Phase.ENDED, start=START, end=END)]
    rt.event(14, EPILOG)
    await rt.round()
    sent = kinds(store)
    assert [(k, j) for k, j, _ in sent] == [("start", 14), ("stop", 14)]
    assert sent[0][2]["resources"][0]["hwthreads"] == [0, 1]  # the epilog's detail


# --------------------------------------------------------------------------- with the poll

async def test_the_poll_afterwards_makes_no_second_run_start_or_stop(
        store: Store, engine: Engine) -> None:
    rt, _host, source, sacct = make(store, engine)
    await _started(rt, source, sacct, 15)
    first = kinds(store)
    assert [(k, j) for k, j, _ in first] == [("start", 15)]
    # the next poll sees the same job: sacct's window record and slurmctld's details
    with store.transaction():
        report = engine.apply(CLUSTER, [running(15)], details=[detail(15, start=START)],
                              live={15: "RUNNING"})
    assert report.starts == 0 and kinds(store) == []
    # the epilog, then the poll with the final record
    sacct.set(15, [rec(15, "COMPLETED", Phase.ENDED, start=START, end=END)])
    rt.event(15, EPILOG)
    await rt.round()
    assert [k for k, _, _ in kinds(store)] == ["stop"]
    with store.transaction():
        report = engine.apply(CLUSTER, [rec(15, "COMPLETED", Phase.ENDED, start=START,
                                            end=END)], live={})
    assert (report.starts, report.stops) == (0, 0) and kinds(store) == []
    assert len(store.runs_of(CLUSTER, 15)) == 1


async def test_a_requeue_within_24h_is_not_started_by_the_event(
        store: Store, engine: Engine) -> None:
    rt, _host, source, sacct = make(store, engine)
    await _started(rt, source, sacct, 16, restart_count=0)
    claim_all(store)
    later = START + 600
    # requeued: the new run starts 600 s later (restart count 1)
    source.ctld[16] = detail(16, start=later, restart_count=1)
    sacct.set(16, [rec(16, start=later, restart_count=1)])
    rt.event(16, PROLOG)
    await rt.round()
    sent = kinds(store)
    assert all(k != "start" for k, _, _ in sent)  # cc-backend would answer 422
    states = {r.start_time: r.state for r in store.runs_of(CLUSTER, 16)}
    assert states[later] is RunState.UNREPRESENTABLE
    assert not rt.starts  # settled: the engine has decided


# --------------------------------------------------------------------------- in the Daemon

@pytest.fixture
def standin() -> Iterator[Any]:
    from cc_slurm_adapter.testing.ccbackend import StandIn

    reset_log_once()
    with StandIn(commit_interval=0.2) as server:
        yield server


async def test_hook_event_reaches_the_standin_without_a_poll(tmp_path: Path,
                                                             standin: Any) -> None:
    """Daemon.hook_event → the real-time path → the outbox → the stand-in, with the
    recorded 24.11 outputs behind a real SlurmSource (running1: jobs 1-4 run)."""
    from .fakeslurm import FakeSlurm
    from .test_loop import Harness

    h = Harness(tmp_path, standin, FakeSlurm("24.11", "running1"))
    daemon = await h.open()
    try:
        before = h.slurm.runner.calls
        for job_id in (1, 2, 3):
            daemon.hook_event(job_id, PROLOG)
        assert not daemon.wake_poll.is_set() and daemon._hook_timer is None
        await daemon.realtime.round()
        calls = h.slurm.runner.argvs[before:]
        # one sacct -j and one squeue --json -j for the three (nodes known since setup,
        # else one node listing first)
        assert sorted(a[0] for a in calls if a[0] != "scontrol") == ["sacct", "squeue"]
        assert daemon.wake_drain.is_set()
        await h.drain_all()
        doc = json.loads((FIXTURES / "24.11" / "sacct_running1.json").read_bytes())
        want = {j["job_id"]: j["time"]["start"] for j in doc["jobs"]}
        rows = {r.job_id: r for r in h.si.jobs()}
        assert sorted(rows) == [1, 2, 3]
        for job_id, row in rows.items():
            assert row.start_time == want[job_id]  # sacct's start, as the poll sends it
            assert all(r.get("hwthreads") for r in row.resources)
        # the poll afterwards: same runs, nothing sent twice
        await h.cycle()
        await h.drain_all()
        assert h.si.check(None).duplicates == []
        assert len(h.si.jobs()) == 4  # job 4 arrives with the poll
        # an event without a context still brings the poll forward
        daemon.hook_event(4, "")
        assert daemon._hook_timer is not None
    finally:
        await h.close()
