"""Raw HTTP/1.1 requests for the hostile-client tests (framing httpx will not send)."""

from __future__ import annotations

import base64
import json
import re
import socket
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def send(url: str, data: bytes, timeout: float = 10.0) -> tuple[int | str, bytes]:
    """Send ``data`` on a new connection; (status, body) or ("closed", b"")."""
    host, port = url.rsplit("//", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                return ("closed", buf)
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
        if match is None:
            return ("closed", buf)
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        chunked = re.search(rb"(?i)\r\ntransfer-encoding: *chunked", head)
        while True:
            if length is not None and len(body) >= int(length.group(1)):
                break
            if chunked is not None and body.endswith(b"0\r\n\r\n"):
                break
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return (int(match.group(1)), body)


def request(url: str, method: str, path: str, body: bytes | None = None,
            token: str | None = None, headers: str = "") -> tuple[int | str, bytes]:
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
    if token is not None:
        head += f"X-Auth-Token: {token}\r\n"
    head += headers
    if body is not None:
        head += f"Content-Length: {len(body)}\r\n"
    return send(url, head.encode() + b"\r\n" + (body or b""))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(seed: bytes, header: bytes, claims: bytes) -> str:
    """A JWT with exactly these header and claim bytes, signed with ``seed``."""
    signing_input = f"{b64url(header)}.{b64url(claims)}"
    signature = Ed25519PrivateKey.from_private_bytes(seed).sign(signing_input.encode())
    return f"{signing_input}.{b64url(signature)}"


def claims(sub: str, **extra: Any) -> bytes:
    """Claims with ``roles: [api]``; a value given as ``RawJSON`` is written raw."""
    parts = [f'"sub":{json.dumps(sub)}', '"roles":["api"]']
    parts += [f'"{k}":{v.text if isinstance(v, RawJSON) else json.dumps(v)}'
              for k, v in extra.items()]
    return ("{" + ",".join(parts) + "}").encode()


class RawJSON:
    def __init__(self, text: str) -> None:
        self.text = text


HEADER = b'{"alg":"EdDSA","typ":"JWT"}'
