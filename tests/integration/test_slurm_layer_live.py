"""The Slurm layer against real Slurm, on every live release of the testbed.

A mix of jobs (single node, two nodes, a GPU job, a failing job, a cancelled job, a
timeout, an array) is submitted at once to each release and read back through our own
code path only: :class:`CommandRunner` with the release's wrapper commands,
:func:`detect_slurm`, :meth:`SlurmSource.cycle` polled until every job has ended (the
slurmctld details, GPU indices included, are captured by the cycle while the jobs run),
and :func:`parse_jobs` / the text parsers underneath. Every record is then compared field
by field with what the job asked for.

All releases run their mix at the same time (one thread each, started by the first test
that needs one); the TIMEOUT job (``-t 1``, ends 60–90 s after its start) sets the wall
time, the other jobs run beside it. Placement is pinned (``-w``) so node names, CPU counts
(node1: 2 cores, no SMT; node2: 2×2 cores × 2 threads, so one task gets a whole core =
2 CPUs) and GPU indices (the GPU job takes both GPUs of node2) are known in advance,
whatever else runs on the cluster.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from cc_slurm_adapter.errors import SlurmCommandError
from cc_slurm_adapter.slurm.record import ExitCode, JobRecord
from cc_slurm_adapter.slurm.runner import CommandRunner
from cc_slurm_adapter.slurm.source import SlurmInfo, SlurmSource, detect_slurm
from cc_slurm_adapter.testing.slurm_testbed import FINAL_STATES, SlurmTestbed

pytestmark = pytest.mark.slurm

RUN_TIMEOUT = 240.0  # the whole mix of one release, submit to last sacct record
POLL = 1.0  # seconds between cycles (the daemon's poll interval, shortened)
MAX_CALLS = 5  # sacct + squeue listing + topology + details + batch scripts
SETTLE = 4.0  # seconds without a change to a final sacct record before the run ends
MAX_FAILURES = 20  # consecutive failed cycles (controller restarting) before giving up


@dataclass(frozen=True)
class Ask:
    """One job of the mix: the sbatch arguments and what Slurm must report for it."""

    key: str
    args: tuple[str, ...]
    nodes: tuple[str, ...]
    cpus: int
    mem_mb: int
    mem_per_node: dict[str, int]
    time_limit: int | None  # minutes; None = UNLIMITED (the partition's MaxTime)
    state: str
    gpu_idx: dict[str, tuple[int, ...]] = field(default_factory=dict)
    tasks: tuple[int, ...] = ()  # array task ids

    @property
    def gpus(self) -> int:
        return sum(len(v) for v in self.gpu_idx.values())


# Submitted in this order: the long TIMEOUT job first, so it starts at once.
MIX: tuple[Ask, ...] = (
    Ask("timeout", ("-w", "node2", "-t", "1", "--mem-per-cpu=50", "--wrap", "sleep 300"),
        nodes=("node2",), cpus=2, mem_mb=100, mem_per_node={"node2": 100}, time_limit=1,
        state="TIMEOUT"),
    Ask("cancel", ("-w", "node2", "-t", "10", "--mem=64", "--wrap", "sleep 300"),
        nodes=("node2",), cpus=2, mem_mb=64, mem_per_node={"node2": 64}, time_limit=10,
        state="CANCELLED"),
    Ask("gpu", ("-w", "node2", "-t", "3", "--mem=300", "--gres=gpu:2", "--wrap", "sleep 12"),
        nodes=("node2",), cpus=2, mem_mb=300, mem_per_node={"node2": 300}, time_limit=3,
        state="COMPLETED", gpu_idx={"node2": (0, 1)}),
    Ask("twonode", ("-N", "2", "--ntasks-per-node=1", "-t", "00:07:00", "--mem-per-cpu=120",
                    "--wrap", "srun sleep 12"),
        nodes=("node1", "node2"), cpus=3, mem_mb=360, mem_per_node={"node1": 120, "node2": 240},
        time_limit=7, state="COMPLETED"),
    Ask("single", ("-w", "node1", "-n", "1", "-t", "5", "--mem=150", "--wrap", "sleep 12"),
        nodes=("node1",), cpus=1, mem_mb=150, mem_per_node={"node1": 150}, time_limit=5,
        state="COMPLETED"),
    Ask("array", ("-w", "node2", "--array=1-3", "--mem=80", "--wrap", "sleep 6"),
        nodes=("node2",), cpus=2, mem_mb=80, mem_per_node={"node2": 80}, time_limit=None,
        state="COMPLETED", tasks=(1, 2, 3)),
    Ask("fail", ("-w", "node2", "-t", "2", "--wrap", "exit 3"),
        nodes=("node2",), cpus=2, mem_mb=200, mem_per_node={"node2": 200}, time_limit=2,
        state="FAILED"),
)
ASK = {a.key: a for a in MIX}


@dataclass
class LiveRun:
    """Everything one release's run saw, for the tests to compare."""

    tb: SlurmTestbed
    info: SlurmInfo | None = None
    names: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)
    accounting: dict[int, JobRecord] = field(default_factory=dict)
    """Latest sacct record per job id (array tasks under their own ids)."""
    running: dict[int, JobRecord] = field(default_factory=dict)
    """The cycle's detail record per job id, captured while the job ran."""
    other_mode: dict[int, JobRecord] = field(default_factory=dict)
    """The same jobs through the other detail command (text vs squeue JSON)."""
    after: dict[int, JobRecord] = field(default_factory=dict)
    """slurmctld records after the end (within MinJobAge), through the detail call."""
    scripts: dict[int, str] | None = None
    cycle_calls: list[int] = field(default_factory=list)
    budget: tuple[int, int, int, int] | None = None
    """(calls, details) of a cycle with 1 running job to detail, then with all of them."""
    final_at: dict[int, float] = field(default_factory=dict)
    """When each job's sacct record first showed a final state (monotonic)."""
    refined: list[tuple[int, float, tuple[Any, ...], tuple[Any, ...]]] = field(
        default_factory=list)
    """(job id, seconds after its first final record, before, after): final records
    that Slurm still changed."""
    wall: float = 0.0
    log: list[str] = field(default_factory=list)

    def array_tasks(self) -> dict[int, JobRecord]:
        array_id = self.ids["array"]
        return {r.array_task_id: r for r in self.accounting.values()
                if r.array_job_id == array_id and r.array_task_id is not None}

    def ours(self, job: JobRecord) -> bool:
        return job.job_id in self.ids.values() or (
            "array" in self.ids and job.array_job_id == self.ids["array"])

    def key_of(self, job: JobRecord) -> str | None:
        for key, job_id in self.ids.items():
            if job.job_id == job_id or (key == "array" and job.array_job_id == job_id):
                return key
        return None


