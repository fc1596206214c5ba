"""The local demo (README command 1): real Slurm, the cc-backend stand-in, the adapter.

It brings up the Slurm 22.05 testbed with our Prolog/Epilog hook installed, starts
the cc-backend stand-in, submits a few jobs and shows them arriving:

1. Slurm runs ``cc-slurm-adapter`` as PrologSlurmctld/EpilogSlurmctld; the hook
   sends the job's event over TCP, and the demo prints it as it lands.
2. For each event the adapter's Slurm layer reads the job (``convert --job``:
   the live ``sacct``/``squeue`` queries), the mapping builds the cc-backend
   payloads, and they are posted to the stand-in, which checks them as strictly
   as cc-backend does.
3. At the end it prints cc-backend's job table and the stand-in's audit: no job
   lost, none duplicated, every finished job stopped.

Daemon mode (the sync engine with its durable outbox) is the next milestone; until
it lands, step 2 is done by this demo's small relay loop.

Run it as root with ``scripts/demo`` (which installs what it needs first).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import httpx

from cc_slurm_adapter.testing.ccbackend.standin import StandInProcess
from cc_slurm_adapter.testing.slurm_testbed import SlurmTestbed

JOBS: list[tuple[str, list[str]]] = [
    ("one node", ["-J", "demo-single", "-N1", "--wrap", "sleep 4"]),
    ("two nodes", ["-J", "demo-twonode", "-N2", "--wrap", "srun hostname; sleep 4"]),
    ("a GPU", ["-J", "demo-gpu", "--gres=gpu:1", "--wrap", "sleep 4"]),
    ("a failure", ["-J", "demo-fail", "--wrap", "sleep 2; exit 3"]),
]

_T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", flush=True)


@contextmanager
def event_listener() -> Iterator[tuple[int, Queue[dict[str, str]]]]:
    """A TCP socket that receives the hook's messages (one JSON object per connection)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.5)
    events: Queue[dict[str, str]] = Queue()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                chunks = []
                try:
                    while chunk := conn.recv(65536):
                        chunks.append(chunk)
                    events.put(json.loads(b"".join(chunks)))
                except (OSError, ValueError) as exc:
                    say(f"hook message could not be read: {exc}")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], events
    finally:
        stop.set()
        server.close()
        thread.join(2)


def convert_job(adapter: Path, config: Path, env: dict[str, str],
                job_id: int) -> dict[str, Any]:
    """``cc-slurm-adapter convert --job ID``: the live Slurm read and the mapping."""
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


def post(client: httpx.Client, route: str, payload: dict[str, Any]) -> str:
    response = client.post(f"/api/jobs/{route}/", json=payload)
    return f"{response.status_code} {response.reason_phrase}"


def relay(tb: SlurmTestbed, adapter: Path, config: Path, client: httpx.Client,
          events: Queue[dict[str, str]], expected: set[int], timeout: float) -> None:
    """Turn hook events into start_job/stop_job calls until every job was stopped."""
    started: set[int] = set()
    stopped: set[int] = set()
    pending_stop: set[int] = set()
    deadline = time.monotonic() + timeout
    next_poll = time.monotonic() + 10
    env = tb.env
    while not expected <= stopped and time.monotonic() < deadline:
        if time.monotonic() >= next_poll:
            # The poll backstop: a missed hook event only delays a job, never loses it.
            pending_stop |= (started | expected) - stopped
            next_poll = time.monotonic() + 10
        try:
            event = events.get(timeout=1.0)
        except Empty:
            event = None
        if event is not None:
            job_id = int(event["SLURM_JOB_ID"])
            context = event["SLURM_SCRIPT_CONTEXT"]
            say(f"hook → daemon socket: job {job_id} {context} "
                f"(user {event['SLURM_JOB_USER']}, nodes {event['SLURM_JOB_NODELIST']})")
            if context == "epilog_slurmctld":
                pending_stop.add(job_id)
            elif job_id not in started:
                line = convert_job(adapter, config, env, job_id)
                if line["start_job"] is not None:
                    hosts = [r["hostname"] for r in line["start_job"]["resources"]]
                    answer = post(client, "start_job", line["start_job"])
                    say(f"start_job {job_id} on {','.join(hosts)} → cc-backend: {answer}")
                    started.add(job_id)
        for job_id in sorted(pending_stop):
            # The epilog runs before slurmdbd has the end time: wait until sacct has it.
            line = convert_job(adapter, config, env, job_id)
            if line["stop_job"] is None:
                continue
            if job_id not in started and line["start_job"] is not None:
                say(f"start_job {job_id} (late) → cc-backend: "
                    f"{post(client, 'start_job', line['start_job'])}")
                started.add(job_id)
            stop = line["stop_job"]
            say(f"stop_job {job_id} state={stop['jobState']} → cc-backend: "
                f"{post(client, 'stop_job', stop)}")
            pending_stop.discard(job_id)
            stopped.add(job_id)
    if not expected <= stopped:
        say(f"timed out; jobs not stopped: {sorted(expected - stopped)}")


