"""Prolog/Epilog mode: tell the daemon that a job started or ended.

Slurm runs the hook as PrologSlurmctld and EpilogSlurmctld (``contrib/hook.sh``, which
runs this file with ``python3 -I -S``, or ``cc-slurm-adapter`` without ``-daemon``). It
reads the job's ``SLURM_*`` environment, sends one message to the daemon's socket and
ends. It must be fast and it must never make Slurm fail the job: it always exits 0.

This file uses the standard library only and imports nothing else of ours: it can be
copied and run on its own (``python3 hook.py -config FILE``), for example inside a chroot
or on a host that has no venv of the adapter. It runs on Python 3.11 to 3.14.

Wire format (upstream's daemon and hook, ``cc-slurm-adapter-behaviour.md`` §3.7): one
JSON object whose keys are environment variable names and whose values are strings, then
the sender closes its side; the daemon sends no reply. When the config has
``prepSockToken`` (ours), the object also holds ``"prepSockToken": "<value>"``; the token
is never printed. Values are shortened when the message would exceed the daemon's
:data:`MAX_MESSAGE` (a 1 MB job comment must not cost the event).

Time bound: the hook process ends within :data:`DEADLINE` seconds of its start, whatever
goes wrong, with exit code 0. All steps (reading the config, resolving, connecting,
sending) share one budget that ends :data:`SHUTDOWN_MARGIN` before the bound; a ``SIGALRM``
backstop ends the process with ``os._exit(0)`` just before it, and the end flushes
stdout/stderr in a guard and calls ``os._exit(0)``, so a broken pipe on stderr cannot
turn into exit code 120. The config is read only if it is a regular file of at most
1 MiB (a FIFO would block the open, ``/dev/zero`` would never end), and it is opened
non-blocking. Whatever is wrong with it, the hook still tries the default socket. A TCP
host name is resolved in a helper thread that the hook waits for until the budget ends
(``getaddrinfo`` has no timeout); a literal IP address is never resolved.

Speed: this file is run once per job start and end, so it imports only what is already
loaded at interpreter start plus the C modules ``_socket`` and ``_json`` (``socket``
pulls in ``enum``, ``json`` pulls in ``re``; ``typing`` and ``dataclasses`` are never
imported). ``bench/bench_hook.py`` measures it.
"""

from __future__ import annotations

import _socket  # the C module; ``socket`` would import enum, selectors, ... (~3 ms)
import errno
import os
import stat
import sys
import time

try:  # the C half of ``json``; ``json`` itself imports ``re`` (~6 ms at every job start)
    from _json import encode_basestring_ascii as _c_quote
    from _json import make_scanner as _c_make_scanner

    _HAVE_C_JSON = True
except ImportError:  # an interpreter built without it: fall back to ``json``
    _HAVE_C_JSON = False

TYPE_CHECKING = False  # typing is never imported at run time (it costs ~3 ms)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Literal, NoReturn

    AddrInfo = tuple[int, int, int, object]

_STARTED = time.monotonic()  # about the hook's start (the interpreter took a few ms before)

DEFAULT_CONFIG_PATH = "/etc/cc-slurm-adapter/config.json"
DEFAULT_SOCKET = "/run/cc-slurm-adapter/daemon.sock"
DEADLINE = 2.0
"""Seconds from its start within which the hook process has exited, whatever happens."""
SHUTDOWN_MARGIN = 0.5
"""Part of :data:`DEADLINE` kept for the interpreter's start (before this module runs:
~10 ms, more on a loaded host) and its exit. The work's budget (config, DNS, connect,
send, together) is ``DEADLINE - SHUTDOWN_MARGIN``; the SIGALRM backstop fires half a
margin later."""
CONNECT_TIMEOUT = DEADLINE - SHUTDOWN_MARGIN
MAX_CONFIG_BYTES = 1024 * 1024
MAX_MESSAGE = 64 * 1024
"""The daemon drops longer messages (``daemon/ipc.py``: 128 KiB; the older
``daemon/prep.py``: 64 KiB); the hook shortens values to fit the smaller."""
MAX_VALUE_CHARS = 256
TOKEN_KEY = "prepSockToken"

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
ESSENTIAL_ENV = ("SLURM_JOB_ID", "SLURM_CLUSTER_NAME", "SLURM_SCRIPT_CONTEXT")
"""What a daemon needs of the message; never shortened."""
HOOK_CONTEXTS = ("prolog_slurmctld", "epilog_slurmctld")


