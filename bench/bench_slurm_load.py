"""Load the daemon puts on Slurm: slurmctld RPCs and slurmdbd queries per hour.

Usage: python bench/bench_slurm_load.py [--quick] [--poll 5]
(needs root and the live testbed; the release is the first of $CCSA_SLURM_RELEASES,
26.05 when unset; the cluster must be up: this script never starts or stops it.)

The real daemon (``cc-slurm-adapter -daemon``) runs against the testbed with a
shortened ``slurmPollInterval`` (``--poll``, default 5 s), its Slurm commands going
through logging shims in front of the testbed's wrappers, so every command it runs is
known. The cluster is shared (another engineer may test there), and ``sdiag`` /
``sacctmgr show stats`` count everyone's RPCs under the same user (root), so the load is
measured in two ways, both in this run:

1. **calibrated** (the figure reported): commands per cycle from the shims × RPCs per
   command, where RPCs per command come from replaying each command the daemon ran
   (its exact argv, ``--calibrate`` times in a burst) and taking the sdiag / sacctmgr
   delta per message type, minus the background rate of a window without the daemon;
2. **window** (a cross-check): the delta of those message types over the daemon's
   window, minus the background, divided by its cycles.

Per hour = per cycle × 60 cycles (the default slurmPollInterval, 60 s), for an idle
cluster and for a steady stream of jobs (one ``sleep`` job submitted every
``--every`` s, named ``ccsa-load-<pid>``, cancelled at the end).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from cc_slurm_adapter.slurm.runner import slurm_env
from cc_slurm_adapter.testing.ccbackend import StandInProcess
from cc_slurm_adapter.testing.slurm_testbed import SlurmTestbed, selected_releases

SHIMS = ("sacct", "squeue", "scontrol", "sacctmgr", "sinfo")
_RPC = re.compile(r"^\s+(\S+)\s+\(\s*\d+\)\s+count:(\d+)", re.MULTILINE)
Counts = collections.Counter[str]
_QUERY_TYPES = ("REQUEST_JOB_INFO", "REQUEST_JOB_STATE", "REQUEST_NODE_INFO",
                "REQUEST_PARTITION_INFO", "REQUEST_FED_INFO", "REQUEST_BUILD_INFO")


def rpc_counts(text: str, section: str = "by message type") -> Counts:
    """Per-type counts of the ``Remote Procedure Call statistics by message type`` block."""
    head = f"Remote Procedure Call statistics {section}"
    if head not in text:
        return collections.Counter()
    block = text.split(head, 1)[1].split("\n\n", 1)[0]
    return collections.Counter({m[1]: int(m[2]) for m in _RPC.finditer(block)})


class Stats:
    def __init__(self, tb: SlurmTestbed) -> None:
        self.tb = tb

    def snap(self) -> tuple[Counts, Counts]:
        env = self.tb.env
        ctld = subprocess.run(["sdiag"], env=env, capture_output=True, text=True, check=True)
        dbd = subprocess.run(["sacctmgr", "show", "stats"], env=env, capture_output=True,
                             text=True, check=True)
        return rpc_counts(ctld.stdout), rpc_counts(dbd.stdout)


def delta(a: Counts, b: Counts) -> Counts:
    return collections.Counter({k: b[k] - a.get(k, 0) for k in b if b[k] - a.get(k, 0) > 0})


def install_shims(directory: Path, real: Path, log: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in SHIMS:
        shim = directory / name
        # one line per call: the time, then each argument after a \x1f (arguments keep
        # their spaces: squeue -o "%A %T")
        shim.write_text("#!/bin/sh\n"
                        f"{{ printf '%s' \"$(date +%s.%N)\"; printf '\\037%s' {name} \"$@\";"
                        f" printf '\\n'; }} >> {log}\n"
                        f"exec {real / name} \"$@\"\n")
        shim.chmod(0o755)


def kind(argv: tuple[str, ...]) -> str:
    exe = argv[0] if argv else "?"
    # one id or several: slurmctld answers `squeue -j ID` with another RPC
    # (REQUEST_JOB_INFO_SINGLE) than a list of ids (REQUEST_JOB_INFO)
    ids = "" if "-j" not in argv else (
        " (1 id)" if "," not in argv[argv.index("-j") + 1] else " (ids)")
    if exe == "squeue":
        return "squeue listing" if "%A %T" in argv else "squeue --json -j" + ids
    if exe == "sacct":
        if "-B" in argv:  # AccountingStoreFlags=job_script: scripts of newly seen jobs
            return "sacct -B -j (batch scripts)"
        return "sacct -j" + ids if "-j" in argv else ("sacct window" if "-S" in argv
                                                      else "sacct other")
    return " ".join(argv[:3])


def job_ids(argv: tuple[str, ...]) -> list[int]:
    if "-j" not in argv:
        return []
    return [int(x) for x in argv[argv.index("-j") + 1].split(",") if x.isdigit()]


def read_log(log: Path, since: float, until: float
             ) -> list[tuple[float, tuple[str, ...], str]]:
    out = []
    for line in log.read_text().splitlines():
        t, *argv = line.split("\x1f")
        if since <= float(t) < until:
            out.append((float(t), tuple(argv), kind(tuple(argv))))
    return out


def write_config(work: Path, url: str, token: str, poll: int) -> Path:
    last_run = work / "lastrun"
    last_run.touch()
    os.utime(last_run, (time.time() - 30, time.time() - 30))
    doc = {"ccRestUrl": url, "ccRestJwt": token, "statePath": str(work / "state.db"),
           "pidFilePath": str(work / "daemon.pid"),
           "prepSockListenPath": str(work / "daemon.sock"),
           "prepSockConnectPath": str(work / "daemon.sock"), "lastRunPath": str(last_run),
           "slurmPollInterval": poll, "ccPollInterval": 60, "slurmQueryMaxSpan": 3600,
           "ccRestTimeout": 5}
    path = work / "config.json"
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    return path


def window(stats: Stats, seconds: float) -> tuple[Counts, Counts, float]:
    c0, d0 = stats.snap()
    t0 = time.monotonic()
    time.sleep(seconds)
    c1, d1 = stats.snap()
    return delta(c0, c1), delta(d0, d1), time.monotonic() - t0


PerCall = dict[str, tuple[dict[str, float], dict[str, float]]]


def calibrate(stats: Stats, env: dict[str, str], argv_by_kind: dict[str, tuple[str, ...]],
              times: int, bg: tuple[Counts, Counts, float]) -> PerCall:
    """RPCs per call of each command (by type), background subtracted."""
    out: PerCall = {}
    for k, argv in sorted(argv_by_kind.items()):
        # three bursts; per type the lowest per-call count: someone else's RPCs only add
        bursts: list[tuple[dict[str, float], dict[str, float]]] = []
        for _ in range(3):
            c0, d0 = stats.snap()
            t0 = time.monotonic()
            for _ in range(times):
                subprocess.run(argv, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=False)
            took = time.monotonic() - t0
            c1, d1 = stats.snap()
            scale = took / bg[2]
            bursts.append(({t: max(0.0, (n - bg[0].get(t, 0) * scale)) / times
                            for t, n in delta(c0, c1).items()},
                           {t: max(0.0, (n - bg[1].get(t, 0) * scale)) / times
                            for t, n in delta(d0, d1).items()}))
        per_c = {t: min(b[0].get(t, 0.0) for b in bursts) for t in bursts[0][0]}
        per_d = {t: min(b[1].get(t, 0.0) for b in bursts) for t in bursts[0][1]}
        # the snapshot commands themselves (sdiag: REQUEST_STATS_INFO; sacctmgr show
        # stats: its own DBD_GET_STATS etc.) run outside the burst and are not in it
        # squeue/scontrol/sinfo talk to slurmctld only, sacct/sacctmgr to slurmdbd only:
        # what the other daemon counted meanwhile is someone else's
        to_dbd = argv[0] in ("sacct", "sacctmgr")
        out[k] = ({} if to_dbd else {t: round(v, 2) for t, v in per_c.items() if v >= 0.5},
                  {t: round(v, 2) for t, v in per_d.items() if v >= 0.5} if to_dbd else {})
    return out


@dataclass
class Phase:
    name: str
    seconds: float
    cycles: int
    kinds: Counts
    argv: dict[str, tuple[str, ...]]
    ctld: Counts
    dbd: Counts
    poll: int
    bg: tuple[Counts, Counts, float]
    by_id: list[int]
    """Job ids the daemon asked ``sacct -j`` for (watched, in neither view)."""


def run_phase(name: str, stats: Stats, log: Path, seconds: float, poll: int,
              bg: tuple[Counts, Counts, float], submit: threading.Event | None) -> Phase:
    c0, d0 = stats.snap()
    t0, m0 = time.time(), time.monotonic()
    if submit is not None:
        submit.set()
    time.sleep(seconds)
    if submit is not None:
        submit.clear()
    t1, took = time.time(), time.monotonic() - m0
    c1, d1 = stats.snap()
    calls = read_log(log, t0, t1)
    cycles = max(1, sum(1 for _, _, k in calls if k == "squeue listing"))
    return Phase(name, took, cycles, collections.Counter(k for _, _, k in calls),
                 {k: a for _, a, k in calls}, delta(c0, c1), delta(d0, d1), poll, bg,
                 sorted({i for _, a, k in calls if k.startswith("sacct -j")
                         for i in job_ids(a)}))


def report(phase: Phase, per_call: PerCall) -> None:
    cycles = phase.cycles
    ctld: dict[str, float] = collections.defaultdict(float)
    dbd: dict[str, float] = collections.defaultdict(float)
    for k, n in phase.kinds.items():
        pc, pd = per_call.get(k, ({}, {}))
        for t, v in pc.items():
            ctld[t] += v * n / cycles
        for t, v in pd.items():
            dbd[t] += v * n / cycles
    bg_c, bg_d, bg_s = phase.bg
    scale = phase.seconds / bg_s
    queries = [t for t in phase.ctld if t.startswith(_QUERY_TYPES)]
    win_c = {t: (phase.ctld[t] - bg_c.get(t, 0) * scale) / cycles for t in queries}
    calls = ", ".join(f"{k} {n / cycles:.2f}" for k, n in sorted(phase.kinds.items()))
    print(f"{phase.name}: {cycles} cycles in {phase.seconds:.0f} s (poll {phase.poll} s); "
          f"commands per cycle: {calls}")
    jobq = dbd.get("DBD_GET_JOBS_COND", 0.0)
    print(f"  per cycle (calibrated): slurmctld {sum(ctld.values()):.1f} RPCs "
          f"({', '.join(f'{t} {v:.1f}' for t, v in sorted(ctld.items()))}); slurmdbd "
          f"{sum(dbd.values()):.1f} RPCs, of which job queries {jobq:.1f} "
          f"({', '.join(f'{t} {v:.1f}' for t, v in sorted(dbd.items()))})")
    by_type = ", ".join(f"{t} {v:.1f}" for t, v in sorted(win_c.items()))
    print(f"  cross-check, slurmctld query RPCs in the window minus background, per cycle: "
          f"{sum(win_c.values()):.1f} ({by_type}); slurmdbd not comparable: its background "
          f"was {sum(bg_d.values()) / bg_s:.1f} RPCs/s from other users of the cluster")
    print(f"  per hour at slurmPollInterval 60 s (60 cycles): slurmctld "
          f"{sum(ctld.values()) * 60:.0f} RPCs/h, slurmdbd job queries "
          f"(DBD_GET_JOBS_COND) {jobq * 60:.0f}/h, slurmdbd RPCs {sum(dbd.values()) * 60:.0f}/h")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows (smoke run)")
    parser.add_argument("--poll", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=None, help="each window")
    parser.add_argument("--every", type=float, default=3.0, help="job stream period (s)")
    parser.add_argument("--calibrate", type=int, default=None, help="replays per command")
    parser.add_argument("--keep", type=Path, default=None,
                        help="copy the daemon's log and the call log into this directory")
    parser.add_argument("--debug", type=int, default=2, help="the daemon's -debug level")
    args = parser.parse_args()
    seconds = args.seconds or (12.0 if args.quick else 40.0)
    times = args.calibrate or (3 if args.quick else 10)
    release = selected_releases(os.environ.get("CCSA_SLURM_RELEASES", "26.05"))[0]
    tb = SlurmTestbed(release)
    reason = tb.unavailable_reason()
    if reason or not tb.is_up():
        raise SystemExit(f"Slurm {release} testbed: {reason or 'not up'} (this bench never "
                         "starts or stops a cluster)")
    lock = tb.session_lock()
    lock.acquire()
    stats = Stats(tb)
    name = f"ccsa-load-{os.getpid()}"
    submitted: list[int] = []
    submit = threading.Event()
    done = threading.Event()

    def stream() -> None:
        while not done.is_set():
            if submit.is_set():
                submitted.append(tb.submit(["-J", name, "-o", "/dev/null", "--wrap",
                                            "sleep 4"], user="testuser"))
            done.wait(args.every)

    feeder = threading.Thread(target=stream, daemon=True)
    feeder.start()
    print(f"Slurm {tb.version} testbed ({release}); windows of {seconds:.0f} s", flush=True)
    try:
        with tempfile.TemporaryDirectory() as tmp, StandInProcess(
                ["--commit-interval", "0"]) as standin:
            work = Path(tmp)
            log = work / "calls.tsv"
            log.touch()
            install_shims(work / "shims", tb.bin_dir, log)
            bg = window(stats, seconds)
            print(f"background without the daemon: slurmctld {sum(bg[0].values())} RPCs, "
                  f"slurmdbd {sum(bg[1].values())} in {bg[2]:.0f} s", flush=True)
            env = tb.env
            env["PATH"] = f"{work / 'shims'}:{env['PATH']}"
            conf = write_config(work, standin.url, standin.token, args.poll)
            err = (work / "daemon.stderr").open("wb")
            proc = subprocess.Popen([str(Path(sys.executable).with_name("cc-slurm-adapter")),
                                     "-daemon", "-debug", str(args.debug), "-config",
                                     str(conf)], env=env,
                                    stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                    cwd=tmp)
            try:
                time.sleep(args.poll * 2 + 2)  # set-up and the first cycles
                idle = run_phase("idle cluster", stats, log, seconds, args.poll, bg, None)
                busy = run_phase(f"job stream (one job every {args.every:g} s)", stats, log,
                                 seconds, args.poll, bg, submit)
            finally:
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(30)
                err.close()
            if args.keep is not None:
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(work / "daemon.stderr", args.keep / "daemon.stderr")
                shutil.copy(log, args.keep / "calls.tsv")
            argv = {**idle.argv, **busy.argv}
            # our stream's jobs end before the calibration, so their RPCs stay out of it
            done.set()
            for job_id in submitted:
                subprocess.run(["scancel", str(job_id)], env=tb.env, check=False,
                               stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and subprocess.run(
                    ["squeue", "-h", "-n", name], env=tb.env, capture_output=True,
                    text=True, check=False).stdout.strip():
                time.sleep(1)
            time.sleep(2)
            per_call = calibrate(stats, slurm_env(tb.env), argv, times, bg)
            print(f"daemon exit code {code}; jobs submitted {len(submitted)}")
            print("RPCs per command (calibrated, background subtracted): " + "; ".join(
                f"{k}: ctld {c} dbd {d}" for k, (c, d) in per_call.items()))
            report(idle, per_call)
            report(busy, per_call)
            ours = set(submitted)
            for phase in (idle, busy):
                if phase.by_id:
                    print(f"{phase.name}: sacct -j asked for {len(phase.by_id)} job id(s), "
                          f"{len(ours & set(phase.by_id))} of them this bench's: "
                          f"{phase.by_id[:20]}")
    finally:
        done.set()
        feeder.join(10)
        for job_id in submitted:
            subprocess.run(["scancel", str(job_id)], env=tb.env, check=False,
                           stderr=subprocess.DEVNULL)
        lock.release()


if __name__ == "__main__":
    main()