def _other_mode(info: SlurmInfo) -> str:
    return "scontrol-text" if info.squeue_json_filters else "squeue-json"


async def _run_mix(run: LiveRun) -> None:
    tb = run.tb
    runner = CommandRunner(timeout=60, env=tb.env, bin_dir=str(tb.bin_dir))
    info = run.info = await detect_slurm(runner)
    source = SlurmSource(runner, info)
    other = SlurmSource(CommandRunner(timeout=60, env=tb.env, bin_dir=str(tb.bin_dir)), info,
                        detail_mode=_other_mode(info))
    token = secrets.token_hex(3)
    window_start = time.time() - 10
    for ask in MIX:
        run.names[ask.key] = name = f"ccsa-live-{ask.key}-{token}"
        run.ids[ask.key] = await asyncio.to_thread(
            tb.submit, ["-J", name, "-A", tb.account, "-p", "debug", *ask.args])
    run.log.append(f"submitted {run.ids}")
    captured: set[int] = set()
    cancelled = False
    settled_at: float | None = None
    deadline = time.monotonic() + RUN_TIMEOUT
    failures = 0
    while True:
        try:
            # as the daemon will: ask again for scripts that slurmdbd did not have yet
            missing = [job for job in run.running.values() if job.batch_script is None]
            result = await source.cycle(window_start, time.time() + 5, captured=captured,
                                        scripts_wanted=missing)
        except SlurmCommandError as exc:
            # a colleague's test may reconfigure (24.11+: re-exec) this slurmctld: the
            # daemon would retry next cycle, and so do we, for up to MAX_FAILURES cycles
            failures += 1
            run.log.append(f"cycle failed: {exc}")
            if failures > MAX_FAILURES:
                raise
            await asyncio.sleep(POLL)
            continue
        failures = 0
        run.cycle_calls.append(result.calls)
        now = time.monotonic()
        refined_before = len(run.refined)
        for job in result.accounting:
            if run.ours(job):
                old = run.accounting.get(job.job_id)
                if old is not None and old.state in FINAL_STATES and _final_view(old) != \
                        _final_view(job):  # a final record that Slurm still changed
                    first = run.final_at.setdefault(job.job_id, now)
                    run.refined.append((job.job_id, round(now - first, 1),
                                        _final_view(old), _final_view(job)))
                elif job.state in FINAL_STATES:
                    run.final_at.setdefault(job.job_id, now)
                run.accounting[job.job_id] = job
        for job_id, script in result.scripts.items():
            if job_id in run.running and run.running[job_id].batch_script is None:
                run.running[job_id] = msgspec.structs.replace(run.running[job_id],
                                                              batch_script=script)
        new = []
        for job in result.details:
            captured.add(job.job_id)
            if run.ours(job):
                run.running[job.job_id] = job
                new.append(job.job_id)
        if new:
            for job in await other.details(new):
                run.other_mode[job.job_id] = job
        if not cancelled and run.ids["cancel"] in run.running:
            await asyncio.to_thread(tb.cancel, run.ids["cancel"], tb.user)
            cancelled = True
        if run.budget is None:
            try:
                await _measure_budget(run, info, window_start, result.live)
            except SlurmCommandError as exc:
                run.log.append(f"budget cycle failed: {exc}")
        if cancelled and _all_final(run):
            # the first final record can still change (exit code of a signalled job,
            # placeholder names): stop once no record changed for SETTLE seconds
            if settled_at is None or len(run.refined) > refined_before:
                settled_at = now
            if now - settled_at >= SETTLE:
                break
        if time.monotonic() > deadline:
            states = {r.job_id: (r.name, r.state) for r in run.accounting.values()}
            raise AssertionError(f"Slurm {tb.version}: jobs not final after {RUN_TIMEOUT:.0f}s:"
                                 f" {states}; captured running: {sorted(run.running)}")
        await asyncio.sleep(POLL)
    ids = sorted(r.job_id for r in run.accounting.values())
    run.after = {j.job_id: j for j in await source.details(ids)}
    run.scripts = await source.batch_scripts(list(run.accounting.values()))


