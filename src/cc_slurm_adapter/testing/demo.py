"""The local demo (README command 1): real Slurm, the real daemon, the cc-backend stand-in.

What it does, in about a minute:

1. Starts the cc-backend stand-in (it checks every request as strictly as cc-backend
   does) and ``cc-slurm-adapter -daemon -config FILE``, the same command line as the
   systemd unit; the daemon listens for the hook on ``tcp:127.0.0.1:PORT``.
2. Makes the adapter Slurm's PrologSlurmctld/EpilogSlurmctld (upstream's ``hook.sh``:
   ``cc-slurm-adapter -config FILE``; in the 24.11/26.05 chroots the hook file
   ``hook.py`` with the chroot's own python3), so each job start and end wakes the
   daemon, which reads Slurm and sends start_job/stop_job within a second or two.
3. Submits a few jobs (one node, two nodes, a GPU, a failure) and prints each
   start_job/stop_job as it reaches cc-backend.
4. Stops cc-backend for a while: one job ends and three more start and end meanwhile.
   Then brings cc-backend back and shows the daemon's backlog draining.
5. Prints cc-backend's job table and the stand-in's audit: no job lost, none
   duplicated, every finished job stopped, no payload rejected.

At the end (and on Ctrl-C or failure) it stops the daemon and the stand-in, cancels
its jobs, gives the Slurm hook slot back to the testbed's default hook, and removes its
files; Slurm goes down again if the demo started it (unless ``--keep``).

Run it as root with ``scripts/demo`` (which installs what it needs first). On this
testbed slurmctld runs as root; on a real site SlurmUser runs the hook, so the config
file is ``0640``, group slurm (see the README).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from types import FrameType
from typing import IO, Any

import httpx

from cc_slurm_adapter.testing.ccbackend.standin import StandInProcess
from cc_slurm_adapter.testing.slurm_testbed import (
    SessionLock,
    SlurmTestbed,
    TestbedError,
    find_sacct_job,
    sacct_state,
)

REPO = Path(__file__).resolve().parents[3]
#: GPU PCI addresses in NVML order: the accelerator ids of the stand-in's topology
#: (testing/data/testcluster.cluster.json), as a site writes them in gpuPciAddrs.
PCI = ["00000000:01:00.0", "00000000:02:00.0"]
#: Seconds between the daemon's full Slurm syncs. The hook wakes it at once; the poll is
#: the backstop for a lost hook event.
POLL_INTERVAL = 10
#: cc-backend stays down at least this long (the jobs of the outage take about as long).
MIN_OUTAGE_S = 10.0


class DemoError(Exception):
    """Something the demo waited for did not happen; the message says what."""


class Interrupted(BaseException):
    """SIGTERM: unwind like Ctrl-C, so the cleanup runs."""


@dataclass
class Job:
    label: str
    name: str
    sbatch: list[str]
    job_id: int = 0
    start_time: int = 0
    state: str = ""
    start: dict[str, Any] | None = None  # the audit entry of its accepted start_job
    stop: dict[str, Any] | None = None  # ... and of its accepted stop_job
    hosts: list[str] = field(default_factory=list)


class Out:
    """Timestamped lines; the daemon's log thread prints through it too."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, message: str) -> None:
        with self._lock:
            print(f"[{time.monotonic() - self.t0:5.1f}s] {message}", flush=True)

    def raw(self, text: str) -> None:
        with self._lock:
            print(text, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def slurm_conf_value(tb: SlurmTestbed, key: str) -> str | None:
    """``KEY=value`` of the release's slurm.conf (None when the line is missing)."""
    try:
        text = tb.slurm_conf.read_text()
    except OSError:
        return None
    match = re.search(rf"^{key}=(\S*)", text, re.MULTILINE | re.IGNORECASE)
    return match.group(1) if match else None


def min_job_age(tb: SlurmTestbed) -> int | None:
    """slurm.conf's MinJobAge now: up.sh would reset it to its default (300), and a
    test sharing the cluster may run it shorter; swapping the hook keeps it."""
    value = slurm_conf_value(tb, "MinJobAge") if tb.is_up() else None
    return int(value) if value and value.isdigit() else None


def convert_job(adapter: Path, config: Path, env: dict[str, str],
                job_id: int) -> dict[str, Any]:
    """``cc-slurm-adapter convert --job ID``: the live Slurm read and the mapping, as one
    NDJSON line. Not used by the demo any more (the daemon does this); the live convert
    tests use it."""
    proc = subprocess.run(
        [str(adapter), "convert", "-config", str(config), "--job", str(job_id)],
        env=env, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"convert --job {job_id} failed: {proc.stderr.strip()}")
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    for line in lines:
        if line.get("jobId") == job_id:
            return dict(line)
    raise RuntimeError(f"convert --job {job_id} returned no record for the job")


# --------------------------------------------------------------------------- cc-backend
class CCBackend:
    """The stand-in as a process that can be stopped and started again: same port, same
    database file (jobs and key pair survive, so the daemon's JWT stays valid)."""

    def __init__(self, work: Path, out: Out) -> None:
        self.port = free_port()
        self.db = work / "cc-backend.db"
        self.out = out
        self.proc: StandInProcess | None = None
        self.url = ""
        self.token = ""
        self._since = 0
        self.entries: list[dict[str, Any]] = []  # every audit entry of every run

    @property
    def up(self) -> bool:
        return self.proc is not None

    def start(self) -> None:
        # --commit-interval 0: no v1.5 job cache, so GET /api/jobs/ lists a job at once
        proc = StandInProcess(["--port", str(self.port), "--db", str(self.db),
                               "--commit-interval", "0"])
        for attempt in range(20):  # the port of the last run may still be closing
            try:
                proc.start()
                break
            except RuntimeError:
                if attempt == 19:
                    raise
                time.sleep(0.25)
        self.proc, self.url, self.token = proc, proc.url, proc.token
        self._since = 0

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(httpx.HTTPError, OSError, ValueError):
                self.poll()
            self.proc.stop()
            self.proc = None

    @property
    def pid(self) -> int:
        assert self.proc is not None and self.proc.proc is not None
        return self.proc.proc.pid

    def poll(self) -> list[dict[str, Any]]:
        """The audit entries since the last call (this run of the stand-in)."""
        if self.proc is None:
            return []
        new = self.proc.audit(self._since)
        if new:
            self._since = max(int(e["seq"]) for e in new)
            self.entries.extend(new)
        return new


def entry_job_id(entry: dict[str, Any]) -> int | None:
    job = entry.get("job") or {}
    if isinstance(job.get("jobId"), int):
        return int(job["jobId"])
    with contextlib.suppress(ValueError, TypeError):
        doc = json.loads(entry.get("body") or "")
        if isinstance(doc, dict) and isinstance(doc.get("jobId"), int):
            return int(doc["jobId"])
    return None


def entry_json(entry: dict[str, Any]) -> dict[str, Any]:
    with contextlib.suppress(ValueError, TypeError):
        doc = json.loads(entry.get("body") or "")
        if isinstance(doc, dict):
            return doc
    return {}


# --------------------------------------------------------------------------- the daemon
class AdapterDaemon:
    """``cc-slurm-adapter -daemon -config FILE``; its log (stderr) is echoed as it comes."""

    def __init__(self, config: Path, env: dict[str, str], out: Out) -> None:
        self.config = config
        self.env = env
        self.out = out
        self.log_path = config.parent / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._stop_echo = threading.Event()
        self._echo: threading.Thread | None = None

    def start(self) -> None:
        adapter = Path(sys.executable).with_name("cc-slurm-adapter")
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(adapter), "-daemon", "-config", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, env=self.env,
            cwd=str(self.config.parent),
            # its own session: a Ctrl-C at the terminal signals the demo's process group,
            # and a daemon in it would stop on its own, before the demo's cleanup, which
            # then reads as "the daemon exited" (seen once in CI); the demo stops it
            start_new_session=True)
        self._echo = threading.Thread(target=self._follow, daemon=True)
        self._echo.start()
        pid_file = Path(json.loads(self.config.read_text())["pidFilePath"])
        deadline = time.monotonic() + 30
        while True:
            self.assert_alive()
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int(pid_file.read_text().split()[0]) == self.proc.pid:
                    return
            if time.monotonic() > deadline:
                raise DemoError("the daemon wrote no pid file within 30 s")
            time.sleep(0.1)

    def _follow(self) -> None:
        with self.log_path.open("rb") as log:
            buf = b""
            while True:
                chunk = log.read()
                if chunk:
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        if line.strip():
                            self.out(f"  daemon log: {line.decode(errors='replace')}")
                elif self._stop_echo.is_set():
                    return
                else:
                    time.sleep(0.1)

    def assert_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise DemoError(f"the daemon exited with code {self.proc.returncode} "
                            f"(its log: {self.log_path})")

    def stop(self) -> int | None:
        """SIGTERM (finish in-flight writes, exit 0); SIGKILL after 30 s."""
        code: int | None = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait(10)
            self.proc = None
        self._stop_echo.set()
        if self._echo is not None:
            self._echo.join(5)
            self._echo = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code


