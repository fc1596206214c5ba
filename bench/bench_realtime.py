"""End-to-end latency of the daemon's real-time path, and a job-array burst, on live Slurm.

The real ``cc-slurm-adapter -daemon`` (``slurmPollInterval`` 3600, so only the hook path
can be fast) sends to the cc-backend stand-in; PrologSlurmctld/EpilogSlurmctld of the
release run our hook (``hook.py`` with the release's python3) over
``tcp:127.0.0.1:PORT``. Measured:

* **latency**: for each of ``--jobs`` jobs, the time the stand-in took start_job minus
  the job's start as sacct records it, and the same for stop_job and the end. Slurm's
  times are whole seconds, so up to 1 s of rounding is inside each number (a job that
  starts at x.9 s is recorded at x).
* **burst**: one ``--array=1-N`` job array of ``sleep --burst-seconds`` tasks that all
  start at once. The testbed's nodes stay as declared (node1: 2 cores, node2: 4 cores of
  2 threads, ``CR_Core_Memory``: 6 one-CPU slots; other tests rely on that layout), so
  the bench creates a Hidden partition on node1,node2 with ``OverSubscribe=FORCE:K``
  (K = ceil(N / 6) + 8, 92 for 500; 26.05 takes it at run time) and the tasks ask for
  ``--mem=1``; the partition is deleted in a ``finally`` (Ctrl-C and SIGTERM too) after
  the array's tasks are cancelled, and only then is the hook slot restored, so that
  reconfigure never meets a burst of epilogs. Reported: how many tasks ran in the same
  second (sacct), the time from the first start (sacct, whole s) until all N are started
  in the stand-in and from the last end until all are stopped, start/stop latency, the
  Slurm calls the daemon made (by command from its debug log, and by kind from wrappers
  in its PATH that log each argv), a timing wrapper around the hook that says when
  slurmctld ran each prolog/epilog and how long the hook took (so Slurm's pace and the
  daemon's share can be told apart), and the stand-in's audit (lost, duplicated, never
  stopped, rejected). Before measuring it waits until the daemon's first poll has drained
  (it reads back ``slurmQueryMaxSpan`` = 1 h of every session's jobs on the shared
  cluster: 6,000-8,000 requests); a burst measured on top of that backlog gave start
  p50 62-86 s.

Measured on 26.05.5 (2 cores shared with other sessions; load average 50-110 during
a burst, mostly its own 500 slurmstepds), N=500, 20 s tasks, three full runs:

==========================================  ================  ================  ================
                                            run 1             run 2             run 3
==========================================  ================  ================  ================
running in the same second (sacct)          500               500               500
slurmctld ran the 500 prologs, after the    +0.5 .. +14.0 s   +0.8 .. +17.8 s   +0.3 .. +28.8 s
  first start
all 500 started in the stand-in, after the  22.2 s            45.7 s            101.2 s
  first start
start_job - start (sacct)  p50 / p95        6.7 / 13.8 s      9.8 / 40.2 s      10.4 / 55.8 s
start_job - prolog ran (daemon's share)     1.13 / 2.59 s     1.31 / 24.7 s     1.60 / 39.4 s
slurmctld ran the 500 epilogs, after the    -40.6 .. +0.9 s   -43.3 .. +1.1 s   -55.7 .. +14.0 s
  last end
all 500 stopped, after the last end         0.95 s            1.68 s            16.9 s
stop_job - end  p50 / p95                   7.5 / 13.6 s      8.2 / 31.9 s      38.8 / 47.1 s
stop_job - epilog ran (daemon's share)      1.56 / 6.87 s     1.83 / 24.4 s     11.7 / 41.0 s
hook wall time p50 / max: prolog            (not measured)    0.74 / 1.57 s     1.07 / 28.8 s
hook wall time p50 / max: epilog            (not measured)    1.01 / 22.4 s     1.96 / 22.6 s
hooks at or above the 2 s bound             (not measured)    61 of 1,000       300 of 1,000
Slurm calls by the daemon (rounds)          273 (112)         278 (109)         226 (79)
  squeue --json -a --states=all -j LIST     112               109               78
  sacct --json --allusers -X -j LIST        112               109               77
  sacct --json --allusers -X -B -j LIST     48                59                66
  scontrol show node --json                 1                 1                 1
  the poll (sacct --nnodes, squeue -h)      0                 0                 2 + 2
job ids per call: mean / max                9.2 / 152         9.0 / 167         12.0 / 103
slowest Slurm call the daemon made          (not measured)    (not measured)    34.9 s (squeue)
stand-in audit: lost/dup/never stopped/rej  0/0/0/0           0/0/0/0           0/0/0/0
==========================================  ================  ================  ================

So 0.45-0.55 calls per task (1,000 events in 80-110 rounds). On a quiet host the daemon's
share is about 1.1-1.6 s (p50) and Slurm is the slower half: slurmctld needs 14-29 s to
run 500 PrologSlurmctld hooks and spreads the ends of 500 tasks that started in one
second over 40-56 s. Under load the daemon's p95 follows its Slurm calls (10-35 s each
then; squeue's 10 s message timeout shows). The hook wall time is the wrapper's (sh and
date inside); the interpreter's start-up under load lies outside the hook's own 2 s
SIGALRM budget. A fourth run lost 2 of the 500 epilog events (slurmctld ran the hook, the
daemon never got the message; with ``slurmPollInterval`` 3600 those two stayed running
in the stand-in): the bench lists such tasks and reports the rest instead of failing.

The hook slot is restored (``up()`` without a script) at the end. Needs root and the
testbed; the cluster is shared: only this run's jobs are counted.

Run: ``.venv/bin/python bench/bench_realtime.py [--release 26.05] [--jobs 40] [--burst 500]``
(``--jobs 0`` for the burst alone).
"""

