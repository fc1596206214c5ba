"""README command 1: the demo runs end to end on the live testbed, and leaves it as found.

The demo runs the real ``cc-slurm-adapter -daemon`` with our hook in slurm.conf, stops
the cc-backend stand-in for a while and shows the backlog draining. What it prints as
cc-backend's job table is checked against sacct (the expected values come from Slurm,
not from the demo); afterwards slurm.conf, the processes, the jobs and the files must be
as they were, also when the demo is interrupted (Ctrl-C, SIGTERM) half way.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cc_slurm_adapter.testing import demo
from cc_slurm_adapter.testing.slurm_testbed import SlurmTestbed
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slurm

HOOK_KEYS = ("PrologSlurmctld", "EpilogSlurmctld", "MinJobAge")


def _need_host_release(tb: SlurmTestbed) -> None:
    if tb.release != "22.05":
        pytest.skip("the demo runs on the host release (22.05) by default; one run is enough")


def _conf(tb: SlurmTestbed) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in tb.slurm_conf.read_text().splitlines():
        key, _, value = line.partition("=")
        if key in HOOK_KEYS:
            out[key] = value
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of a child we never reaped counts as gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def _expand(nodes: str) -> list[str]:
    """node[1-2] / node1 as names (the testbed's two host names only)."""
    match = re.fullmatch(r"(\w+?)\[(\d+)-(\d+)\]", nodes)
    if match:
        prefix, low, high = match.groups()
        return [f"{prefix}{n}" for n in range(int(low), int(high) + 1)]
    return [n for n in nodes.split(",") if n]


def _left_as_found(tb: SlurmTestbed, out: str, before: dict[str, str]) -> list[int]:
    """Everything the demo printed that it started is gone; returns its job ids."""
    assert _conf(tb) == before, "slurm.conf's hook slot or MinJobAge changed"
    work = re.search(r"demo files in (\S+)", out)
    assert work, out
    assert not Path(work.group(1)).exists(), f"{work.group(1)} is still there"
    pids = [int(p) for p in re.findall(r"\bpid (\d+)", out)]
    assert pids, out
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in pids if _alive(p)], f"processes still running: {pids}"
    ids = [int(j) for j in re.findall(r"sbatch: job (\d+)", out)]
    if ids:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            queue = tb.run("squeue", "-h", "-j", ",".join(map(str, ids)), "-o", "%i %T",
                           check=False).stdout.split()
            if not {"RUNNING", "PENDING"} & set(queue):
                break
            time.sleep(0.5)
        assert not {"RUNNING", "PENDING"} & set(queue), f"demo jobs still queued: {queue}"
    assert not list(tb.job_dir.glob("demo-gate-*")), "the job gate file is still there"
    return ids


def test_demo_runs_the_daemon_through_an_outage(slurm_cluster: SlurmTestbed,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    tb = slurm_cluster
    _need_host_release(tb)
    before = _conf(tb)
    t0 = time.monotonic()
    assert demo.main(["--release", tb.release]) == 0
    took = time.monotonic() - t0
    out = capsys.readouterr().out
    ids = _left_as_found(tb, out, before)
    assert len(ids) == 8, out

    # the story, in the order a reader sees it
    steps = ["cc-slurm-adapter -daemon -config config.json: running",
             "PrologSlurmctld/EpilogSlurmctld = hook.sh",
             "cc-backend <- start_job", "cc-backend <- stop_job",
             "cc-backend down", "backlog: 7 submissions cc-backend has not received "
             "(3 start_job, 4 stop_job)", "cc-backend back", "backlog drained: all 7",
             "0 lost, 0 duplicated, 0 never stopped, 0 rejected",
             "daemon stopped (exit code 0)",
             "demo finished: every job arrived once and was stopped"]
    at = [out.find(s) for s in steps]
    assert -1 not in at and at == sorted(at), list(zip(steps, at, strict=True))
    # each job's start and stop arrived once (a resend would print a second line)
    for job_id in ids:
        assert len(re.findall(rf"start_job job {job_id} .*: 201 Created", out)) == 1, out
        assert len(re.findall(rf"stop_job job {job_id} .*: 200 OK", out)) == 1, out
    assert "Traceback" not in out
    assert took < 90, f"the demo took {took:.0f} s"

    # the job table the demo printed says what sacct says
    table = {int(m[0]): (m[1], m[2]) for m in re.findall(
        r"^\s*(\d+) testuser\s+(\w+)\s+(\S+)", out, re.MULTILINE)}
    assert sorted(table) == sorted(ids), out
    for job_id in ids:
        line = tb.run("sacct", "-n", "-X", "-P", "-j", str(job_id),
                      "-o", "State,NodeList").stdout.strip().splitlines()[0]
        state, nodes = line.split("|")
        assert table[job_id] == (state.split(" ")[0].lower(), ",".join(_expand(nodes))), \
            (job_id, line)


def _terminal_signals() -> None:
    """SIGINT as a terminal user has it. A shell without job control starts background
    commands with SIGINT ignored (POSIX), and Python then installs no KeyboardInterrupt:
    the demo would not see the Ctrl-C at all (a fresh-clone run started with `cmd &`
    from a script failed so)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(("sig", "when"), [
    (signal.SIGINT, "cc-backend down"),  # Ctrl-C: the terminal signals the whole group
    (signal.SIGTERM, "== 1. jobs while cc-backend is up"),
], ids=["ctrl-c-during-outage", "sigterm-after-hook-installed"])
def test_interrupted_demo_leaves_the_cluster_as_found(slurm_cluster: SlurmTestbed,
                                                      sig: signal.Signals, when: str) -> None:
    tb = slurm_cluster
    _need_host_release(tb)
    before = _conf(tb)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cc_slurm_adapter.testing.demo", "--release", tb.release],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT,
        start_new_session=True, preexec_fn=_terminal_signals)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if when in line:
                if sig == signal.SIGINT:
                    os.killpg(proc.pid, sig)
                else:
                    proc.send_signal(sig)
                break
        lines.extend(proc.stdout)
        code = proc.wait(120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
    out = "".join(lines)
    assert when in out, out
    assert code == 130, out
    assert "interrupted: cleaning up" in out and "cleanup:" not in out, out
    assert "Traceback" not in out, out
    _left_as_found(tb, out, before)