# ------------------------------------------------------------------ socket addresses


class SocketAddress:
    """A UNIX socket path or a TCP host and port, as written in the config (immutable)."""

    __slots__ = ("host", "kind", "path", "port")
    kind: Literal["unix", "tcp"]
    path: str
    host: str
    port: int

    def __init__(self, kind: Literal["unix", "tcp"], path: str = "", host: str = "",
                 port: int = 0) -> None:
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"SocketAddress is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"SocketAddress is immutable: cannot delete {name!r}")

    def _key(self) -> tuple[str, str, str, int]:
        return (self.kind, self.path, self.host, self.port)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, SocketAddress)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __reduce__(self) -> tuple[type[SocketAddress], tuple[str, str, str, int]]:
        return (self.__class__, self._key())  # copy/deepcopy/pickle despite __setattr__

    def __repr__(self) -> str:
        return (f"SocketAddress(kind={self.kind!r}, path={self.path!r}, "
                f"host={self.host!r}, port={self.port!r})")

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"


_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")


def _looks_like_other_scheme(text: str) -> bool:
    """``http://...``, ``udp:...``, ``tcp4:...``: an address that is no path (no ``re``)."""
    scheme, sep, _ = text.partition("://")
    if sep and scheme[:1].isascii() and scheme[:1].isalpha() and set(scheme) <= _SCHEME_CHARS:
        return True
    return text.split(":", 1)[0] in ("udp", "tcp4", "tcp6", "ip") and ":" in text


def parse_socket_address(text: str) -> SocketAddress:
    """Parse upstream's socket syntax; raises ValueError with a readable message.

    ``/run/x.sock`` and ``unix:/run/x.sock`` are UNIX sockets. ``tcp:HOST:PORT``,
    ``tcp:[::1]:PORT`` and ``tcp::PORT`` (every address) are TCP.
    """
    if not text:
        raise ValueError("empty socket address")
    if text.startswith("tcp:"):
        rest = text[4:]
        host: str | None = None
        port_text: str | None = None
        if rest.startswith("["):
            close = rest.find("]")
            if close > 0 and rest[close + 1:close + 2] == ":":
                host, port_text = rest[1:close], rest[close + 2:]
        elif rest.count(":") == 1 and "[" not in rest and "]" not in rest:
            host, _, port_text = rest.partition(":")
        if host is None or port_text is None or ":" in port_text:
            raise ValueError(f"malformed TCP socket address {text!r}; "
                             f"expected tcp:HOST:PORT, tcp:[IPv6]:PORT or tcp::PORT")
        if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
            raise ValueError(f"malformed TCP socket address {text!r}: "
                             f"port must be a number from 1 to 65535")
        return SocketAddress("tcp", host=host, port=int(port_text))
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise ValueError(f"malformed UNIX socket address {text!r}: the path is empty")
        return SocketAddress("unix", path=path)
    if _looks_like_other_scheme(text):
        raise ValueError(f"malformed socket address {text!r}; "
                         f"expected a path, unix:PATH or tcp:HOST:PORT")
    return SocketAddress("unix", path=text)


# ------------------------------------------------------------------ JSON without ``json``


def _quote(text: str) -> str:
    if _HAVE_C_JSON:
        return _c_quote(text)
    import json

    return json.dumps(text)


class _ScanContext:
    """The settings ``_json.make_scanner`` reads off a decoder: those of ``json.loads``."""

    def __init__(self) -> None:
        self.strict = True
        self.object_hook = None
        self.object_pairs_hook = None
        self.array_hook = None  # read from Python 3.15 on
        self.parse_float = float
        self.parse_int = int
        self.parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"),
                               "NaN": float("nan")}.__getitem__


