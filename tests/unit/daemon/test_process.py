"""The daemon as a process: pid file and lock, signals, systemd notifications, reload."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cc_slurm_adapter.config import load_config
from cc_slurm_adapter.daemon import serve
from cc_slurm_adapter.daemon.process import Notifier, PidFile, PidFileError, config_changes

from .fakeslurm import FakeSlurm

standin_mod = pytest.importorskip("cc_slurm_adapter.testing.ccbackend")

CLI = [sys.executable, "-m", "cc_slurm_adapter"]


def write_config(tmp_path: Path, url: str = "http://127.0.0.1:9", jwt: str = "x.y.z",
                 **extra: Any) -> Path:
    doc = {"ccRestUrl": url, "ccRestJwt": jwt, "statePath": str(tmp_path / "state.db"),
           "pidFilePath": str(tmp_path / "run" / "daemon.pid"),
           "lastRunPath": str(tmp_path / "lastrun"), "slurmPollInterval": 1,
           "prepSockListenPath": str(tmp_path / "run" / "daemon.sock"),
           "prepSockConnectPath": str(tmp_path / "run" / "daemon.sock"), **extra}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    return path


@pytest.fixture
def no_slurm(tmp_path: Path) -> dict[str, str]:
    """An environment whose Slurm commands all fail (slurmctld and slurmdbd down)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("sacct", "squeue", "scontrol", "sacctmgr", "sinfo"):
        script = bindir / name
        script.write_text("#!/bin/sh\necho 'slurm_load_jobs error: Unable to contact "
                          "slurm controller' >&2\nexit 1\n")
        script.chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}:/usr/bin:/bin", "NOTIFY_SOCKET": ""}


