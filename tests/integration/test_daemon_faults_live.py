"""Slow fault scenarios of ``cc-slurm-adapter -daemon`` on one live release (issue 11).

Each scenario ends with the stand-in's audit, restricted to the test's own jobs (the
testbed is shared), at 0 lost, 0 duplicated, 0 never stopped, no 4xx for a payload, and
0 jobs without hwthreads among those the daemon saw running. "Saw running": the test
waited, with the daemon up, until the job's start reached the stand-in, or the job ran
for several poll intervals (2 s) while the daemon ran and slurmctld still held it.

Run on the first selected release only (22.05 by default), like test_slurm_faults.py; the
functional matrix (test_daemon_live.py) runs on all three. The Slurm daemons are only
taken down in the slurmdbd scenario and MinJobAge is only lowered in the MinJobAge
scenario; both restore the cluster (``tb.up()``) in a finally.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cc_slurm_adapter.testing.ccbackend.standin import StandIn
from cc_slurm_adapter.testing.slurm_testbed import SlurmTestbed, selected_releases

from .daemon_harness import (
    CLUSTER_JSON,
    POLL,
    Daemon,
    Daemons,
    Gate,
    SlurmJob,
    audit,
    check_payloads,
    pid_of,
    requests_for,
    rows_of,
    running_array_tasks,
    sacct_jobs,
    settled_sacct,
    submit,
    wait_ctld_completed,
    wait_dead,
    wait_for,
    wait_started,
    wait_stopped,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture()
def tb(slurm_cluster: SlurmTestbed) -> Iterator[SlurmTestbed]:
    if slurm_cluster.release != selected_releases()[0]:
        pytest.skip(f"slow daemon fault scenarios run on {selected_releases()[0]} only")
    yield slurm_cluster


@pytest.fixture()
def gates(tb: SlurmTestbed) -> Iterator[list[Gate]]:
    """Gates (files that let held jobs end) of a test; removed at the end."""
    made: list[Gate] = []
    yield made
    for gate in made:
        gate.open()
        gate.remove()


def new_gate(tb: SlurmTestbed, gates: list[Gate], name: str) -> Gate:
    gate = Gate(tb, name)
    gates.append(gate)
    return gate


def final(tb: SlurmTestbed, job_id: int, name: str) -> list[SlurmJob]:
    return sacct_jobs(tb, job_id, name=name, timeout=150)


def ctld_forgot(tb: SlurmTestbed, job_id: int) -> bool:
    """slurmctld purged the job (MinJobAge): squeue --states=all no longer lists it."""
    out = tb.run("squeue", "-h", "--states=all", "-j", str(job_id), "-o", "%i",
                 check=False).stdout.split()
    return str(job_id) not in out


def settle_all(tb: SlurmTestbed, named: dict[int, str]) -> list[SlurmJob]:
    return [j for job_id, name in named.items() for j in final(tb, job_id, name)]


def check_all(standin: StandIn, expected: list[SlurmJob], tb: SlurmTestbed, *,
              daemon: Daemon, seen: list[int] | None = None, timeout: float = 150,
              no_hwthreads: frozenset[int] = frozenset()) -> None:
    rows = wait_stopped(standin, [j.job_id for j in expected], tb.cluster, daemon=daemon,
                        timeout=timeout)
    check_payloads(rows, expected, no_hwthreads=no_hwthreads)
    audit(standin, expected, tb.cluster,
          seen_running=[j.job_id for j in expected] if seen is None else seen
          ).assert_clean()


# ----------------------------------------------------------------------------- (1)
def test_ccbackend_down_while_jobs_start_and_end(
        tb: SlurmTestbed, standin: StandIn, daemons: Daemons, jobs: list[int],
        gates: list[Gate]) -> None:
    daemon = daemons.new(standin.url, standin.token).start()
    g_before, g_during, g_spanning = (new_gate(tb, gates, n) for n in ("b", "d", "s"))
    before = submit(tb, jobs, "down-before", "--wrap", g_before.hold())
    wait_started(standin, [before], tb.cluster, daemon=daemon, timeout=90)

    standin.set_fault("down")  # the port is closed: connection refused
    down_at = time.monotonic()
    g_before.open()  # ends while cc-backend is down
    during = submit(tb, jobs, "down-during", "--wrap", g_during.hold())  # starts and ends
    spanning = submit(tb, jobs, "down-spanning", "--wrap", g_spanning.hold())  # runs on
    tb.wait_state(during, "RUNNING", timeout=60)
    tb.wait_state(spanning, "RUNNING", timeout=60)
    # `during` runs ~12 s (several 2 s poll cycles) with cc-backend down, then ends
    time.sleep(max(0.0, 14 - (time.monotonic() - down_at)))
    g_during.open()
    tb.wait_state(during, "COMPLETED", timeout=60)
    time.sleep(max(0.0, 20 - (time.monotonic() - down_at)))  # the outage lasts 20 s
    daemon.assert_alive()
    standin.clear_fault()
    wait_started(standin, [spanning], tb.cluster, daemon=daemon, timeout=120)
    g_spanning.open()

    named = {before: "down-before", during: "down-during", spanning: "down-spanning"}
    check_all(standin, settle_all(tb, named), tb, daemon=daemon)
    assert daemon.stop() == 0


# ----------------------------------------------------------------------------- (2)
def test_thirty_percent_5xx(tb: SlurmTestbed, standin: StandIn, daemons: Daemons,
                            jobs: list[int], gates: list[Gate]) -> None:
    standin.set_fault("error", status=500, rate=0.3, seed=11)
    daemon = daemons.new(standin.url, standin.token).start()
    gate = new_gate(tb, gates, "5xx")
    named = {submit(tb, jobs, f"err5xx-{i}", "--wrap", gate.hold()): f"err5xx-{i}"
             for i in range(4)}
    wait_started(standin, named, tb.cluster, daemon=daemon, timeout=120)
    gate.open()
    expected = settle_all(tb, named)
    check_all(standin, expected, tb, daemon=daemon, timeout=180)
    hits = [e for e in standin.audit() if e.outcome == "fault:error"]
    assert hits, "the 30 % fault never fired"
    standin.clear_fault()
    assert daemon.stop() == 0


# ----------------------------------------------------------------------------- (3)
def test_connection_dropped_after_commit(tb: SlurmTestbed, standin: StandIn,
                                         daemons: Daemons, jobs: list[int],
                                         gates: list[Gate]) -> None:
    # Every start and stop of the first six is processed (stored), then the connection
    # closes without an answer: the daemon must resend and take 500 (job cache) / 422 as
    # "already there", never creating a second job.
    standin.set_fault("drop", paths=["/api/jobs/start_job/", "/api/jobs/stop_job/"], count=6)
    daemon = daemons.new(standin.url, standin.token).start()
    gate = new_gate(tb, gates, "drop")
    named = {submit(tb, jobs, f"drop-{i}", "--wrap", gate.hold()): f"drop-{i}"
             for i in range(3)}
    wait_started(standin, named, tb.cluster, daemon=daemon, timeout=120)
    gate.open()
    expected = settle_all(tb, named)
    check_all(standin, expected, tb, daemon=daemon, timeout=150)
    mine = {j.job_id for j in expected}
    dropped = [e for e in standin.audit() if e.outcome.startswith("fault:drop")]
    assert dropped, "no request was dropped"
    # ... and every one of our jobs had a start dropped or went through after a drop
    assert any(requests_for(standin, j, "start_job") for j in mine)
    assert daemon.stop() == 0


# ----------------------------------------------------------------------------- (4)
def test_sigkill_mid_drain_then_restart(tb: SlurmTestbed, standin: StandIn,
                                        daemons: Daemons, jobs: list[int],
                                        gates: list[Gate]) -> None:
    daemon = daemons.new(standin.url, standin.token).start()
    gate = new_gate(tb, gates, "drain")
    array = submit(tb, jobs, "drain", "--array=1-4", "--wrap", gate.hold())
    tasks = running_array_tasks(tb, array, 4)
    wait_started(standin, tasks, tb.cluster, daemon=daemon, timeout=90)
    standin.set_fault("down")
    gate.open()
    expected = final(tb, array, "drain")  # the backlog: 4 stops queued while it was down
    assert sorted(j.job_id for j in expected) == tasks
    time.sleep(POLL * 2)  # the daemon has seen the ends
    # Back, but every answer is held 3 s after the stop is stored: a kill now always hits
    # requests in flight (done by cc-backend, answer never read).
    standin.set_fault("delay", seconds=3.0)

    def stopped_now() -> int:
        return sum(1 for rows in rows_of(standin, tasks, tb.cluster).values()
                   if any(r.job_state != "running" for r in rows))
    wait_for(stopped_now, 90, "the drain to begin", daemon=daemon, interval=0.05)
    daemon.kill()
    in_flight = stopped_now()
    standin.clear_fault()
    daemon.start()
    check_all(standin, expected, tb, daemon=daemon)
    assert in_flight >= 1
    assert daemon.stop() == 0


# ----------------------------------------------------------------------------- (5)
def test_daemon_down_longer_than_min_job_age(tb: SlurmTestbed, standin: StandIn,
                                             daemons: Daemons, jobs: list[int],
                                             gates: list[Gate]) -> None:
    tb.up(min_job_age=10)  # the testbed's slurm.conf with MinJobAge=10 (reconfigure)
    try:
        daemon = daemons.new(standin.url, standin.token).start()
        gate = new_gate(tb, gates, "mja")
        ends = submit(tb, jobs, "mja-ends", "--wrap", gate.hold())
        runs = submit(tb, jobs, "mja-runs", "--wrap", "sleep 300")
        wait_started(standin, [ends, runs], tb.cluster, daemon=daemon, timeout=90)
        assert daemon.stop() == 0
        gate.open()

        # while the daemon is down: one job ends, one starts and ends entirely
        whole = submit(tb, jobs, "mja-whole", "--wrap", "sleep 3")
        expected = settle_all(tb, {ends: "mja-ends", whole: "mja-whole"})
        # slurmctld forgets them (MinJobAge=10, purged by its periodic job purge)
        wait_for(lambda: ctld_forgot(tb, ends) and ctld_forgot(tb, whole), 150,
                 "slurmctld to purge the ended jobs (MinJobAge)")

        daemon.start()
        wait_stopped(standin, [ends, whole], tb.cluster, daemon=daemon, timeout=150)
        tb.cancel(runs, user="testuser")  # the one that ran through the downtime ends now
        expected += final(tb, runs, "mja-runs")
        # `whole` was never seen running by the daemon: its hosts come from sacct, its
        # hwthreads cannot be known any more
        check_all(standin, expected, tb, daemon=daemon, seen=[ends, runs],
                  no_hwthreads=frozenset({whole}))
        assert daemon.stop() == 0
    finally:
        tb.up()  # MinJobAge back to the default


# ----------------------------------------------------------------------------- (6)
def test_slurmdbd_stopped_then_started(tb: SlurmTestbed, standin: StandIn,
                                       daemons: Daemons, jobs: list[int],
                                       gates: list[Gate]) -> None:
    daemon = daemons.new(standin.url, standin.token).start()
    g_before, g_during = new_gate(tb, gates, "dbd-b"), new_gate(tb, gates, "dbd-d")
    before = submit(tb, jobs, "dbd-before", "--wrap", g_before.hold())
    wait_started(standin, [before], tb.cluster, daemon=daemon, timeout=90)
    try:
        pid = pid_of(tb, "slurmdbd")
        os.kill(pid, signal.SIGTERM)
        wait_dead(pid)
        g_before.open()  # ends while accounting is down
        during = submit(tb, jobs, "dbd-during", "--wrap", g_during.hold())
        tb.wait_state(during, "RUNNING", timeout=120)
        time.sleep(POLL * 5)  # several daemon cycles with accounting down, both known
        daemon.assert_alive()   # to slurmctld only
        g_during.open()
        wait_ctld_completed(tb, during)
        time.sleep(POLL * 2)
        daemon.assert_alive()
    finally:
        tb.up()
    named = {before: "dbd-before", during: "dbd-during"}
    # slurmctld replays the records it kept; wait for the settled ones
    expected = [j for job_id, name in named.items()
                for j in settled_sacct(tb, job_id, name=name, timeout=150)]
    check_all(standin, expected, tb, daemon=daemon, timeout=180)
    assert daemon.stop() == 0


# ----------------------------------------------------------------------------- (7)
def test_one_job_rejected_fifty_go_through(tb: SlurmTestbed, standin_without_node1: StandIn,
                                           daemons: Daemons, jobs: list[int]) -> None:
    standin = standin_without_node1
    daemon = daemons.new(standin.url, standin.token).start()
    bad = submit(tb, jobs, "rej-bad", "-w", "node1", "--wrap", "sleep 8")
    good = submit(tb, jobs, "rej-good", "-w", "node2", "--array=1-50", "--wrap", "sleep 1")
    # sacct lists a task once it has started: wait for all 50, each final
    expected = wait_for(lambda: (lambda got: got if len(got) == 50 else None)(
        final(tb, good, "rej-good")), 150, "sacct's 50 final array tasks", daemon=daemon)
    # the 50 on node2 were short: the daemon may not have seen each running
    rows = wait_stopped(standin, [j.job_id for j in expected], tb.cluster, daemon=daemon,
                        timeout=150)
    check_payloads(rows, expected, no_hwthreads=[j.job_id for j in expected])
    final(tb, bad, "rej-bad")
    # ... and several cycles later: the rejected job is not stored, was not resent every
    # cycle, and its rejection is in the log with the job id
    wait_for(lambda: requests_for(standin, bad, "start_job"), 60,
             "the rejected job's start to be sent", daemon=daemon)
    time.sleep(POLL * 5)
    assert rows_of(standin, [bad], tb.cluster)[bad] == []
    tries = [e for e in requests_for(standin, bad) if e.status == 400]
    assert 1 <= len(tries) <= 2, [(e.path, e.status) for e in requests_for(standin, bad)]
    assert "no subcluster found" in (tries[0].error or ""), tries[0]
    lines = [ln for ln in daemon.stderr().splitlines() if str(bad) in ln and "400" in ln]
    assert lines, f"no log line names job {bad} with its 400; tail:\n{daemon.tail()}"
    audit(standin, expected, tb.cluster).assert_clean()
    assert daemon.stop() == 0


@pytest.fixture()
def standin_without_node1(tmp_path: Path) -> Iterator[StandIn]:
    """A stand-in whose cluster.json has no sub-cluster for node1: cc-backend answers 400
    ``no subcluster found for cluster testcluster and host node1`` (contract §4.2)."""
    doc = json.loads(CLUSTER_JSON.read_text())
    for sub in doc["subClusters"]:
        if sub["nodes"] == "node1":
            sub["nodes"] = "gone1"
    path = tmp_path / "testcluster.cluster.json"
    path.write_text(json.dumps(doc))
    with StandIn(commit_interval=2.0, cluster_files=[path]) as server:
        yield server


# ----------------------------------------------------------------------------- (8)
def test_second_daemon_is_refused_first_unharmed(tb: SlurmTestbed, standin: StandIn,
                                                 daemons: Daemons, jobs: list[int],
                                                 gates: list[Gate]) -> None:
    first = daemons.new(standin.url, standin.token).start()
    wait_for(first.socket_path.exists, 15,
             f"the daemon to listen on prepSockListenPath {first.socket_path}",
             daemon=first)
    sock_before = first.socket_path.stat()
    store_before = first.state_path.stat()
    second = daemons.new(standin.url, standin.token, name="second", debug=2)
    second.config.write_text(first.config.read_text())  # the very same config
    second.conf = json.loads(first.config.read_text())
    second.start(wait_ready=False)
    code = second.wait_exit(30)
    assert code != 0
    lines = [ln for ln in second.run_stderr().splitlines()
             if ln.strip() and not ln.startswith("=====")]
    assert len(lines) == 1, lines
    assert str(first.pid) in lines[0] or str(first.pid_file) in lines[0], lines
    # the first one's socket, pid file and store are untouched, and it still works
    first.assert_alive()
    sock_after = first.socket_path.stat()
    assert (sock_after.st_ino, sock_after.st_mtime_ns) == \
        (sock_before.st_ino, sock_before.st_mtime_ns)
    assert first.state_path.stat().st_ino == store_before.st_ino
    assert int(first.pid_file.read_text().split()[0]) == first.pid
    gate = new_gate(tb, gates, "second")
    job = submit(tb, jobs, "second-refused", "--wrap", gate.hold())
    wait_started(standin, [job], tb.cluster, daemon=first, timeout=90)
    gate.open()
    check_all(standin, final(tb, job, "second-refused"), tb, daemon=first)
    assert first.stop() == 0
    assert not first.pid_file.exists(), "the pid file is cleaned up on graceful shutdown"


# ----------------------------------------------------------------------------- (9)
def test_job_cancelled_seconds_after_start(tb: SlurmTestbed, standin: StandIn,
                                           daemons: Daemons, jobs: list[int]) -> None:
    daemon = daemons.new(standin.url, standin.token).start()
    ids = [submit(tb, jobs, f"early-cancel-{i}", "--wrap", "sleep 300") for i in range(2)]
    for job_id in ids:
        tb.wait_state(job_id, "RUNNING", timeout=120)
        tb.cancel(job_id, user="testuser")
    expected = settle_all(tb, {j: f"early-cancel-{i}" for i, j in enumerate(ids)})
    assert {j.state for j in expected} == {"CANCELLED"}
    # not necessarily seen running (a poll is 2 s), so hwthreads are not demanded
    check_all(standin, expected, tb, daemon=daemon, seen=[],
              no_hwthreads=frozenset(ids))
    assert daemon.stop() == 0


# ----------------------------------------------------------------------------- max span
# last: its flood check needs jobs that ended more than MinJobAge + 60 s before it runs,
# which a testbed installed at the start of this session has only near the end of it
@pytest.mark.last
def test_restart_after_eight_days_is_capped_at_max_span(
        tb: SlurmTestbed, standin: StandIn, daemons: Daemons, jobs: list[int]) -> None:
    span = 120
    recent = submit(tb, jobs, "span-recent", "--wrap", "sleep 2")
    expected = final(tb, recent, "span-recent")
    # Jobs that ended before the span AND are gone from slurmctld (MinJobAge=300 s on the
    # testbed) can only come from an uncapped sacct window: none of them may arrive.
    horizon = time.time() - max(span, 300) - 60
    old = [line for line in tb.run(
        "sacct", "-n", "-X", "-P", "-a", "-o", "JobID", "-S", "now-8days",
        "-E", time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(horizon)),
        check=False).stdout.split() if line.strip()]
    daemon = daemons.new(standin.url, standin.token, slurmQueryMaxSpan=span,
                         last_run_age=8 * 86400).start()
    check_all(standin, expected, tb, daemon=daemon, seen=[])
    time.sleep(POLL * 3)  # a few more cycles: a flood would be under way by now
    too_old = [(r.job_id, r.stop_time) for r in standin.jobs()
               if r.stop_time is not None and r.stop_time < horizon]
    assert not too_old, f"jobs from before slurmQueryMaxSpan were sent: {too_old[:10]}"
    warnings = [ln for ln in daemon.run_stderr().splitlines()
                if "warn" in ln.lower() and any(w in ln.lower() for w in (
                    "skip", "slurmquerymaxspan", "max span", "maxspan"))]
    assert warnings, f"no warning about the capped window; stderr:\n{daemon.tail(60)}"
    assert daemon.stop() == 0
    # the flood check above proves something only when such jobs exist (they do on a
    # testbed that ran anything more than 7 minutes ago)
    if not old:
        pytest.skip("the testbed has no job older than the span: flood check not proven")
