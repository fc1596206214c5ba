"""The daemon's real-time path on live Slurm: jobs arrive through the hook, not the poll.

Black box (daemon_harness.py): the real ``-daemon`` with ``slurmPollInterval`` 3600, so
after its first poll at start-up only the Prolog/Epilog events can bring a job in time;
PrologSlurmctld/EpilogSlurmctld of the release run our hook (the release's own python3,
stdlib only), which reaches the daemon on the host over ``tcp:127.0.0.1:PORT`` (from
inside the 24.11/26.05 chroots too). Each job must be in the stand-in as started within
:data:`START_BOUND` seconds of Slurm's start time and stopped within that of its end,
with the values sacct recorded, none duplicated. The hook slot is restored afterwards.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cc_slurm_adapter.testing.ccbackend.standin import StandIn
from cc_slurm_adapter.testing.slurm_testbed import SlurmTestbed
from tests.conftest import REPO_ROOT

from .daemon_harness import (
    Daemon,
    Daemons,
    Gate,
    audit,
    cancel_all,
    check_payloads,
    requests_for,
    sacct_jobs,
    wait_for,
    wait_started,
    wait_stopped,
)

pytestmark = pytest.mark.slurm

START_BOUND = 5.0
"""The real-time path answers in well under a second; the poll (3600 s) is far beyond."""
START_BOUND_22_05 = 15.0
"""22.05: slurmdbd first writes a provisional record of a job that ends at once; the
start waits for the real one (4 s in a CI run), since user, account and hosts come from
sacct (never from the scontrol text a user can shape)."""

# In the checkout (git-ignored var/): the chroots see it read-only at /opt/cc-slurm-adapter,
# and the wrapper finds hook.py and its config relative to itself.
HOOK_ROOT = REPO_ROOT / "var" / "hook-realtime"
WRAPPER = """#!/bin/sh
here=$(dirname "$0")
/usr/bin/python3 "$here/../../../src/cc_slurm_adapter/hook.py" -config "$here/config.json"
exit 0
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def hook_script(release: str, port: int) -> Path:
    """The wrapper for ``release``, sending to ``tcp:127.0.0.1:port``."""
    directory = HOOK_ROOT / release
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.json"
    config.write_text(json.dumps({"prepSockConnectPath": f"tcp:127.0.0.1:{port}"}))
    config.chmod(0o644)
    wrapper = directory / "hook.sh"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    return wrapper


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True  # an empty connection: the daemon drops it as junk
    except OSError:
        return False


@pytest.fixture()
def hooked(slurm_cluster: SlurmTestbed) -> Iterator[int]:
    """PrologSlurmctld/EpilogSlurmctld → our hook → tcp:127.0.0.1:PORT; restored after."""
    port = free_port()
    slurm_cluster.up(prep_script=hook_script(slurm_cluster.release, port))
    try:
        yield port
    finally:
        slurm_cluster.up()


def realtime_daemon(daemons: Daemons, standin: StandIn, port: int) -> Daemon:
    return daemons.new(standin.url, standin.token, slurmPollInterval=3600,
                       prepSockListenPath=f"tcp:127.0.0.1:{port}")


def wait_quiet(standin: StandIn, daemon: Daemon, quiet_s: float = 2.0) -> None:
    """Until the stand-in has had no request for ``quiet_s`` (the outbox is empty)."""
    last = {"n": -1, "since": time.monotonic()}

    def quiet() -> bool:
        n = len(standin.audit())
        if n != last["n"]:
            last["n"], last["since"] = n, time.monotonic()
        return time.monotonic() - last["since"] >= quiet_s

    wait_for(quiet, 120, "the daemon's first backlog to drain", daemon=daemon, interval=0.2)


def arrival(standin: StandIn, job_id: int, part: str) -> float:
    """When the stand-in took the first successful request of ``part`` for the job."""
    times = [e.time for e in requests_for(standin, job_id, part)
             if e.status is not None and 200 <= e.status < 300]
    assert times, f"job {job_id}: no successful {part} request"
    return min(times)


