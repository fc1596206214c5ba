"""Benchmark the state store: 100,000 job runs, outbox throughput, RSS after open.

Steps, measured in this run on a fresh store in a temporary directory:

1. fill: N runs observed, each with a 600-byte snapshot, a start queued, claimed in
   batches of 100 and acknowledged (a batch's acks in one transaction); then a stop
   queued and acknowledged for 90 % of them (the rest stay running), in poll-cycle
   transactions of 1,000 jobs;
2. backlog: 10,000 new runs with start and stop queued, then drained the way the
   daemon does (claim 100, ack each entry on its own: one transaction per answer);
   then 10,000 more, drained with the acks of each batch in one transaction;
3. a steady poll cycle: 1,000 running jobs observed again (snapshot unchanged) plus
   the cursor, in one transaction;
4. RSS of a fresh process after ``open_store`` and the daemon's startup queries on
   the full store, against the same on an empty store.

Reports runs/s, entries/s, ms per cycle, RSS in MB and the database size.

Run: ``.venv/bin/python bench/bench_store.py [--jobs N]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cc_slurm_adapter.store import RunState, Store, open_store

T0 = 1_700_000_000
SNAPSHOT = b"r" * 600

RSS = """
import sys
from cc_slurm_adapter.store import RunState, open_store
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
s = open_store(sys.argv[1])
s.counts(); s.claim(100); s.next_due(); s.get_cursor("c")
after = 0
while True:
    page = s.runs_in([RunState.STARTED], cluster="c", after_id=after, limit=500)
    if not page:
        break
    after = page[-1].id
print(rss())
"""


def start(j: int) -> bytes:
    return json.dumps({"jobId": j, "cluster": "c", "user": "u", "project": "p",
                       "startTime": T0 + j, "numNodes": 1,
                       "resources": [{"hostname": f"n{j % 1000:04d}",
                                      "hwthreads": list(range(16))}]}).encode()


def stop(j: int) -> bytes:
    return json.dumps({"jobId": j, "cluster": "c", "startTime": T0 + j,
                       "stopTime": T0 + j + 600, "jobState": "completed"}).encode()


def drain(s: Store, *, grouped: bool = False) -> int:
    """Claim 100 at a time and ack each: one transaction per answer, or (``grouped``)
    the answers of one batch in one transaction."""
    sent = 0
    while batch := s.claim(100):
        with s.transaction() if grouped else contextlib.nullcontext():
            for sub in batch:
                s.ack(sub.id)
                sent += 1
    return sent


def backlog(s: Store, first: int, *, grouped: bool) -> None:
    t = time.perf_counter()
    with s.transaction():
        for j in range(first, first + 10_000):
            run = s.observe(cluster="c", job_id=j, start_time=T0 + j, snapshot=SNAPSHOT,
                            rank=(3, 1))
            s.enqueue_start(run.id, start(j))
            s.enqueue_stop(run.id, stop(j))
    enqueue = time.perf_counter() - t
    t = time.perf_counter()
    sent = drain(s, grouped=grouped)
    took = time.perf_counter() - t
    how = "the acks of a batch in one transaction" if grouped else "one transaction per ack"
    print(f"backlog: 10,000 runs queued (start+stop) in {enqueue:.2f} s; drained "
          f"{sent} entries in {took:.2f} s = {sent / took:,.0f} entries/s (claim 100, {how})")


def rss_kb(path: Path) -> int:
    out = subprocess.run([sys.executable, "-c", RSS, str(path)], capture_output=True,
                         text=True, check=True).stdout
    return int(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        empty, path = Path(tmp) / "empty.db", Path(tmp) / "state.db"
        open_store(empty).close()
        s = open_store(path)
        t = time.perf_counter()
        for base in range(0, args.jobs, 1000):
            with s.transaction():
                for j in range(base, min(base + 1000, args.jobs)):
                    run = s.observe(cluster="c", job_id=j, start_time=T0 + j,
                                    phase="running", snapshot=SNAPSHOT, rank=(3, 1))
                    s.enqueue_start(run.id, start(j))
            drain(s, grouped=True)
            with s.transaction():
                for j in range(base, min(base + 1000, args.jobs)):
                    if j % 10:
                        run = s.observe(cluster="c", job_id=j, start_time=T0 + j,
                                        phase="ended")
                        s.enqueue_stop(run.id, stop(j))
                s.set_cursor("c", T0 + base)
            drain(s, grouped=True)
        fill = time.perf_counter() - t
        print(f"fill: {args.jobs:,} runs (start+stop, snapshot) in {fill:.1f} s = "
              f"{args.jobs / fill:,.0f} runs/s")

        backlog(s, args.jobs, grouped=False)
        backlog(s, args.jobs + 10_000, grouped=True)

        running = s.runs_in([RunState.STARTED], cluster="c", limit=1000)
        t = time.perf_counter()
        cycles = 20
        for c in range(cycles):
            with s.transaction():
                for run in running:
                    s.observe(cluster="c", job_id=run.job_id, start_time=run.start_time,
                              phase="running", snapshot=SNAPSHOT, rank=(3, 1))
                s.set_cursor("c", T0 + 10**6 + c)
        cycle = (time.perf_counter() - t) / cycles
        print(f"steady cycle: {len(running)} running jobs observed + cursor in "
              f"{cycle * 1000:.1f} ms per cycle")
        counts = s.counts()
        s.close()
        size = sum(p.stat().st_size for p in Path(tmp).glob("state.db*"))
        print(f"store: {sum(counts.values()):,} runs, {size / 1e6:.0f} MB on disk; "
              f"{', '.join(f'{k.value} {v:,}' for k, v in counts.items() if v)}")
        small, large = rss_kb(empty), rss_kb(path)
        print(f"RSS after open + startup queries: empty store {small / 1024:.1f} MB, "
              f"full store {large / 1024:.1f} MB (+{(large - small) / 1024:.1f} MB)")


if __name__ == "__main__":
    main()
