"""The Prolog/Epilog socket (``prepSockListenPath``): the hook's events wake the poll.

The hook (``cc_slurm_adapter.hook``) connects, sends one JSON object of ``SLURM_*``
variables and closes its side. The daemon reads at most :data:`MAX_MESSAGE` bytes
within :data:`READ_TIMEOUT` seconds per connection and does not answer. An event only
makes the next poll come sooner (after ``slurmQueryDelay``): the poll reads the job
from Slurm like any other, so a lost or forged event changes nothing but timing.

The socket is created only after the store's lock is held (a second daemon never
gets here), so a socket file left at the path is a dead daemon's and is replaced.
At exit the file is removed only if it is still the one this daemon created.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
from collections.abc import Callable

from cc_slurm_adapter.hook import SocketAddress

__all__ = ["MAX_MESSAGE", "READ_TIMEOUT", "PrepListener"]

log = logging.getLogger("cc_slurm_adapter.daemon")

MAX_MESSAGE = 64 * 1024
READ_TIMEOUT = 5.0
MAX_CONNECTIONS = 64


class PrepListener:
    """Listen on ``address``; call ``on_event(job_id, context)`` per hook message."""

    def __init__(self, address: SocketAddress, on_event: Callable[[int, str], None]) -> None:
        self.address = address
        self.on_event = on_event
        self._server: asyncio.Server | None = None
        self._inode: tuple[int, int] | None = None
        self._sem = asyncio.Semaphore(MAX_CONNECTIONS)

    async def start(self) -> None:
        """Bind; OSError (with the address in the message) when it cannot."""
        if self.address.kind == "unix":
            path = self.address.path
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                st = None
            if st is not None:
                if not stat.S_ISSOCK(st.st_mode):
                    raise OSError(f"{path} exists and is not a socket; not replaced")
                os.unlink(path)  # a dead daemon's (we hold the store's lock)
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            self._server = await asyncio.start_unix_server(self._handle, path)
            # the hook runs as SlurmUser: the unit's Group=slurm gives it access
            os.chmod(path, 0o660)
            st = os.lstat(path)
            self._inode = (st.st_dev, st.st_ino)
        else:
            self._server = await asyncio.start_server(self._handle, self.address.host or None,
                                                      self.address.port)
        log.info("listening for Prolog/Epilog events on %s", self.address)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        if self._inode is not None:
            with contextlib.suppress(OSError):
                st = os.lstat(self.address.path)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.address.path)
            self._inode = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self._sem.locked():
                return  # a flood: the poll picks every job up anyway
            async with self._sem:
                data = await asyncio.wait_for(reader.read(MAX_MESSAGE + 1), READ_TIMEOUT)
                # read() may return a part: gather until EOF, within the bounds
                chunks = [data]
                size = len(data)
                while data and size <= MAX_MESSAGE:
                    data = await asyncio.wait_for(reader.read(MAX_MESSAGE + 1 - size),
                                                  READ_TIMEOUT)
                    chunks.append(data)
                    size += len(data)
            self._message(b"".join(chunks))
        except (TimeoutError, OSError) as exc:
            log.debug("Prolog/Epilog connection dropped: %s", exc or type(exc).__name__)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _message(self, data: bytes) -> None:
        if len(data) > MAX_MESSAGE:
            log.warning("Prolog/Epilog message longer than %d bytes ignored", MAX_MESSAGE)
            return
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            log.warning("Prolog/Epilog message is not JSON; ignored")
            return
        job = doc.get("SLURM_JOB_ID") if isinstance(doc, dict) else None
        if not isinstance(job, str) or not job.isdigit():
            log.warning("Prolog/Epilog message without a job id; ignored")
            return
        context = doc.get("SLURM_SCRIPT_CONTEXT")
        self.on_event(int(job), context if isinstance(context, str) else "")