async def _measure_budget(run: LiveRun, info: SlurmInfo, start: float,
                          live: dict[int, str]) -> None:
    """Calls of a first cycle with one running job to detail, then with all of them."""
    running = sorted(i for i, state in live.items() if state == "RUNNING")
    if len(running) < 3:
        return
    tb = run.tb
    counts: list[int] = []
    nothing: set[int] = set()
    for captured in (_AllBut(running[0]), nothing):
        source = SlurmSource(CommandRunner(timeout=60, env=tb.env, bin_dir=str(tb.bin_dir)), info)
        result = await source.cycle(start, time.time() + 5, captured=captured)
        counts += [result.calls, len(result.details)]
    run.budget = (counts[0], counts[1], counts[2], counts[3])


class _AllBut(Collection[int]):
    """Every job id except one: "the caller holds the resources of all jobs but one"."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id

    def __contains__(self, item: object) -> bool:
        return item != self.job_id

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _final_view(job: JobRecord) -> tuple[Any, ...]:
    code = job.exit_code
    return (job.state, job.name, job.nodes, job.end_time,
            None if code is None else (code.status, code.return_code, code.signal))


def _all_final(run: LiveRun) -> bool:
    for ask in MIX:
        if ask.tasks:
            tasks = run.array_tasks()
            if set(tasks) != set(ask.tasks) or any(
                    t.state not in FINAL_STATES or t.name != run.names["array"]
                    for t in tasks.values()):
                return False
            continue
        job = run.accounting.get(run.ids[ask.key])
        # the first final sacct record can be a placeholder ("allocation"): wait for the name
        if job is None or job.state not in FINAL_STATES or job.name != run.names[ask.key]:
            return False
    return True


class _LiveRuns:
    """One background run per selected release, started together on first use."""

    def __init__(self, clusters: Any) -> None:
        self.clusters = clusters
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        self._runs: dict[str, LiveRun] = {}
        self._errors: dict[str, BaseException] = {}

    def _work(self, release: str) -> None:
        try:
            tb = self.clusters.get(release)  # skips/fails like the slurm_cluster fixture
            run = self._runs[release] = LiveRun(tb=tb)
            t0 = time.monotonic()
            asyncio.run(_run_mix(run))
            run.wall = time.monotonic() - t0
        except BaseException as exc:  # re-raised in the test thread (skips too)
            self._errors[release] = exc

    def start(self) -> None:
        with self._lock:
            if self._threads:
                return
            for release in self.clusters.releases:
                thread = threading.Thread(target=self._work, args=(release,),
                                          name=f"live-{release}", daemon=True)
                self._threads[release] = thread
                thread.start()

    def get(self, release: str) -> LiveRun:
        self.start()
        self._threads[release].join(RUN_TIMEOUT + 120)
        if release in self._errors:
            raise self._errors[release]
        if release not in self._runs or self._threads[release].is_alive():
            raise AssertionError(f"the live run of Slurm {release} did not finish")
        return self._runs[release]

    def cleanup(self) -> None:
        for run in self._runs.values():
            for job_id in run.ids.values():
                run.tb.run("scancel", str(job_id), check=False)


@pytest.fixture(scope="session")
def _live_runs(_slurm_clusters: Any) -> Iterator[_LiveRuns]:
    runs = _LiveRuns(_slurm_clusters)
    yield runs
    runs.cleanup()


@pytest.fixture(scope="session")
def live(slurm_cluster: SlurmTestbed, _live_runs: _LiveRuns) -> LiveRun:
    run = _live_runs.get(slurm_cluster.release)
    print(f"\nSlurm {slurm_cluster.release}: live mix ran against {slurm_cluster.version} "
          f"in {run.wall:.0f}s, {len(run.cycle_calls)} cycles, calls per cycle "
          f"{min(run.cycle_calls)}-{max(run.cycle_calls)}")
    for line in run.log[1:]:
        print(f"  {line}")
    for job_id, delay, before, after in run.refined:
        print(f"  sacct changed the final record of job {job_id} {delay}s later: "
              f"{before} -> {after}")
    return run


# ------------------------------------------------------------------ comparisons


def _record(run: LiveRun, key: str) -> JobRecord:
    job = run.accounting.get(run.ids[key])
    assert job is not None, f"{key}: no sacct record"
    return job


BACKFILL_YEAR_MINUTES = 365 * 24 * 60


def _common(run: LiveRun, job: JobRecord, ask: Ask, *, live: bool) -> None:
    """Fields every record of ``ask`` must carry, sacct or slurmctld."""
    where = f"{job.source} record of {ask.key} job {job.job_id} (Slurm {run.tb.version})"
    got = {
        "user": job.user, "account": job.account, "partition": job.partition,
        "name": job.name, "cluster": job.cluster, "nodes": job.nodes,
        "node_count": job.node_count, "cpus": job.cpus, "mem": job.requested_memory_mb,
        "time_limit": job.time_limit_min, "unlimited": job.unlimited_time,
        "gpus": job.gpus or 0, "version": job.slurm_version,
    }
    want = {
        "user": run.tb.user, "account": run.tb.account, "partition": "debug",
        "name": run.names[ask.key], "cluster": run.tb.cluster, "nodes": ask.nodes,
        "node_count": len(ask.nodes), "cpus": ask.cpus, "mem": ask.mem_mb,
        "time_limit": ask.time_limit, "unlimited": ask.time_limit is None,
        "gpus": ask.gpus, "version": run.tb.version,
    }
    if ask.time_limit is None and "STARTED_ON_BACKFILL" in job.flags \
            and job.time_limit_min == BACKFILL_YEAR_MINUTES:
        # sched/backfill plans a job without a finite limit (partition MaxTime UNLIMITED)
        # at 365 days (YEAR_MINUTES, _set_backfill_timelimits) and a job it starts keeps
        # that limit in slurmdbd: seen once on 24.11.5 for an array task (flaky: only
        # when backfill, not the main scheduler, started it). It is Slurm's record.
        want.update(time_limit=BACKFILL_YEAR_MINUTES, unlimited=False)
    assert got == want, where
    assert job.submit_time is not None and job.start_time is not None, where
    assert job.submit_time <= job.start_time <= time.time(), where
    if live:
        # CONFIGURING: allocated, its PrologSlurmctld still running (seen on 22.05.8 when
        # the detail call came within the hook's run); nodes and CPUs are fixed already
        assert job.state in ("RUNNING", "CONFIGURING"), where
        assert job.end_time is None, where  # the expected end is not a fact
    else:
        assert job.state == ask.state, where
        assert job.end_time is not None and job.end_time >= job.start_time, where
        assert job.elapsed_s == job.end_time - job.start_time, where
    if ask.tasks:
        assert job.array_job_id == run.ids["array"], where
        assert job.array_task_id in ask.tasks, where
    else:
        assert (job.array_job_id, job.array_task_id) == (None, None), where
    assert not job.warnings, (where, job.warnings)


def _check_live(run: LiveRun, job: JobRecord, ask: Ask) -> None:
    """A slurmctld record captured while the job ran: per-node resources and GPUs."""
    where = f"{job.source} record of {ask.key} job {job.job_id} (Slurm {run.tb.version})"
    _common(run, job, ask, live=True)
    assert [r.hostname for r in job.resources] == list(ask.nodes), where
    gpus = {r.hostname: tuple(g.index for g in r.gpus) for r in job.resources if r.gpus}
    assert gpus == ask.gpu_idx, where
    assert all(g.type == "tesla" and g.kind == "gpu" for r in job.resources for g in r.gpus)
    memory = {r.hostname: r.memory_mb for r in job.resources}
    assert memory == ask.mem_per_node, where
    if job.source == "scontrol":  # text: CPU_IDs per node
        assert sum(len(r.cpu_ids) for r in job.resources) == ask.cpus, where
    if all(r.cpus is not None for r in job.resources):
        assert sum(r.cpus or 0 for r in job.resources) == ask.cpus, where
    if job.source != "scontrol":  # JSON: (socket, core) pairs; a core = 2 CPUs on node2
        cores = sum(len(r.cores) * (2 if r.hostname == "node2" else 1) for r in job.resources)
        assert cores == ask.cpus, where
    acct = run.accounting[job.job_id]  # the same job as slurmdbd saw it
    assert (job.submit_time, job.start_time) == (acct.submit_time, acct.start_time), where
    assert job.user_id is not None and job.batch_host == ask.nodes[0], where


# sacct's exit code by final state (FAILED: see test_failing_job). A job ended by a
# signal (scancel, time limit) reads SIGNALED/15 once its batch step's status reached
# slurmdbd and SUCCESS/0 before – for minutes, or for good (seen on all three releases:
# `4361 CANCELLED 0:0` beside `4361.batch CANCELLED 0:15`): the state is the truth.
Exit = tuple[str | None, int | None, int | None]
SIGNALLED: set[Exit] = {("SIGNALED", None, 15), ("SUCCESS", 0, None)}
EXIT: dict[str, set[Exit]] = {"COMPLETED": {("SUCCESS", 0, None)}, "TIMEOUT": SIGNALLED,
                              "CANCELLED": SIGNALLED}


def _check_job(run: LiveRun, key: str) -> JobRecord:
    ask = ASK[key]
    job = _record(run, key)
    assert job.source == "sacct"
    _common(run, job, ask, live=False)
    code = job.exit_code
    assert code is not None
    if ask.state in EXIT:
        assert (code.status, code.return_code, code.signal) in EXIT[ask.state], job.job_id
    return job


# ------------------------------------------------------------------ tests


def test_detection(live: LiveRun) -> None:
    info = live.info
    assert info is not None
    assert info.meta.release == live.tb.version
    assert info.cluster_name == live.tb.cluster
    assert info.job_script_stored is not None  # read from `scontrol show config`
    if info.version >= (23, 11, 0):
        # `sacct --json=list` (one "data_parser/v0.0.4x" per line): the newest is pinned
        assert info.parsers and info.pin == info.parsers[-1] == info.meta.data_parser
        assert info.json_flag == f"--json={info.pin}"
    else:
        assert (info.parsers, info.pin, info.json_flag) == ((), None, "--json")
        assert not info.has_scontrol_json and not info.squeue_json_filters
    print(f"Slurm {live.tb.version}: parsers {info.parsers}, pin {info.pin}")


def test_detail_path_per_release(live: LiveRun) -> None:
    """22.05 reads details from `scontrol show job -d -o` text, 24.11+ from squeue --json -j."""
    want = "scontrol" if live.tb.release == "22.05" else "squeue"
    assert {j.source for j in live.running.values()} == {want}


@pytest.mark.parametrize("key", ["single", "twonode", "gpu", "timeout", "cancel"])
def test_running_job_detail(live: LiveRun, key: str) -> None:
    """The cycle's detail call saw the job running, with its nodes, CPUs, memory, GPUs."""
    job = live.running.get(live.ids[key])
    assert job is not None, f"{key}: never captured while running"
    _check_live(live, job, ASK[key])


