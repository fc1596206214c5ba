"""Does a poll cycle's cost grow with the pending queue? Each Slurm call, 10 vs 8,000 pending.

Builds a deep queue of *eligible* pending jobs on a live testbed and measures every Slurm
command of :meth:`SlurmSource.cycle` as the adapter runs it (wall time, peak RSS of the
client process from GNU ``time``, output size, records): the first cycle (accounting,
live listing, node topology, details of the running jobs, batch scripts where slurmdbd
keeps them) and the steady cycle (accounting + live listing: nothing new to detail).
Beside them, in the same run: upstream's per-cycle ``squeue --all --json`` and our old
accounting call without the state filter. Measured at ``--small`` (10) and at
``--pending`` (8,000) pending jobs, plus the accounting call once more right after the
queue was cancelled. Ratios are printed at the end.

How the queue is made: ``sbatch --hold`` jobs are never eligible, and slurmdbd leaves
never-eligible jobs out of a ``-S/-E`` window, so they would not show the cost; a job
array is one record in sacct (and in squeue) while its tasks pend (checked on 24.11.5:
``--array=0-99`` gave 1 record in ``sacct --json``, ``squeue --all --json`` and the
listing). So the jobs are individual ``sbatch`` calls as testuser into a hidden
partition that this script creates DOWN (``scontrol create PartitionName=...``): jobs
queue there eligible (reason PartitionDown) and never start, and nobody else's jobs are
affected. ``--running`` small jobs run beside them on ``debug``.

Cleanup, also on error, Ctrl-C or SIGTERM: every job of this run is cancelled (by its
unique name and by the partition) and the partition deleted. The cancelled jobs stay in
slurmdbd: for as long as they are in a window, the filtered accounting call returns
them (CA = ended in the window); this is measured too. The window starts at this run's
start (``--window S``: S seconds before it), so earlier runs' jobs stay out of it.

Needs root and an installed testbed; brings a cluster up if needed (and down again if it
started it and nobody else uses it). Prints a message and exits 0 without a testbed.
Run: ``.venv/bin/python bench/bench_pending_queue.py [--release 24.11 --release 22.05]
[--pending 8000] [--small 10] [--running 2] [--repeat 5] [--quickack]``

Measured on the project VM (2 vCPU, 2026-12-02, 2 running jobs beside the queue, other
work on the machine: load average about 2), with the calls the adapter makes now
(accounting ``sacct --nnodes=1-2147483647``, listing ``--only-job-state`` from 24.05).
Medians of 3; RSS is the client's peak; "jobs" = records returned.

Slurm 24.11.5, 10 -> 8,000 pending:
  accounting  sacct --nnodes=1-…      0.018 s / 6.5 MB / 2     -> 0.017 s / 6.6 MB / 2
  listing     squeue --only-job-state 0.010 s / 5.1 MB         -> 0.019-0.032 s / 13.8 MB / 8,002
  details     squeue --json -j <ids>  0.014 s / 6.4 MB         -> 0.067 s / 23.3 MB
  (before)    sacct without a filter                            -> 2.16 s / 744 MB / 8,002
  upstream    squeue --all --json                               -> 3.81 s / 1,277 MB
  steady cycle (accounting + listing): 0.028 s / 6.5 MB -> 0.036 s / 13.8 MB  (aim met)
  first cycle (+ topology, details, scripts): 0.081 s / 6.9 MB -> 0.154 s / 23.3 MB
  upstream / steady cycle at 8,000: 106x the time, 93x the peak RSS.
  Right after scancel of the 8,000: accounting 0.032 s / 2 jobs; ``-s <all but PD>``
  instead would return all 8,002 cancelled jobs (2.57 s / 745 MB); an empty window costs
  0.114 s with -s against 0.013 s without (-s makes slurmdbd scan its whole job table).
Slurm 22.05.8, 10 -> 8,000 pending (re-measured 2026-12-03, quiet machine, ``--quickack``,
with the window pre-check: the steady cycle's window is the text listing alone when
every job in it is a held run, still running):
  accounting  sacct --json --nnodes=1-… 0.093 s / 6.9 MB / 0  -> 0.362 s / 7.0 MB / 2
  pre-check   sacct -n -P -o JobIDRaw,… 0.094 s / 4.6 MB / 0  -> 0.093 s / 4.6 MB / 2
  listing     squeue -h -a -o '%A %T' 0.005 s / 4.9 MB         -> 0.058 s / 23.5 MB / 8,002
  details     scontrol show job -d -o 0.005 s / 5.5 MB         -> 0.21 s / 24 MB (8.7 MB out)
  (before)    sacct without a filter                            -> 1.26 s / 410 MB / 7,672
  upstream    squeue --all --json     0.008 s                   -> 1.19 s / 391 MB
  steady cycle (pre-check + listing): 0.099 s / 4.9 MB -> 0.151 s / 23.5 MB (aim met);
  before the pre-check (JSON + listing) 0.374 s -> 0.443 s (2026-12-02)
  steady cycle, route quickack 1: 0.010 s -> 0.060 s / 23.7 MB; pre-check 0.005 s there
  first cycle: 0.205 s -> 0.731 s / 24 MB (the detail call dumps every job when several are
  asked for; one job is asked for alone, a single-job RPC). A cycle in which a job of the
  window is new or has changed pays the pre-check on top of the JSON: about 0.46 s.
Where 22.05's time goes: not the queue. Its ``sacct --json`` costs 0.37 s as soon as the
window holds one job (0.10 s for an empty one), with 0.00 s of CPU: strace shows eight
stalls of 40-47 ms, each between a slurmdbd reply's 4-byte length and its body (the
client's delayed ACK meets slurmdbd's Nagle wait; the JSON output adds the association,
QOS and TRES queries). The text listing of the same window waits twice (0.09 s). With
``quickack 1`` on the loopback route the JSON takes 0.016 s; 24.11.5 needs no such setting
(0.017 s), and there the pre-check is off. The README says how a site sets it. The
first 22.05 measurement (0.38-0.40 s at 8,000 against 0.10 s at 10) read this as server
load: the shallow run's window had happened to hold no job. The listing does grow (whole
job table packed, no ``--only-job-state`` before 24.05): 0.005 -> 0.06 s at 8,000.
Every cycle stays within 50 MB.

Hazards seen: a `scontrol reconfigure` by someone else (24.11 re-executes slurmctld and
rebuilds the partitions from slurm.conf) drops the script's partition mid-run (the run
then stops and cancels its jobs by name); ended jobs stay in slurmctld for MinJobAge
and count against MaxJobCount (the script waits for room first); each ended job runs
the testbed's EpilogSlurmctld. Once, a reconfigure while thousands of those epilogs ran
left 24.11.5's slurmctld deadlocked (no log, 0 % CPU, `scontrol ping`: DOWN).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from cc_slurm_adapter.errors import SlurmCommandFailed  # noqa: E402
from cc_slurm_adapter.slurm.runner import CommandResult, slurm_env  # noqa: E402
from cc_slurm_adapter.slurm.source import SlurmSource, detect_slurm  # noqa: E402
from cc_slurm_adapter.testing.slurm_testbed import SlurmTestbed, TestbedError  # noqa: E402

TIME = "/usr/bin/time"  # GNU time: %M = max RSS of the command in KiB
# The product's filter, "ran on 1+ nodes" (SlurmSource._RAN_FILTER): it keeps slurmdbd's
# indexed time window, where -s's per-state conditions scan the whole job table (see the
# empty-window rows). -s with every state but PD is measured beside it as the alternative.
NNODES = "--nnodes=1-2147483647"
ALL_BUT_PENDING = "BF,CA,CD,DL,F,NF,OOM,PR,R,RQ,RS,RV,S,TO"
EMPTY = ("-S", "2020-01-01T00:00:00", "-E", "2020-01-01T01:00:00")
AIM_SECONDS = 0.2
AIM_MB = 50.0


@dataclass
class Call:
    argv: tuple[str, ...]
    wall: float
    rss: int  # bytes
    out: int  # bytes


@dataclass
class MeasuringRunner:
    """A :class:`Runner` that runs each command synchronously and keeps its wall time
    and the peak RSS of the client process (GNU ``time``, which reads it with ``wait4``;
    the testbed wrappers ``exec`` the real client, so this is sacct's/squeue's own)."""

    bin_dir: Path
    env: dict[str, str]
    calls: int = 0
    log: list[Call] = field(default_factory=list)

    def measure(self, argv: Sequence[str]) -> tuple[Call, bytes, str, int]:
        exe = argv[0] if "/" in argv[0] else str(self.bin_dir / argv[0])
        with tempfile.TemporaryFile() as errf, tempfile.NamedTemporaryFile("r") as rss:
            # /usr/bin/time forks the client from its own small image; a child forked from
            # this Python would inherit our RSS high-water mark as its floor (Linux keeps
            # the pre-exec mm's peak in ru_maxrss), so os.wait4 here would read ~30 MB
            # for a 10 MB sacct.
            t0 = time.perf_counter()
            proc = subprocess.run([TIME, "-q", "-f", "%M", "-o", rss.name, exe, *argv[1:]],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=errf, env=self.env, check=False)
            wall = time.perf_counter() - t0
            errf.seek(0)
            err = errf.read().decode("utf-8", "replace")
            kb = rss.read().split()
        call = Call(tuple(argv), wall, int(kb[-1]) * 1024 if kb else -1, len(proc.stdout))
        return call, proc.stdout, err, proc.returncode

    async def run(self, argv: Sequence[str], *, timeout: float | None = None,
                  ok_codes: Sequence[int] = (0,)) -> CommandResult:
        self.calls += 1
        call, out, err, code = self.measure(argv)
        self.log.append(call)
        if code not in ok_codes:
            raise SlurmCommandFailed(f"{argv[0]} exited {code}: {err.strip()[:200]}",
                                     argv=list(argv), returncode=code, stderr=err)
        return CommandResult(argv=tuple(argv), stdout=out, stderr=err, returncode=code,
                             seconds=call.wall)


def label(argv: tuple[str, ...]) -> str:
    words = [a for a in argv if not a[:1].isdigit()]
    if argv[0] == "sacct" and NNODES in argv and "-P" in argv:
        return "sacct -n -P -o JobIDRaw,State,… (pre-check)"
    if argv[0] == "sacct" and NNODES in argv:
        return "sacct --nnodes=1-… (accounting)"
    if argv[0] == "sacct" and "-s" in argv and "2020-01-01T00:00:00" in argv:
        return "sacct -s, empty window in 2020"
    if argv[0] == "sacct" and "2020-01-01T00:00:00" in argv:
        return "sacct no -s, empty window in 2020"
    if argv[0] == "sacct" and "-s" in argv:
        return "sacct -s <all but PD> (alternative)"
    if argv[0] == "sacct" and "-B" in argv:
        return "sacct -B -j <ids> (scripts)"
    if argv[0] == "sacct":
        return "sacct, no -s (old accounting)"
    if argv[0] == "squeue" and "--only-job-state" in argv:
        return "squeue --only-job-state (alt. listing)"
    if argv[0] == "squeue" and "%A %T" in argv:
        return "squeue -o '%A %T' (listing)"
    if argv[0] == "squeue" and "-j" in argv:
        return "squeue --json -j <ids> (details)"
    if argv[0] == "squeue" and "--states=all" in argv:
        return "squeue --json --states=all (details)"
    if argv[0] == "squeue":
        return "squeue --all --json (upstream)"
    if argv[0] == "scontrol" and "job" in argv:
        return "scontrol show job -d -o (details)"
    return " ".join(words[:3]) + " (topology)"


def records(call_out: bytes, argv: tuple[str, ...]) -> int:
    if "%A %T" in argv or "-P" in argv:
        return len(call_out.splitlines())
    if argv[0] == "scontrol" and "job" in argv:
        return len([line for line in call_out.splitlines() if line.startswith(b"JobId=")])
    try:
        doc = json.loads(call_out)
    except ValueError:
        return -1
    for key in ("jobs", "nodes"):
        if isinstance(doc.get(key), list):
            return len(doc[key])
    return -1


@dataclass
class Row:
    name: str
    wall: float
    rss: float  # MB
    out: float  # MB
    n: int


def summarise(name: str, samples: list[tuple[Call, int]]) -> Row:
    return Row(name, statistics.median(c.wall for c, _ in samples),
               max(c.rss for c, _ in samples) / 1e6,
               statistics.median(c.out for c, _ in samples) / 1e6,
               max(n for _, n in samples))


@contextlib.contextmanager
def loopback_quickack() -> Iterator[None]:
    """``quickack 1`` on the route to 127.0.0.1 (the testbed's slurmdbd) for a while.

    22.05's slurmdbd stalls about 40 ms per message on a TCP connection (the client's
    delayed ACK meets the server's Nagle wait; 24.11 and 26.05 do not). With quickack the
    client acknowledges at once. The route is put back as it was, also on error."""
    shown = subprocess.run(["ip", "route", "show", "table", "local", "127.0.0.1"],
                           capture_output=True, text=True, check=True).stdout.split()
    if not shown or "quickack" in shown:
        raise TestbedError(f"unexpected loopback route: {' '.join(shown)!r}")
    base = ["ip", "route", "change", *shown, "table", "local"]
    subprocess.run([*base, "quickack", "1"], check=True)
    try:
        yield
    finally:
        subprocess.run(base, check=True)


async def measure_depth(tb: SlurmTestbed, start: float, repeat: int,
                        quickack: bool = False) -> list[Row]:
    """All calls of a first and a steady cycle, upstream's squeue and the old sacct;
    with ``quickack``, the steady cycle once more with quickack on the loopback route."""
    runner = MeasuringRunner(tb.bin_dir, slurm_env(tb.env))
    info = await detect_slurm(runner)
    end = time.time()
    rows: list[Row] = []
    runner.log.clear()
    source = SlurmSource(runner, info)
    first = await source.cycle(start, end)
    found = {"accounting": len(first.accounting), "listing": len(first.live),
             "details": len(first.details), "scripts": len(first.scripts)}
    for call in runner.log:
        name = label(call.argv)
        n = next((v for k, v in found.items() if f"({k})" in name), -1)
        rows.append(Row("first: " + name, call.wall, call.rss / 1e6, call.out / 1e6, n))
    per_call: dict[str, list[tuple[Call, int]]] = {}

    # what the daemon holds after the first cycle: the runs it has started (job id ->
    # start), whose unchanged rows a steady window need not read (22.05's pre-check)
    held = {r.job_id: r.start_time for r in first.accounting
            if r.start_time is not None and r.end_time is None}

    async def steady_cycles(prefix: str) -> None:
        for _ in range(repeat):
            runner.log.clear()
            steady = await source.cycle(start, end, captured=set(first.live),
                                        unchanged=held)
            for call in runner.log:
                name = label(call.argv)
                n = (len(steady.accounting) + len(steady.unchanged)
                     if "accounting" in name or "pre-check" in name else len(steady.live))
                per_call.setdefault(prefix + name, []).append((call, n))

    await steady_cycles("steady: ")
    if quickack:
        with loopback_quickack():
            await steady_cycles("quickack steady: ")
    for extra in (["sacct", info.json_flag, "--allusers", "-X", "-S", _utc(start), "-E",
                   _utc(end)], ["squeue", "--all", "--json"],
                  ["sacct", info.json_flag, "--allusers", "-X", NNODES, "-S", _utc(start),
                   "-E", _utc(end)],
                  ["squeue", "-h", "-a", "--only-job-state", "-o", "%A %T"]):
        samples = []
        for _ in range(repeat):
            call, out, err, code = runner.measure(extra)
            if code != 0 and "--only-job-state" in extra:
                break  # an option of 24.05+ (a light RPC: id and state only)
            if code != 0:
                raise TestbedError(f"{' '.join(extra)} exited {code}: {err.strip()}")
            samples.append((call, records(out, call.argv)))
        if samples:
            per_call[label(tuple(extra))] = samples
    rows += [summarise(name, samples) for name, samples in per_call.items()]
    return rows


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))


async def measure_accounting(tb: SlurmTestbed, start: float, repeat: int) -> list[Row]:
    runner = MeasuringRunner(tb.bin_dir, slurm_env(tb.env))
    source = SlurmSource(runner, await detect_slurm(runner))
    samples = []
    for _ in range(repeat):
        runner.log.clear()
        jobs = await source.accounting(start, time.time())
        samples.append((runner.log[-1], len(jobs)))
    rows = [summarise("after scancel: " + label(samples[0][0].argv), samples)]
    for argv in (["sacct", "--json", "--allusers", "-X", "-s", ALL_BUT_PENDING, "-S",
                  _utc(start), "-E", _utc(time.time())],
                 ["sacct", "--json", "--allusers", "-X", "-s", ALL_BUT_PENDING,
                  *EMPTY],
                 ["sacct", "--json", "--allusers", "-X", *EMPTY]):
        measured = [runner.measure(argv) for _ in range(repeat)]
        rows.append(summarise("after scancel: " + label(tuple(argv)),
                              [(c, records(out, c.argv)) for c, out, _e, _r in measured]))
    return rows


class Queue:
    """This run's jobs on one testbed: the DOWN partition and everything submitted."""

    def __init__(self, tb: SlurmTestbed) -> None:
        self.tb = tb
        tag = secrets.token_hex(3)
        self.partition = f"ccsabench{tag}"
        self.name = f"ccsa-bench-pending-{tag}"
        self.created = False
        self.submitted = 0

    def create(self) -> None:
        self.tb.run("scontrol", "create", f"PartitionName={self.partition}", "Nodes=node1",
                    "State=DOWN", "Hidden=YES")
        self.created = True

    def _sbatch(self, args: Sequence[str]) -> int:
        for attempt in range(20):
            try:
                return self.tb.submit(["-J", self.name, "-o", "/dev/null", *args])
            except TestbedError as exc:  # "temporarily unable to accept job": back off
                if "temporarily" not in str(exc).lower() or attempt == 19:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def submit_pending(self, n: int, pool: ThreadPoolExecutor) -> None:
        args = ["-p", self.partition, "-n", "1", "--mem=10", "-t", "1", "--wrap", "true"]
        for _ in pool.map(lambda _i: self._sbatch(args), range(n)):
            self.submitted += 1

    def submit_running(self, n: int) -> list[int]:
        ids = [self._sbatch(["-n", "1", "--mem=20", "-t", "10", "--wrap", "sleep 600"])
               for _ in range(n)]
        for job_id in ids:
            self.tb.wait_state(job_id, "RUNNING", timeout=120)
        return ids

    def cancel_pending(self) -> None:
        if self.created:
            self.tb.run("scancel", f"--partition={self.partition}", check=False, timeout=300)

    def cleanup(self) -> None:
        self.cancel_pending()
        self.tb.run("scancel", f"--name={self.name}", check=False, timeout=300)
        if not self.created:
            return
        for _ in range(40):
            proc = self.tb.run("scontrol", "delete", f"PartitionName={self.partition}",
                               check=False)
            if proc.returncode == 0:
                self.created = False
                return
            time.sleep(0.5)
        print(f"WARNING: could not delete partition {self.partition}: {proc.stderr.strip()}")

    def wait_empty(self, timeout: float = 120) -> None:
        """Until slurmctld has no pending job of ours left, and a moment for slurmdbd."""
        deadline = time.monotonic() + timeout
        while self.pending_count() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)

    def wait_for_room(self, n: int, margin: int = 1000, timeout: float = 420) -> None:
        """Until slurmctld can take ``n`` more jobs and still ``margin`` for other users.

        Ended jobs stay in slurmctld for MinJobAge (300 s here) and count against
        MaxJobCount (10,000): a second run right after the first would fill it, and
        every sbatch of anyone on the cluster would then hang in its retry loop."""
        config = self.tb.run("scontrol", "show", "config").stdout
        limit = next((int(line.split("=", 1)[1]) for line in config.splitlines()
                      if line.split("=", 1)[0].strip() == "MaxJobCount"), 10000)
        deadline = time.monotonic() + timeout
        while True:
            held = len(self.tb.run("squeue", "-h", "-a", "--states=all", "-o", "%A",
                                   timeout=120).stdout.split())
            if held + n + margin <= limit:
                return
            if time.monotonic() > deadline:
                raise TestbedError(f"slurmctld holds {held} jobs (MaxJobCount {limit}): no "
                                   f"room for {n} more; try again after MinJobAge")
            print(f"slurmctld holds {held} jobs (MaxJobCount {limit}); waiting for ended "
                  "jobs to be purged ...", flush=True)
            time.sleep(15)

    def pending_count(self) -> int:
        out = self.tb.run("squeue", "-h", "-a", "-p", self.partition, "-t", "PD", "-o",
                          "%A").stdout
        return len(out.split())


