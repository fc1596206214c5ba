"""``cc-slurm-adapter -daemon`` on live Slurm → the REAL cc-backend v1.5.4 (../shared).

Checked only through the server's own ``GET /api/jobs/`` (a started job is listed once
the commit worker ran: started here with ``--commit-interval 2s``). The happy path runs on
every release; the scenarios that need no injected fault (SIGKILL mid-drain, the daemon
stopped while jobs run and end, slurmdbd stopped and started, a second daemon, a job
cancelled seconds after its start)
run on the first selected release. Skipped with the reason when ../shared/cc-backend is
missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cc_slurm_adapter.testing.slurm_testbed import SlurmTestbed, selected_releases

from ..conftest import SHARED_DIR
from .daemon_harness import (
    POLL,
    Daemon,
    Daemons,
    Gate,
    RealServer,
    SlurmJob,
    pid_of,
    running_array_tasks,
    sacct_jobs,
    settled_sacct,
    start_real,
    submit,
    topology_threads,
    wait_ctld_completed,
    wait_dead,
    wait_for,
)

pytestmark = [pytest.mark.slurm, pytest.mark.shared]

CC_DIR = SHARED_DIR / "cc-backend" if SHARED_DIR is not None else None


@pytest.fixture()
def real(tmp_path: Path) -> Iterator[RealServer]:
    if CC_DIR is None or not os.access(CC_DIR / "bin" / "cc-backend", os.X_OK):
        pytest.skip("the real cc-backend (../shared/cc-backend) is missing; set "
                    "CCSA_SHARED_DIR to the shared folder to run these tests")
    server = start_real(CC_DIR, tmp_path / "cc-backend")
    try:
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGCONT)  # in case a test left it stopped
        server.stop()


@pytest.fixture()
def first(slurm_cluster: SlurmTestbed) -> SlurmTestbed:
    if slurm_cluster.release != selected_releases()[0]:
        pytest.skip(f"real cc-backend scenarios run on {selected_releases()[0]} only")
    return slurm_cluster


def listed(real: RealServer, job_ids: set[int]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {j: [] for j in job_ids}
    for job in real.jobs():
        if job["jobId"] in job_ids:
            out[job["jobId"]].append(job)
    return out


def wait_listed(real: RealServer, job_ids: set[int], daemon: Daemon, *, stopped: bool,
                timeout: float = 120) -> dict[int, dict[str, Any]]:
    def pending() -> list[int]:
        return sorted(j for j, rows in listed(real, job_ids).items()
                      if not rows or (stopped and all(r["jobState"] == "running"
                                                      for r in rows)))

    def done() -> dict[int, dict[str, Any]] | None:
        if pending():
            return None
        return {j: rows[0] for j, rows in listed(real, job_ids).items()}
    what = "stopped" if stopped else "listed"
    return wait_for(done, timeout, f"jobs {sorted(job_ids)} {what} in cc-backend",
                    daemon=daemon, interval=0.5, describe=pending)


def check_real(real: RealServer, expected: list[SlurmJob], daemon: Daemon, *,
               seen: set[int] | None = None, timeout: float = 150) -> None:
    """Every job is in cc-backend exactly once, stopped, with sacct's values."""
    ids = {j.job_id for j in expected}
    wait_listed(real, ids, daemon, stopped=True, timeout=timeout)
    runs = listed(real, ids)
    topo = topology_threads()
    for job in expected:
        where = f"job {job.job_id} ({job.name})"
        assert len(runs[job.job_id]) == 1, (where, "duplicated", runs[job.job_id])
        got = runs[job.job_id][0]
        assert got["cluster"] == job.cluster, where
        assert got["user"] == job.user and got["project"] == job.account, (where, got)
        assert got["startTime"] == job.start, (where, got["startTime"], job.start)
        assert got["startTime"] + got["duration"] == job.end, (where, got["duration"])
        assert got["jobState"] == job.cc_state, (where, got["jobState"], job.state)
        hosts = sorted(r["hostname"] for r in got["resources"])
        assert hosts == sorted(job.hosts), (where, hosts)
        if seen is None or job.job_id in seen:
            for res in got["resources"]:
                assert res.get("hwthreads"), (where, "no hwthreads", got["resources"])
                assert set(res["hwthreads"]) <= topo[res["hostname"]], (where, res)