def test_single_node_job(live: LiveRun) -> None:
    job = _check_job(live, "single")
    assert job.exit_code is not None
    assert (job.exit_code.status, job.exit_code.return_code) == ("SUCCESS", 0)


def test_two_node_job(live: LiveRun) -> None:
    job = _check_job(live, "twonode")
    assert job.nodes == ("node1", "node2") and job.node_count == 2


def test_gpu_job(live: LiveRun) -> None:
    job = _check_job(live, "gpu")
    assert job.gpus == 2
    assert job.tres_alloc.get("gres/gpu") == "2"
    assert job.tres_alloc.get("gres/gpu:tesla") == "2"
    # GPU indices are only known to slurmctld while the job runs: sacct has none
    assert job.resources == ()
    live_job = live.running[live.ids["gpu"]]
    assert {r.hostname: [g.index for g in r.gpus] for r in live_job.resources} == {
        "node2": [0, 1]}


def test_failing_job(live: LiveRun) -> None:
    job = _check_job(live, "fail")
    assert job.exit_code is not None
    if live.info is not None and live.info.version < (23, 11, 0):
        # ≤ 23.02 sacct --json reports SUCCESS/0 for every normal exit, FAILED or not
        assert (job.exit_code.status, job.exit_code.return_code) == ("SUCCESS", 0)
    else:
        assert (job.exit_code.status, job.exit_code.return_code) == ("ERROR", 3)
    after = live.after.get(job.job_id)  # slurmctld (text on 22.05) has the real code
    assert after is not None and after.state == "FAILED"
    assert after.exit_code is not None and after.exit_code.return_code == 3


