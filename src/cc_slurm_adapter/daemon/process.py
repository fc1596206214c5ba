"""The daemon as a process: pid file, systemd notifications, config reload.

* **pid file** (``pidFilePath``): written after the store's exclusive lock is held,
  removed at exit only if it still names this process. A second daemon finds the
  first one's pid there (or the store's lock) and refuses with one line, touching
  nothing of the first: not its pid file, not its socket, not its store.
* **systemd** (``sd_notify`` without a library): ``READY=1`` once the daemon works,
  ``WATCHDOG=1`` every half of ``WATCHDOG_USEC`` when systemd asks for it,
  ``STOPPING=1`` on the way out. ``$NOTIFY_SOCKET`` is a datagram socket path, or an
  abstract one written with a leading ``@``.
* **reload** (SIGHUP): the config file is read again; what changed is logged (never
  a secret's value), keys the running daemon can take are taken, the others say that
  they need a restart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import socket
from collections.abc import Mapping
from pathlib import Path

from cc_slurm_adapter.config import Config

__all__ = ["RELOADABLE", "Notifier", "PidFile", "PidFileError", "config_changes",
           "pid_alive"]

log = logging.getLogger("cc_slurm_adapter.daemon")

RELOADABLE = frozenset({
    "slurm_poll_interval", "slurm_query_delay", "slurm_query_max_span", "slurm_max_retries",
    "cc_poll_interval", "gpu_pci_addrs", "ignore_hosts", "cc_rest_send_tags",
    "slurm_command_timeout",
})
"""Config fields a running daemon takes on SIGHUP; every other change needs a restart."""

_SECRET_FIELDS = frozenset({"cc_rest_jwt", "nats_password"})


class PidFileError(Exception):
    """Another daemon runs (its pid is in the file), or the file cannot be written."""


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it is someone else's
    return True


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except (FileNotFoundError, IsADirectoryError):
        return None
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class PidFile:
    """``pidFilePath``: refuse if it names a live process other than us."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._written = False

    def check(self) -> None:
        """Raise PidFileError if a live process other than this one is named in it."""
        pid = _read_pid(self.path)
        if pid is not None and pid != os.getpid() and pid_alive(pid):
            raise PidFileError(f"another cc-slurm-adapter daemon (pid {pid}) is running "
                               f"(pid file {self.path})")

    def write(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text(f"{os.getpid()}\n", encoding="ascii")
            os.replace(tmp, self.path)
        except OSError as exc:
            raise PidFileError(f"cannot write pid file {self.path}: "
                               f"{exc.strerror or exc}") from None
        self._written = True

    def remove(self) -> None:
        if self._written and _read_pid(self.path) == os.getpid():
            with contextlib.suppress(OSError):
                self.path.unlink()
        self._written = False


class Notifier:
    """systemd's notify protocol over ``$NOTIFY_SOCKET`` (does nothing without it)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if address.startswith("@"):
            self.address = "\0" + address[1:]
        elif address.startswith("/"):
            self.address = address
        usec = env.get("WATCHDOG_USEC", "")
        wd_pid = env.get("WATCHDOG_PID", "")
        self.watchdog_s: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not wd_pid or wd_pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6
        self.sent: list[str] = []
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, message: str) -> bool:
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                # never block the event loop: a receiver that does not read (a full
                # queue) costs this one message, not the daemon
                s.setblocking(False)
                s.sendto(message.encode(), self.address)
        except BlockingIOError:
            log.debug("systemd's notify socket is full; %r dropped", message)
            return False
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd at NOTIFY_SOCKET: %s",
                            exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc)))
            return False
        self.sent.append(message)
        return True

    def ready(self, status: str = "") -> None:
        self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")


def config_changes(old: Config, new: Config) -> tuple[list[str], list[str]]:
    """(taken, need a restart): one line per changed key, secrets without values."""
    taken: list[str] = []
    restart: list[str] = []
    for item in dataclasses.fields(Config):
        if item.name == "source":
            continue
        a, b = getattr(old, item.name), getattr(new, item.name)
        if item.name == "ignore_hosts":
            same = (a.pattern if a else None) == (b.pattern if b else None)
        elif item.name == "gpu_pci_addrs":
            same = [(p.pattern, v) for p, v in a] == [(p.pattern, v) for p, v in b]
        else:
            same = a == b
        if same:
            continue
        if item.name in _SECRET_FIELDS:
            line = f"{item.name} changed"
        elif item.name == "ignore_hosts":
            line = f"{item.name}: {a.pattern if a else ''!r} -> {b.pattern if b else ''!r}"
        elif item.name == "gpu_pci_addrs":
            line = f"{item.name} changed"
        else:
            line = f"{item.name}: {a!r} -> {b!r}"
        (taken if item.name in RELOADABLE else restart).append(line)
    return taken, restart