def test_happy_path_real(slurm_cluster: SlurmTestbed, real: RealServer, daemons: Daemons,
                         jobs: list[int]) -> None:
    tb = slurm_cluster
    daemon = daemons.new(real.url, real.token).start()
    named: dict[int, str] = {}
    # Two waves of held jobs (the testbed has 6 core slots); each is released once its
    # start is listed by cc-backend, so the daemon saw every job running.
    waves = [[("real-single", [], "testuser", ""), ("real-twonode", ["-N2"], "root", "srun"),
              ("real-gpu", ["--gres=gpu:1"], "testuser", "")],
             [("real-fail", [], "testuser", "exit 3"),
              ("real-array", ["--array=1-2"], "testuser", ""),
              ("real-cancel", [], "testuser", "cancel")]]
    gates = [Gate(tb, f"real{i}") for i in range(len(waves))]
    try:
        for wave, gate in zip(waves, gates, strict=True):
            running: set[int] = set()
            for name, args, user, how in wave:
                wrap = (f"srun sh -c '{gate.hold()}'" if how == "srun" else
                        "sleep 300" if how == "cancel" else gate.hold(how))
                job_id = submit(tb, jobs, name, *args, "--wrap", wrap, user=user)
                named[job_id] = name
            for job_id, name in list(named.items()):
                if name == "real-array":
                    running |= set(running_array_tasks(tb, job_id, 2))
                elif name in {w[0] for w in wave}:
                    tb.wait_state(job_id, "RUNNING", timeout=120)
                    running.add(job_id)
            wait_listed(real, running, daemon, stopped=False)  # started and committed
            for job_id, name in named.items():
                if name == "real-cancel":
                    tb.cancel(job_id, user="testuser")
            gate.open()
        expected = [j for job_id, name in named.items()
                    for j in sacct_jobs(tb, job_id, name=name, timeout=150)]
        assert {j.state for j in expected} == {"COMPLETED", "FAILED", "CANCELLED"}
        check_real(real, expected, daemon)
        gpu_id = next(j for j, n in named.items() if n == "real-gpu")
        [gpu] = [r for r in real.jobs() if r["jobId"] == gpu_id]
        assert gpu.get("numAcc") == 1 and len(gpu["resources"][0]["accelerators"]) == 1, gpu
        assert daemon.stop() == 0
    finally:
        for gate in gates:
            gate.open()
            gate.remove()


def test_sigkill_mid_drain_real(first: SlurmTestbed, real: RealServer, daemons: Daemons,
                                jobs: list[int]) -> None:
    tb = first
    daemon = daemons.new(real.url, real.token).start()
    gate = Gate(tb, "real-drain")
    array = submit(tb, jobs, "real-drain", "--array=1-4", "--wrap", gate.hold())
    wait_listed(real, set(running_array_tasks(tb, array, 4)), daemon, stopped=False)
    expected: list[SlurmJob] = []
    # cc-backend frozen (SIGSTOP): the daemon's stops pile up and hang in flight, already
    # in the server's socket buffers; the daemon is killed with them unanswered.
    os.kill(real.pid, signal.SIGSTOP)
    try:
        gate.open()
        expected = sacct_jobs(tb, array, name="real-drain", timeout=150)
        time.sleep(POLL * 3)
        daemon.kill()
    finally:
        os.kill(real.pid, signal.SIGCONT)
        gate.open()
        gate.remove()
    daemon.start()
    check_real(real, expected, daemon)
    assert daemon.stop() == 0