def test_cancelled_job(live: LiveRun) -> None:
    job = _check_job(live, "cancel")
    after = live.after.get(job.job_id)
    assert after is not None and after.state == "CANCELLED"
    assert after.exit_code is not None
    # Usually SIGNALED/15, but 26.05.5's slurmctld once gave ERROR with no signal for a
    # job cancelled while running (a race with the step's own exit). The adapter never
    # derives a state from the exit code, so only the reading is checked here.
    assert after.exit_code.status in ("SIGNALED", "ERROR"), after.exit_code
    if after.exit_code.status == "SIGNALED":
        assert after.exit_code.signal == 15


def test_timeout_job(live: LiveRun) -> None:
    job = _check_job(live, "timeout")
    assert job.elapsed_s is not None and job.elapsed_s >= 60
    after = live.after.get(job.job_id)
    assert after is not None and after.state == "TIMEOUT" and after.time_limit_min == 1
    assert after.exit_code is not None
    # Usually SIGNALED/15, but 26.05.5's slurmctld once gave ERROR with no signal for a
    # job cancelled while running (a race with the step's own exit). The adapter never
    # derives a state from the exit code, so only the reading is checked here.
    assert after.exit_code.status in ("SIGNALED", "ERROR"), after.exit_code
    if after.exit_code.status == "SIGNALED":
        assert after.exit_code.signal == 15


