"""Prolog/Epilog hook: upstream's wire format, always exit 0 within its bound, cheap to start.

The process tests run the hook the three ways a site can (``python3 -I -S hook.py``,
``contrib/hook.sh``, the console script) in the environment slurmctld gives it (only
``SLURM_*``, no ``PATH``), against each hostile case the issue lists, and check exit 0
within :data:`hook.DEADLINE` measured from outside the process.
"""

from __future__ import annotations

import _socket
import copy
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
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
    parse_socket_address,
    read_connect_address,
    read_hook_config,
    run_hook,
)

REPO = Path(__file__).resolve().parents[2]
HOOK_FILE = Path(hook.__file__)
HOOK_SH = REPO / "contrib" / "hook.sh"
CONSOLE = Path(sys.executable).parent / "cc-slurm-adapter"
DEFAULT = "unix:/run/cc-slurm-adapter/daemon.sock"  # upstream's default (docs, §3.7)

ENV = {"SLURM_JOB_ID": "42", "SLURM_SCRIPT_CONTEXT": "epilog_slurmctld",
       "SLURM_CLUSTER_NAME": "testcluster", "UNRELATED": "x"}
# slurmctld runs PrologSlurmctld with only SLURM_* variables, not even PATH (testbed/README)
SLURMCTLD_ENV = {"SLURM_JOB_ID": "42", "SLURM_SCRIPT_CONTEXT": "prolog_slurmctld",
                 "SLURM_CLUSTER_NAME": "testcluster"}
TOKEN = "s3cr3t-t0ken-value"

T = TypeVar("T")


# ------------------------------------------------------------------ helpers


