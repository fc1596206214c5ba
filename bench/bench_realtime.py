"""End-to-end latency of the daemon's real-time path, and a job-array burst, on live Slurm.

The real ``cc-slurm-adapter -daemon`` (``slurmPollInterval`` 3600, so only the hook path
can be fast) sends to the cc-backend stand-in; PrologSlurmctld/EpilogSlurmctld of the
release run our hook (``hook.py`` with the release's python3) over
``tcp:127.0.0.1:PORT``. Measured:

* **latency**: for each of ``--jobs`` jobs, the time the stand-in took start_job minus
  the job's start as sacct records it, and the same for stop_job and the end. Slurm's
  times are whole seconds, so up to 1 s of rounding is inside each number (a job that
  starts at x.9 s is recorded at x).
* **burst**: one ``--array=1-N`` job array of ``true`` tasks: the Slurm calls the daemon
  made while it ran (the ``ran <command>`` lines of its debug log), the number of
  real-time rounds, and the time from the array's first start (sacct) until every task
  is started and stopped in the stand-in. The testbed has 6 core slots (node1: 2 cores,
  node2: 4; ``CR_Core``), and its node declarations are fixed in ``testbed/lib``: at most
  6 tasks run at once, so the N tasks arrive as a stream of prologs and epilogs, not
  all at one instant.

The hook slot is restored (``up()`` without a script) at the end. Needs root and the
testbed; the cluster is shared: only this run's jobs are counted.

Run: ``.venv/bin/python bench/bench_realtime.py [--release 24.11] [--jobs 40] [--burst 500]``
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.integration.daemon_harness import (  # noqa: E402
    Daemons,
    rows_of,
    sacct_jobs,
    wait_for,
    wait_stopped,
)
from tests.integration.test_daemon_realtime_live import (  # noqa: E402
    arrival,
    free_port,
    hook_script,
    listening,
)

from cc_slurm_adapter.testing.ccbackend.standin import StandIn  # noqa: E402
from cc_slurm_adapter.testing.slurm_testbed import SlurmTestbed  # noqa: E402

CALL = re.compile(r"ran (sacct|squeue|scontrol|sinfo)\b")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency(tb: SlurmTestbed, standin: StandIn, daemon: object, n: int) -> None:
    ids: list[int] = []
    # waves of 4 one-CPU jobs (6 core slots, shared with other sessions)
    for wave in range(0, n, 4):
        batch = [tb.submit(["-J", "rtbench-lat", "-t", "5", "--wrap", "sleep 1"],
                           user="testuser") for _ in range(min(4, n - wave))]
        ids += batch
        wait_stopped(standin, batch, tb.cluster, daemon=None, timeout=240)
    starts: list[float] = []
    stops: list[float] = []
    for job_id in ids:
        for job in sacct_jobs(tb, job_id, name="rtbench-lat"):
            starts.append(arrival(standin, job.job_id, "start_job") - job.start)
            stops.append(arrival(standin, job.job_id, "stop_job") - job.end)
    for name, values in (("start_job - start", starts), ("stop_job - end", stops)):
        print(f"{name:18s} n={len(values)} p50 {statistics.median(values):.3f} s  "
              f"p95 {pct(values, 0.95):.3f} s  max {max(values):.3f} s  "
              f"min {min(values):.3f} s")


def prolog_slot(tb: SlurmTestbed) -> str:
    for line in tb.slurm_conf.read_text().splitlines():
        if line.startswith("PrologSlurmctld="):
            return line.split("=", 1)[1]
    return "(none)"


def burst(tb: SlurmTestbed, standin: StandIn, log: Path, n: int) -> None:
    offset = log.stat().st_size
    t_submit = time.time()
    array = tb.submit(["-J", "rtbench-burst", "-t", "5", f"--array=1-{n}", "--wrap", "true"],
                      user="testuser")

    def tasks() -> list[int] | None:
        out = tb.run("sacct", "-n", "-X", "-P", "-j", str(array), "-o", "JobIDRaw,State",
                     check=False).stdout.split()
        done = [int(line.split("|")[0]) for line in out
                if "|" in line and line.split("|")[1] in ("COMPLETED", "FAILED")]
        return done if len(done) == n else None
    ids = wait_for(tasks, 900, f"all {n} tasks of array {array} to end", interval=2.0)
    def stopped() -> list[int]:
        return [j for j, rows in rows_of(standin, ids, tb.cluster).items()
                if any(r.job_state != "running" for r in rows)]
    try:
        wait_for(lambda: len(stopped()) == n, 120, "every task stopped in the stand-in",
                 interval=0.5)
    except AssertionError:
        text = log.read_text(errors="replace")[offset:]
        events = len(re.findall(r"hook: job \d+ started", text))
        print(f"burst: only {len(stopped())} of {n} tasks stopped in the stand-in; the "
              f"daemon got {events} prolog events (was the hook slot changed meanwhile? "
              f"PrologSlurmctld is now {prolog_slot(tb)})")
        return
    t_all = max(max(arrival(standin, j, "start_job"), arrival(standin, j, "stop_job"))
                for j in ids)
    jobs = sacct_jobs(tb, array, timeout=120)
    first_start = min(j.start for j in jobs)
    last_end = max(j.end for j in jobs)
    text = log.read_text(errors="replace")[offset:]
    calls = CALL.findall(text)
    rounds = text.count("real-time path: ")
    by_cmd = {c: calls.count(c) for c in sorted(set(calls))}
    print(f"burst: {n} tasks, Slurm ran them from {first_start - t_submit:+.1f} s to "
          f"{last_end - t_submit:+.1f} s after submission ({last_end - first_start} s)")
    print(f"burst: all {n} started and stopped in the stand-in {t_all - first_start:.1f} s "
          f"after the first start, {t_all - last_end:.2f} s after the last end")
    print(f"burst: {len(calls)} Slurm calls by the daemon ({by_cmd}) in {rounds} "
          f"real-time rounds; {len(calls) / n:.2f} calls per task")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--release", default="24.11")
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--burst", type=int, default=500)
    args = parser.parse_args()
    tb = SlurmTestbed(args.release)
    reason = tb.unavailable_reason()
    if reason is not None:
        print(f"no testbed: {reason}")
        return 0
    tb.up()
    port = free_port()
    tb.up(prep_script=hook_script(tb.release, port))
    work = Path(tempfile.mkdtemp(prefix="bench-realtime-"))
    daemons = Daemons(work, tb.env)
    try:
        with StandIn(commit_interval=2.0) as standin:
            daemon = daemons.new(standin.url, standin.token, slurmPollInterval=3600,
                                 prepSockListenPath=f"tcp:127.0.0.1:{port}").start()
            wait_for(lambda: listening(port), 30, "the hook socket", daemon=daemon)
            wait_for(lambda: "jobs seen" in daemon.run_stderr(), 60, "the first poll",
                     daemon=daemon)
            print(f"Slurm {tb.version}, release {tb.release}; daemon log {daemon.log_path}")
            if args.jobs:
                latency(tb, standin, daemon, args.jobs)
            if args.burst:
                burst(tb, standin, daemon.log_path, args.burst)
            daemon.stop()
    finally:
        daemons.cleanup()
        tb.up()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
