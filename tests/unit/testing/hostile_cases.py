"""Hostile requests and what the real cc-backend v1.5.4 answers to each.

Every expected status below was measured against ../shared/cc-backend (v1.5.4) with
exactly these bytes; tests/integration/test_ccbackend_real.py sends each to the real
server and the stand-in and requires the same status, the unit tests check the
stand-in alone. A case builds its raw request from the target (url, token, key seed,
token subject) and a job id unique to the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .rawhttp import HEADER, RawJSON, b64url, claims, sign

START = "/api/jobs/start_job/"


@dataclass(frozen=True)
class Target:
    url: str
    token: str
    seed: bytes
    """The server's Ed25519 private key seed (to sign hand-made tokens)."""
    sub: str
    """A user the server knows (the real server's API user)."""


def start_body(job_id: int, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "jobId": job_id, "cluster": "testcluster", "user": "alice", "project": "p1",
        "startTime": 1_700_000_000, "numNodes": 1, "resources": [{"hostname": "node1"}]}
    body.update(over)
    return body


def _post(t: Target, body: bytes, path: str = START, token: str | None = None) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
            f"X-Auth-Token: {token or t.token}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def _get(t: Target, path: str, token: str | None = None) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
            f"X-Auth-Token: {token or t.token}\r\n\r\n").encode()


def _framed(t: Target, headers: str, body: bytes, token: bool = True) -> bytes:
    auth = f"X-Auth-Token: {t.token}\r\n" if token else ""
    return (f"POST {START} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{auth}{headers}"
            "\r\n").encode() + body


def _good(job_id: int) -> bytes:
    return json.dumps(start_body(job_id)).encode()


def _chunked(t: Target, size: bytes, data: bytes = b"{}", token: bool = True) -> bytes:
    return _framed(t, "Transfer-Encoding: chunked\r\n",
                   size + b"\r\n" + data + b"\r\n0\r\n\r\n", token)


def _token(t: Target, header: bytes = HEADER, **claim: Any) -> str:
    return sign(t.seed, header, claims(t.sub, **claim))


def _underscored(number: int) -> str:
    text = str(number)
    return f"{text[0]}_{text[1:]}"


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Target, int], bytes]
    status: int
    """What cc-backend v1.5.4 answered (measured)."""