# --------------------------------------------------------------------------- the demo
class Demo:
    def __init__(self, tb: SlurmTestbed, work: Path, out: Out) -> None:
        self.tb = tb
        self.work = work
        self.say = out
        self.cc = CCBackend(work, out)
        self.daemon: AdapterDaemon | None = None
        self.jobs: list[Job] = []
        self.gate_host = tb.job_dir / f"demo-gate-{os.getpid()}-{time.monotonic_ns()}"
        self.gate_inside = f"{tb.job_dir_in_root}/{self.gate_host.name}"

    # ---- setup
    def write_config(self) -> Path:
        hook_port = free_port()
        last_run = self.work / "lastrun"
        # upstream's sync cursor: the daemon starts its first Slurm window here (a few
        # seconds ago) instead of sending this shared testbed's last 7 days
        last_run.touch()
        stamp = time.time() - 5
        os.utime(last_run, (stamp, stamp))
        config = self.work / "config.json"
        config.write_text(json.dumps({
            "ccRestUrl": self.cc.url, "ccRestJwt": self.cc.token,
            "prepSockListenPath": f"tcp:127.0.0.1:{hook_port}",
            "prepSockConnectPath": f"tcp:127.0.0.1:{hook_port}",
            "pidFilePath": str(self.work / "daemon.pid"),
            "statePath": str(self.work / "state.db"),
            "lastRunPath": str(last_run),
            "slurmPollInterval": POLL_INTERVAL,
            "gpuPciAddrs": {"^node[0-9]+$": PCI},
        }, indent=2) + "\n")
        config.chmod(0o600)  # it holds the JWT; the hook runs as SlurmUser (root here)
        return config

    def write_hook(self, config: Path) -> Path:
        """Upstream's hook.sh. A chroot release sees this checkout read-only at
        ``repo_in_root`` and has no venv: it runs the hook file with its own python3."""
        hook = self.work / "hook.sh"
        if self.tb.chroot is None:
            adapter = Path(sys.executable).with_name("cc-slurm-adapter")
            line = f"'{adapter}' -config '{config}'"
        else:
            inside = f"{self.tb.repo_in_root}/{config.relative_to(REPO)}"
            line = (f"/usr/bin/python3 '{self.tb.repo_in_root}/src/cc_slurm_adapter/hook.py' "
                    f"-config '{inside}'")
        hook.write_text(f"#!/bin/sh\n{line}\nexit 0\n")
        hook.chmod(0o755)
        return hook

    # ---- watching
    def ours(self, job_id: int | None) -> Job | None:
        return next((j for j in self.jobs if j.job_id and j.job_id == job_id), None)

    def poll(self) -> None:
        """Print every start_job/stop_job of our jobs that reached cc-backend."""
        if self.daemon is not None:
            self.daemon.assert_alive()
        if not self.cc.up:
            return
        for entry in self.cc.poll():
            path = str(entry.get("path"))
            kind = "start_job" if "start_job" in path else "stop_job" if "stop_job" in path \
                else None
            job = self.ours(entry_job_id(entry))
            if kind is None or job is None:
                continue
            status = entry.get("status")
            phrase = HTTPStatus(status).phrase if isinstance(status, int) else "no answer"
            body = entry_json(entry)
            accepted = status in (200, 201, 422)
            lag = ""
            if accepted and kind == "start_job" and body.get("startTime"):
                lag = f", {float(entry['time']) - int(body['startTime']):.1f} s after it started"
            elif accepted and kind == "stop_job" and body.get("stopTime"):
                lag = f", {float(entry['time']) - int(body['stopTime']):.1f} s after it ended"
            extra = ""
            if kind == "start_job":
                hosts = [r.get("hostname", "?") for r in body.get("resources") or []]
                extra = f" on {','.join(hosts)}"
            else:
                extra = f" state={body.get('jobState')}"
            self.say(f"cc-backend <- {kind} job {job.job_id} ({job.label}){extra}: "
                     f"{status} {phrase}{lag}")
            if accepted and kind == "start_job" and job.start is None:
                job.start = entry
            if accepted and kind == "stop_job" and job.stop is None:
                job.stop = entry

    def wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if done():
                return
            if time.monotonic() > deadline:
                raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.25)

    def submit(self, label: str, name: str, sbatch: list[str]) -> Job:
        # -o /dev/null: no output files left behind in the testbed's job directory
        job = Job(label, name, ["-J", name, "-t", "2", "-o", "/dev/null", *sbatch])
        self.jobs.append(job)  # an interrupted sbatch leaves job_id 0: cancelled by name
        job.job_id = self.tb.submit(job.sbatch)
        self.say(f"sbatch: job {job.job_id} ({label})")
        return job

    def settle(self, job: Job, timeout: float = 90) -> None:
        """Wait for Slurm's final accounting record of the job (the expected values)."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            with contextlib.suppress(TestbedError, ValueError):
                rec = find_sacct_job(self.tb.sacct_json(job.job_id), job.job_id)
                # 22.05: slurmdbd may first hold a placeholder record named "allocation"
                if rec is not None and rec.get("name") == job.name \
                        and sacct_state(rec) not in ("", "PENDING", "RUNNING") \
                        and int(rec["time"]["end"] or 0) > 0:
                    job.start_time = int(rec["time"]["start"])
                    job.state = sacct_state(rec)
                    return
            if time.monotonic() > deadline:
                raise DemoError(f"job {job.job_id} has no final sacct record after "
                                f"{timeout:.0f} s")
            time.sleep(0.3)

    # ---- the story
    def run(self, keep_note: Callable[[str], None]) -> bool:
        tb, say = self.tb, self.say
        self.cc.start()
        say(f"cc-backend stand-in (API of cc-backend 1.5) at {self.cc.url}, pid {self.cc.pid}")
        config = self.write_config()
        hook = self.write_hook(config)
        say(f"config {config}; hook {hook}: {hook.read_text().splitlines()[1]}")
        self.daemon = AdapterDaemon(config, tb.env, say)
        self.daemon.start()
        assert self.daemon.proc is not None
        say(f"cc-slurm-adapter -daemon -config {config.name}: running, pid "
            f"{self.daemon.proc.pid}")
        keep_note("hook")
        say(f"Slurm {tb.release}: PrologSlurmctld/EpilogSlurmctld = {hook.name} "
            f"(slurm.conf, then scontrol reconfigure)")
        tb.up(prep_script=hook, min_job_age=min_job_age(tb))
        say(f"Slurm {tb.version} is up: cluster {tb.cluster}, nodes node[1-2], 2 GPUs each")

        print()
        say("== 1. jobs while cc-backend is up: each start and end arrives within seconds")
        first = [
            self.submit("one node", "demo-single", ["-N1", "--wrap", "sleep 3"]),
            self.submit("two nodes", "demo-twonode",
                        ["-N2", "--wrap", "srun hostname; sleep 3"]),
            self.submit("a GPU", "demo-gpu", ["--gres=gpu:1", "--wrap", "sleep 3"]),
            self.submit("a failure", "demo-fail", ["--wrap", "sleep 3; exit 3"]),
        ]
        long = self.submit("runs into the outage", "demo-long", [
            "--wrap", f"while [ ! -e {self.gate_inside} ]; do sleep 0.5; done"])
        self.wait(lambda: all(j.stop for j in first) and long.start is not None, 120,
                  "the first jobs' starts and stops in cc-backend")

        print()
        say("== 2. cc-backend goes down; Slurm carries on")
        self.cc.stop()
        t_down = time.monotonic()
        say("cc-backend down (stand-in stopped)")
        self.gate_host.touch()  # the long job ends now
        during = [
            self.submit("one node, during the outage", "demo-out-single",
                        ["--wrap", "sleep 3"]),
            self.submit("a GPU, during the outage", "demo-out-gpu",
                        ["--gres=gpu:1", "--wrap", "sleep 3"]),
            self.submit("a failure, during the outage", "demo-out-fail",
                        ["--wrap", "sleep 3; exit 1"]),
        ]
        for job in [long, *during]:
            self.settle(job)
            say(f"Slurm: job {job.job_id} ({job.label}) ended {job.state}")
        starts = sum(1 for j in self.jobs if j.start is None)
        stops = sum(1 for j in self.jobs if j.stop is None)
        say(f"backlog: {starts + stops} submissions cc-backend has not received "
            f"({starts} start_job, {stops} stop_job); the daemon keeps them in its state "
            f"file and retries")
        rest = MIN_OUTAGE_S - (time.monotonic() - t_down)
        if rest > 0:
            time.sleep(rest)

        print()
        say(f"== 3. cc-backend back after {time.monotonic() - t_down:.0f} s")
        self.cc.start()
        t_back = time.time()
        say(f"cc-backend back (same port, same database), pid {self.cc.pid}")
        self.wait(lambda: all(j.start and j.stop for j in self.jobs), 120,
                  "the backlog to reach cc-backend")
        last = max(float(e["time"]) for j in self.jobs for e in (j.start, j.stop)
                   if e is not None and float(e["time"]) >= t_back - 1)
        say(f"backlog drained: all {starts + stops} submissions arrived within "
            f"{last - t_back:.1f} s after cc-backend came back (each one waits for its "
            f"next retry: capped exponential backoff with jitter)")

        for job in first:
            self.settle(job)
        print()
        say("cc-backend's job table (GET /api/jobs/, the demo's jobs):")
        self.show_table()
        return self.report()

    def show_table(self) -> None:
        with httpx.Client(base_url=self.cc.url, headers={"X-Auth-Token": self.cc.token},
                          timeout=10) as client:
            rows = client.get("/api/jobs/", params={"items-per-page": 500}).json()
        ids = {j.job_id for j in self.jobs}
        jobs = [r for r in rows.get("jobs") or [] if r.get("jobId") in ids
                and r.get("cluster") == self.tb.cluster]
        self.say.raw(f"{'jobId':>6} {'user':<9} {'state':<10} {'nodes':<12} "
                     f"{'hwthreads':<16} {'accelerators':<18} duration")
        for row in sorted(jobs, key=lambda r: int(r["jobId"])):
            res = row.get("resources") or []
            nodes = ",".join(r["hostname"] for r in res)
            threads = ";".join(",".join(map(str, r.get("hwthreads") or [])) for r in res)
            accs = ";".join(",".join(r.get("accelerators") or []) for r in res).strip(";")
            self.say.raw(f"{row['jobId']:>6} {row['user']:<9} {row['jobState']:<10} "
                         f"{nodes:<12} {threads or '-':<16} {accs or '-':<18} "
                         f"{row.get('duration', 0)} s")
        print(flush=True)

    def report(self) -> bool:
        assert self.cc.proc is not None
        expected = [{"jobId": j.job_id, "cluster": self.tb.cluster,
                     "startTime": j.start_time, "stopped": True} for j in self.jobs]
        check = self.cc.proc.check(expected)
        ids = {j.job_id for j in self.jobs}
        self.poll()
        lost = check.get("lost") or []
        duplicated = [d for d in check.get("duplicates") or [] if d.get("jobId") in ids]
        never = check.get("neverStopped") or []
        # every run's audit (the stand-in restarted): 4xx = a payload cc-backend refuses
        rejected = [e for e in self.cc.entries if e.get("outcome") == "rejected"
                    and e.get("status") in (400, 405) and entry_job_id(e) in ids]
        self.say(f"stand-in audit of the demo's {len(self.jobs)} jobs: {len(lost)} lost, "
                 f"{len(duplicated)} duplicated, {len(never)} never stopped, "
                 f"{len(rejected)} rejected")
        for name, items in (("lost", lost), ("duplicated", duplicated),
                            ("never stopped", never), ("rejected", rejected)):
            for item in items:
                self.say(f"  {name}: {json.dumps(item)[:300]}")
        return not (lost or duplicated or never or rejected)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C while the demo runs."""
    def on_term(signum: int, frame: FrameType | None) -> None:
        raise Interrupted()
    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def uninterruptible() -> Iterator[None]:
    """The cleanup runs to its end: a second Ctrl-C (or SIGTERM) is ignored meanwhile.
    Child processes started now (testbed/up.sh) inherit the ignored SIGINT."""
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=(__doc__ or "").split(
        "\n")[0])
    parser.add_argument("--release", default="22.05", help="Slurm release (22.05, 24.11, 26.05)")
    parser.add_argument("--keep", action="store_true", help="leave the Slurm testbed running")
    args = parser.parse_args(argv)
    say = Out()
    tb = SlurmTestbed(args.release)
    reason = tb.unavailable_reason()
    if reason:
        print(f"demo: the Slurm testbed cannot run here: {reason}", file=sys.stderr)
        return 1

    # In the checkout (git-ignored var/): the 24.11/26.05 chroots see the checkout.
    (REPO / "var").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="demo-", dir=REPO / "var"))
    say(f"demo files in {work} (removed at the end)")
    # Share the cluster politely with concurrent test sessions (they hold the same lock
    # shared; fixture recording takes it exclusively and wipes the state).
    lock = tb.session_lock()
    demo = Demo(tb, work, say)
    touched: set[str] = set()
    was_up = True
    code = 1
    try:
        with interruptible():
            lock.acquire(exclusive=False)
            touched.add("lock")
            was_up = tb.is_up()
            code = 0 if demo.run(touched.add) else 1
    except (KeyboardInterrupt, Interrupted):
        print(flush=True)
        say("interrupted: cleaning up")
        code = 130
    except (DemoError, TestbedError, RuntimeError, OSError, httpx.HTTPError) as exc:
        say(f"demo failed: {exc}")
        code = 1
    finally:
        with uninterruptible():
            if not cleanup(demo, tb, lock, work, touched, was_up=was_up, keep=args.keep,
                           say=say):
                code = code or 1
    if code == 0:
        say("demo finished: every job arrived once and was stopped, nothing lost while "
            "cc-backend was down")
    elif code == 1:
        say("demo finished with PROBLEMS (see above)")
    return code