def loads(text: str) -> object:
    """``json.loads(text)`` without importing ``json`` (and ``re``) unless it fails."""
    if _HAVE_C_JSON:
        white = " \t\n\r"
        start = len(text) - len(text.lstrip(white))
        try:
            value, end = _c_make_scanner(_ScanContext())(text, start)  # type: ignore[arg-type]
        except RecursionError:
            raise
        except Exception:  # the error path: let json word the message
            pass
        else:
            if not text[end:].strip(white):
                return value
    import json

    return json.loads(text)


# ------------------------------------------------------------------ the config


def _read_config(path: str) -> bytes:
    """The config's bytes, if it is a regular file of at most 1 MiB (never blocks)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if info.st_size > MAX_CONFIG_BYTES:  # never read a 50 MB file to find that out
            raise OSError(errno.EFBIG, "larger than 1024 KiB")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_CONFIG_BYTES:  # it grew while we read it
            raise OSError(errno.EFBIG, "larger than 1024 KiB")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_hook_config(config_path: str | None) -> tuple[SocketAddress, str, str | None]:
    """The hook's socket address and token from the config file.

    Returns ``(address, token, problem)``; ``problem`` is one line to report, or None.
    Nothing in the config stops the hook: whatever is wrong with it (missing, not a
    regular file, too large, not JSON, nested too deeply, a bad address), the hook
    still tries the default socket. The problem never contains the token.
    """
    path = config_path or DEFAULT_CONFIG_PATH
    default = SocketAddress("unix", path=DEFAULT_SOCKET)
    try:
        text = _read_config(path).decode("utf-8")
        raw = loads(text[1:] if text.startswith("\ufeff") else text)
    except FileNotFoundError:
        return default, "", None if config_path is None else f"{path}: config file not found"
    except OSError as exc:
        return default, "", f"{path}: cannot read config: {exc.strerror or exc}"
    except RecursionError:
        return default, "", f"{path}: cannot read config: nested too deeply"
    except MemoryError:
        return default, "", f"{path}: cannot read config: out of memory"
    except Exception as exc:  # bad UTF-8, bad JSON, huge numbers, ...
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        return default, "", f"{path}: cannot read config: {reason}"
    if not isinstance(raw, dict):
        return default, "", f"{path}: cannot read config: not a JSON object"
    problems: list[str] = []
    token = raw.get(TOKEN_KEY, "")
    if not isinstance(token, str):
        problems.append(f"{path}: {TOKEN_KEY} is not a string; sending no token")
        token = ""
    address = default
    value = raw.get("prepSockConnectPath")
    if isinstance(value, str) and value:
        try:
            address = parse_socket_address(value)
        except ValueError as exc:
            problems.append(f"{path}: prepSockConnectPath: {exc}")
    elif value is not None and value != "":
        problems.append(f"{path}: prepSockConnectPath is not a string")
    return address, token, "; ".join(problems) or None


def read_connect_address(config_path: str | None) -> tuple[SocketAddress, str | None]:
    """The socket address and a problem to report: :func:`read_hook_config` without the token."""
    address, _token, problem = read_hook_config(config_path)
    return address, problem


# ------------------------------------------------------------------ the message


def check_hook_env(environ: Mapping[str, str]) -> None:
    """Raises ValueError (the reason, one line) unless Slurm ran us as a slurmctld hook."""
    if not environ.get("SLURM_JOB_ID", ""):
        raise ValueError("SLURM_JOB_ID is not set: not run by Slurm as a Prolog/Epilog")
    context = environ.get("SLURM_SCRIPT_CONTEXT", "")
    if context not in HOOK_CONTEXTS:
        raise ValueError(f"SLURM_SCRIPT_CONTEXT is {context[:100]!r}, expected "
                         f"prolog_slurmctld or epilog_slurmctld")


def build_message(environ: Mapping[str, str], token: str = "") -> bytes:
    """The message for the daemon, or raises ValueError when this is no hook call.

    Values are shortened (the essential ones never) if the message would be longer than
    the daemon's :data:`MAX_MESSAGE`; a daemon needs only the job id, cluster and context.
    """
    check_hook_env(environ)
    payload = {name: environ.get(name, "") for name in FORWARDED_ENV}
    if token:
        payload[TOKEN_KEY] = token
    message = _encode(payload)
    if len(message) > MAX_MESSAGE:
        for cap in (MAX_VALUE_CHARS, 0):
            for name in FORWARDED_ENV:
                if name not in ESSENTIAL_ENV:
                    payload[name] = payload[name][:cap]
            message = _encode(payload)
            if len(message) <= MAX_MESSAGE:
                break
    return message


def _encode(payload: dict[str, str]) -> bytes:
    """``json.dumps(payload, separators=(",", ":"))``, ASCII, as bytes."""
    return ("{" + ",".join([f"{_quote(k)}:{_quote(v)}" for k, v in payload.items()])
            + "}").encode("ascii")


# ------------------------------------------------------------------ resolving, connecting


def _left(deadline: float, what: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(errno.ETIMEDOUT, f"{what}: out of time")
    return left


def _literal_address(host: str, port: int) -> list[AddrInfo] | None:
    """The address info of a literal IPv4/IPv6 address, or None for a host name."""
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        sockaddr: object = (host, port) if family == _socket.AF_INET else (host, port, 0, 0)
        return [(family, _socket.SOCK_STREAM, _socket.IPPROTO_TCP, sockaddr)]
    return None


def resolve(host: str, port: int, timeout: float) -> list[AddrInfo]:
    """``getaddrinfo`` with a time bound: raises TimeoutError after ``timeout`` seconds.

    The lookup runs in a helper thread; if it hangs, the thread is left behind (the hook
    process ends with ``os._exit``, which does not wait for it).
    """
    literal = _literal_address(host, port)
    if literal is not None:
        return literal
    import _thread

    result: list[list[AddrInfo]] = []
    failure: list[BaseException] = []
    done = _thread.allocate_lock()
    done.acquire()

    def lookup() -> None:
        try:
            infos = _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM)
            result.append([(f, k, p, s) for f, k, p, _n, s in infos])
        except BaseException as exc:  # handed to the waiting thread
            failure.append(exc)
        finally:
            done.release()

    _thread.start_new_thread(lookup, ())
    done.acquire(True, max(0.0, timeout))
    if failure:
        raise failure[0]
    if not result:
        raise TimeoutError(errno.ETIMEDOUT, f"resolving {host!r} took longer than "
                                            f"{timeout:.1f} s")
    return result[0]


def _connect_until(address: SocketAddress, deadline: float) -> _socket.socket:
    """A connected client socket, or OSError; never later than ``deadline``."""
    if address.kind == "unix":
        candidates: list[AddrInfo] = [(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, address.path)]
    else:
        candidates = resolve(address.host or "localhost", address.port,
                             _left(deadline, "resolving"))
    error: OSError = TimeoutError(errno.ETIMEDOUT, f"no address found for {address}")
    for family, kind, proto, sockaddr in candidates:
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(_left(deadline, "connecting"))
            sock.connect(sockaddr)  # type: ignore[arg-type]
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error


def connect(address: SocketAddress, timeout: float = CONNECT_TIMEOUT) -> _socket.socket:
    """Open a client connection to the daemon's socket, all within ``timeout`` seconds."""
    return _connect_until(address, time.monotonic() + timeout)