def test_daemon_stopped_while_jobs_run_and_end_real(
        first: SlurmTestbed, real: RealServer, daemons: Daemons, jobs: list[int]) -> None:
    tb = first
    daemon = daemons.new(real.url, real.token).start()
    gate = Gate(tb, "real-down")
    ends = submit(tb, jobs, "real-down-ends", "--wrap", gate.hold())
    runs = submit(tb, jobs, "real-down-runs", "--wrap", "sleep 300")
    try:
        wait_listed(real, {ends, runs}, daemon, stopped=False)
        assert daemon.stop() == 0
    finally:
        gate.open()  # removed only once the job has ended: it polls the file every 0.5 s
    whole = submit(tb, jobs, "real-down-whole", "--wrap", "sleep 3")  # never seen running
    try:
        expected = [*sacct_jobs(tb, ends, name="real-down-ends", timeout=150),
                    *sacct_jobs(tb, whole, name="real-down-whole", timeout=150)]
    finally:
        gate.remove()
    daemon.start()
    wait_listed(real, {ends, whole}, daemon, stopped=True, timeout=150)
    tb.cancel(runs, user="testuser")
    expected += sacct_jobs(tb, runs, name="real-down-runs", timeout=150)
    check_real(real, expected, daemon, seen={ends, runs})
    assert daemon.stop() == 0


def test_second_daemon_refused_real(first: SlurmTestbed, real: RealServer,
                                    daemons: Daemons, jobs: list[int]) -> None:
    tb = first
    one = daemons.new(real.url, real.token).start()
    wait_for(one.socket_path.exists, 15,
             f"the daemon to listen on prepSockListenPath {one.socket_path}",
             daemon=one)
    sock = one.socket_path.stat()
    two = daemons.new(real.url, real.token, name="second", debug=2)
    two.config.write_text(one.config.read_text())
    two.conf = json.loads(one.config.read_text())
    two.start(wait_ready=False)
    assert two.wait_exit(30) != 0
    one.assert_alive()
    assert one.socket_path.stat().st_ino == sock.st_ino
    job = submit(tb, jobs, "real-second", "--wrap", "sleep 300")
    wait_listed(real, {job}, one, stopped=False)
    tb.cancel(job, user="testuser")
    check_real(real, sacct_jobs(tb, job, name="real-second", timeout=150), one)
    assert one.stop() == 0


def test_cancelled_seconds_after_start_real(first: SlurmTestbed, real: RealServer,
                                            daemons: Daemons, jobs: list[int]) -> None:
    tb = first
    daemon = daemons.new(real.url, real.token).start()
    job = submit(tb, jobs, "real-early-cancel", "--wrap", "sleep 300")
    tb.wait_state(job, "RUNNING", timeout=120)
    tb.cancel(job, user="testuser")
    expected = sacct_jobs(tb, job, name="real-early-cancel", timeout=150)
    assert [j.state for j in expected] == ["CANCELLED"]
    check_real(real, expected, daemon, seen=set())
    assert daemon.stop() == 0


def test_slurmdbd_stopped_then_started_real(first: SlurmTestbed, real: RealServer,
                                            daemons: Daemons, jobs: list[int]) -> None:
    """Scenario 6 against the real server: one job ends and one starts and ends while
    slurmdbd is down; both are in cc-backend once, stopped, with sacct's values."""
    tb = first
    daemon = daemons.new(real.url, real.token).start()
    g_before, g_during = Gate(tb, "real-dbd-b"), Gate(tb, "real-dbd-d")
    try:
        before = submit(tb, jobs, "real-dbd-before", "--wrap", g_before.hold())
        wait_listed(real, {before}, daemon, stopped=False)
        pid = pid_of(tb, "slurmdbd")
        os.kill(pid, signal.SIGTERM)
        wait_dead(pid)
        try:
            g_before.open()  # ends while accounting is down
            during = submit(tb, jobs, "real-dbd-during", "--wrap", g_during.hold())
            tb.wait_state(during, "RUNNING", timeout=120)
            time.sleep(POLL * 5)  # several cycles with accounting down
            daemon.assert_alive()
            g_during.open()
            wait_ctld_completed(tb, during)
            time.sleep(POLL * 2)
            daemon.assert_alive()
        finally:
            tb.up()
        # slurmctld replays the records it kept: wait for the settled ones
        expected = [*settled_sacct(tb, before, name="real-dbd-before", timeout=150),
                    *settled_sacct(tb, during, name="real-dbd-during", timeout=150)]
    finally:
        g_before.remove()
        g_during.remove()
    check_real(real, expected, daemon, timeout=180)
    assert daemon.stop() == 0