def cleanup(demo: Demo, tb: SlurmTestbed, lock: SessionLock, work: Path, touched: set[str], *,
            was_up: bool, keep: bool, say: Out) -> bool:
    """Undo everything the demo did, each step on its own; False if one failed."""
    good = True

    def step(what: str, action: Callable[[], object]) -> None:
        nonlocal good
        try:
            action()
        except Exception as exc:  # one failed step must not skip the others
            good = False
            say(f"cleanup: {what} failed: {str(exc).splitlines()[0] if str(exc) else exc!r}")

    if demo.daemon is not None:
        daemon = demo.daemon

        def stop_daemon() -> None:
            code = daemon.stop()
            say(f"daemon stopped (exit code {code})")
        step("stopping the daemon", stop_daemon)
    ids = [str(j.job_id) for j in demo.jobs if j.job_id]
    if ids:
        step("cancelling the demo's jobs", lambda: tb.run("scancel", *ids, check=False))
    unknown = ",".join(j.name for j in demo.jobs if not j.job_id)
    if unknown:  # sbatch was interrupted: it may or may not have queued the job
        step("cancelling the demo's jobs",
             lambda: tb.run("scancel", f"--name={unknown}", "--user=testuser", check=False))
    step("removing the job gate", lambda: demo.gate_host.unlink(missing_ok=True))
    step("stopping the stand-in", demo.cc.stop)
    if "lock" in touched:
        def restore() -> None:
            try:
                if not was_up and not keep and lock.try_exclusive():
                    say(f"Slurm {tb.release}: down again (the demo started it)")
                    tb.down()
                elif "hook" in touched:
                    say(f"Slurm {tb.release}: PrologSlurmctld/EpilogSlurmctld back to the "
                        f"testbed's default hook")
                    tb.up(prep_script=None, min_job_age=min_job_age(tb))
            finally:
                lock.release()
        step("restoring Slurm", restore)
    step("removing the demo files", lambda: shutil.rmtree(work))
    return good


if __name__ == "__main__":
    sys.exit(main())