def test_with_the_poll_at_3600s_every_job_is_started_and_stopped_by_the_hook(
        slurm_cluster: SlurmTestbed, standin: StandIn, daemons: Daemons,
        hooked: int) -> None:
    tb = slurm_cluster
    daemon = realtime_daemon(daemons, standin, hooked).start()
    wait_for(lambda: listening(hooked), 30, "the daemon's hook socket", daemon=daemon)
    # let the start-up poll pass: from here on only events can bring a job in time
    wait_for(lambda: "jobs seen" in daemon.run_stderr(), 60, "the first poll", daemon=daemon)
    # ... and the submissions it queued for earlier tests' jobs (the shared testbed):
    # fresh ones would queue behind them, oldest first
    wait_quiet(standin, daemon)
    gate = Gate(tb, "realtime")
    ids: list[int] = []
    try:
        # two held jobs (started while running), a two-node one, and one that ends at
        # once. The testbed is shared: they may queue behind other sessions' jobs.
        ids.append(tb.submit(["-J", "drt-held1", "-t", "5", "--wrap", gate.hold()],
                             user="testuser"))
        ids.append(tb.submit(["-J", "drt-held2", "-t", "5", "--wrap", gate.hold("exit 3")]))
        ids.append(tb.submit(["-J", "drt-quick", "-t", "5", "--wrap", "true"],
                             user="testuser"))
        ids.append(tb.submit(["-J", "drt-twonode", "-N2", "-t", "5", "--wrap", "sleep 1"]))
        held = [ids[0], ids[1]]
        for job_id in held:
            tb.wait_state(job_id, "RUNNING", timeout=240)
        wait_started(standin, held, tb.cluster, daemon=daemon, timeout=60)
        gate.open()
        names = ["drt-held1", "drt-held2", "drt-quick", "drt-twonode"]
        jobs = [j for job_id, name in zip(ids, names, strict=True)
                for j in sacct_jobs(tb, job_id, name=name, timeout=120)]
        rows = wait_stopped(standin, ids, tb.cluster, daemon=daemon, timeout=60)
        # `true` and `sleep 1` may end before slurmctld's detail is read
        check_payloads(rows, jobs, no_hwthreads=[ids[2], ids[3]])
        audit(standin, jobs, tb.cluster, seen_running=held).assert_clean()
        bound = START_BOUND_22_05 if tb.release == "22.05" else START_BOUND
        for job in jobs:
            late_start = arrival(standin, job.job_id, "start_job") - job.start
            late_stop = arrival(standin, job.job_id, "stop_job") - job.end
            assert late_start < bound and late_stop < bound, (
                f"job {job.job_id}: start {late_start:.2f} s, stop {late_stop:.2f} s after "
                f"Slurm's; the real-time path did not bring it\n{daemon.tail()}")
        assert daemon.stop() == 0, daemon.tail()
    finally:
        gate.open()
        cancel_all(tb, ids)
        gate.remove()


def test_hook_while_the_daemon_is_down_the_job_arrives_once_it_starts(
        slurm_cluster: SlurmTestbed, standin: StandIn, daemons: Daemons,
        hooked: int) -> None:
    tb = slurm_cluster
    daemon = realtime_daemon(daemons, standin, hooked)  # config written, not started
    assert not listening(hooked)
    job_id = tb.submit(["-J", "drt-down", "-t", "5", "--wrap", "sleep 1"], user="testuser")
    jobs = sacct_jobs(tb, job_id, name="drt-down", timeout=120)  # ran and ended meanwhile
    try:
        daemon.start()
        rows = wait_stopped(standin, [job_id], tb.cluster, daemon=daemon, timeout=60)
        check_payloads(rows, jobs, no_hwthreads=[job_id])  # never seen running
        audit(standin, jobs, tb.cluster).assert_clean()
        assert daemon.stop() == 0, daemon.tail()
    finally:
        cancel_all(tb, [job_id])