def print_rows(title: str, rows: list[Row]) -> None:
    print(f"\n{title}\n{'call':58} {'wall':>8} {'RSS':>9} {'output':>9} {'records':>8}")
    for r in rows:
        n = "" if r.n < 0 else str(r.n)
        print(f"{r.name:58} {r.wall:7.3f}s {r.rss:7.1f}MB {r.out:7.2f}MB {n:>8}")


def cycle_total(rows: list[Row], prefix: str) -> tuple[float, float]:
    mine = [r for r in rows if r.name.startswith(prefix)]
    return sum(r.wall for r in mine), max((r.rss for r in mine), default=0.0)


def find(rows: list[Row], part: str) -> Row:
    return next(r for r in rows if part in r.name)


def bench_release(release: str, args: argparse.Namespace) -> bool:
    tb = SlurmTestbed(release)
    reason = tb.unavailable_reason() or (
        None if os.access(TIME, os.X_OK) else f"{TIME} missing (apt-get install time)")
    if reason is not None:
        print(f"SKIP: no Slurm {release} testbed here: {reason}")
        return True
    lock = tb.session_lock()
    lock.acquire(exclusive=False)
    marker = tb.base_dir / f"{release}.started-by-tests"
    queue = Queue(tb)
    pool = ThreadPoolExecutor(max_workers=args.workers)
    try:
        if not tb.is_up():
            tb.up()
            marker.touch()
        lock.acquire(exclusive=False)
        print(f"\n===== Slurm {tb.version} (testbed {release}) =====", flush=True)
        # -S: this run's start (default), so that earlier runs' cancelled jobs stay out
        start = time.time() - args.window
        queue.wait_for_room(args.pending + args.running)
        queue.create()
        queue.submit_running(args.running)
        queue.submit_pending(args.small, pool)
        small = asyncio.run(measure_depth(tb, start, args.repeat, args.quickack))
        print_rows(f"{queue.pending_count()} pending + {args.running} running (ours)", small)
        t0 = time.monotonic()
        queue.submit_pending(args.pending - args.small, pool)
        print(f"\nsubmitted {args.pending - args.small} more in {time.monotonic() - t0:.0f} s",
              flush=True)
        deep = asyncio.run(measure_depth(tb, start, args.repeat, args.quickack))
        depth = queue.pending_count()
        print_rows(f"{depth} pending + {args.running} running (ours)", deep)
        queue.cancel_pending()
        queue.wait_empty()
        after = asyncio.run(measure_accounting(tb, start, args.repeat))
        print_rows("right after cancelling the pending queue", after)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        queue.cleanup()
        if marker.exists() and lock.try_exclusive():
            tb.down()
            marker.unlink(missing_ok=True)
        lock.release()

    ok = True
    print(f"\n--- Slurm {tb.version}: {args.small} vs {depth} pending "
          f"(median of {args.repeat}, RSS = max) ---")
    for prefix in ("first:", "steady:", "quickack steady:")[:3 if args.quickack else 2]:
        (w1, m1), (w2, m2) = cycle_total(small, prefix), cycle_total(deep, prefix)
        fits = w2 <= AIM_SECONDS and m2 <= AIM_MB
        ok = ok and (fits or prefix == "first:")
        print(f"{prefix:16} cycle, all Slurm calls: {w1:.3f} s / {m1:.1f} MB -> "
              f"{w2:.3f} s / {m2:.1f} MB ({w2 / w1:.1f}x time, {m2 / m1:.1f}x RSS)"
              f"{'' if fits else '  ABOVE AIM'} (aim <= {AIM_SECONDS} s, <= {AIM_MB:.0f} MB)")
    up, old = find(deep, "upstream"), find(deep, "old accounting")
    w, m = cycle_total(deep, "steady:")
    print(f"upstream squeue --all --json: {up.wall:.3f} s / {up.rss:.1f} MB = "
          f"{up.wall / w:.0f}x the steady cycle's time, {up.rss / m:.0f}x its peak RSS")
    acc = next(r for r in deep if r.name == "sacct --nnodes=1-… (accounting)")
    print(f"accounting with {NNODES} vs without a filter: {acc.wall:.3f} s / {acc.rss:.1f} MB"
          f" / {acc.n} jobs vs {old.wall:.3f} s / {old.rss:.1f} MB / {old.n} jobs "
          f"({old.wall / acc.wall:.0f}x time, {old.rss / acc.rss:.0f}x RSS)")
    acc2, alt = after[0], after[1]
    print(f"after scancel of the queue, accounting: {acc2.wall:.3f} s / {acc2.rss:.1f} MB"
          f" / {acc2.n} jobs; with -s <all but PD> instead (cancelled while pending = "
          f"ended in the window): {alt.wall:.3f} s / {alt.rss:.1f} MB / {alt.n} jobs")
    print(f"empty window, slurmdbd's query alone: -s {after[2].wall:.3f} s, without "
          f"{after[3].wall:.3f} s (-s scans the whole job table)")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--release", action="append", help="testbed release (default 24.11)")
    ap.add_argument("--pending", type=int, default=8000, help="deep queue: pending jobs")
    ap.add_argument("--small", type=int, default=10, help="shallow queue: pending jobs")
    ap.add_argument("--running", type=int, default=2, help="small running jobs besides")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--window", type=float, default=0.0,
                    help="-S = start - WINDOW s (default 0: this run's start)")
    ap.add_argument("--quickack", action="store_true",
                    help="also measure the steady cycle with `quickack 1` on the loopback "
                         "route (slurmdbd at 127.0.0.1; needs root; the route is restored)")
    ap.add_argument("--workers", type=int, default=4, help="parallel sbatch calls")
    args = ap.parse_args()

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    ok = True
    for release in args.release or ["24.11"]:
        ok = bench_release(release, args) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
