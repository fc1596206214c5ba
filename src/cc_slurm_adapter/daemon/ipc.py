"""The daemon's socket for the Prolog/Epilog hook (``prepSockListenPath``).

Wire format (upstream's, ``cc-slurm-adapter-behaviour.md`` §3.7): the hook connects,
writes one JSON object whose values are strings (upstream's 39 ``SLURM_*``/GPU
variables, unset ones as ""), and closes its side; the daemon never answers. So our
daemon takes upstream's hook and our hook works with upstream's daemon. Only
``SLURM_JOB_ID`` (ASCII digits, a Slurm job id) and ``SLURM_SCRIPT_CONTEXT`` are used;
other keys are tolerated. With ``prepSockToken`` set, the object must also carry
``"prepSockToken": "<token>"`` (compared in constant time).

Defences (upstream reads each connection with ``io.ReadAll``: no size limit, no
deadline, and a world-writable socket):

- a message is at most :data:`MAX_MESSAGE` bytes; a connection gets
  :data:`IDLE_TIMEOUT` seconds between two reads and :data:`DEADLINE` seconds in all
  (a total, so a slow-loris that trickles a byte a second is cut at the deadline too);
- at most :data:`MAX_CONNECTIONS` connections are read at once; one more closes the
  oldest, so connections that open and idle cannot lock a real hook out (a real hook
  writes its message right after connecting, within a millisecond);
- each dropped connection is logged, at most one line per reason per
  :data:`LOG_INTERVAL` seconds, and a count of the others at the end of that interval.
  The token and the message's content are never logged.

The UNIX socket gets ``prepSockMode`` and ``prepSockGroup`` (empty: the group of Slurm's
``SlurmUser``, else the daemon's own) before anyone can reach it: it is bound inside a
fresh 0700 directory next to the path, chmod/chowned there, then hard-linked to the
path (``link`` never replaces a file) and only then listened on. A umask would do
the same for the mode but is process-wide, and the daemon's threads create files.

A socket file already at the path is replaced only when a connect on it is refused
(no process listens: a dead daemon's); when something answers, or the connect cannot
tell (permission denied, full backlog), the path is left alone and the socket is not
started. A path that is not a socket (a file, a directory, a symlink) is never
touched. At exit the path is removed only if it is still the inode this daemon made.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import hmac
import json
import logging
import os
import pwd
import socket
import stat
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cc_slurm_adapter.hook import SocketAddress

if TYPE_CHECKING:
    from cc_slurm_adapter.config import Config

__all__ = ["DEADLINE", "IDLE_TIMEOUT", "LOG_INTERVAL", "MAX_CONNECTIONS", "MAX_MESSAGE",
           "TOKEN_KEY", "DropLog", "IpcServer", "parse_message", "socket_group"]

log = logging.getLogger("cc_slurm_adapter.daemon")

MAX_MESSAGE = 128 * 1024
"""Bytes. Upstream's 39 variables are a few KiB; Slurm caps a job's name and comment."""
IDLE_TIMEOUT = 2.0
DEADLINE = 5.0
MAX_CONNECTIONS = 128
LOG_INTERVAL = 60.0
TOKEN_KEY = "prepSockToken"
CONTEXTS = ("prolog_slurmctld", "epilog_slurmctld")
MAX_JOB_ID = 2**32 - 1  # Slurm's job ids are uint32_t

_REASONS = {
    "busy": "too many connections at once (the oldest was closed)",
    "idle": "nothing sent",
    "stalled": "message not finished (sender stopped sending without closing)",
    "slow": "message not finished within the deadline",
    "oversized": "message too long",
    "empty": "empty message (a hook that failed its own checks, or a probe)",
    "utf8": "message is not UTF-8",
    "json": "message is not JSON",
    "object": "message is not a JSON object of strings",
    "job": "message has no valid SLURM_JOB_ID",
    "token": "message without the right prepSockToken",
    "error": "connection error",
}


class MessageError(ValueError):
    """A message that is dropped; ``reason`` is a key of the rate-limited log."""

    def __init__(self, reason: str) -> None:
        super().__init__(_REASONS[reason])
        self.reason = reason


def parse_message(data: bytes, token: str = "") -> tuple[int, str]:
    """``(job_id, context)`` of one hook message; raises :class:`MessageError`.

    ``context`` is ``SLURM_SCRIPT_CONTEXT`` when it is ``prolog_slurmctld`` or
    ``epilog_slurmctld`` (the only ones upstream's hook sends), else "" (re-check the job).
    """
    if len(data) > MAX_MESSAGE:
        raise MessageError("oversized")
    if not data.strip():
        raise MessageError("empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MessageError("utf8") from None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: [[[[... nested too deeply
        raise MessageError("json") from None
    if not isinstance(doc, dict):
        raise MessageError("object")
    if token:
        sent = doc.get(TOKEN_KEY)
        if not isinstance(sent, str) or not hmac.compare_digest(
                sent.encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass")):
            raise MessageError("token")
    if not all(isinstance(value, str) for value in doc.values()):
        raise MessageError("object")
    job = doc.get("SLURM_JOB_ID")
    if (not isinstance(job, str) or not job.isascii() or not job.isdigit() or len(job) > 10
            or not 0 < int(job) <= MAX_JOB_ID):
        raise MessageError("job")
    context = doc.get("SLURM_SCRIPT_CONTEXT")
    return int(job), context if context in CONTEXTS else ""


class DropLog:
    """At most one warning per reason per ``interval`` seconds, then a count of the rest."""

    def __init__(self, interval: float = LOG_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.counts: dict[str, int] = {}
        """Every drop per reason since start (for tests and status)."""
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def drop(self, reason: str, peer: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        now = self.clock()
        last = self._last.get(reason)
        if last is None or now - last >= self.interval:
            self._last[reason] = now
            log.warning("Prolog/Epilog connection dropped: %s (from %s)", _REASONS[reason],
                        peer)
            return
        self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
        if reason not in self._timers:
            with contextlib.suppress(RuntimeError):  # no running loop: flushed at close
                self._timers[reason] = asyncio.get_running_loop().call_later(
                    max(0.0, last + self.interval - now), self._flush, reason)

    def _flush(self, reason: str) -> None:
        self._timers.pop(reason, None)
        count = self._suppressed.pop(reason, 0)
        if count:
            self._last[reason] = self.clock()
            log.warning("Prolog/Epilog connections dropped: %d more in the last %g s: %s",
                        count, self.interval, _REASONS[reason])

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for reason in list(self._suppressed):
            self._flush(reason)


def socket_group(configured: str, slurm_user: str | None) -> tuple[int, str, bool]:
    """``(gid, shown name, explicit)`` for the UNIX socket; OSError for an unknown group.

    ``configured`` (``prepSockGroup``) is a group name or number. Empty: the primary
    group of ``slurm_user`` if that user exists here, else the group of that name, else
    the daemon's own group.
    """
    if configured:
        if configured.isascii() and configured.isdigit():
            return int(configured), _group_name(int(configured)), True
        try:
            return grp.getgrnam(configured).gr_gid, configured, True
        except KeyError:
            raise OSError(f"prepSockGroup {configured!r} is no group on this host") from None
    if slurm_user:
        with contextlib.suppress(KeyError):
            gid = pwd.getpwnam(slurm_user).pw_gid
            return gid, _group_name(gid), False
        with contextlib.suppress(KeyError):
            return grp.getgrnam(slurm_user).gr_gid, slurm_user, False
    gid = os.getegid()
    return gid, _group_name(gid), False


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


@dataclass(eq=False)
class _Conn:
    writer: asyncio.StreamWriter
    evicted: bool = False


@dataclass
class _Unix:
    mode: int
    gid: int
    group: str
    explicit: bool
    warnings: list[str] = field(default_factory=list)


class IpcServer:
    """Listen on ``address``; call ``on_event(job_id, context)`` per valid hook message."""

    def __init__(self, address: SocketAddress, on_event: Callable[[int, str], None], *,
                 mode: str = "0660", group: str = "", token: str = "",
                 slurm_user: str | None = None,
                 max_connections: int = MAX_CONNECTIONS, idle_timeout: float = IDLE_TIMEOUT,
                 deadline: float = DEADLINE, drops: DropLog | None = None) -> None:
        self.address = address
        self.on_event = on_event
        self.mode = mode
        self.group = group
        self._token = token
        self.slurm_user = slurm_user
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.deadline = deadline
        self.drops = drops or DropLog()
        self._server: asyncio.Server | None = None
        self._inode: tuple[int, int] | None = None
        self._active: dict[asyncio.Task[None], _Conn] = {}
        self._closing = False

    @classmethod
    def from_config(cls, config: Config, on_event: Callable[[int, str], None], *,
                    slurm_user: str | None = None) -> IpcServer:
        """The daemon's server; ``slurm_user`` is Slurm's ``SlurmUser`` as start-up
        detection read it (``SlurmInfo.slurm_user``), whose group the socket gets by
        default."""
        return cls(config.prep_sock_listen_path, on_event, mode=config.prep_sock_mode,
                   group=config.prep_sock_group, token=config.prep_sock_token,
                   slurm_user=slurm_user)

    @property
    def active(self) -> int:
        """Connections being read now."""
        return len(self._active)

    @property
    def port(self) -> int:
        """The TCP port bound (useful with port 0); 0 for a UNIX socket."""
        if self._server is None or self.address.kind != "tcp":
            return 0
        return int(self._server.sockets[0].getsockname()[1])

    # ------------------------------------------------------------ start / stop

    async def start(self) -> None:
        """Bind and listen; OSError with a one-line reason when it cannot."""
        if self.address.kind == "tcp":
            self._server = await asyncio.start_server(
                self._handle, self.address.host or None, self.address.port)
        else:
            sock = await self._bind_unix()
            try:
                self._server = await asyncio.start_unix_server(self._handle, sock=sock)
            except BaseException:
                sock.close()
                self._remove_own()
                raise
        log.info("listening for Prolog/Epilog events on %s%s", self._shown(),
                 " (token required)" if self._token else "")

    def _shown(self) -> str:
        if self.address.kind == "tcp" and self.address.port == 0:
            return str(SocketAddress("tcp", host=self.address.host, port=self.port))
        return str(self.address)

    async def _bind_unix(self) -> socket.socket:
        path = self.address.path
        try:
            mode = int(self.mode, 8)
        except ValueError:
            raise OSError(f"prepSockMode {self.mode!r} is not an octal mode") from None
        gid, group, explicit = socket_group(self.group, self.slurm_user)
        stale = _probe(path)
        parent = os.path.dirname(path) or "."
        os.makedirs(parent, exist_ok=True)
        private = tempfile.mkdtemp(prefix=".ccsa", dir=parent)  # mode 0700
        temp = os.path.join(private, "s")
        if len(os.fsencode(temp)) > 107:
            os.rmdir(private)
            raise OSError(f"the path is too long for a UNIX socket ({len(path)} characters)")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(temp)
            try:
                os.chown(temp, -1, gid)
            except PermissionError:
                if explicit:
                    raise OSError(f"cannot give the socket to prepSockGroup {group!r}: the "
                                  f"daemon's user is not in that group") from None
                group = _group_name(os.stat(temp).st_gid)
                log.warning("the Prolog/Epilog socket stays in group %s: cannot give it to "
                            "%s (SlurmUser's group), the daemon's user is not in it; set "
                            "prepSockGroup or the unit's Group=", group, _group_name(gid))
            os.chmod(temp, mode)
            if stale is not None:
                now = os.lstat(path)
                if (now.st_dev, now.st_ino) != stale or not stat.S_ISSOCK(now.st_mode):
                    raise OSError("the socket file changed while starting; left alone")
                os.unlink(path)
                log.info("replaced a stale socket file at %s (no process listened on it)",
                         path)
            try:
                os.link(temp, path)  # never replaces: EEXIST if anything appeared since
            except FileExistsError:
                raise OSError("a file appeared at the path while starting; left alone"
                              ) from None
            st = os.lstat(path)
            self._inode = (st.st_dev, st.st_ino)
        except BaseException:
            sock.close()
            raise
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            with contextlib.suppress(OSError):
                os.rmdir(private)
        log.debug("socket %s: mode %04o, group %s", path, mode, group)
        return sock

    async def close(self) -> None:
        """Stop listening, drop open connections, remove our socket file."""
        self._closing = True
        if self._server is not None:
            self._server.close()
            tasks = list(self._active)
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=2.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        self.drops.close()
        self._remove_own()

    def _remove_own(self) -> None:
        if self._inode is not None:
            with contextlib.suppress(OSError):
                st = os.lstat(self.address.path)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.address.path)
            self._inode = None

    # ------------------------------------------------------------ connections

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        conn = _Conn(writer)
        if self._closing:  # accepted just before close(): not read
            writer.close()
            return
        if len(self._active) >= self.max_connections:
            oldest_task, oldest = next(iter(self._active.items()))
            del self._active[oldest_task]
            oldest.evicted = True
            oldest_task.cancel()
        self._active[task] = conn
        try:
            data = await self._read(reader)
            job_id, context = parse_message(data, self._token)
        except MessageError as exc:
            self.drops.drop(exc.reason, _peer(writer))
            return
        except asyncio.CancelledError:
            if not conn.evicted:
                raise
            task.uncancel()
            self.drops.drop("busy", _peer(writer))
            return
        except OSError:
            self.drops.drop("error", _peer(writer))
            return
        finally:
            self._active.pop(task, None)
            writer.close()
        try:
            self.on_event(job_id, context)
        except Exception as exc:  # a bug there must not end the listener
            log.error("Prolog/Epilog event for job %d not handled: %r", job_id, exc)

    async def _read(self, reader: asyncio.StreamReader) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = deadline - loop.time()
            wait = min(self.idle_timeout, remaining)
            if wait <= 0:
                raise MessageError("slow")
            try:
                chunk = await asyncio.wait_for(reader.read(64 * 1024), wait)
            except TimeoutError:
                if wait < self.idle_timeout:
                    raise MessageError("slow") from None
                raise MessageError("stalled" if size else "idle") from None
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_MESSAGE:
                raise MessageError("oversized")  # not read further: closed at once
            chunks.append(chunk)


def _probe(path: str) -> tuple[int, int] | None:
    """The (dev, inode) of a stale socket file at ``path``, None if there is none;
    OSError when the path must be left alone."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISSOCK(st.st_mode):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else
                "a symlink" if stat.S_ISLNK(st.st_mode) else "not a socket")
        raise OSError(f"the path exists and is {kind}; left alone")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)  # an AF_UNIX connect never waits: refused, EAGAIN or done
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        return (st.st_dev, st.st_ino)  # nobody listens: a dead daemon's socket
    except FileNotFoundError:
        return None  # removed meanwhile
    except BlockingIOError:
        raise OSError("a process listens on the socket (its backlog is full); "
                      "left alone") from None
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise OSError("cannot tell whether a process listens on the existing socket "
                          "(permission denied); left alone") from None
        raise
    finally:
        probe.close()
    raise OSError("another process is listening on the socket (a running daemon?); "
                  "left alone")


_UCRED = struct.Struct("3i")


def _peer(writer: asyncio.StreamWriter) -> str:
    """Who sent it: ``uid U pid P`` on a UNIX socket, ``HOST:PORT`` on TCP."""
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None and sock.family == socket.AF_UNIX:
            pid, uid, _gid = _UCRED.unpack(
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
            return f"uid {uid} pid {pid}"
        peer = writer.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            host = f"[{peer[0]}]" if ":" in str(peer[0]) else str(peer[0])
            return f"{host}:{peer[1]}"
    except (OSError, struct.error):
        pass
    return "unknown peer"