def send(address: SocketAddress, message: bytes, deadline: float) -> None:
    """Connect, send ``message``, close our side; everything ends by ``deadline``.

    A listener that accepts and never reads costs at most the time left: ``sendall``'s
    timeout bounds the whole send (Python >= 3.5), and ``close`` does not linger.
    """
    sock = _connect_until(address, deadline)
    try:
        sock.settimeout(_left(deadline, "sending"))
        sock.sendall(message)
        sock.shutdown(_socket.SHUT_WR)
    finally:
        sock.close()


# ------------------------------------------------------------------ running


def _say(text: str) -> None:
    """One line on stderr; a closed or broken stderr is ignored."""
    try:
        stream = sys.stderr
        if stream is not None:
            stream.write(f"cc-slurm-adapter hook: {text}\n")
            stream.flush()
    except Exception:  # nothing may fail the hook
        pass


def run_hook(config_path: str | None, environ: Mapping[str, str] | None = None,
             verbose: bool = False, deadline: float | None = None) -> int:
    """Send this job's event to the daemon. Always returns 0; problems go to stderr.

    ``deadline`` (``time.monotonic()``) ends every step; by default
    ``DEADLINE - SHUTDOWN_MARGIN`` seconds from now.
    """
    try:
        _run_hook(config_path, os.environ if environ is None else environ, verbose,
                  time.monotonic() + CONNECT_TIMEOUT if deadline is None else deadline)
    except Exception as exc:  # the hook must never fail the job
        _say(f"unexpected error: {type(exc).__name__}: {exc}")
    return 0


