"""Which per-node detail call is cheaper on Slurm 22.05: squeue --json or scontrol text?

On 22.05 there is no ``scontrol --json`` and ``squeue --json`` ignores ``-j``, so the
detail call of a poll cycle (per-node CPUs and GPU indices of newly running jobs) must
dump every job slurmctld holds, either as ``squeue --json`` (filtered on our side) or as
``scontrol show job -d -o`` text. This submits ``--jobs`` held jobs (plus ``--running``
small running jobs, whose records carry the per-node detail) as testuser to the 22.05
testbed, then measures both ways as the adapter runs them (``SlurmSource.details`` with
``detail_mode`` forced): wall time of the command, output size, its peak RSS, our parse
time, and the whole call. The ratio printed at the end is measured in the same run.
The jobs are cancelled afterwards (they stay in slurmctld for MinJobAge=300 s).

Needs root and an installed 22.05 testbed (``testbed/install.sh 22.05``); brings the
cluster up if needed (and down again if it started it and nobody else uses it).
Prints a message and exits 0 when there is no testbed.

Run: ``.venv/bin/python bench/bench_slurm_detail_22_05.py [--jobs 2000] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from cc_slurm_adapter.slurm.parse import parse_jobs  # noqa: E402
from cc_slurm_adapter.slurm.runner import CommandRunner  # noqa: E402
from cc_slurm_adapter.slurm.source import SlurmSource, detect_slurm  # noqa: E402
from cc_slurm_adapter.slurm.text import parse_scontrol_jobs  # noqa: E402
from cc_slurm_adapter.testing.slurm_testbed import SlurmTestbed, TestbedError  # noqa: E402

COMMANDS = {
    "squeue-json": ["squeue", "--json", "-a"],
    "scontrol-text": ["scontrol", "show", "job", "-d", "-o"],
}


def run_measured(tb: SlurmTestbed, argv: list[str]) -> tuple[float, int, int]:
    """(wall seconds, stdout bytes, peak RSS bytes) of one client call (wait4 rusage)."""
    env = CommandRunner(env=tb.env).env
    exe = str(tb.bin_dir / argv[0])
    t0 = time.perf_counter()
    proc = subprocess.Popen([exe, *argv[1:]], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    out = proc.stdout.read() if proc.stdout else b""
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise TestbedError(f"{' '.join(argv)} exited {proc.returncode}")
    return wall, len(out), usage.ru_maxrss * 1024


def median_of(repeat: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(repeat))


def submit_all(tb: SlurmTestbed, n: int, name: str, running: int) -> list[int]:
    held = ["--hold", "-J", name, "-t", "5", "--wrap", "true"]
    live = ["-J", name, "-t", "5", "--mem=50", "--wrap", "sleep 300"]
    jobs = [held] * n + [live] * running
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda args: tb.submit(args), jobs))


def cancel_all(tb: SlurmTestbed, ids: list[int]) -> None:
    for i in range(0, len(ids), 500):
        tb.run("scancel", *(str(j) for j in ids[i:i + 500]), check=False, timeout=120)


async def measure(tb: SlurmTestbed, wanted: list[int], repeat: int) -> dict[str, dict[str, float]]:
    runner = CommandRunner(timeout=120, env=tb.env, bin_dir=str(tb.bin_dir))
    info = await detect_slurm(runner)
    results: dict[str, dict[str, float]] = {}
    for mode, argv in COMMANDS.items():
        samples = [run_measured(tb, argv) for _ in range(repeat)]
        raw = subprocess.run([str(tb.bin_dir / argv[0]), *argv[1:]], env=runner.env,
                             capture_output=True, check=True).stdout
        t0 = time.perf_counter()
        for _ in range(repeat):
            if mode == "squeue-json":
                jobs = len(parse_jobs(raw, source="squeue").jobs)
            else:
                jobs = len(parse_scontrol_jobs(raw))
        parse_s = (time.perf_counter() - t0) / repeat
        source = SlurmSource(runner, info, detail_mode=mode)
        await source.refresh_topology()
        calls: list[float] = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            found = await source.details(wanted)
            calls.append(time.perf_counter() - t0)
        assert {j.job_id for j in found} == set(wanted), (mode, len(found))
        results[mode] = {
            "command_s": statistics.median(s[0] for s in samples),
            "bytes": statistics.median(s[1] for s in samples),
            "rss": max(s[2] for s in samples),
            "parse_s": parse_s,
            "details_s": statistics.median(calls),
            "jobs": jobs,
        }
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2000, help="held jobs to submit")
    ap.add_argument("--running", type=int, default=4, help="small running jobs besides")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    tb = SlurmTestbed("22.05")
    reason = tb.unavailable_reason()
    if reason is not None:
        print(f"SKIP: no Slurm 22.05 testbed here: {reason}")
        return 0
    lock = tb.session_lock()
    lock.acquire(exclusive=False)
    marker = tb.base_dir / "22.05.started-by-tests"
    ids: list[int] = []
    try:
        if not tb.is_up():
            tb.up()
            marker.touch()
        lock.acquire(exclusive=False)
        print(f"Slurm {tb.version} (testbed 22.05); submitting {args.jobs} held + "
              f"{args.running} running jobs ...", flush=True)
        name = f"ccsa-bench-{secrets.token_hex(3)}"
        t0 = time.monotonic()
        ids = submit_all(tb, args.jobs, name, args.running)
        print(f"submitted in {time.monotonic() - t0:.1f} s", flush=True)
        running = ids[args.jobs:]
        for job_id in running:
            tb.wait_state(job_id, "RUNNING", timeout=120)
        results = asyncio.run(measure(tb, running, args.repeat))
    finally:
        if ids:
            cancel_all(tb, ids)
        if marker.exists() and lock.try_exclusive():
            tb.down()
            marker.unlink(missing_ok=True)
        lock.release()

    print(f"\n{'':14} {'command':>9} {'output':>9} {'cmd RSS':>8} {'parse all':>9} "
          f"{'details()':>10}  jobs in dump")
    for mode, r in results.items():
        print(f"{mode:14} {r['command_s']:8.3f}s {r['bytes'] / 1e6:7.2f}MB "
              f"{r['rss'] / 1e6:6.0f}MB {r['parse_s']:8.3f}s {r['details_s']:9.3f}s  "
              f"{r['jobs']:.0f}")
    js, tx = results["squeue-json"], results["scontrol-text"]
    ratio = js["details_s"] / tx["details_s"]
    print(f"\nsqueue --json / scontrol text: whole detail call {ratio:.1f}x,"
          f" command {js['command_s'] / tx['command_s']:.1f}x, output "
          f"{js['bytes'] / tx['bytes']:.1f}x, command RSS {js['rss'] / tx['rss']:.1f}x "
          f"(median of {args.repeat}; {args.jobs} held + {args.running} running jobs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
