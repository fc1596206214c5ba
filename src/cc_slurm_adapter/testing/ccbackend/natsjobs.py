"""The stand-in's NATS job API: cc-backend 1.5's ``main.api-subjects.subject-job-event``.

cc-backend-contract.md §9 and cc-backend's ``internal/api/nats.go``: a plain core-NATS
subscription (no JetStream, no queue group, no reply). Each message holds one or more
InfluxDB line-protocol lines, decoded in order:

* a line that does not decode ends the message (cc-backend logs the error and returns,
  so the lines after it are lost too);
* a line without a **string** field ``event`` is skipped, and so is a measurement other
  than ``job``;
* ``job`` without a ``function`` tag is an error; ``start_job``/``stop_job`` run the same
  decoding, checks and store writes as the REST routes; any other function is a warning.

Every handled event goes into the same store and audit log as REST, with method
``NATS`` and the REST path of the same operation, and the status REST would have
answered (so the audit checker flags refused events the same way). Lines refused
before that (bad line protocol, no function tag) are audited with status 400.
The decoder follows influxdata's line-protocol v2 (the 1.5.4 build's decoder): inside
a string field ``\\\\`` and ``\\"`` are the only escapes; a backslash before anything
else stays. Messages are handled one at a time in arrival order (v1.5.0-1.5.1; v1.5.2+
runs 8 workers and may reorder a stop before its start: not imitated).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from .http import Request, Response

if TYPE_CHECKING:
    from .server import StandInApp

__all__ = ["LineError", "NatsJobConsumer", "ProtocolLine", "decode_lines"]

log = logging.getLogger("cc_slurm_adapter.testing.ccbackend.nats")

_NON_PRINTABLE = frozenset(range(32)) | {0x7F}
_TAG_ESC = {ord(","): ord(","), ord("="): ord("="), ord(" "): ord(" ")}
_MEASUREMENT_ESC = {ord(" "): ord(" "), ord(","): ord(",")}
_STRING_ESC = {ord("\\"): ord("\\"), ord('"'): ord('"')}


class LineError(ValueError):
    """A line that does not decode (the decoder's text, with line number)."""


@dataclass
class ProtocolLine:
    measurement: str
    tags: dict[str, str] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    time_ns: int | None = None


class _Scanner:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.line = 1

    def peek(self) -> int | None:
        return self.data[self.pos] if self.pos < len(self.data) else None

    def error(self, text: str) -> LineError:
        return LineError(f"at line {self.line}: {text}")

    def take_escaped(self, stop: set[int], escapes: dict[int, int], *,
                     printable_only: bool = True) -> bytes:
        out = bytearray()
        data = self.data
        while self.pos < len(data):
            c = data[self.pos]
            if c == 0x5C and self.pos + 1 < len(data) and data[self.pos + 1] in escapes:
                out.append(escapes[data[self.pos + 1]])
                self.pos += 2
                continue
            if c in stop or (printable_only and c in _NON_PRINTABLE):
                break
            if c == 0x0A:
                self.line += 1
            out.append(c)
            self.pos += 1
        return bytes(out)

    def skip_to_eol(self) -> None:
        end = self.data.find(b"\n", self.pos)
        self.pos = len(self.data) if end < 0 else end + 1
        self.line += 1

    def text(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error(f"invalid utf-8 sequence in token {raw!r}") from None


_SP, _COMMA, _EQ, _QUOTE, _NL, _CR = (ord(c) for c in ' ,="\n\r')


def _field_value(sc: _Scanner, key: str) -> Any:
    c = sc.peek()
    if c is None:
        raise sc.error(f"expected value for field {key!r}, found end of input")
    if c == _QUOTE:
        sc.pos += 1
        raw = sc.take_escaped({_QUOTE}, _STRING_ESC, printable_only=False)
        if sc.peek() != _QUOTE:
            raise sc.error(f"expected closing quote for string field {key!r}, "
                           "found end of input")
        sc.pos += 1
        return sc.text(raw)
    start = sc.pos
    while sc.pos < len(sc.data) and sc.data[sc.pos] not in (_COMMA, _SP, _NL, _CR):
        sc.pos += 1
    token = sc.data[start:sc.pos].decode("utf-8", "replace")
    if token in ("t", "T", "true", "True", "TRUE"):
        return True
    if token in ("f", "F", "false", "False", "FALSE"):
        return False
    try:
        if token.endswith(("i", "u")):
            return int(token[:-1])
        return float(token)
    except ValueError:
        raise sc.error(f"value for field {key!r} ({token!r}) has unrecognized type") from None


def _decode_one(sc: _Scanner) -> ProtocolLine:
    raw = sc.take_escaped({_COMMA, _SP}, _MEASUREMENT_ESC)
    if not raw:
        raise sc.error("no measurement name found")
    entry = ProtocolLine(sc.text(raw))
    while sc.peek() == _COMMA:
        sc.pos += 1
        key = sc.take_escaped({_COMMA, _EQ, _SP}, _TAG_ESC)
        if not key or sc.peek() != _EQ:
            raise sc.error(f"expected '=' after tag key {key!r}")
        sc.pos += 1
        value = sc.take_escaped({_COMMA, _EQ, _SP}, _TAG_ESC)
        if not value:
            raise sc.error(f"expected tag value after tag key {key!r}, but none found")
        entry.tags[sc.text(key)] = sc.text(value)
    if sc.peek() != _SP:
        raise sc.error("expected field after measurement and tags")
    while sc.peek() == _SP:
        sc.pos += 1
    while True:
        key = sc.take_escaped({_COMMA, _EQ, _SP}, _TAG_ESC)
        if not key:
            raise sc.error("expected field key but none found")
        if sc.peek() != _EQ:
            raise sc.error(f"want '=' after field key {key!r}")
        sc.pos += 1
        name = sc.text(key)
        entry.fields[name] = _field_value(sc, name)
        if sc.peek() == _COMMA:
            sc.pos += 1
            continue
        break
    while sc.peek() == _SP:
        sc.pos += 1
    c = sc.peek()
    if c is not None and c not in (_NL, _CR):
        start = sc.pos
        while sc.pos < len(sc.data) and sc.data[sc.pos] in b"-0123456789":
            sc.pos += 1
        token = sc.data[start:sc.pos]
        try:
            entry.time_ns = int(token)
        except ValueError:
            raise sc.error(f"invalid timestamp ({token!r})") from None
        while sc.peek() == _SP:
            sc.pos += 1
    if sc.peek() == _CR:
        sc.pos += 1
    if sc.peek() not in (None, _NL):
        raise sc.error("unexpected text after timestamp")
    if sc.peek() == _NL:
        sc.pos += 1
        sc.line += 1
    return entry


def decode_lines(data: bytes) -> Iterator[ProtocolLine | LineError]:
    """Each line of ``data``, decoded, or the error it gives (then decoding goes on at
    the next line, as the Go decoder's Next() does; cc-backend stops at the first)."""
    sc = _Scanner(data)
    while True:
        while sc.peek() in (_SP, _NL, _CR) or sc.peek() == ord("#"):
            if sc.peek() == ord("#"):
                sc.skip_to_eol()
            else:
                if sc.peek() == _NL:
                    sc.line += 1
                sc.pos += 1
        if sc.peek() is None:
            return
        try:
            yield _decode_one(sc)
        except LineError as exc:
            sc.skip_to_eol()
            yield exc


class NatsJobConsumer:
    """Subscribes ``subject`` on ``url`` and applies job events to ``app``."""

    def __init__(self, app: StandInApp, url: str, subject: str = "jobs") -> None:
        self.app = app
        self.url = url
        self.subject = subject
        self.received = 0
        self.connected = asyncio.Event()
        self._nc: Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, wait: float = 5.0) -> None:
        """Connect in the background (reconnecting forever, like cc-lib's client) and
        wait up to ``wait`` seconds for the subscription to be in place."""
        self._task = asyncio.create_task(self._connect(), name="standin-nats")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.connected.wait()), wait)

    async def _connect(self) -> None:
        async def on_error(exc: Exception) -> None:
            log.debug("stand-in NATS: %s", exc)

        async def on_reconnect() -> None:
            self.connected.set()

        async def on_disconnect() -> None:
            self.connected.clear()

        self._nc = await nats.connect(
            self.url, name="ccbackend-standin", allow_reconnect=True,
            max_reconnect_attempts=-1, reconnect_time_wait=0, connect_timeout=2,
            error_cb=on_error, reconnected_cb=on_reconnect, disconnected_cb=on_disconnect)
        await self._nc.subscribe(self.subject, cb=self._on_message)
        await self._nc.flush()
        self.connected.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()

    async def _on_message(self, msg: Msg) -> None:
        self.received += 1
        await self.handle(msg.data)

    async def handle(self, data: bytes) -> None:
        """One NATS message, as cc-backend's handleJobEvent."""
        app = self.app
        where = f"nats:{self.subject}"
        if not data:
            log.warning("NATS %s: received empty message", self.subject)
            app.audit.add("NATS", where, 400, "rejected", error="received empty message")
            return
        for line in decode_lines(data):
            if isinstance(line, LineError):
                app.audit.add("NATS", where, 400, "rejected", body=data,
                              error=f"failed to decode InfluxDB line protocol message: {line}")
                return
            event = line.fields.get("event")
            if not isinstance(event, str) or line.measurement != "job":
                continue  # not an event, or another measurement: skipped
            function = line.tags.get("function")
            if function is None:
                app.audit.add("NATS", where, 400, "rejected", body=data,
                              error="Job event is missing required tag 'function'")
                continue
            if function not in ("start_job", "stop_job"):
                app.audit.add("NATS", where, None, "ignored", body=data,
                              error=f"Unknown job event function '{function}'")
                continue
            await self._apply(function, event.encode("utf-8"))

    async def _apply(self, function: str, payload: bytes) -> None:
        from .server import _Reply  # the REST handlers' early answer

        app = self.app
        path = f"/api/jobs/{function}/"
        if not payload:
            app.audit.add("NATS", path, 400, "rejected",
                          error=f"NATS {function}: payload is empty")
            return
        req = Request("POST", path, path, "", {}, payload, "nats")
        info: dict[str, Any] | None = None
        try:
            if function == "start_job":
                response, outcome, info = await app._start_job(req)
            else:
                response, outcome, info = await app._stop_job(req)
        except _Reply as reply:
            response, outcome = reply.response, reply.outcome
        app.audit.add("NATS", path, response.status, outcome, error=_error_text(response),
                      body=payload, job=info)


def _error_text(response: Response) -> str | None:
    if response.status < 400 or not response.body.startswith(b"{"):
        return None
    with contextlib.suppress(msgspec.DecodeError, AttributeError):
        text = msgspec.json.decode(response.body.split(b"\n")[0]).get("error")
        return None if text is None else str(text)
    return None