def start(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, "-daemon", "-debug", "3", "-config", str(config)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for(path: Path, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_second_instance_refuses_and_sigterm_exits_0(tmp_path: Path,
                                                     no_slurm: dict[str, str]) -> None:
    config = write_config(tmp_path)
    pid_path = tmp_path / "run" / "daemon.pid"
    first = start(config, no_slurm)
    try:
        wait_for(pid_path)
        assert pid_path.read_text().strip() == str(first.pid)
        second = subprocess.run([*CLI, "-daemon", "-config", str(config)], env=no_slurm,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and f"pid {first.pid}" in lines[0], second.stderr
        assert "Traceback" not in second.stderr
        # nothing of the first was touched
        assert pid_path.read_text().strip() == str(first.pid)
        assert first.poll() is None
        # the store's lock alone also refuses (a pid file removed by hand)
        pid_path.unlink()
        third = subprocess.run([*CLI, "-daemon", "-config", str(config)], env=no_slurm,
                               capture_output=True, text=True, timeout=60)
        assert third.returncode == 1 and "another cc-slurm-adapter daemon" in third.stderr
        assert not pid_path.exists()
    finally:
        first.send_signal(signal.SIGTERM)
        _out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert "Traceback" not in err


def test_pid_file_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "daemon.pid"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    path.write_text(dead.stdout)
    pid = PidFile(str(path))
    pid.check()
    pid.write()
    assert path.read_text().strip() == str(os.getpid())
    pid.remove()
    assert not path.exists()


def test_pid_file_of_a_live_process_refuses(tmp_path: Path) -> None:
    path = tmp_path / "daemon.pid"
    path.write_text(f"{os.getppid()}\n")
    with pytest.raises(PidFileError, match=f"pid {os.getppid()}"):
        PidFile(str(path)).check()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    yield sock, path
    sock.close()


def test_notifier_path_and_abstract_socket(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    Notifier({"NOTIFY_SOCKET": path}).ready()
    assert sock.recv(4096) == b"READY=1"
    name = f"ccsa-test-{os.getpid()}"
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    abstract.bind("\0" + name)
    abstract.settimeout(10)
    try:
        Notifier({"NOTIFY_SOCKET": "@" + name}).stopping()
        assert abstract.recv(4096) == b"STOPPING=1"
    finally:
        abstract.close()
    assert not Notifier({}).enabled
    assert Notifier({"WATCHDOG_USEC": "3000000"}).watchdog_s == 3.0
    assert Notifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}).watchdog_s is None


async def test_serve_notifies_ready_watchdog_stopping_and_stops_on_sigterm(
        tmp_path: Path, notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    sock.setblocking(False)
    with standin_mod.StandIn(commit_interval=0.2) as si:
        config = load_config(str(write_config(tmp_path, si.url, si.token)),
                             purpose="daemon").config
        notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
        task = asyncio.create_task(serve(config, notifier=notifier,
                                         runner=FakeSlurm("24.11", "after").runner))
        loop = asyncio.get_running_loop()
        got: list[bytes] = []
        deadline = loop.time() + 20
        while loop.time() < deadline and got.count(b"WATCHDOG=1") < 2:
            with contextlib.suppress(TimeoutError):
                got.append(await asyncio.wait_for(loop.sock_recv(sock, 4096), 1))
        assert got[0].startswith(b"READY=1")
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 30) == 0
        while True:
            try:
                got.append(sock.recv(4096))
            except BlockingIOError:
                break
        assert got[-1] == b"STOPPING=1"
        assert not (tmp_path / "run" / "daemon.pid").exists()
        assert si.check([{"jobId": 1, "cluster": "testcluster"}]).ok


def test_config_changes_say_what_needs_a_restart(tmp_path: Path) -> None:
    old = load_config(str(write_config(tmp_path)), purpose="daemon").config
    new = load_config(str(write_config(tmp_path, jwt="a.b.c", slurmPollInterval=30,
                                       statePath="/tmp/other.db")), purpose="daemon").config
    taken, restart = config_changes(old, new)
    assert taken == ["slurm_poll_interval: 1 -> 30"]
    assert "cc_rest_jwt changed" in restart
    assert any(line.startswith("state_path") for line in restart)
    assert not any("a.b.c" in line or "x.y.z" in line for line in taken + restart)


def test_notifier_never_blocks_on_a_full_socket(
        notify_socket: tuple[socket.socket, str]) -> None:
    _sock, path = notify_socket  # nobody reads it
    notifier = Notifier({"NOTIFY_SOCKET": path})
    started = time.monotonic()
    results = [notifier.notify("WATCHDOG=1") for _ in range(5000)]
    assert time.monotonic() - started < 5
    assert results[0] and not results[-1]


async def test_sighup_reload_takes_what_it_can(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from cc_slurm_adapter.ccbackend import CCBackendClient
    from cc_slurm_adapter.daemon import _reload
    from cc_slurm_adapter.daemon.loop import Daemon
    from cc_slurm_adapter.store import open_store

    path = write_config(tmp_path)
    config = load_config(str(path), purpose="daemon").config
    store = open_store(config.state_path)
    client = CCBackendClient(config.cc_rest_url, config.cc_rest_jwt)
    try:
        daemon = Daemon(config, store=store, client=client,
                        runner=FakeSlurm("24.11").runner)
        write_config(tmp_path, jwt="new.jwt.value", slurmPollInterval=30,
                     statePath=str(tmp_path / "elsewhere.db"))
        with caplog.at_level(logging.WARNING, "cc_slurm_adapter.daemon"):
            await _reload(daemon)
        assert daemon.config.slurm_poll_interval == 30
        assert daemon.config.state_path == config.state_path  # needs a restart
        assert daemon.config.cc_rest_jwt == config.cc_rest_jwt
        assert "SIGHUP: slurm_poll_interval: 1 -> 30" in caplog.text
        assert "state_path" in caplog.text and "needs a restart" in caplog.text
        assert "new.jwt.value" not in caplog.text
        assert daemon.wake_poll.is_set()
        path.write_text("{not json")
        await _reload(daemon)
        assert daemon.config.slurm_poll_interval == 30
        assert "config not reloaded" in caplog.text
    finally:
        await client.aclose()
        store.close()