from __future__ import annotations

import argparse
import re
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.integration.daemon_harness import (  # noqa: E402
    Daemons,
    SlurmJob,
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

from cc_slurm_adapter.testing.ccbackend.audit import ExpectedJob  # noqa: E402
from cc_slurm_adapter.testing.ccbackend.standin import StandIn  # noqa: E402
from cc_slurm_adapter.testing.slurm_testbed import SlurmTestbed  # noqa: E402

CALL = re.compile(r"ran (?:\S*/)?(sacct|squeue|scontrol|sinfo|sacctmgr):")
SLURM_COMMANDS = ("sacct", "squeue", "scontrol", "sinfo", "sacctmgr")
JOBS = re.compile(r"(?:-j|--jobs)[ =](\d[\d,_]*)")
NUMBERS = re.compile(r"\d[\d,_:.\-T]*")


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


def call_log(tb: SlurmTestbed, work: Path) -> tuple[Path, dict[str, str]]:
    """Wrappers for the Slurm commands that append each argv to a log, then exec the real
    command, and the daemon's environment with them first in PATH: the daemon's debug
    line names only the command, the wrapper's log gives the kind of call."""
    wrappers = work / "slurm-bin"
    wrappers.mkdir()
    log = work / "slurm-calls.log"
    for cmd in SLURM_COMMANDS:
        script = wrappers / cmd
        script.write_text(f'#!/bin/sh\nprintf "%s %s\\n" "$(date +%s.%N)" "{cmd} $*" '
                          f'>> {log}\nexec {tb.bin_dir}/{cmd} "$@"\n')
        script.chmod(0o755)
    env = tb.env
    env["PATH"] = f"{wrappers}:{env['PATH']}"
    return log, env


def kind(line: str) -> str:
    """A call's argv with its numbers (job ids, times) folded, so calls group by kind."""
    return " ".join(NUMBERS.sub("N", word) for word in line.split()[1:])[:90]


def timed_hook(tb: SlurmTestbed, hook: Path) -> tuple[Path, Path]:
    """A wrapper around ``hook`` that logs when slurmctld ran each prolog and epilog
    (two ``date`` forks per event, a few ms), so Slurm's own pace of running
    PrologSlurmctld can be told from the daemon's; the script and its log (in the job
    directory, which slurmctld in the chroot can write)."""
    log = tb.job_dir / "rtbench-hook.log"
    inside = f"{tb.job_dir_in_root}/rtbench-hook.log"
    wrapper = hook.parent / "bench-hook.sh"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'echo "$(date +%s.%N) ${{SLURM_SCRIPT_CONTEXT:-?}} $SLURM_JOB_ID" >> {inside}\n'
        f'"$(dirname "$0")/{hook.name}"\n'
        f'echo "$(date +%s.%N) ${{SLURM_SCRIPT_CONTEXT:-?}} $SLURM_JOB_ID done" >> {inside}\n'
        "exit 0\n")  # the checkout is elsewhere in the chroot
    wrapper.chmod(0o755)
    return wrapper, log


def hook_times(log: Path, ids: set[int]) -> dict[str, dict[int, float]]:
    """When the timing wrapper saw each of ``ids``' prolog and epilog begin."""
    out: dict[str, dict[int, float]] = {"prolog": {}, "epilog": {}, "prolog done": {},
                                        "epilog done": {}}
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        parts = line.split()
        if len(parts) in (3, 4) and parts[2].isdigit() and int(parts[2]) in ids:
            what = "epilog" if "epilog" in parts[1] else "prolog"
            if len(parts) == 4:
                what += " done"
            out[what].setdefault(int(parts[2]), float(parts[0]))
    return out