def test_array_job(live: LiveRun) -> None:
    ask = ASK["array"]
    tasks = live.array_tasks()
    assert sorted(tasks) == list(ask.tasks)
    for job in tasks.values():
        _common(live, job, ask, live=False)
        assert job.exit_code is not None
        assert (job.exit_code.status, job.exit_code.return_code) == ("SUCCESS", 0)
    assert live.ids["array"] in {t.job_id for t in tasks.values()}
    seen = [j for j in live.running.values() if j.array_job_id == live.ids["array"]]
    assert seen, "no array task captured while running"
    for job in seen:
        _check_live(live, job, ask)


def _comparable(value: Any) -> Any:
    if isinstance(value, ExitCode):  # the raw wait status exists in 22.05 JSON only
        return (value.status, value.return_code, value.signal)
    return value


# Fields that never change once a job runs: compared whatever happened between the reads.
_FIXED_KEYS = ("user", "user_id", "account", "partition", "name", "cluster", "submit_time",
               "start_time", "array_job_id", "array_task_id", "batch_host", "slurm_version",
               "time_limit_min", "unlimited_time", "qos", "work_dir")
# Fields that hold only while the job holds its allocation: a job that ends between the two
# reads releases its nodes while COMPLETING (seen on 24.11.5: the failing job read
# nodes ('node2',) in one call and () in the next, the same state FAILED both times).
_ALLOCATION_KEYS = ("nodes", "node_count", "cpus", "gpus", "tres_alloc", "requested_memory_mb",
                    "state", "state_flags", "exit_code")


