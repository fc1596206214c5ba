"""Prolog/Epilog hook: upstream's wire format, never a failed job."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from cc_slurm_adapter import hook
from cc_slurm_adapter.hook import (
    DEADLINE,
    FORWARDED_ENV,
    SocketAddress,
    build_message,
    connect,
    read_connect_address,
    run_hook,
)

ENV = {"SLURM_JOB_ID": "42", "SLURM_SCRIPT_CONTEXT": "epilog_slurmctld",
       "SLURM_CLUSTER_NAME": "testcluster", "UNRELATED": "x"}


def test_message_is_upstreams_json_of_env_strings() -> None:
    message = json.loads(build_message(ENV))
    assert set(message) == set(FORWARDED_ENV)
    assert len(FORWARDED_ENV) == 39
    assert message["SLURM_JOB_ID"] == "42"
    assert message["SLURM_CLUSTER_NAME"] == "testcluster"
    assert message["SLURM_JOB_USER"] == ""


@pytest.mark.parametrize(("env", "reason"), [
    ({}, "SLURM_JOB_ID is not set"),
    ({"SLURM_JOB_ID": "1", "SLURM_SCRIPT_CONTEXT": "prolog"}, "SLURM_SCRIPT_CONTEXT is 'prolog'"),
])
def test_not_a_hook_call(env: dict[str, str], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        build_message(env)


def test_sends_to_a_unix_socket(tmp_path: Path) -> None:
    sock_path = tmp_path / "d.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)
    received: list[bytes] = []

    def accept() -> None:
        conn, _ = server.accept()
        with conn:
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
            received.append(b"".join(chunks))

    thread = threading.Thread(target=accept)
    thread.start()
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"prepSockConnectPath": f"unix:{sock_path}"}))
    try:
        assert run_hook(str(config), ENV) == 0
        thread.join(5)
    finally:
        server.close()
    assert json.loads(received[0])["SLURM_JOB_ID"] == "42"


def test_sends_over_tcp(tmp_path: Path) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"prepSockConnectPath": f"tcp:127.0.0.1:{port}"}))
    try:
        assert run_hook(str(config), ENV) == 0
        conn, _ = server.accept()
        with conn:
            data = conn.recv(65536)
    finally:
        server.close()
    assert json.loads(data)["SLURM_SCRIPT_CONTEXT"] == "epilog_slurmctld"


def test_no_daemon_still_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"prepSockConnectPath": str(tmp_path / "none.sock")}))
    assert run_hook(str(config), ENV) == 0
    assert "job 42: cannot reach the daemon" in capsys.readouterr().err


def test_bad_config_falls_back_to_default_socket(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text("{not json")
    address, problem = read_connect_address(str(config))
    assert str(address) == "unix:/run/cc-slurm-adapter/daemon.sock"
    assert problem is not None and "cannot read config" in problem
    config.write_text(json.dumps({"prepSockConnectPath": "tcp:x"}))
    address, problem = read_connect_address(str(config))
    assert problem is not None and "prepSockConnectPath: malformed TCP" in problem


@pytest.mark.skipif(Path("/etc/cc-slurm-adapter/config.json").exists(),
                    reason="this machine has a real config at the default path")
def test_missing_default_config_is_silent() -> None:
    address, problem = read_connect_address(None)
    assert (str(address), problem) == ("unix:/run/cc-slurm-adapter/daemon.sock", None)


# --------------------------------------------------------- hostile configs, hanging DNS


T = TypeVar("T")


def _soon(function: Callable[[], T], seconds: float = 5.0) -> T:
    """Run ``function`` in a thread that must finish within ``seconds``."""
    result: list[T] = []
    thread = threading.Thread(target=lambda: result.append(function()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert result, f"did not return within {seconds} s"
    return result[0]


def test_fifo_config_does_not_hang_the_hook(tmp_path: Path) -> None:
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    address, problem = _soon(lambda: read_connect_address(str(fifo)))
    assert str(address) == "unix:/run/cc-slurm-adapter/daemon.sock"
    assert problem == f"{fifo}: cannot read config: not a regular file"


@pytest.mark.parametrize(("content", "reason"), [
    (None, "not a regular file"),  # /dev/zero
    ("{" + " " * (1024 * 1024) + "}", "larger than 1024 KiB"),
    ('{"a": ' + "[" * 10_000 + "]" * 10_000 + "}", "nested too deeply"),
    ('{"a": ' + "9" * 5000 + "}", "Exceeds the limit"),
])
def test_hostile_config_falls_back_to_the_default_socket(tmp_path: Path, content: str | None,
                                                         reason: str) -> None:
    path = Path("/dev/zero")
    if content is not None:
        path = tmp_path / "config.json"
        path.write_text(content)
    address, problem = _soon(lambda: read_connect_address(str(path)))
    assert str(address) == "unix:/run/cc-slurm-adapter/daemon.sock"
    assert problem is not None and problem.startswith(f"{path}: cannot read config: ")
    assert reason in problem and "\n" not in problem


@pytest.fixture
def hanging_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """getaddrinfo that hangs until the test ends (a DNS server that never answers)."""
    release = threading.Event()
    asked: list[str] = []

    def getaddrinfo(host: str, *args: object, **kwargs: object) -> list[object]:
        asked.append(host)
        release.wait(60)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield asked
    release.set()


def test_hanging_dns_is_bounded(hanging_dns: list[str]) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"resolving 'cc-daemon\.example' took longer"):
        connect(SocketAddress("tcp", host="cc-daemon.example", port=1), timeout=0.3)
    assert time.monotonic() - started < 2.0
    assert hanging_dns == ["cc-daemon.example"]


def test_hook_with_hanging_dns_still_ends_in_time(tmp_path: Path, hanging_dns: list[str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"prepSockConnectPath": "tcp:cc-daemon.example:4242"}))
    started = time.monotonic()
    assert run_hook(str(config), ENV) == 0
    assert time.monotonic() - started < DEADLINE + 1.0
    assert "job 42: cannot reach the daemon at tcp:cc-daemon.example:4242" in \
        capsys.readouterr().err


def test_literal_addresses_are_never_resolved(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: object, **kwargs: object) -> list[object]:
        raise AssertionError("a literal address was resolved")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            server = socket.create_server((host, 0), family=family)
        except OSError:  # no IPv6 on this machine
            continue
        with server:
            port = server.getsockname()[1]
            with connect(SocketAddress("tcp", host=host, port=port), timeout=2.0) as sock:
                sock.sendall(b"{}")


def test_standalone_hook_exits_promptly_while_dns_hangs(tmp_path: Path) -> None:
    """The copied hook file, run by the system python3, with a getaddrinfo that never
    returns: the process must end (a stuck daemon thread must not keep it alive)."""
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"prepSockConnectPath": "tcp:cc-daemon.example:4242"}))
    code = ("import socket, sys, time\n"
            "socket.getaddrinfo = lambda *a, **k: time.sleep(3600)\n"
            f"sys.path.insert(0, {str(Path(hook.__file__).parent)!r})\n"
            "import hook\n"
            f"sys.exit(hook.main(['-config', {str(config)!r}]))\n")
    env = {"PATH": "/usr/bin:/bin", "SLURM_JOB_ID": "7",
           "SLURM_SCRIPT_CONTEXT": "epilog_slurmctld"}
    started = time.monotonic()
    result = subprocess.run(["python3", "-I", "-c", code], capture_output=True, text=True,
                            timeout=30, env=env)
    assert time.monotonic() - started < DEADLINE + 5.0
    assert result.returncode == 0, result.stderr
    assert "took longer than" in result.stderr