def when(standin: StandIn, job_id: int, part: str) -> float | None:
    try:
        return arrival(standin, job_id, part)
    except AssertionError:  # never arrived: reported as missing
        return None


def cores(tb: SlurmTestbed, nodes: str) -> int:
    """Core slots of ``nodes``: a one-CPU task takes a whole core under CR_Core_Memory,
    so node2 (2 threads per core) holds 4 tasks, not 8."""
    total = 0
    for line in tb.run("scontrol", "show", "node", "-o", nodes).stdout.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        total += int(fields["Sockets"]) * int(fields["CoresPerSocket"])
    return total


class Partition:
    """A runtime partition on node1,node2 whose cores each take ``share`` jobs at once.

    The testbed's node declarations stay as they are (other tests rely on them); a
    partition with ``OverSubscribe=FORCE:N`` (accepted by 26.05's ``scontrol create``)
    lets N one-CPU jobs share each core, so a whole array starts at once. It is Hidden,
    so other sessions' ``sinfo`` does not list it, and a ``scontrol reconfigure``
    drops it: :meth:`exists` tells."""

    def __init__(self, tb: SlurmTestbed, share: int) -> None:
        self.tb = tb
        self.name = f"ccsaburst{secrets.token_hex(3)}"
        self.share = share
        self.created = False

    def create(self) -> None:
        for attempt in range(20):  # slurmctld may still be coming back from up()
            proc = self.tb.run("scontrol", "create", f"PartitionName={self.name}",
                               "Nodes=node1,node2", f"OverSubscribe=FORCE:{self.share}",
                               "MaxTime=10", "Hidden=YES", "State=UP", check=False)
            if proc.returncode == 0:
                self.created = True
                return
            if attempt == 19:
                raise RuntimeError(f"scontrol create PartitionName={self.name}: "
                                   f"{proc.stderr.strip()}")
            time.sleep(0.5)

    def exists(self) -> bool:
        """False only when slurmctld says it has no such partition: under a burst a
        query can fail for other reasons (a busy slurmctld), which proves nothing."""
        for _ in range(5):
            proc = self.tb.run("scontrol", "show", "partition", self.name, check=False)
            if proc.returncode == 0:
                return f"PartitionName={self.name}" in proc.stdout
            if "not found" in proc.stdout + proc.stderr:
                return False
            time.sleep(1)
        return True

    def delete(self, array: int | None) -> None:
        """Cancel what is left of ``array``, then delete the partition (slurmctld refuses
        while a job of it has not finished: retry until the epilogs are done)."""
        if array is not None:
            self.tb.run("scancel", str(array), check=False, timeout=120)
        if not self.created:
            return
        proc = None
        for _ in range(240):
            proc = self.tb.run("scontrol", "delete", f"PartitionName={self.name}",
                               check=False)
            if proc.returncode == 0 or not self.exists():
                self.created = False
                return
            time.sleep(0.5)
        err = proc.stderr.strip() if proc is not None else ""
        print(f"WARNING: could not delete partition {self.name}: {err}")


def wait_quiet(standin: StandIn, quiet: float = 4.0, timeout: float = 900) -> int:
    """Until the stand-in has taken no request for ``quiet`` s; the requests so far.

    The daemon's first poll reads back up to ``slurmQueryMaxSpan`` (an hour here) and
    queues every job of every session on the shared cluster (2,582 starts and as many
    stops once): a burst measured before that backlog drains measures the backlog."""
    deadline = time.monotonic() + timeout
    count, since = len(standin.audit()), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = len(standin.audit())
        if now != count:
            count, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return count


def most_at_once(spans: list[tuple[int, int]]) -> tuple[int, int]:
    """The most tasks running in the same second, from sacct's [start, end] (whole
    seconds; a task is counted in every second from its start up to its end), and at
    which second."""
    events = sorted([(s, 1) for s, _e in spans] + [(e, -1) for _s, e in spans])
    best, at, now = 0, 0, 0
    for second, delta in events:  # ends sort before starts in the same second
        now += delta
        if now > best:
            best, at = now, second
    return best, at