CASES: tuple[Case, ...] = (
    # --- bodies: depth, numbers, strings (400 from Go's decoder) ---------------------
    Case("nesting beyond 10000 in metaData",
         lambda t, j: _post(t, b'{"metaData":' + b"[" * 10_000 + b"]" * 10_000 + b"}"), 400),
    Case("nesting beyond 10000 in statistics",
         lambda t, j: _post(t, b'{"statistics":' + b'{"a":' * 10_000 + b"1"
                            + b"}" * 10_001), 400),
    Case("array nested 10000 deep as the body",
         lambda t, j: _post(t, b"[" * 10_000 + b"]" * 10_000), 400),
    Case("5,000-digit jobId", lambda t, j: _post(t, b'{"jobId":' + b"9" * 5000 + b"}"), 400),
    Case("5,000-digit energy",
         lambda t, j: _post(t, _good(j)[:-1] + b',"energy":' + b"9" * 5000 + b"}"), 400),
    Case("energy 1e400", lambda t, j: _post(t, _good(j)[:-1] + b',"energy":1e400}'), 400),
    Case("energy NaN", lambda t, j: _post(t, _good(j)[:-1] + b',"energy":NaN}'), 400),
    Case("jobId 10^23", lambda t, j: _post(t, json.dumps(start_body(10**23)).encode()), 400),
    Case("jobId 2^63", lambda t, j: _post(t, json.dumps(start_body(2**63)).encode()), 400),
    Case("statistics value is a number",
         lambda t, j: _post(t, json.dumps(start_body(j, statistics={"a": 1})).encode()), 400),
    Case("unknown key inside concurrentJobs",
         lambda t, j: _post(t, json.dumps(start_body(j, concurrentJobs={"foo": 1})).encode()),
         400),
    Case("resources [null] (Go panics: 500)",
         lambda t, j: _post(t, json.dumps(start_body(j, resources=[None])).encode()), 500),
    Case("invalid UTF-8 in user is stored as U+FFFD",
         lambda t, j: _post(t, _good(j).replace(b'"alice"', b'"a\xe9b"')), 201),
    # --- query strings and path ids (strconv) ----------------------------------------
    Case("page=10^20", lambda t, j: _get(t, "/api/jobs/?page=100000000000000000000"), 400),
    Case("items-per-page=10^20",
         lambda t, j: _get(t, "/api/jobs/?items-per-page=100000000000000000000"), 400),
    Case("page=1_0", lambda t, j: _get(t, "/api/jobs/?page=1_0"), 400),
    Case("page=' 1'", lambda t, j: _get(t, "/api/jobs/?page=%201"), 400),
    Case("page=+1", lambda t, j: _get(t, "/api/jobs/?page=%2B1"), 200),
    Case("page=Arabic-Indic one", lambda t, j: _get(t, "/api/jobs/?page=%D9%A1"), 400),
    Case("page=2^62", lambda t, j: _get(t, "/api/jobs/?page=4611686018427387904"), 200),
    Case("page*items wraps past 2^63 (SQLite datatype mismatch)",
         lambda t, j: _get(t, "/api/jobs/?page=368934881474191034"), 500),
    Case("start-time end 10^20",
         lambda t, j: _get(t, "/api/jobs/?start-time=1-99999999999999999999"), 400),
    Case("job by id 10^23", lambda t, j: _get(t, "/api/jobs/100000000000000000000000"), 400),
    Case("job by id 1_0", lambda t, j: _get(t, "/api/jobs/1_0"), 400),
    Case("job by id 2^63-1", lambda t, j: _get(t, "/api/jobs/9223372036854775807"), 422),
    # --- framing (Go's net/http) --------------------------------------------------------
    # A good body whose length is written "1_97" (Python's int() reads 197).
    Case("Content-Length with an underscore", lambda t, j: _framed(
        t, f"Content-Length: {_underscored(len(_good(j)))}\r\n", _good(j)), 400),
    Case("Content-Length +N", lambda t, j: _framed(
        t, f"Content-Length: +{len(_good(j))}\r\n", _good(j)), 400),
    Case("Content-Length -1", lambda t, j: _framed(t, "Content-Length: -1\r\n", b""), 400),
    Case("two different Content-Lengths", lambda t, j: _framed(
        t, "Content-Length: 2\r\nContent-Length: 3\r\n", b"{}"), 400),
    Case("Transfer-Encoding gzip", lambda t, j: _framed(
        t, "Transfer-Encoding: gzip\r\n", b""), 501),
    Case("chunk size -1", lambda t, j: _chunked(t, b"-1", b"abc"), 400),
    Case("chunk size -1 without a token", lambda t, j: _chunked(t, b"-1", b"abc", False), 401),
    Case("chunk size 0x2", lambda t, j: _chunked(t, b"0x2"), 400),
    Case("chunk size +2", lambda t, j: _chunked(t, b"+2"), 400),
    Case("chunk size of 17 hex digits", lambda t, j: _chunked(t, b"0" * 16 + b"2"), 400),
    Case("chunked good start", lambda t, j: _framed(
        t, "Transfer-Encoding: chunked\r\n",
        f"{len(_good(j)):x}\r\n".encode() + _good(j) + b"\r\n0\r\n\r\n"), 201),
    Case("chunk extension", lambda t, j: _framed(
        t, "Transfer-Encoding: chunked\r\n",
        f"{len(_good(j)):x};a=b\r\n".encode() + _good(j) + b"\r\n0\r\n\r\n"), 201),
    Case("HTTP/1.1 without Host", lambda t, j: (
        f"GET /api/clusters/ HTTP/1.1\r\nX-Auth-Token: {t.token}\r\nConnection: close\r\n"
        "\r\n").encode(), 400),
    Case("header line without a colon", lambda t, j: (
        f"GET /api/clusters/ HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {t.token}\r\nfoo\r\n"
        "Connection: close\r\n\r\n").encode(), 400),
    # --- tokens (golang-jwt v5; 401 before anything else) --------------------------------
    Case("token exp NaN", lambda t, j: _get(
        t, "/api/clusters/", _token(t, exp=RawJSON("NaN"))), 401),
    Case("token exp 1e400", lambda t, j: _get(
        t, "/api/clusters/", _token(t, exp=RawJSON("1e400"))), 401),
    Case("token nbf 1e400", lambda t, j: _get(
        t, "/api/clusters/", _token(t, nbf=RawJSON("1e400"))), 401),
    Case("token exp 1e300 (int64 overflow: expired)", lambda t, j: _get(
        t, "/api/clusters/", _token(t, exp=RawJSON("1e300"))), 401),
    Case("token exp 9.2233720e18 (time wraps: expired)", lambda t, j: _get(
        t, "/api/clusters/", _token(t, exp=RawJSON("9.2233720e18"))), 401),
    Case("token exp 9.2e18 (valid)", lambda t, j: _get(
        t, "/api/clusters/", _token(t, exp=RawJSON("9.2e18"))), 200),
    Case("token nbf 1e300 (int64 overflow: valid)", lambda t, j: _get(
        t, "/api/clusters/", _token(t, nbf=RawJSON("1e300"))), 200),
    Case("token nbf 9.2e18 (not valid yet)", lambda t, j: _get(
        t, "/api/clusters/", _token(t, nbf=RawJSON("9.2e18"))), 401),
    Case("token exp as a string", lambda t, j: _get(
        t, "/api/clusters/", _token(t, exp="9999999999")), 401),
    Case("token with a 5,000-digit claim", lambda t, j: _get(
        t, "/api/clusters/", _token(t, x=RawJSON("9" * 5000))), 401),
    Case("token header nested beyond 10000", lambda t, j: _get(
        t, "/api/clusters/",
        _token(t, b'{"alg":"EdDSA","x":' + b"[" * 10_000 + b"]" * 10_000 + b"}")), 401),
    Case("token header nested 9000, good signature", lambda t, j: _get(
        t, "/api/clusters/",
        _token(t, b'{"alg":"EdDSA","x":' + b"[" * 9000 + b"]" * 9000 + b"}")), 200),
    Case("token claims nested 9000, good signature", lambda t, j: _get(
        t, "/api/clusters/", _token(t, x=RawJSON("[" * 9000 + "]" * 9000))), 200),
    Case("unsigned token with a deep header", lambda t, j: _get(
        t, "/api/clusters/",
        b64url(b'{"alg":"EdDSA","x":' + b"[" * 10_000 + b"]" * 10_000 + b"}")
        + "." + b64url(b"{}") + ".AAAA"), 401),
)