def show_table(client: httpx.Client) -> None:
    jobs = client.get("/api/jobs/", params={"items-per-page": 100}).json().get("jobs") or []
    print()
    print(f"{'jobId':>6} {'user':<9} {'state':<10} {'nodes':<12} {'hwthreads':<10} "
          f"{'accelerators':<24} duration")
    for job in sorted(jobs, key=lambda j: j["jobId"]):
        resources = job.get("resources") or []
        nodes = ",".join(r["hostname"] for r in resources)
        threads = ";".join(",".join(map(str, r.get("hwthreads") or [])) for r in resources)
        accs = ";".join(",".join(r.get("accelerators") or []) for r in resources)
        print(f"{job['jobId']:>6} {job['user']:<9} {job['jobState']:<10} {nodes:<12} "
              f"{threads:<10} {accs or '-':<24} {job.get('duration', 0)} s")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.split("\n")[0])
    parser.add_argument("--release", default="22.05", help="Slurm release (22.05, 24.11, 26.05)")
    parser.add_argument("--keep", action="store_true", help="leave the Slurm testbed running")
    args = parser.parse_args(argv)

    repo = Path(__file__).resolve().parents[3]
    adapter = Path(sys.executable).with_name("cc-slurm-adapter")
    tb = SlurmTestbed(args.release)
    reason = tb.unavailable_reason()
    if reason:
        print(f"demo: the Slurm testbed cannot run here: {reason}", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory(prefix="ccsa-demo-") as tmp, event_listener() as (port,
                                                                                        events):
        work = Path(tmp)
        os.chmod(work, 0o755)
        with StandInProcess(["--commit-interval", "0", "--db", str(work / "cc.db")]) as cc:
            say(f"cc-backend stand-in (profile v1.5) at {cc.url}")
            config = work / "config.json"
            config.write_text(json.dumps({
                "ccRestUrl": cc.url, "ccRestJwt": cc.token,
                "prepSockListenPath": f"tcp:127.0.0.1:{port}",
                "prepSockConnectPath": f"tcp:127.0.0.1:{port}",
                "gpuPciAddrs": {"^node[0-9]+$": ["00000000:3B:00.0", "00000000:D8:00.0"]},
            }, indent=2))
            config.chmod(0o644)
            hook = repo / "var" / "demo-hook.sh"
            hook.parent.mkdir(exist_ok=True)
            hook.write_text(f"#!/bin/sh\n'{adapter}' -config '{config}'\nexit 0\n")
            hook.chmod(0o755)
            # Share the cluster politely with concurrent test sessions (they hold the same
            # lock shared; fixture recording takes it exclusively and wipes the state).
            lock = tb.session_lock()
            lock.acquire(exclusive=False)
            was_up = tb.is_up()
            say(f"bringing up Slurm {args.release} with PrologSlurmctld/EpilogSlurmctld = "
                f"cc-slurm-adapter (hook mode)")
            tb.up(prep_script=hook)
            say(f"Slurm {tb.version} is up: cluster {tb.cluster}, nodes node[1-2], 2 GPUs each")
            ids: set[int] = set()
            for label, sbatch in JOBS:
                job_id = tb.submit(sbatch)
                ids.add(job_id)
                say(f"sbatch: job {job_id} ({label})")
            with httpx.Client(base_url=cc.url, headers={"X-Auth-Token": cc.token},
                              timeout=10) as client:
                relay(tb, adapter, config, client, events, ids, timeout=120)
                say("cc-backend's job table (GET /api/jobs/):")
                show_table(client)
            report = cc.check([{"jobId": i, "cluster": tb.cluster} for i in sorted(ids)])
            say("stand-in audit: " + json.dumps(report))
            # Leave Slurm as we found it: no hook pointing at this temp dir, and down
            # again unless it was already running (or --keep).
            try:
                if not was_up and not args.keep and lock.try_exclusive():
                    tb.down()
                else:
                    tb.up(prep_script=None)
            finally:
                lock.release()
            ok = bool(report.get("ok"))
            say("demo finished: " + ("every job arrived once and was stopped" if ok
                                     else "PROBLEMS (see above)"))
            return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