def burst(tb: SlurmTestbed, standin: StandIn, log: Path, calls_log: Path, hook_log: Path,
          n: int, seconds: int) -> None:
    share = -(-n // cores(tb, "node1,node2")) + 8  # a margin for other sessions' jobs
    part = Partition(tb, share)
    array: int | None = None
    try:
        part.create()
        offset = log.stat().st_size
        call_offset = calls_log.stat().st_size if calls_log.exists() else 0
        t_submit = time.time()
        array = tb.submit(["-J", "rtbench-burst", "-p", part.name, "-n", "1", "--mem=1",
                           "-t", "5", "-o", "/dev/null", f"--array=1-{n}",
                           "--wrap", f"sleep {seconds}"], user="testuser")
        array_id = array

        def tasks() -> list[int] | None:
            out = tb.run("sacct", "-n", "-X", "-P", "-j", str(array_id), "-o",
                         "JobIDRaw,State", check=False).stdout.split()
            done = [int(line.split("|")[0]) for line in out
                    if "|" in line and line.split("|")[1] in ("COMPLETED", "FAILED")]
            return done if len(done) == n else None
        ids = wait_for(tasks, 600, f"all {n} tasks of array {array} to end", interval=2.0)
        if not part.exists():  # the tasks ran; their numbers may show the disturbance
            print(f"burst: partition {part.name} is gone (a scontrol reconfigure?)")

        def stopped() -> list[int]:
            return [j for j, rows in rows_of(standin, ids, tb.cluster).items()
                    if any(r.job_state != "running" for r in rows)]
        try:
            wait_for(lambda: len(stopped()) == n, 60, "every task stopped in the stand-in",
                     interval=0.5)
        except AssertionError:
            text = log.read_text(errors="replace")[offset:]
            events = Counter(re.findall(r"hook: job \d+ (started|ended)", text))
            missing = sorted(set(ids) - set(stopped()))
            ran = hook_times(hook_log, set(missing))
            got = {int(j) for j in re.findall(r"hook: job (\d+) ended", text)}
            print(f"burst: only {n - len(missing)} of {n} tasks stopped in the stand-in; the "
                  f"daemon got {events['started']} prolog and {events['ended']} epilog events"
                  f" (PrologSlurmctld is now {prolog_slot(tb)})")
            for j in missing[:10]:
                took = [ran[f"{w} done"][j] - ran[w][j] for w in ("epilog",)
                        if j in ran[w] and j in ran[f"{w} done"]]
                print(f"burst:   task {j}: slurmctld ran its epilog: {j in ran['epilog']}"
                      f" (the hook took {took[0] if took else float('nan'):.2f} s); the daemon "
                      f"got the event: {j in got}")
        jobs = sacct_jobs(tb, array, timeout=120)
        report(standin, jobs, t_submit, n, share, part.name)
        text = log.read_text(errors="replace")[offset:]
        calls = CALL.findall(text)
        rounds = text.count("real-time path: ")
        by_cmd = {c: calls.count(c) for c in sorted(set(calls))}
        print(f"burst: {len(calls)} Slurm calls by the daemon ({by_cmd}) in {rounds} "
              f"real-time rounds; {len(calls) / n:.3f} calls per task")
        with calls_log.open(errors="replace") as fh:
            fh.seek(call_offset)
            lines = [line for line in fh.read().splitlines() if line]
        kinds = Counter(kind(line) for line in lines)
        for name, count in kinds.most_common():
            print(f"burst:   {count:4d} x {name}")
        sizes = [len(m.group(1).split(",")) for m in map(JOBS.search, lines) if m]
        first_start = min(j.start for j in jobs)
        if sizes and lines:
            span = [float(line.split()[0]) - first_start for line in lines]
            print(f"burst: job ids per call: mean {statistics.mean(sizes):.1f}, max "
                  f"{max(sizes)}; calls from {min(span):+.1f} s to {max(span):+.1f} s "
                  f"after the first start")
        seen = hook_times(hook_log, {j.job_id for j in jobs})
        last_end = max(j.end for j in jobs)
        for what, request, base, label in (("prolog", "start_job", first_start, "first start"),
                                        ("epilog", "stop_job", last_end, "last end")):
            times = seen[what]
            if not times:
                continue
            print(f"burst: slurmctld ran {len(times)} {what}s from "
                  f"{min(times.values()) - base:+.2f} s to {max(times.values()) - base:+.2f} s"
                  f" after the {label}")
            # the daemon's own share: the stand-in's arrival minus the hook's run
            own = [a - t for j, t in times.items() if (a := when(standin, j, request))]
            took = [seen[f"{what} done"][j] - t for j, t in times.items()
                    if j in seen[f"{what} done"]]
            if took:
                print(f"burst: the hook ({what}) took p50 {statistics.median(took):.3f} s, "
                      f"p95 {pct(took, 0.95):.3f} s, max {max(took):.3f} s; "
                      f"{sum(1 for t in took if t >= 1.9)} at its 2 s bound")
            print(f"burst: {request} - {what} ran (the daemon's part) p50 "
                  f"{statistics.median(own):.3f} s  p95 {pct(own, 0.95):.3f} s  "
                  f"max {max(own):.3f} s")
    finally:
        part.delete(array)


def report(standin: StandIn, jobs: list[SlurmJob], t_submit: float,
           n: int, share: int, partition: str) -> None:
    first_start = min(j.start for j in jobs)
    last_start = max(j.start for j in jobs)
    last_end = max(j.end for j in jobs)
    peak, at = most_at_once([(j.start, j.end) for j in jobs])
    starts = {j.job_id: t for j in jobs if (t := when(standin, j.job_id, "start_job"))}
    stops = {j.job_id: t for j in jobs if (t := when(standin, j.job_id, "stop_job"))}
    lat_start = [starts[j.job_id] - j.start for j in jobs if j.job_id in starts]
    lat_stop = [stops[j.job_id] - j.end for j in jobs if j.job_id in stops]
    print(f"burst: {n} tasks (sleep) in partition {partition} (OverSubscribe=FORCE:{share}"
          f"); Slurm started them from {first_start - t_submit:+.1f} s to "
          f"{last_start - t_submit:+.1f} s after submission; {peak} running in the same "
          f"second ({at - first_start:+d} s after the first start)")
    print(f"burst: {len(starts)} of {n} started in the stand-in "
          f"{max(starts.values()) - first_start:.2f} s after the first start (sacct, whole s),"
          f" {len(stops)} stopped {max(stops.values()) - last_end:.2f} s after the last end")
    for name, values in (("start_job - start", lat_start), ("stop_job - end", lat_stop)):
        print(f"burst: {name:18s} p50 {statistics.median(values):.3f} s  "
              f"p95 {pct(values, 0.95):.3f} s  max {max(values):.3f} s")
    check = standin.check([ExpectedJob(j.job_id, j.cluster, j.start) for j in jobs])
    ours = {j.job_id for j in jobs}
    dup = [d for d in check.duplicates if d["jobId"] in ours]
    sent: Counter[int] = Counter()
    for entry in standin.audit():
        if (entry.job is not None and entry.status is not None and 200 <= entry.status < 300
                and entry.path.endswith("start_job/")):
            sent[int(entry.job.get("jobId", 0))] += 1
    twice = sum(1 for j in ours if sent[j] > 1)
    print(f"burst: stand-in audit: {len(check.lost)} lost, {len(dup)} duplicated, "
          f"{len(check.never_stopped)} never stopped, {len(check.rejected)} rejected; "
          f"{twice} tasks with more than one accepted start_job")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--release", default="26.05")
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--burst-seconds", type=int, default=20,
                        help="each burst task sleeps this long, so all run at once")
    args = parser.parse_args()

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    try:
        return run(args)
    except KeyboardInterrupt as exc:  # the finally blocks have cleaned up by now
        print(f"interrupted ({exc or 'Ctrl-C'}); partition deleted, hook slot restored")
        return 130