def _run_hook(config_path: str | None, env: Mapping[str, str], verbose: bool,
              deadline: float) -> None:
    started = time.monotonic()
    try:
        check_hook_env(env)
    except ValueError as exc:
        _say(str(exc))
        return
    address, token, problem = read_hook_config(config_path)
    if problem:
        _say(f"{problem}; trying {address}")
    job = env.get("SLURM_JOB_ID", "")[:40]
    try:
        send(address, build_message(env, token), deadline)
    except OSError as exc:
        _say(f"job {job}: cannot reach the daemon at {address}: {exc}; "
             f"the next poll will pick the job up")
        return
    if verbose:
        _say(f"job {job} sent to {address} in {(time.monotonic() - started) * 1000:.1f} ms")


def parse_hook_args(argv: Sequence[str]) -> tuple[str | None, bool]:
    """``-config FILE`` / ``--config=FILE`` and ``-debug N`` (verbose from 3 on); the rest
    is ignored, as the hook must never fail on its arguments."""
    config_path: str | None = None
    verbose = False
    args = list(argv)
    for index, arg in enumerate(args):
        if not arg.startswith("-"):
            continue
        name, has_value, value = arg.lstrip("-").partition("=")
        if not has_value and name in ("config", "debug"):
            value = args[index + 1] if index + 1 < len(args) else ""
        if name == "config" and value:
            config_path = value
        elif name == "debug":
            verbose = value.isascii() and value.isdigit() and int(value) >= 3
    return config_path, verbose


def main(argv: Sequence[str] | None = None, deadline: float | None = None) -> int:
    """The hook, for a caller that keeps its process: parse the arguments, send; returns 0.

    ``deadline`` as for :func:`run_hook` (by default the budget starts now).
    """
    try:
        config_path, verbose = parse_hook_args(sys.argv[1:] if argv is None else argv)
        return run_hook(config_path, verbose=verbose, deadline=deadline)
    except Exception as exc:  # the hook must never fail the job
        _say(f"unexpected error: {type(exc).__name__}: {exc}")
        return 0


def _on_alarm(signum: int, frame: object) -> None:
    os._exit(0)


def _arm_backstop() -> None:
    """SIGALRM just before :data:`DEADLINE`: ``os._exit(0)`` whatever the hook is doing."""
    try:
        signals = __import__("_signal")  # loaded at start; ``signal`` would import enum
        signals.signal(signals.SIGALRM, _on_alarm)
        left = _STARTED + DEADLINE - SHUTDOWN_MARGIN / 2 - time.monotonic()
        signals.setitimer(signals.ITIMER_REAL, max(0.01, left))
    except Exception:  # the budget still bounds every step
        pass


def exit_now() -> NoReturn:
    """End the process with 0 now: flush stdout/stderr in a guard, then ``os._exit``.

    A normal exit would flush again at interpreter shutdown and turn a broken pipe on
    stderr into exit code 120.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
    os._exit(0)


def run_as_process(argv: Sequence[str] | None = None) -> NoReturn:
    """The hook as its own process (``hook.sh``, the console script): exit 0 in time."""
    try:
        _arm_backstop()
        main(argv, deadline=_STARTED + DEADLINE - SHUTDOWN_MARGIN)
    finally:
        exit_now()


if __name__ == "__main__":
    run_as_process()
