"""The cycle's accounting call leaves out only jobs that never started, on every release.

:meth:`SlurmSource.accounting` asks ``sacct --nnodes=1-2147483647 -S -E`` (jobs that ran
on one or more nodes) so that a deep pending queue costs nothing per cycle. This test
puts one job of each kind in a window on the live cluster, waits until slurmdbd has
settled every one of them, and then reads the *same* window (fixed ``-S`` and ``-E``)
twice: through our accounting call, and as plain ``sacct --json -a -X -S -E`` (no
filter: the oracle). For our jobs,

    filtered == unfiltered - {jobs that never started: pending, cancelled while pending}

and which jobs ran is known from what the test did to them (``RAN``), not read back.

Eligible pending jobs that never start come from a hidden partition created DOWN for the
test (jobs queue there, slurmctld never schedules them) and removed at the end; held
jobs (``--hold``) are pending but never eligible, so not even the plain window has them.
Everything is cancelled at the end.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cc_slurm_adapter.slurm.runner import CommandRunner
from cc_slurm_adapter.slurm.source import SlurmInfo, SlurmSource, detect_slurm
from cc_slurm_adapter.testing.slurm_testbed import SlurmTestbed, sacct_state

pytestmark = pytest.mark.slurm

SETTLE_TIMEOUT = 60.0
JOB = ("-n", "1", "--mem=50", "-t", "5")
SLEEP = ("--wrap", "sleep 90")

# What each job is, in Slurm's own words, once settled (the oracle's state).
EXPECTED_UNFILTERED: dict[str, set[str]] = {
    "completed": {"COMPLETED"},
    "failed": {"FAILED"},
    "running": {"RUNNING"},
    "pend_then_run": {"RUNNING"},
    # The run before the requeue keeps its own row, with start and end. Its state reads
    # REQUEUED, but on 24.11.5 it read PENDING (start and end set) for over a minute
    # once: membership of the window is settled, the state string is not.
    "requeued": {"REQUEUED", "PENDING"},
    "suspended": {"SUSPENDED"},
    "cancel_pending": {"CANCELLED"},
    "pending": {"PENDING"},  # eligible (DOWN partition), never started
}
NEVER_ELIGIBLE = {"cancel_held", "held"}  # not in a plain window either
RAN = {"completed", "failed", "running", "pend_then_run", "requeued", "suspended"}
NEVER_STARTED = {"pending", "held", "cancel_pending", "cancel_held"}


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))


def _rows(tb: SlurmTestbed, job_id: int) -> list[dict[str, Any]]:
    """Every accounting row of the job (``-D``: a requeue adds one per run)."""
    out = tb.run("sacct", "--json", "-a", "-X", "-D", "-j", str(job_id)).stdout
    return [j for j in json.loads(out).get("jobs", []) if j.get("job_id") == job_id]


def _wait_rows(tb: SlurmTestbed, job_id: int, what: str,
               ok: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = _rows(tb, job_id)
        if ok(rows):
            return rows
        time.sleep(0.25)
    seen = [(sacct_state(r), r.get("name"), r.get("time")) for r in rows]
    raise AssertionError(f"job {job_id} never reached {what} in sacct: {seen}")


def _has(state: str | set[str], name: str, *, ended: bool = False, started: bool = False,
         eligible: bool = False) -> Callable[[list[dict[str, Any]]], bool]:
    """Some row is in ``state`` (one of) with the real name (22.05 first writes a placeholder row
    named ``allocation``) and, as asked, has its end, start or eligible time."""
    states = {state} if isinstance(state, str) else state

    def ok(rows: list[dict[str, Any]]) -> bool:
        for r in rows:
            t = r.get("time") or {}
            if (sacct_state(r) in states and r.get("name") == name
                    and (not ended or t.get("end")) and (not started or t.get("start"))
                    and (not eligible or t.get("eligible"))):
                return True
        return False
    return ok


@pytest.fixture()
def down_partition(slurm_cluster: SlurmTestbed) -> Iterator[str]:
    """A hidden partition that is DOWN: jobs queue there eligible and never start."""
    tb = slurm_cluster
    name = f"ccsasf{secrets.token_hex(3)}"
    tb.run("scontrol", "create", f"PartitionName={name}", "Nodes=node1", "State=DOWN",
           "Hidden=YES")
    try:
        yield name
    finally:
        # the jobs are cancelled first (by the test's own finally); a partition that
        # still holds pending jobs cannot be deleted
        tb.run("scontrol", "delete", f"PartitionName={name}", check=False)


def test_state_filter_keeps_every_job_that_ran_or_ended(slurm_cluster: SlurmTestbed,
                                                        down_partition: str) -> None:
    tb = slurm_cluster
    tag = secrets.token_hex(3)
    names = {key: f"sf-{key}-{tag}" for key in RAN | NEVER_STARTED}
    window_start = time.time() - 2
    ids: dict[str, int] = {}

    def submit(key: str, *args: str) -> int:
        ids[key] = tb.submit(["-J", names[key], *JOB, *args])
        return ids[key]

    try:
        submit("completed", "--wrap", "true")
        submit("failed", "--wrap", "exit 3")
        submit("running", *SLEEP)
        submit("requeued", "--requeue", *SLEEP)
        submit("suspended", *SLEEP)
        submit("pend_then_run", "--hold", *SLEEP)
        submit("cancel_pending", "-p", down_partition, "--wrap", "true")
        submit("cancel_held", "--hold", "--wrap", "true")
        submit("pending", "-p", down_partition, "--wrap", "true")
        submit("held", "--hold", "--wrap", "true")

        # the job cancelled while pending was eligible first: slurmdbd has it PENDING
        _wait_rows(tb, ids["cancel_pending"], "eligible PENDING",
                   _has("PENDING", names["cancel_pending"], eligible=True))
        tb.cancel(ids["cancel_pending"])
        tb.cancel(ids["cancel_held"])
        time.sleep(1.5)  # pend_then_run is pending for a while of the window
        tb.run("scontrol", "release", str(ids["pend_then_run"]))
        for key in ("running", "requeued", "suspended", "pend_then_run"):
            tb.wait_state(ids[key], "RUNNING", timeout=SETTLE_TIMEOUT)
        tb.run("scontrol", "requeue", str(ids["requeued"]))
        tb.run("scontrol", "suspend", str(ids["suspended"]))

        # settled: every job in slurmdbd as it will stay while we read
        settle = {
            "completed": _has("COMPLETED", names["completed"], ended=True),
            "failed": _has("FAILED", names["failed"], ended=True),
            "running": _has("RUNNING", names["running"], started=True),
            "pend_then_run": _has("RUNNING", names["pend_then_run"], started=True),
            "requeued": _has(EXPECTED_UNFILTERED["requeued"], names["requeued"],
                             started=True, ended=True),
            "suspended": _has("SUSPENDED", names["suspended"], started=True),
            "cancel_pending": _has("CANCELLED", names["cancel_pending"], ended=True),
            "cancel_held": _has("CANCELLED", names["cancel_held"], ended=True),
            "pending": _has("PENDING", names["pending"], eligible=True),
            "held": _has("PENDING", names["held"]),
        }
        rows = {key: _wait_rows(tb, ids[key], key, ok) for key, ok in settle.items()}
        first = rows["pend_then_run"][0]["time"]
        assert first["start"] > first["submission"], first  # it did pend in the window
        time.sleep(1.0)  # -E is whole seconds: every event above is before it
        window_end = time.time()

        runner = CommandRunner(timeout=60, env=tb.env, bin_dir=str(tb.bin_dir))
        source = SlurmSource(runner, asyncio.run(detect_slurm(runner)))
        filtered = asyncio.run(source.accounting(window_start, window_end))
        listing = asyncio.run(source.window_listing(window_start, window_end))
        window = ["-S", _utc(window_start), "-E", _utc(window_end)]
        oracle = asyncio.run(runner.run(["sacct", "--json", "-a", "-X", *window])).stdout
    finally:
        for job_id in ids.values():
            tb.run("scancel", str(job_id), check=False)

    by_id = {job_id: key for key, job_id in ids.items()}
    unfiltered = {by_id[j["job_id"]]: j for j in json.loads(oracle)["jobs"]
                  if j.get("job_id") in by_id}
    kept = {by_id[r.job_id] for r in filtered if r.job_id in by_id}

    # the oracle says what Slurm holds for the window ...
    states = {key: sacct_state(j) for key, j in unfiltered.items()}
    assert states.keys() == EXPECTED_UNFILTERED.keys(), (tb.version, states)
    assert all(states[k] in EXPECTED_UNFILTERED[k] for k in states), (tb.version, states)
    assert not NEVER_ELIGIBLE & unfiltered.keys()
    # ... and the filter keeps exactly the jobs that ran (not time.start: sacct reports
    # start = end for a job cancelled while pending on 24.11.5 and 26.05.5; 22.05.8: 0)
    assert kept == unfiltered.keys() - NEVER_STARTED, (tb.version, kept)
    assert kept == RAN, (tb.version, kept)
    # 22.05's pre-check (SlurmSource.window_listing): the text listing of the window
    # holds the same jobs, and the ones that cannot change any more (ended, or running
    # for 90 s) with the oracle's state, start and end
    assert listing is not None, tb.version
    listed = {by_id[row.job_id]: row for row in listing if row.job_id in by_id}
    assert listed.keys() == kept, (tb.version, listed)
    for key in ("completed", "failed", "running"):
        job, row = unfiltered[key], listed[key]
        assert (row.state.split(" ")[0], row.start, row.end) == (
            sacct_state(job), job["time"]["start"], job["time"]["end"] or None), (key, row)


def _running_view(doc: dict[str, Any]) -> dict[int, tuple[str, int, int]]:
    """job id → (state, start, end) of a plain ``sacct --json`` window (the oracle)."""
    return {int(j["job_id"]): (sacct_state(j), j["time"]["start"], j["time"]["end"])
            for j in doc["jobs"]}


def test_window_precheck_reads_the_json_only_when_something_changed(
        slurm_cluster: SlurmTestbed, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pre-check, on every release (forced on where the JSON is fast): a window of
    held runs that still run is one text call; a new job, or one that has ended, brings
    the JSON call, and the job read from it. What is held comes from the oracle (plain
    ``sacct --json`` of the same window), and a quiet window is one that the oracle
    reads the same before and after the call (another test's job may end meanwhile)."""
    tb = slurm_cluster
    monkeypatch.setattr(SlurmInfo, "sacct_json_stalls", property(lambda self: True))
    runner = CommandRunner(timeout=60, env=tb.env, bin_dir=str(tb.bin_dir))
    source = SlurmSource(runner, asyncio.run(detect_slurm(runner)))
    name = f"pc-{secrets.token_hex(3)}"
    ids = [tb.submit(["-J", name, *JOB, *SLEEP]) for _ in range(2)]
    try:
        for job_id in ids:
            tb.wait_state(job_id, "RUNNING", timeout=SETTLE_TIMEOUT)
            _wait_rows(tb, job_id, "RUNNING", _has("RUNNING", name, started=True))

        def oracle(a: float, b: float) -> dict[int, tuple[str, int, int]]:
            out = asyncio.run(runner.run(["sacct", "--json", "-a", "-X",
                                          "--nnodes=1-2147483647", "-S", _utc(a),
                                          "-E", _utc(b)])).stdout
            return _running_view(json.loads(out))

        def window(a: float, b: float, held: dict[int, int]) -> tuple[Any, int]:
            before = runner.calls
            result = asyncio.run(source.accounting_window(a, b, held))
            return result, runner.calls - before

        quiet = None
        for _attempt in range(5):
            b = time.time()
            a = b - 2
            view = oracle(a, b)
            held = {i: start for i, (state, start, end) in view.items()
                    if state == "RUNNING" and not end}
            result, calls = window(a, b, held)
            if view == oracle(a, b) and held.keys() == view.keys():
                quiet = (view, result, calls)
                break
            time.sleep(1)
        assert quiet is not None, "the window never held only running jobs"
        view, result, calls = quiet
        assert set(ids) <= view.keys()
        assert calls == 1 and result.jobs == [], (tb.version, calls, result.jobs)
        assert set(result.unchanged) == view.keys()

        # one of ours not held (new to the caller): the JSON is read, and gives it
        held = {i: s for i, s in held.items() if i != ids[0]}
        result, calls = window(a, b, held)
        assert calls == 2, tb.version
        assert ids[0] in {r.job_id for r in result.jobs}
        assert ids[0] not in result.unchanged and ids[1] in result.unchanged

        # one of ours ended: its start is held, its row is no longer RUNNING
        tb.cancel(ids[1])
        _wait_rows(tb, ids[1], "CANCELLED", _has("CANCELLED", name, ended=True))
        b2 = time.time()
        result, calls = window(a, b2, {**held, ids[0]: view[ids[0]][1]})
        assert calls == 2, tb.version
        ended = [r for r in result.jobs if r.job_id == ids[1]]
        assert ended and ended[0].end_time is not None, (tb.version, result.jobs)
    finally:
        for job_id in ids:
            tb.run("scancel", str(job_id), check=False)
