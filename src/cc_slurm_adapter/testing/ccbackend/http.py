"""A small HTTP/1.1 server on asyncio streams.

Just enough HTTP for JSON APIs: keep-alive, ``Content-Length`` and chunked request
bodies, one request at a time per connection. Hand-written (instead of
``http.server``) because the fault injection needs control over the socket: close
the listener to refuse connections, or drop a connection after the request has
been processed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import unquote

__all__ = ["HTTPServer", "Request", "Response"]

_MAX_HEADER = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024


@dataclass(slots=True)
class Request:
    method: str
    target: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    peer: str


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
    pass


Handler = Callable[[Request], Awaitable[Response]]


class HTTPServer:
    """Serves ``handler`` on host:port. ``set_listening(False)`` closes the listener
    and every open connection (connections are then refused); ``True`` re-opens
    it on the same port."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        self._handler = handler
        self.host = host
        self.port = port
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
        self._tasks.add(task)
        self._writers.add(writer)
        peer_info = writer.get_extra_info("peername")
        peer = str(peer_info[0]) if peer_info else ""
        try:
            while True:
                try:
                    request = await self._read_request(reader, peer)
                except _BadRequest:
                    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
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
                keep_alive = request.headers.get("connection", "").lower() != "close"
                writer.write(_encode(response, keep_alive, request.method == "HEAD"))
                await writer.drain()
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
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
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise _BadRequest
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await _read_chunked(reader)
        else:
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                raise _BadRequest from None
            if length < 0 or length > _MAX_BODY:
                raise _BadRequest
            body = await reader.readexactly(length) if length else b""
        raw_path, _, query = target.partition("?")
        return Request(method.upper(), target, unquote(raw_path), query, headers, body, peer)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError:
            raise _BadRequest from None
        if size == 0:
            # trailers until an empty line
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return b"".join(parts)
        total += size
        if total > _MAX_BODY:
            raise _BadRequest
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


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
