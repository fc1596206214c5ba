"""Prolog/Epilog mode: tell the daemon that a job started or ended.

Slurm runs ``cc-slurm-adapter`` (without ``-daemon``) as PrologSlurmctld and
EpilogSlurmctld. This module reads the job's ``SLURM_*`` environment, sends one
message to the daemon's socket and returns. It must be fast and it must never
make Slurm fail the job, so :func:`run_hook` always returns 0.

This file uses the standard library only and imports nothing else of ours: it
can be copied and run on its own (``python3 hook.py -config FILE``), for example
inside a chroot or on a host that has no venv of the adapter.

Wire format (compatible with upstream's daemon and hook): one JSON object whose
keys are environment variable names and whose values are strings, then the
sender closes its side. The daemon sends no reply.

Time bound: the whole hook gives up after :data:`DEADLINE` seconds, whatever goes
wrong. The config is read only if it is a regular file of at most 1 MiB (a FIFO
would block the open, ``/dev/zero`` would never end), and it is opened
non-blocking. A TCP host name is resolved in a daemon thread that the hook waits
for until the deadline at most (``getaddrinfo`` itself has no timeout: a hanging
DNS server would otherwise hang the job's prolog); a literal IP address is never
resolved.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import stat
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

DEFAULT_CONFIG_PATH = "/etc/cc-slurm-adapter/config.json"
DEFAULT_SOCKET = "/run/cc-slurm-adapter/daemon.sock"
CONNECT_TIMEOUT = 2.0
DEADLINE = CONNECT_TIMEOUT
"""Seconds the hook may spend on resolving and connecting, in total."""
MAX_CONFIG_BYTES = 1024 * 1024

# The environment variables upstream's hook forwards (unset ones are sent as "").
FORWARDED_ENV = (
    "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", "CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL",
    "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP",
    "SLURM_CLUSTER_NAME", "SLURM_JOB_ACCOUNT", "SLURM_JOB_COMMENT", "SLURM_JOB_CONSTRAINTS",
    "SLURM_JOB_CPUS_PER_NODE", "SLURM_JOB_DERIVED_EC", "SLURM_JOB_END_TIME",
    "SLURM_JOB_EXIT_CODE", "SLURM_JOB_EXIT_CODE2", "SLURM_JOB_EXTRA", "SLURM_JOB_GID",
    "SLURM_JOB_GROUP", "SLURM_JOB_ID", "SLURM_JOB_LICENSES", "SLURM_JOB_NAME",
    "SLURM_JOB_NODELIST", "SLURM_JOB_NUM_NODES", "SLURM_JOB_OVERSUBSCRIBE",
    "SLURM_JOB_PARTITION", "SLURM_JOB_RESERVATION", "SLURM_JOB_RESTART_COUNT",
    "SLURM_JOB_START_TIME", "SLURM_JOB_STDERR", "SLURM_JOB_STDIN", "SLURM_JOB_STDOUT",
    "SLURM_JOB_UID", "SLURM_JOB_USER", "SLURM_JOB_WORK_DIR", "SLURM_SCRIPT_CONTEXT",
    "SLURM_WCKEY",
)
HOOK_CONTEXTS = ("prolog_slurmctld", "epilog_slurmctld")


@dataclass(frozen=True)
class SocketAddress:
    """A UNIX socket path or a TCP host and port, as written in the config."""

    kind: Literal["unix", "tcp"]
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"


_TCP_RE = re.compile(r"^(?:\[(?P<v6>[^\]]*)\]|(?P<host>[^:\[\]]*)):(?P<port>[^:]*)$")


def parse_socket_address(text: str) -> SocketAddress:
    """Parse upstream's socket syntax; raises ValueError with a readable message.

    ``/run/x.sock`` and ``unix:/run/x.sock`` are UNIX sockets. ``tcp:HOST:PORT``,
    ``tcp:[::1]:PORT`` and ``tcp::PORT`` (every address) are TCP.
    """
    if not text:
        raise ValueError("empty socket address")
    if text.startswith("tcp:"):
        match = _TCP_RE.match(text[4:])
        if not match:
            raise ValueError(f"malformed TCP socket address {text!r}; "
                             f"expected tcp:HOST:PORT, tcp:[IPv6]:PORT or tcp::PORT")
        port_text = match.group("port")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"malformed TCP socket address {text!r}: "
                             f"port must be a number from 1 to 65535")
        host = match.group("v6") if match.group("v6") is not None else match.group("host")
        return SocketAddress("tcp", host=host or "", port=int(port_text))
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise ValueError(f"malformed UNIX socket address {text!r}: the path is empty")
        return SocketAddress("unix", path=path)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text) or re.match(r"^(udp|tcp[46]?|ip):", text):
        raise ValueError(f"malformed socket address {text!r}; "
                         f"expected a path, unix:PATH or tcp:HOST:PORT")
    return SocketAddress("unix", path=text)


AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[object, ...]]


def _literal_address(host: str, port: int) -> list[AddrInfo] | None:
    """The address info of a literal IPv4/IPv6 address, or None for a host name."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        sockaddr: tuple[object, ...] = (host, port) if family == socket.AF_INET else (
            host, port, 0, 0)
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)]
    return None


