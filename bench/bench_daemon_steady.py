"""Steady state of the real daemon process: RSS, CPU per poll cycle, Slurm calls per cycle.

Usage: python bench/bench_daemon_steady.py [--quick] [--cycles N] [--poll 2]

Each scenario runs ``cc-slurm-adapter -daemon -config FILE`` as its own process, with
the simulated Slurm 24.11 of bench/fake_slurm.py first on its PATH (records copied
from the 24.11.5 testbed recordings; 1,000 nodes) and the cc-backend stand-in as its
own process (a cluster.json with the same 1,000 nodes). The state store is filled
beforehand with N finished job runs (a 600-byte snapshot each, start and stop sent and
acknowledged), its cursor a few seconds old. After a warm-up (the first cycles start
the 1,000 running jobs and fetch their details, 500 per cycle; the outbox drains), the
next ``--cycles`` cycles are measured from outside the process: CPU seconds
(utime+stime of /proc/PID/stat, read at the same point of each cycle: when its live
listing runs), VmRSS/VmHWM, and every Slurm call the fake commands logged.

Scenarios (one run, all measured here):

* store 1k vs store 100k: 1,000 running and 8,000 pending jobs, 5 jobs/s starting and
  ending (10 of each per 2 s cycle): RSS must not grow with the store;
* 10 jobs vs 10,000 jobs in slurmctld (store 1k): Slurm calls per cycle must not grow.

The poll interval is shortened to ``--poll`` seconds (default slurmPollInterval is
60 s); CPU per cycle covers the whole cycle's work: the Slurm calls' parsing, the store
transactions, and sending that cycle's starts and stops. Aim (issue 11): RSS <= 50 MB,
calls per cycle equal at 10 and 10,000 jobs.

Measured 2026-12-02 (2 vCPU, quiet machine), after three changes of that day: started
runs that still run are not read again from the window (``parse_jobs(unchanged=...)``),
glibc's malloc thresholds pinned, SQLite's page cache at 1 MiB:
  store 1k / 100k, 1,000 running + 8,000 pending: RSS median 42.8 / 42.6 MB, peak (VmHWM)
  48.8 / 48.6 MB (x1.00); CPU 0.125 / 0.160 s per cycle (0.20-0.26 s before);
  10 jobs: median 38.6 MB, CPU 0.020 s; 10,000 jobs: median 41.6, peak 47.4 MB, CPU
  0.143 s; 3.00 Slurm calls per cycle in every scenario. Before: median 44.5-44.6 MB,
  peak 50.0-51.6 MB.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fake_slurm
from cc_slurm_adapter.store import open_store
from cc_slurm_adapter.testing.ccbackend import StandInProcess

REPO = Path(__file__).resolve().parent.parent
CLUSTER_JSON = REPO / "src" / "cc_slurm_adapter" / "testing" / "data" / "testcluster.cluster.json"
SNAPSHOT = b"r" * 600
NODES = 1000


@dataclass(frozen=True)
class Scenario:
    name: str
    store_runs: int
    running: int
    pending: int
    rate: float


@dataclass
class Result:
    scenario: Scenario
    cycles: int
    cpu_per_cycle: float
    rss_median_mb: float
    rss_max_mb: float
    hwm_mb: float
    calls: collections.Counter[str]
    exit_code: int | None


def adapter_binary() -> Path:
    return Path(sys.executable).with_name("cc-slurm-adapter")


def cluster_file(directory: Path) -> Path:
    """testcluster's cluster.json with one sub-cluster: node2's layout on node[0001-1000]."""
    doc = json.loads(CLUSTER_JSON.read_text())
    smt = next(s for s in doc["subClusters"] if s["name"] == "smtnode")
    doc["subClusters"] = [{**smt, "nodes": f"node[0001-{NODES:04d}]"}]
    for metric in doc["metricConfig"]:
        metric.pop("subClusters", None)
    path = directory / "cluster.json"
    path.write_text(json.dumps(doc))
    return path


def fill_store(path: Path, runs: int, now: float) -> float:
    """``runs`` finished job runs (started, stopped, both acknowledged); returns seconds."""
    t = time.perf_counter()
    store = open_store(path)
    base = int(now) - 3 * 86400
    for first in range(1, runs + 1, 1000):
        with store.transaction():
            for j in range(first, min(first + 1000, runs + 1)):
                start = base + j
                run = store.observe(cluster="testcluster", job_id=j, start_time=start,
                                    phase="ended", snapshot=SNAPSHOT, rank=(3, 1))
                store.enqueue_start(run.id, json.dumps(
                    {"jobId": j, "cluster": "testcluster", "startTime": start}).encode())
                store.enqueue_stop(run.id, json.dumps(
                    {"jobId": j, "cluster": "testcluster", "startTime": start,
                     "stopTime": start + 60, "jobState": "completed"}).encode())
        while batch := store.claim(1000):
            with store.transaction():
                for sub in batch:
                    store.ack(sub.id)
    with store.transaction():
        store.set_cursor("testcluster", int(now) - 5)
    store.close()
    return time.perf_counter() - t


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def call_kind(argv: list[str]) -> str:
    exe = argv[0]
    if exe == "squeue":
        return "squeue listing" if "%A %T" in argv else "squeue --json -j (details)"
    if exe == "sacct":
        if "-j" in argv:
            return "sacct -j"
        return "sacct window" if "-S" in argv else "sacct (other)"
    return " ".join(argv[:3])


class CallLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.touch()

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]

    def listings(self) -> int:
        return sum(1 for e in self.entries() if call_kind(e["argv"]) == "squeue listing")


def wait_until(cond: Any, timeout: float, what: str, proc: subprocess.Popen[bytes],
               samples: list[float] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited ({proc.returncode}) while waiting for {what}")
        if cond():
            return
        if samples is not None:
            samples.append(status_mb(proc.pid, "VmRSS"))
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


def run(scenario: Scenario, cycles: int, poll: int, tmp: Path, standin: StandInProcess
        ) -> Result:
    work = tmp / scenario.name.replace(" ", "_")
    work.mkdir()
    now = time.time()
    fill = fill_store(work / "state.db", scenario.store_runs, now)
    fake_bin = work / "bin"
    fake_slurm.install(fake_bin)
    log = CallLog(work / "calls.jsonl")
    config = {
        "ccRestUrl": standin.url, "ccRestJwt": standin.token,
        "statePath": str(work / "state.db"), "pidFilePath": str(work / "daemon.pid"),
        "prepSockListenPath": str(work / "daemon.sock"),
        "prepSockConnectPath": str(work / "daemon.sock"),
        "lastRunPath": str(work / "lastrun"), "slurmPollInterval": poll,
        "ccPollInterval": 60, "ccRestTimeout": 10,
    }
    conf_path = work / "config.json"
    conf_path.write_text(json.dumps(config))
    conf_path.chmod(0o600)
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}",
           "FAKE_SLURM_LOG": str(log.path),
           # steady from the first cycle: RUNNING jobs run now, PENDING wait
           "FAKE_T0": str(now - scenario.running / scenario.rate - 30),
           "FAKE_RATE": str(scenario.rate), "FAKE_RUNNING": str(scenario.running),
           "FAKE_PENDING": str(scenario.pending), "FAKE_NODES": str(NODES)}
    stderr = (work / "daemon.stderr").open("wb")
    proc = subprocess.Popen([str(adapter_binary()), "-daemon", "-config", str(conf_path)],
                            stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, env=env,
                            cwd=str(work))
    try:
        # warm-up: the first cycles capture the running jobs (500 details per cycle)
        # and send their starts; then one more cycle with an empty outbox
        warm = max(3, -(-scenario.running // 500) + 2)
        wait_until(lambda: log.listings() >= warm, 60 + warm * poll * 3, "warm-up", proc)
        ro = open_store(work / "state.db", read_only=True)
        wait_until(lambda: ro.outbox_size() == 0, 60, "the outbox to drain", proc)
        ro.close()
        c0 = log.listings()
        wait_until(lambda: log.listings() > c0, poll * 3 + 30, "a cycle", proc)
        t_begin = time.time()
        cpu0 = cpu_s(proc.pid)
        c1 = log.listings()
        rss: list[float] = []
        wait_until(lambda: log.listings() >= c1 + cycles, cycles * poll * 3 + 30,
                   "the measured cycles", proc, rss)
        cpu1 = cpu_s(proc.pid)
        t_end = time.time()
        hwm = status_mb(proc.pid, "VmHWM")
        calls = collections.Counter(call_kind(e["argv"]) for e in log.entries()
                                    if t_begin - 0.5 <= e["t"] < t_end - 0.5)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr.close()
    print(f"  [{scenario.name}: store filled with {scenario.store_runs:,} runs in {fill:.1f} s; "
          f"daemon exit {code}]", flush=True)
    return Result(scenario, cycles, (cpu1 - cpu0) / cycles, statistics.median(rss), max(rss),
                  hwm, calls, code)


def show(r: Result) -> None:
    s = r.scenario
    per = ", ".join(f"{k} {v / r.cycles:.2f}" for k, v in sorted(r.calls.items()))
    print(f"{s.name}: store {s.store_runs:,} runs, slurmctld {s.running:,} running + "
          f"{s.pending:,} pending; {r.cycles} cycles: CPU {r.cpu_per_cycle:.3f} s/cycle, "
          f"RSS median {r.rss_median_mb:.1f} MB, max {r.rss_max_mb:.1f} MB (VmHWM since "
          f"start {r.hwm_mb:.1f} MB), "
          f"Slurm calls/cycle {sum(r.calls.values()) / r.cycles:.2f} ({per})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller store and cluster, 3 cycles (a smoke run)")
    parser.add_argument("--cycles", type=int, default=None)
    parser.add_argument("--poll", type=int, default=2, help="slurmPollInterval (s)")
    args = parser.parse_args()
    big, running, pending = (10_000, 300, 2_000) if args.quick else (100_000, 1_000, 8_000)
    cycles = args.cycles or (3 if args.quick else 10)
    small_store = 1_000
    scenarios = [
        Scenario("store small", small_store, running, pending, 5.0),
        Scenario("store large", big, running, pending, 5.0),
        Scenario("10 jobs", small_store, 2, 8, 0.5),
        Scenario("10,000 jobs", small_store, running, 10_000 - running, 5.0),
    ]
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp, StandInProcess(
            ["--commit-interval", "0", "--cluster-config", str(cluster_file(Path(tmp)))]
    ) as standin:
        for scenario in scenarios:
            results.append(run(scenario, cycles, args.poll, Path(tmp), standin))
        audit = standin.check()
    for r in results:
        show(r)
    a, b, c, d = results
    print(f"RSS with {b.scenario.store_runs:,} vs {a.scenario.store_runs:,} runs in the store: "
          f"median {b.rss_median_mb:.1f} vs {a.rss_median_mb:.1f} MB "
          f"(x{b.rss_median_mb / a.rss_median_mb:.2f}), max {b.rss_max_mb:.1f} vs "
          f"{a.rss_max_mb:.1f} MB (x{b.rss_max_mb / a.rss_max_mb:.2f}); aim <= 50 MB: "
          f"{'met' if max(x.hwm_mb for x in results) <= 50 else 'NOT met'} "
          f"(largest peak {max(x.hwm_mb for x in results):.1f} MB)")
    cc, cd = sum(c.calls.values()) / c.cycles, sum(d.calls.values()) / d.cycles
    print(f"Slurm calls per cycle: {cc:.2f} at 10 jobs, {cd:.2f} at 10,000 jobs "
          f"({'equal' if set(c.calls) == set(d.calls) and abs(cc - cd) < 0.5 else 'DIFFERENT'}"
          f" kinds and counts); CPU per cycle {c.cpu_per_cycle:.3f} s vs "
          f"{d.cpu_per_cycle:.3f} s; poll interval {args.poll} s (default 60 s)")
    # jobs still running when a daemon was stopped are never stopped: expected here
    print(f"stand-in audit: lost={len(audit['lost'])} duplicates={len(audit['duplicates'])}"
          f" (still running at the end: {len(audit['neverStopped'])}); daemon exit codes "
          f"{[r.exit_code for r in results]}")


if __name__ == "__main__":
    main()