def run(args: argparse.Namespace) -> int:
    tb = SlurmTestbed(args.release)
    reason = tb.unavailable_reason()
    if reason is not None:
        print(f"no testbed: {reason}")
        return 0
    tb.up()
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="bench-realtime-"))
    calls_log, env = call_log(tb, work)
    wrapper, hook_log = timed_hook(tb, hook_script(tb.release, port))
    hook_log.unlink(missing_ok=True)
    daemons = Daemons(work, env)
    try:
        tb.up(prep_script=wrapper)
        with StandIn(commit_interval=2.0) as standin:
            daemon = daemons.new(standin.url, standin.token, slurmPollInterval=3600,
                                 prepSockListenPath=f"tcp:127.0.0.1:{port}").start()
            wait_for(lambda: listening(port), 30, "the hook socket", daemon=daemon)
            wait_for(lambda: "jobs seen" in daemon.run_stderr(), 60, "the first poll",
                     daemon=daemon)
            t0 = time.monotonic()
            backlog = wait_quiet(standin)
            print(f"Slurm {tb.version}, release {tb.release}; daemon log {daemon.log_path}; "
                  f"the first poll's backlog: {backlog} requests, drained in "
                  f"{time.monotonic() - t0:.0f} s before the measurements")
            if args.jobs:
                latency(tb, standin, daemon, args.jobs)
            if args.burst:
                burst(tb, standin, daemon.log_path, calls_log, hook_log, args.burst,
                      args.burst_seconds)
            daemon.stop()
    finally:
        daemons.cleanup()
        tb.up()  # the burst's partition is deleted by now: this reconfigure finds no epilogs
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
