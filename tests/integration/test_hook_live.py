"""Our Prolog/Epilog hook, run by the real slurmctld of every live release.

The shipped ``contrib/hook.sh`` runs the hook file (``src/cc_slurm_adapter/hook.py``,
standard library only) as PrologSlurmctld/EpilogSlurmctld with the release's own
``/usr/bin/python3`` (3.11 on the host, 3.13 and 3.14 in the chroots) and reaches a
listener on the host over TCP, as a daemon outside the chroot would be reached. When
nothing listens, or a listener accepts and never reads, the job must still run to
completion: the hook never fails a job.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cc_slurm_adapter.hook import FORWARDED_ENV
from cc_slurm_adapter.testing.slurm_testbed import SlurmTestbed, sacct_state
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slurm

# The hook dir lives in the checkout (git-ignored var/), because the chroots see the
# checkout read-only at another path: the wrapper finds contrib/hook.sh (which finds
# src/cc_slurm_adapter/hook.py from a checkout) and the config relative to itself.
HOOK_DIR = REPO_ROOT / "var" / "hook-live"
WRAPPER = """#!/bin/sh
here=$(dirname "$0")
/bin/sh "$here/../../contrib/hook.sh" -config "$here/config.json"
exit 0
"""


class Listener:
    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.3)
        self.port: int = self.server.getsockname()[1]
        self.messages: list[dict[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                try:  # another job's event must not stop the listener
                    self.messages.append(json.loads(data))
                except ValueError:
                    continue

    def wait_for(self, job_id: int, contexts: set[str],
                 timeout: float) -> dict[str, dict[str, str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = {m["SLURM_SCRIPT_CONTEXT"]: m for m in self.messages
                   if m.get("SLURM_JOB_ID") == str(job_id)}
            if contexts <= set(got):
                return got
            time.sleep(0.2)
        raise AssertionError(f"job {job_id}: hook messages {contexts} not all received: "
                             f"{[m.get('SLURM_JOB_ID') for m in self.messages]}")

    def close(self) -> None:
        self._stop.set()
        self.server.close()
        self._thread.join(2)


class SilentListener:
    """Accepts every connection and reads none until :meth:`messages` (after the job)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.3)
        self.port: int = self.server.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.conns.append(conn)

    def messages(self) -> list[dict[str, str]]:
        """Read what every held connection sent (the hooks are long gone by now)."""
        found = []
        for conn in list(self.conns):
            conn.settimeout(2)
            data = b""
            try:
                while chunk := conn.recv(65536):
                    data += chunk
            except OSError:
                continue
            try:
                found.append(json.loads(data))
            except ValueError:
                continue
        return found

    def close(self) -> None:
        self._stop.set()
        self.server.close()
        self._thread.join(2)
        for conn in self.conns:
            conn.close()


@pytest.fixture()
def hook_dir() -> Iterator[Path]:
    HOOK_DIR.mkdir(parents=True, exist_ok=True)
    wrapper = HOOK_DIR / "hook.sh"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    yield HOOK_DIR


@pytest.fixture()
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def _use_hook(tb: SlurmTestbed, hook_dir: Path, connect: str) -> None:
    config = hook_dir / "config.json"
    config.write_text(json.dumps({"prepSockConnectPath": connect}))
    config.chmod(0o644)
    tb.up(prep_script=hook_dir / "hook.sh")


def test_hook_reaches_the_daemon_socket_from_slurmctld(
        slurm_cluster: SlurmTestbed, hook_dir: Path, listener: Listener) -> None:
    tb = slurm_cluster
    _use_hook(tb, hook_dir, f"tcp:127.0.0.1:{listener.port}")
    try:
        job_id = tb.submit(["-J", "ccsa-ourhook", "-N2", "--wrap", "sleep 1"])
        # -N2 needs both nodes: it may queue behind jobs that earlier tests left ending
        got = listener.wait_for(job_id, {"prolog_slurmctld", "epilog_slurmctld"}, timeout=180)
    finally:
        tb.up()
    prolog = got["prolog_slurmctld"]
    assert set(prolog) == set(FORWARDED_ENV)  # upstream's wire format
    assert prolog["SLURM_JOB_USER"] == tb.user
    assert prolog["SLURM_CLUSTER_NAME"] == tb.cluster
    assert prolog["SLURM_JOB_NODELIST"] == "node[1-2]"
    assert got["epilog_slurmctld"]["SLURM_JOB_ID"] == str(job_id)


def test_jobs_still_run_when_the_daemon_is_down(
        slurm_cluster: SlurmTestbed, hook_dir: Path) -> None:
    tb = slurm_cluster
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens on this port now
    _use_hook(tb, hook_dir, f"tcp:127.0.0.1:{port}")
    try:
        job_id = tb.submit(["-J", "ccsa-nodaemon", "--wrap", "true"])
        job = tb.wait_sacct(job_id, timeout=180, name="ccsa-nodaemon")
    finally:
        tb.up()
    found = [j for j in job["jobs"] if j["job_id"] == job_id]
    assert found and sacct_state(found[0]) == "COMPLETED"


def test_jobs_still_run_when_the_daemon_never_reads(
        slurm_cluster: SlurmTestbed, hook_dir: Path) -> None:
    """A daemon that accepts and never reads (hung, or a hostile listener): the hook
    still exits 0 in time, slurmctld runs the job, and both events were sent."""
    tb = slurm_cluster
    silent = SilentListener()
    _use_hook(tb, hook_dir, f"tcp:127.0.0.1:{silent.port}")
    try:
        job_id = tb.submit(["-J", "ccsa-silent", "--wrap", "true"])
        job = tb.wait_sacct(job_id, timeout=180, name="ccsa-silent")
        contexts: set[str] = set()
        deadline = time.monotonic() + 30  # the epilog may end after sacct shows the job
        while time.monotonic() < deadline and len(contexts) < 2:
            time.sleep(0.5)
            held = [m for m in silent.messages() if m.get("SLURM_JOB_ID") == str(job_id)]
            contexts |= {m["SLURM_SCRIPT_CONTEXT"] for m in held}
    finally:
        tb.up()
        silent.close()
    found = [j for j in job["jobs"] if j["job_id"] == job_id]
    assert found and sacct_state(found[0]) == "COMPLETED"
    assert contexts == {"prolog_slurmctld", "epilog_slurmctld"}