class Reader:
    """A UNIX or TCP listener that reads each connection to its end, like the daemon."""

    def __init__(self, server: socket.socket) -> None:
        self.server = server
        self.messages: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                chunks = []
                while chunk := conn.recv(65536):
                    chunks.append(chunk)
                self.messages.append(b"".join(chunks))

    def wait(self, count: int = 1, timeout: float = 5.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.messages


@pytest.fixture
def unix_reader(tmp_path: Path) -> Iterator[tuple[Path, Reader]]:
    path = tmp_path / "d.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(16)
    yield path, Reader(server)
    server.close()


def write_config(tmp_path: Path, **keys: object) -> Path:
    config = tmp_path / "c.json"
    config.write_text(json.dumps(keys))
    return config


class Ran:
    def __init__(self, returncode: int, stderr: str, seconds: float) -> None:
        self.returncode, self.stderr, self.seconds = returncode, stderr, seconds


def run_process(argv: list[str], env: dict[str, str] | None = None,
                stderr: int | None = subprocess.PIPE, stdout: int | None = None) -> Ran:
    """Run a hook process; the time is taken from outside, spawn to exit."""
    started = time.monotonic()
    result = subprocess.run(argv, env=SLURMCTLD_ENV if env is None else env,
                            stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL if stdout is None else stdout,
                            stderr=stderr, timeout=30, check=False)
    seconds = time.monotonic() - started
    err = result.stderr.decode(errors="replace") if isinstance(result.stderr, bytes) else ""
    return Ran(result.returncode, err, seconds)


def hook_file(*args: str) -> list[str]:
    return [sys.executable, "-I", "-S", str(HOOK_FILE), *args]


def hook_patched(patch: str, *args: str) -> list[str]:
    """The hook file in its own process (``run_as_process``) after ``patch`` ran."""
    code = (f"import sys\nsys.path.append({str(HOOK_FILE.parent)!r})\n{patch}\n"
            f"import hook\nhook.run_as_process({list(args)!r})\n")
    return [sys.executable, "-I", "-S", "-c", code]


def assert_in_time(ran: Ran) -> None:
    assert ran.returncode == 0, ran.stderr
    assert ran.seconds < DEADLINE, f"took {ran.seconds:.2f} s: {ran.stderr}"
    assert "Traceback" not in ran.stderr


def _soon(function: Callable[[], T], seconds: float = 5.0) -> T:
    """Run ``function`` in a thread that must finish within ``seconds``."""
    result: list[T] = []
    thread = threading.Thread(target=lambda: result.append(function()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert result, f"did not return within {seconds} s"
    return result[0]


# ------------------------------------------------------------------ the message


def test_message_is_upstreams_json_of_env_strings() -> None:
    raw = build_message(ENV)
    message = json.loads(raw)
    assert set(message) == set(FORWARDED_ENV)
    assert len(FORWARDED_ENV) == 39  # upstream's list (cc-slurm-adapter-behaviour.md §3.7)
    assert all(isinstance(v, str) for v in message.values())
    assert message["SLURM_JOB_ID"] == "42"
    assert message["SLURM_CLUSTER_NAME"] == "testcluster"
    assert message["SLURM_JOB_USER"] == ""
    assert b"\n" not in raw  # one object, nothing else: no length prefix, no newline


def test_message_is_what_json_dumps_writes_with_or_without_the_c_module(
        monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**ENV, "SLURM_JOB_NAME": 'na"me\\\n\t\u00e9\u4e2d\U0001f600\udcff'}
    payload = {name: env.get(name, "") for name in FORWARDED_ENV}
    expected = json.dumps(payload, separators=(",", ":")).encode()
    assert build_message(env) == expected
    monkeypatch.setattr(hook, "_HAVE_C_JSON", False)
    assert build_message(env) == expected


def test_token_is_added_to_the_object_only_when_set() -> None:
    with_token = json.loads(build_message(ENV, TOKEN))
    assert with_token["prepSockToken"] == TOKEN
    assert set(with_token) == {*FORWARDED_ENV, "prepSockToken"}
    assert "prepSockToken" not in json.loads(build_message(ENV, ""))


def test_the_daemons_parser_takes_our_message_with_its_token() -> None:
    ipc = pytest.importorskip("cc_slurm_adapter.daemon.ipc")
    env = {**ENV, "SLURM_SCRIPT_CONTEXT": "prolog_slurmctld"}
    assert ipc.parse_message(build_message(env, TOKEN), TOKEN) == (42, "prolog_slurmctld")
    with pytest.raises(ValueError, match="prepSockToken"):
        ipc.parse_message(build_message(env), TOKEN)


def test_a_huge_environment_is_shortened_below_the_daemons_limit() -> None:
    ipc = pytest.importorskip("cc_slurm_adapter.daemon.ipc")
    env = {**ENV, "SLURM_JOB_COMMENT": "c" * 1024 * 1024, "SLURM_JOB_EXTRA": "\u00e9" * 100000}
    raw = build_message(env, TOKEN)
    assert len(raw) <= ipc.MAX_MESSAGE
    message = json.loads(raw)
    assert set(message) == {*FORWARDED_ENV, "prepSockToken"}
    assert (message["SLURM_JOB_ID"], message["SLURM_CLUSTER_NAME"],
            message["SLURM_SCRIPT_CONTEXT"], message["prepSockToken"]) == (
                "42", "testcluster", "epilog_slurmctld", TOKEN)
    assert message["SLURM_JOB_COMMENT"].startswith("ccc")
    assert ipc.parse_message(raw, TOKEN) == (42, "epilog_slurmctld")


@pytest.mark.parametrize(("env", "reason"), [
    ({}, "SLURM_JOB_ID is not set"),
    ({"SLURM_JOB_ID": "1", "SLURM_SCRIPT_CONTEXT": "prolog"}, "SLURM_SCRIPT_CONTEXT is 'prolog'"),
])
def test_not_a_hook_call(env: dict[str, str], reason: str,
                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match=reason):
        build_message(env)
    assert run_hook(None, env) == 0
    err = capsys.readouterr().err
    assert reason in err and "unexpected" not in err


# ------------------------------------------------------------------ JSON without json


@pytest.mark.parametrize("text", [
    '{"prepSockConnectPath": "tcp:h:1", "a": [1, 2.5, -3e2, true, false, null]}',
    ' \t\n{"x": {"y": ["\\u00e9\\n"]}}\r\n', "[]", '"s"', "12", "NaN", '{"a": Infinity}',
])
def test_loads_reads_what_json_reads(text: str) -> None:
    assert repr(hook.loads(text)) == repr(json.loads(text))


@pytest.mark.parametrize("text", [
    "", "{", '{"a": 1,}', '{"a": 1} x', "{'a': 1}", '{"a": "\x01"}', "[1] [2]", "tru",
])
def test_loads_fails_as_json_does(text: str) -> None:
    with pytest.raises(ValueError) as ours:
        hook.loads(text)
    with pytest.raises(ValueError) as theirs:
        json.loads(text)
    assert str(ours.value) == str(theirs.value)


# ------------------------------------------------------------------ socket addresses


@pytest.mark.parametrize(("text", "expected"), [
    ("/run/x.sock", SocketAddress("unix", path="/run/x.sock")),
    ("unix:/run/x.sock", SocketAddress("unix", path="/run/x.sock")),
    ("relative/x:y.sock", SocketAddress("unix", path="relative/x:y.sock")),
    ("tcp:host:12345", SocketAddress("tcp", host="host", port=12345)),
    ("tcp:[::1]:80", SocketAddress("tcp", host="::1", port=80)),
    ("tcp::80", SocketAddress("tcp", host="", port=80)),
    ("tcp:[]:80", SocketAddress("tcp", host="", port=80)),
])
def test_socket_address_syntax(text: str, expected: SocketAddress) -> None:
    assert parse_socket_address(text) == expected


@pytest.mark.parametrize("text", [
    "tcp:h", "tcp:h:1:2", "tcp:[::1]80", "tcp:[::1:80", "tcp:h]:80", "tcp:h:", "tcp:h:65536",
    "tcp:h:0", "tcp:h:-1", "tcp:h:\u0668\u0660", "tcp:h: 80", "udp:h:1", "tcp4:h:1",
    "http://h:1", "unix:", "",
])
def test_malformed_socket_addresses(text: str) -> None:
    with pytest.raises(ValueError, match="socket address"):
        parse_socket_address(text)


def test_socket_address_is_a_value() -> None:
    a = SocketAddress("tcp", host="::1", port=80)
    assert a == SocketAddress("tcp", host="::1", port=80) != SocketAddress("tcp", host="::1",
                                                                           port=81)
    assert a != "tcp:[::1]:80"
    assert len({a, SocketAddress("tcp", host="::1", port=80)}) == 1
    assert str(a) == "tcp:[::1]:80"
    assert str(SocketAddress("unix", path="/x")) == "unix:/x"
    assert "port=80" in repr(a)
    assert copy.deepcopy(a) == a == pickle.loads(pickle.dumps(a))
    with pytest.raises(AttributeError):
        a.port = 1


# ------------------------------------------------------------------ sending


def test_sends_to_a_unix_socket_with_the_token(tmp_path: Path,
                                               unix_reader: tuple[Path, Reader]) -> None:
    path, reader = unix_reader
    config = write_config(tmp_path, prepSockConnectPath=f"unix:{path}", prepSockToken=TOKEN)
    assert run_hook(str(config), ENV) == 0
    message = json.loads(reader.wait()[0])
    assert message["SLURM_JOB_ID"] == "42" and message["prepSockToken"] == TOKEN


def test_sends_over_tcp(tmp_path: Path) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    reader = Reader(server)
    config = write_config(tmp_path, prepSockConnectPath=f"tcp:127.0.0.1:{server.getsockname()[1]}")
    try:
        assert run_hook(str(config), ENV) == 0
        data = reader.wait()[0]
    finally:
        server.close()
    assert json.loads(data)["SLURM_SCRIPT_CONTEXT"] == "epilog_slurmctld"


def test_the_token_is_never_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for keys in ({"prepSockConnectPath": str(tmp_path / "none.sock"), "prepSockToken": TOKEN},
                 {"prepSockConnectPath": "tcp:x", "prepSockToken": TOKEN},
                 {"prepSockConnectPath": 5, "prepSockToken": [TOKEN]}):
        config = write_config(tmp_path, **keys)
        assert run_hook(str(config), ENV, verbose=True) == 0
    err = capsys.readouterr().err
    assert "cannot reach the daemon" in err and "prepSockToken is not a string" in err
    assert TOKEN not in err


def test_no_daemon_still_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, prepSockConnectPath=str(tmp_path / "none.sock"))
    assert run_hook(str(config), ENV) == 0
    assert "job 42: cannot reach the daemon" in capsys.readouterr().err


def test_any_exception_still_returns_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(hook, "read_hook_config", boom)
    assert run_hook(None, ENV) == 0
    assert hook.main(["-config", "x"]) == 0
    assert "unexpected error: RuntimeError: boom" in capsys.readouterr().err


def test_a_listener_that_never_reads_costs_at_most_the_budget(tmp_path: Path) -> None:
    path = tmp_path / "d.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):  # 8 MB never fit in the socket's buffers
            hook.send(SocketAddress("unix", path=str(path)), b"x" * 8_000_000,
                      time.monotonic() + 0.3)
        assert time.monotonic() - started < 1.0
    finally:
        server.close()


# ------------------------------------------------------------------ the config


@pytest.mark.parametrize("content", [
    "{not json", "[]", '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "\xff", None,
])
def test_a_bad_config_still_sends_to_the_default_socket(
        tmp_path: Path, unix_reader: tuple[Path, Reader], monkeypatch: pytest.MonkeyPatch,
        content: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    path, reader = unix_reader
    monkeypatch.setattr(hook, "DEFAULT_SOCKET", str(path))
    config = tmp_path / "config.json"
    if content is not None:
        config.write_bytes(content.encode("latin-1") if content == "\xff" else content.encode())
    assert run_hook(str(config), ENV) == 0
    assert json.loads(reader.wait()[0])["SLURM_JOB_ID"] == "42"
    err = capsys.readouterr().err
    reason = "config file not found" if content is None else "cannot read config"
    assert f"{config}: {reason}" in err and f"trying unix:{path}" in err


def test_bad_address_falls_back_to_default_socket(tmp_path: Path) -> None:
    config = write_config(tmp_path, prepSockConnectPath="tcp:x")
    address, problem = read_connect_address(str(config))
    assert str(address) == DEFAULT
    assert problem is not None and "prepSockConnectPath: malformed TCP" in problem


def test_config_values(tmp_path: Path) -> None:
    config = write_config(tmp_path, prepSockConnectPath="tcp:[::1]:7", prepSockToken=TOKEN,
                          ccRestJwt="x")
    assert read_hook_config(str(config)) == (SocketAddress("tcp", host="::1", port=7),
                                             TOKEN, None)
    config.write_bytes(b"\xef\xbb\xbf" + config.read_bytes())  # a UTF-8 BOM, as json.loads
    assert read_hook_config(str(config))[1] == TOKEN


@pytest.mark.skipif(Path("/etc/cc-slurm-adapter/config.json").exists(),
                    reason="this machine has a real config at the default path")
def test_missing_default_config_is_silent() -> None:
    address, problem = read_connect_address(None)
    assert (str(address), problem) == (DEFAULT, None)


def test_fifo_config_does_not_hang_the_hook(tmp_path: Path) -> None:
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    address, problem = _soon(lambda: read_connect_address(str(fifo)))
    assert str(address) == DEFAULT
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
    assert str(address) == DEFAULT
    assert problem is not None and problem.startswith(f"{path}: cannot read config: ")
    assert reason in problem and "\n" not in problem


def test_a_50_mb_config_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.json"
    with path.open("wb") as f:
        f.truncate(50 * 1024 * 1024)
    reads: list[int] = []
    real_read = os.read

    def read(fd: int, n: int) -> bytes:
        reads.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(os, "read", read)
    address, problem = read_connect_address(str(path))
    assert (str(address), problem) == (DEFAULT, f"{path}: cannot read config: "
                                                f"larger than 1024 KiB")
    assert reads == []


# ------------------------------------------------------------------ DNS


@pytest.fixture
def hanging_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """getaddrinfo that hangs until the test ends (a DNS server that never answers)."""
    release = threading.Event()
    asked: list[str] = []

    def getaddrinfo(host: str, *args: object, **kwargs: object) -> list[object]:
        asked.append(host)
        release.wait(60)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(_socket, "getaddrinfo", getaddrinfo)
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
    config = write_config(tmp_path, prepSockConnectPath="tcp:cc-daemon.example:4242")
    started = time.monotonic()
    assert run_hook(str(config), ENV) == 0
    assert time.monotonic() - started < DEADLINE
    assert "job 42: cannot reach the daemon at tcp:cc-daemon.example:4242" in \
        capsys.readouterr().err


def test_literal_addresses_are_never_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: object, **kwargs: object) -> list[object]:
        raise AssertionError("a literal address was resolved")

    monkeypatch.setattr(_socket, "getaddrinfo", no_dns)
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            server = socket.create_server((host, 0), family=family)
        except OSError:  # no IPv6 on this machine
            continue
        with server:
            port = server.getsockname()[1]
            sock = connect(SocketAddress("tcp", host=host, port=port), timeout=2.0)
            sock.sendall(b"{}")
            sock.close()


def test_host_names_are_resolved(tmp_path: Path) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    reader = Reader(server)
    config = write_config(tmp_path, prepSockConnectPath=f"tcp:localhost:{server.getsockname()[1]}")
    try:
        assert run_hook(str(config), ENV) == 0
        assert json.loads(reader.wait()[0])["SLURM_JOB_ID"] == "42"
    finally:
        server.close()


# ------------------------------------------------------------------ the hook process


def test_process_daemon_down(tmp_path: Path) -> None:
    ran = run_process(hook_file("-config", str(write_config(
        tmp_path, prepSockConnectPath=str(tmp_path / "missing.sock")))))
    assert_in_time(ran)
    assert "job 42: cannot reach the daemon" in ran.stderr


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_process_socket_path_is_no_socket(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "d.sock"
    if kind == "file":
        target.write_text("x")
    else:
        target.mkdir()
    ran = run_process(hook_file("-config", str(write_config(tmp_path,
                                                            prepSockConnectPath=str(target)))))
    assert_in_time(ran)
    assert f"cannot reach the daemon at unix:{target}" in ran.stderr


def test_process_listener_that_never_reads_with_a_1_mb_environment(tmp_path: Path) -> None:
    path = tmp_path / "d.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    big = ("COMMENT", "EXTRA", "STDOUT", "STDERR", "STDIN", "WORK_DIR", "CONSTRAINTS",
           "LICENSES", "NAME", "RESERVATION")  # Linux takes at most 128 KiB per variable
    env = {**SLURMCTLD_ENV, **{f"SLURM_JOB_{name}": "c" * 105_000 for name in big}}
    try:
        ran = run_process(hook_file("-config", str(write_config(
            tmp_path, prepSockConnectPath=str(path)))), env=env)
        assert_in_time(ran)
        conn, _ = server.accept()  # read only now, after the hook is gone
        with conn:
            conn.settimeout(5)
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
    finally:
        server.close()
    assert json.loads(data)["SLURM_JOB_ID"] == "42"  # the event still arrived, shortened


def test_process_tcp_listener_with_a_full_backlog(tmp_path: Path) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):  # never accepted: the queue is full, later SYNs are dropped
        filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        ran = run_process(hook_file("-config", str(write_config(
            tmp_path, prepSockConnectPath=f"tcp:127.0.0.1:{port}"))))
    finally:
        for filler in fillers:
            filler.close()
        server.close()
    assert_in_time(ran)


def test_process_tcp_address_that_does_not_answer(tmp_path: Path) -> None:
    # TEST-NET-1 (RFC 5737): never routed; the connect hangs or fails at once
    ran = run_process(hook_file("-config", str(write_config(
        tmp_path, prepSockConnectPath="tcp:192.0.2.1:4242"))))
    assert_in_time(ran)
    assert "cannot reach the daemon at tcp:192.0.2.1:4242" in ran.stderr


@pytest.mark.parametrize("kind", ["fifo", "50mb", "bad", "missing", "nested", "dir"])
def test_process_hostile_config_tries_the_default_socket(tmp_path: Path, kind: str) -> None:
    config = tmp_path / "config.json"
    if kind == "fifo":
        os.mkfifo(config)
    elif kind == "50mb":
        with config.open("wb") as f:
            f.truncate(50 * 1024 * 1024)
    elif kind == "bad":
        config.write_text("{not json")
    elif kind == "nested":
        config.write_text("[" * 200_000 + "]" * 200_000)
    elif kind == "dir":
        config.mkdir()
    ran = run_process(hook_file("-config", str(config)))
    assert_in_time(ran)
    assert f"trying {DEFAULT}" in ran.stderr
    assert f"cannot reach the daemon at {DEFAULT}" in ran.stderr


def test_process_hanging_dns(tmp_path: Path) -> None:
    config = write_config(tmp_path, prepSockConnectPath="tcp:cc-daemon.example:4242")
    ran = run_process(hook_patched(
        "import _socket, time\n_socket.getaddrinfo = lambda *a, **k: time.sleep(3600)",
        "-config", str(config)))
    assert_in_time(ran)
    assert "took longer than" in ran.stderr


@pytest.mark.parametrize("patch", [
    "def boom(*a, **k):\n    raise RuntimeError('boom')\nhook.send = boom",
    "def boom(*a, **k):\n    raise KeyboardInterrupt\nhook.read_hook_config = boom",
    "def boom(*a, **k):\n    raise SystemExit(3)\nhook.build_message = boom",
])
def test_process_any_exception_exits_0(tmp_path: Path, patch: str) -> None:
    config = write_config(tmp_path, prepSockConnectPath=str(tmp_path / "none.sock"))
    code = (f"import sys\nsys.path.append({str(HOOK_FILE.parent)!r})\nimport hook\n{patch}\n"
            f"hook.run_as_process(['-config', {str(config)!r}])\n")
    assert_in_time(run_process([sys.executable, "-I", "-S", "-c", code]))


def test_process_backstop_ends_a_step_that_never_returns(tmp_path: Path) -> None:
    """Something the budget cannot bound (an open() on a hung NFS mount): SIGALRM ends it."""
    code = (f"import sys, time\nsys.path.append({str(HOOK_FILE.parent)!r})\nimport hook\n"
            "hook._read_config = lambda path: time.sleep(60)\n"
            "hook.run_as_process(['-config', '/x'])\n")
    ran = run_process([sys.executable, "-I", "-S", "-c", code])
    assert_in_time(ran)
    assert ran.seconds > DEADLINE - hook.SHUTDOWN_MARGIN  # it did wait for the alarm


def _broken_pipe() -> int:
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end


@pytest.mark.parametrize("how", ["file", "hook.sh", "console"])
def test_process_broken_stderr_and_stdout_exit_0(tmp_path: Path, how: str) -> None:
    config = write_config(tmp_path, prepSockConnectPath=str(tmp_path / "none.sock"))
    argv = {"file": hook_file("-config", str(config), "-debug", "3"),
            "hook.sh": ["/bin/sh", str(HOOK_SH), "-config", str(config)],
            "console": [str(CONSOLE), "-config", str(config)]}[how]
    if how == "console" and not CONSOLE.exists():
        pytest.skip("no console script in this environment")
    err, out = _broken_pipe(), _broken_pipe()
    try:
        ran = run_process(argv, stderr=err, stdout=out)
    finally:
        os.close(err)
        os.close(out)
    assert ran.returncode == 0
    assert ran.seconds < DEADLINE


def test_process_closed_stderr_and_stdout_exit_0(tmp_path: Path) -> None:
    config = write_config(tmp_path, prepSockConnectPath=str(tmp_path / "none.sock"))
    marker = tmp_path / "rc"
    inner = " ".join(hook_file("-config", str(config)))
    ran = run_process(["/bin/sh", "-c", f"exec 1>&- 2>&-; {inner}; echo $? > {marker}"])
    assert ran.returncode == 0
    assert marker.read_text() == "0\n"


# ------------------------------------------------------------------ hook.sh, console script


def _installed_layout(root: Path) -> Path:
    """The README's layout: hook.sh next to venv/ (with hook.py in its site-packages)."""
    site = root / "venv" / "lib" / "python3.11" / "site-packages" / "cc_slurm_adapter"
    site.mkdir(parents=True)
    shutil.copy(HOOK_FILE, site / "hook.py")
    (root / "venv" / "bin").mkdir()
    os.symlink(sys.executable, root / "venv" / "bin" / "python3")
    shutil.copy(HOOK_SH, root / "hook.sh")
    return root / "hook.sh"


def test_hook_sh_sends_from_the_installed_layout(tmp_path: Path,
                                                 unix_reader: tuple[Path, Reader]) -> None:
    path, reader = unix_reader
    script = _installed_layout(tmp_path / "opt")
    config = write_config(tmp_path, prepSockConnectPath=f"unix:{path}", prepSockToken=TOKEN)
    ran = run_process([str(script), "-config", str(config)])  # as slurmctld: no PATH
    assert_in_time(ran)
    assert ran.stderr == ""
    message = json.loads(reader.wait()[0])
    assert (message["SLURM_JOB_ID"], message["prepSockToken"]) == ("42", TOKEN)
    site = script.parent / "venv" / "lib" / "python3.11" / "site-packages" / "cc_slurm_adapter"
    assert list((site / "__pycache__").glob("hook.*.pyc"))  # it used the bytecode cache


def test_hook_sh_from_a_checkout(tmp_path: Path, unix_reader: tuple[Path, Reader]) -> None:
    path, reader = unix_reader
    config = write_config(tmp_path, prepSockConnectPath=str(path))
    ran = run_process(["/bin/sh", str(HOOK_SH), "-config", str(config)])
    assert_in_time(ran)
    assert json.loads(reader.wait()[0])["SLURM_SCRIPT_CONTEXT"] == "prolog_slurmctld"


def test_hook_sh_without_hook_py_exits_0(tmp_path: Path) -> None:
    script = tmp_path / "hook.sh"
    shutil.copy(HOOK_SH, script)
    ran = run_process([str(script)])
    assert ran.returncode == 0
    assert "hook.py or python3 not found" in ran.stderr


def test_console_script_sends(tmp_path: Path, unix_reader: tuple[Path, Reader]) -> None:
    if not CONSOLE.exists():
        pytest.skip("no console script in this environment")
    path, reader = unix_reader
    config = write_config(tmp_path, prepSockConnectPath=str(path))
    ran = run_process([str(CONSOLE), "-config", str(config), "--weird", "-debug", "3"])
    assert_in_time(ran)
    assert f"job 42 sent to unix:{path}" in ran.stderr
    messages = reader.wait()
    assert messages, ran.stderr
    assert json.loads(messages[0])["SLURM_JOB_ID"] == "42"


def test_cli_hook_branch_in_process_returns_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              unix_reader: tuple[Path, Reader]) -> None:
    from cc_slurm_adapter.cli import main

    path, reader = unix_reader
    for name, value in SLURMCTLD_ENV.items():
        monkeypatch.setenv(name, value)
    assert main(["-config", str(write_config(tmp_path, prepSockConnectPath=str(path)))]) == 0
    assert json.loads(reader.wait()[0])["SLURM_JOB_ID"] == "42"


