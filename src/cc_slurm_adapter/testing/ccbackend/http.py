"""A small HTTP/1.1 server on asyncio streams.

Just enough HTTP for JSON APIs: keep-alive, ``Content-Length`` and chunked request
bodies, one request at a time per connection. Framing errors are judged as Go's
net/http judges them (measured against cc-backend v1.5.4): a ``Content-Length`` that is
not plain digits (``+10``, ``1_0``) or two different ones → 400; a transfer coding other
than chunked → 501; a chunk size that is not 1-16 hex digits (``-1``, ``0x2``) makes the
*body* unreadable, which the handler reports (400 after authentication); an HTTP/1.1
request without ``Host`` → 400. A request must arrive within ``read_timeout`` seconds,
and a connection may idle that long between requests; connections beyond
``max_connections`` are closed at once. Hand-written (instead of
``http.server``) because the fault injection needs control over the socket: close
the listener to refuse connections, or drop a connection after the request has
been processed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import unquote

__all__ = ["HTTPServer", "Request", "Response"]

_MAX_HEADER = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024
_DIGITS = re.compile(r"[0-9]+")
_HEX = re.compile(rb"[0-9a-fA-F]+")


@dataclass(slots=True)
class Request:
    method: str
    target: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    peer: str
    body_error: str | None = None
    """Why the body could not be read (Go's text), or None. The connection is closed
    after the answer."""


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    """Close the connection without sending anything (fault injection)."""
    delay: float = 0.0
    """Seconds to wait before answering."""
    reason: str | None = None


class _BadRequest(Exception):
    """The request cannot be framed: answer ``status`` with ``text`` and close."""

    def __init__(self, text: str = "", status: int = 400) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class _BodyError(Exception):
    """The body is unreadable (Go: the handler's body read fails)."""


Handler = Callable[[Request], Awaitable[Response]]


class HTTPServer:
    """Serves ``handler`` on host:port. ``set_listening(False)`` closes the listener
    and every open connection (connections are then refused); ``True`` re-opens
    it on the same port."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0, *,
                 read_timeout: float = 20.0, max_connections: int = 1024) -> None:
        self._handler = handler
        self.host = host
        self.port = port
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve_connection, self.host, self.port, reuse_address=True, backlog=1024)
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]

    async def set_listening(self, on: bool) -> None:
        if on and self._server is None:
            await self.start()
        elif not on and self._server is not None:
            server, self._server = self._server, None
            server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await server.wait_closed()

    async def close(self) -> None:
        await self.set_listening(False)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve_connection(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._tasks) >= self.max_connections:
            writer.transport.abort()
            return
        self._tasks.add(task)
        self._writers.add(writer)
        peer_info = writer.get_extra_info("peername")
        peer = str(peer_info[0]) if peer_info else ""
        try:
            while True:
                try:
                    request = await asyncio.wait_for(self._read_request(reader, peer),
                                                     self.read_timeout)
                except TimeoutError:
                    break  # Go closes the connection without an answer
                except _BadRequest as exc:
                    writer.write(_plain_error(exc.status, exc.text))
                    break
                if request is None:
                    break
                try:
                    response = await self._handler(request)
                except Exception as exc:  # a bug in a handler: answer, keep serving
                    response = Response(500, f"stand-in error: {exc!r}\n".encode(),
                                        "text/plain; charset=utf-8")
                if response.delay:
                    await asyncio.sleep(response.delay)
                if response.drop:
                    writer.transport.abort()
                    break
                keep_alive = (request.headers.get("connection", "").lower() != "close"
                              and request.body_error is None)
                writer.write(_encode(response, keep_alive, request.method == "HEAD"))
                await writer.drain()
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError):
            pass
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader, peer: str) -> Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                raise _BadRequest from exc
            return None
        if len(head) > _MAX_HEADER:
            raise _BadRequest
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            raise _BadRequest from None
        headers: dict[str, str] = {}
        lengths: set[str] = set()
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise _BadRequest
            key = name.strip().lower()
            headers[key] = value.strip(" \t")
            if key == "content-length":
                lengths.add(headers[key])
        if _version.strip() == "HTTP/1.1" and "host" not in headers:
            raise _BadRequest("missing required Host header")
        coding = headers.get("transfer-encoding")
        body_error = None
        if coding is not None:
            if coding.lower() != "chunked":
                raise _BadRequest("Unsupported transfer encoding", 501)
            try:
                body = await _read_chunked(reader)
            except _BodyError as exc:
                body, body_error = b"", str(exc)
        else:
            if len(lengths) > 1:
                raise _BadRequest
            text = headers.get("content-length", "0")
            if _DIGITS.fullmatch(text) is None:  # Go: no sign, no "_", no spaces inside
                raise _BadRequest
            length = int(text)
            if length > _MAX_BODY:
                raise _BadRequest
            body = await reader.readexactly(length) if length else b""
        raw_path, _, query = target.partition("?")
        return Request(method.upper(), target, unquote(raw_path), query, headers, body, peer,
                       body_error)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A chunked body; :class:`_BodyError` with Go's text when a size line is bad."""
    parts: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        digits = size_line[:-2].split(b";")[0].rstrip(b" \t")
        if not digits:
            raise _BodyError("empty hex number for chunk length")
        if len(digits) > 16:
            raise _BodyError("http chunk length too large")
        if _HEX.fullmatch(digits) is None:  # "-1", "+2", "0x2", "0_2" (Python's int takes them)
            raise _BodyError("invalid byte in chunk length")
        size = int(digits, 16)
        if size == 0:
            # trailers until an empty line
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return b"".join(parts)
        total += size
        if total > _MAX_BODY:
            raise _BadRequest
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise _BodyError("malformed chunked encoding")


def _plain_error(status: int, text: str) -> bytes:
    """Go's answer to a request it cannot frame: text/plain, then close."""
    reason = HTTPStatus(status).phrase
    message = (f"400 Bad Request: {text}" if text else "400 Bad Request") if status == 400 \
        else text
    body = message.encode("latin-1", "replace")
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


def _encode(response: Response, keep_alive: bool, head: bool) -> bytes:
    reason = response.reason
    if reason is None:
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = "Unknown"
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    if response.content_type and (response.body or response.status >= 400):
        lines.append(f"Content-Type: {response.content_type}")
    for name, value in response.headers.items():
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(response.body)}")
    if not keep_alive:
        lines.append("Connection: close")
    head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head_bytes if head else head_bytes + response.body