def resolve(host: str, port: int, timeout: float) -> list[AddrInfo]:
    """``getaddrinfo`` with a time bound: raises TimeoutError after ``timeout`` seconds.

    The lookup runs in a daemon thread; if it hangs, the thread is left behind and
    dies with the process (a daemon thread never delays the interpreter's exit).
    """
    literal = _literal_address(host, port)
    if literal is not None:
        return literal
    result: list[list[AddrInfo]] = []
    failure: list[BaseException] = []

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            result.append([(f, k, p, n, tuple(s)) for f, k, p, n, s in infos])
        except BaseException as exc:  # handed to the waiting thread
            failure.append(exc)

    thread = threading.Thread(target=lookup, name="hook-resolve", daemon=True)
    thread.start()
    thread.join(max(0.0, timeout))
    if failure:
        raise failure[0]
    if not result:
        raise TimeoutError(errno.ETIMEDOUT, f"resolving {host!r} took longer than "
                                            f"{timeout:.1f} s")
    return result[0]


def connect(address: SocketAddress, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    """Open a client connection to the daemon's socket, all within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    if address.kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address.path)
        except OSError:
            sock.close()
            raise
        return sock
    host = address.host or "localhost"
    error: OSError = TimeoutError(errno.ETIMEDOUT, f"no address found for {host!r}")
    for family, kind, proto, _name, sockaddr in resolve(host, address.port, timeout):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(errno.ETIMEDOUT, f"connecting to {host!r} timed out")
        sock = socket.socket(family, kind, proto)
        sock.settimeout(remaining)
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        return sock
    raise error


def _read_config(path: str) -> bytes:
    """The config's bytes, if it is a regular file of at most 1 MiB (never blocks)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = b""
        while len(data) <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
        if len(data) > MAX_CONFIG_BYTES:
            raise OSError(errno.EFBIG, "larger than 1024 KiB")
        return data
    finally:
        os.close(fd)


def read_connect_address(config_path: str | None) -> tuple[SocketAddress, str | None]:
    """The hook's socket address from the config file; falls back to the default.

    Returns the address and a problem to report (or None). The hook never fails on
    a config problem: it still tries the default socket.
    """
    path = config_path or DEFAULT_CONFIG_PATH
    try:
        raw = json.loads(_read_config(path).decode("utf-8"))
    except FileNotFoundError:
        problem = None if config_path is None else f"{path}: config file not found"
        return parse_socket_address(DEFAULT_SOCKET), problem
    except OSError as exc:
        return (parse_socket_address(DEFAULT_SOCKET),
                f"{path}: cannot read config: {exc.strerror or exc}")
    except (ValueError, RecursionError) as exc:  # bad JSON, huge numbers, deep nesting
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        return parse_socket_address(DEFAULT_SOCKET), f"{path}: cannot read config: {reason}"
    value = raw.get("prepSockConnectPath") if isinstance(raw, dict) else None
    if not isinstance(value, str) or not value:
        return parse_socket_address(DEFAULT_SOCKET), None
    try:
        return parse_socket_address(value), None
    except ValueError as exc:
        return parse_socket_address(DEFAULT_SOCKET), f"{path}: prepSockConnectPath: {exc}"


def build_message(environ: Mapping[str, str]) -> bytes:
    """The message for the daemon, or raises ValueError when this is no hook call."""
    job_id = environ.get("SLURM_JOB_ID", "")
    if not job_id:
        raise ValueError("SLURM_JOB_ID is not set: not run by Slurm as a Prolog/Epilog")
    context = environ.get("SLURM_SCRIPT_CONTEXT", "")
    if context not in HOOK_CONTEXTS:
        raise ValueError(f"SLURM_SCRIPT_CONTEXT is {context!r}, expected "
                         f"prolog_slurmctld or epilog_slurmctld")
    payload = {name: environ.get(name, "") for name in FORWARDED_ENV}
    return json.dumps(payload, separators=(",", ":")).encode()


def run_hook(config_path: str | None, environ: Mapping[str, str] | None = None,
             verbose: bool = False) -> int:
    """Send this job's event to the daemon. Always returns 0; problems go to stderr."""
    env = os.environ if environ is None else environ
    started = time.monotonic()
    try:
        message = build_message(env)
    except ValueError as exc:
        print(f"cc-slurm-adapter hook: {exc}", file=sys.stderr)
        return 0
    address, problem = read_connect_address(config_path)
    if problem:
        print(f"cc-slurm-adapter hook: {problem}; trying {address}", file=sys.stderr)
    try:
        with connect(address) as sock:
            sock.sendall(message)
            sock.shutdown(socket.SHUT_WR)
    except OSError as exc:
        print(f"cc-slurm-adapter hook: job {env.get('SLURM_JOB_ID')}: cannot reach the daemon "
              f"at {address}: {exc}; the next poll will pick the job up", file=sys.stderr)
        return 0
    if verbose:
        took = (time.monotonic() - started) * 1000
        print(f"cc-slurm-adapter hook: job {env.get('SLURM_JOB_ID')} sent to {address} "
              f"in {took:.1f} ms", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point: ``python3 hook.py [-config FILE]``; unknown arguments are ignored."""
    args = list(sys.argv[1:] if argv is None else argv)
    config_path: str | None = None
    for index, arg in enumerate(args):
        name, _, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and name == "config":
            config_path = value or (args[index + 1] if index + 1 < len(args) else None)
    try:
        return run_hook(config_path)
    except Exception as exc:  # the hook must never fail the job
        print(f"cc-slurm-adapter hook: unexpected error: {exc!r}", file=sys.stderr)
        return 0


if __name__ == "__main__":
    sys.exit(main())