# ------------------------------------------------------------------ what starting costs


def _imported(argv: list[str], tmp_path: Path) -> set[str]:
    config = write_config(tmp_path, prepSockConnectPath=str(tmp_path / "none.sock"))
    result = subprocess.run([*argv, "-config", str(config)], env=SLURMCTLD_ENV,
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0
    return {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


SLOW = {"typing", "dataclasses", "inspect", "json", "re", "socket", "enum", "threading",
        "logging", "argparse", "signal", "selectors", "collections"}


def test_the_hook_file_imports_nothing_slow(tmp_path: Path) -> None:
    imported = _imported([sys.executable, "-X", "importtime", "-I", "-S", str(HOOK_FILE)],
                         tmp_path)
    assert "_socket" in imported  # the listing works
    assert imported & SLOW == set()


def test_the_console_scripts_hook_branch_imports_nothing_slow(tmp_path: Path) -> None:
    if not CONSOLE.exists():
        pytest.skip("no console script in this environment")
    imported = _imported([sys.executable, "-X", "importtime", str(CONSOLE)], tmp_path)
    assert "cc_slurm_adapter.hook" in imported
    ours = {m for m in imported if m.startswith("cc_slurm_adapter")}
    assert ours == {"cc_slurm_adapter", "cc_slurm_adapter.cli", "cc_slurm_adapter.hook"}
    assert imported & SLOW == set()