def _still_running(job: JobRecord) -> bool:
    return job.state == "RUNNING" and not job.state_flags


def test_both_detail_commands_agree(live: LiveRun) -> None:
    """scontrol text and squeue JSON give the same record (where both know the field).

    The two calls are a moment apart. Fields that cannot change are compared for every job;
    the allocation only for jobs that both reads saw running (a job running at both moments
    holds the same allocation throughout: no resize in this mix), so a job that ended in
    between cannot make the test fail at random.
    """
    assert live.other_mode, "the other detail command saw none of the running jobs"
    both_running = 0
    for job_id, other in live.other_mode.items():
        mine = live.running[job_id]
        keys: tuple[str, ...] = _FIXED_KEYS
        if _still_running(mine) and _still_running(other):
            keys = (*_FIXED_KEYS, *_ALLOCATION_KEYS)
            both_running += 1
        a = {k: _comparable(getattr(mine, k)) for k in keys}
        b = {k: _comparable(getattr(other, k)) for k in keys}
        assert a == b, (job_id, {k: (a[k], b[k]) for k in keys if a[k] != b[k]})
        if keys is _FIXED_KEYS:
            continue
        per_node = [(r.hostname, r.memory_mb, [g.index for g in r.gpus]) for r in mine.resources]
        assert per_node == [(r.hostname, r.memory_mb, [g.index for g in r.gpus])
                            for r in other.resources]
    # the TIMEOUT job sleeps 300 s: it runs at both reads on every release
    assert both_running >= 1, "no job was running at both reads"


def test_calls_per_cycle_bounded(live: LiveRun, request: pytest.FixtureRequest) -> None:
    """A cycle costs the same number of calls with 1 and with many jobs to detail."""
    assert live.budget is not None, "never had 3 running jobs at once"
    one_calls, one_details, many_calls, many_details = live.budget
    assert one_details == 1 and many_details >= 3
    # sacct, squeue listing, topology, details (+ batch scripts where slurmdbd keeps them)
    expected = 5 if live.info is not None and live.info.job_script_stored else 4
    assert one_calls == many_calls == expected
    assert max(live.cycle_calls) <= MAX_CALLS
    request.node.user_properties.append(("calls_per_cycle", f"{one_calls}/{many_calls}"))
    request.node.user_properties.append(("live_mix_wall_s", f"{live.wall:.0f}"))


def test_batch_scripts_call(live: LiveRun) -> None:
    """`sacct -X -B -j IDS` (JSON from 23.02, text before) gives each job's script where
    AccountingStoreFlags=job_script, nothing otherwise; the cycle attaches it."""
    assert live.info is not None and live.scripts is not None
    if not live.info.job_script_stored:  # the testbed's default: Slurm has no scripts
        assert live.scripts == {}
        assert all(j.batch_script is None for j in live.running.values())
        return
    for job in live.accounting.values():
        key = live.key_of(job)
        assert key is not None
        command = ASK[key].args[-1]  # sbatch --wrap CMD: "#!/bin/sh" + a comment + CMD
        script = live.scripts.get(job.job_id)
        assert script is not None and script.startswith("#!/bin/sh") and command in script
    for job in live.running.values():
        assert job.batch_script == live.scripts[job.job_id]


def test_records_serialise(live: LiveRun) -> None:
    """Every record can be stored (msgspec) and read back unchanged."""
    for job in [*live.accounting.values(), *live.running.values(), *live.after.values()]:
        assert msgspec.json.decode(msgspec.json.encode(job), type=JobRecord) == job
