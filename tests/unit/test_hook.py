"""Prolog/Epilog hook: upstream's wire format, never a failed job."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from cc_slurm_adapter.hook import (
    FORWARDED_ENV,
    build_message,
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
