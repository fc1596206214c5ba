"""A hostile HTTP client against the stand-in: it must answer as cc-backend v1.5.4 does
(the statuses in hostile_cases.py were measured on the real server), never with a
stand-in traceback, and it must not be exhaustible by idle connections."""

from __future__ import annotations

import itertools
import json
import socket
import time
from typing import Any

import pytest

from cc_slurm_adapter.testing.ccbackend import StandIn

from .hostile_cases import CASES, Case, Target, start_body
from .rawhttp import request, send

_ids = itertools.count(700_000)


@pytest.fixture(scope="module")
def hostile_standin() -> Any:
    with StandIn(profile="v1.5", commit_interval=0) as standin:
        yield standin


def _target(standin: StandIn) -> Target:
    assert standin.app is not None
    return Target(standin.url, standin.token, standin.app.keys.seed, "cc-slurm-adapter")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_request_gets_go_status(hostile_standin: StandIn, case: Case) -> None:
    status, body = send(hostile_standin.url, case.build(_target(hostile_standin), next(_ids)))
    assert status == case.status, body[:300]
    assert b"stand-in error" not in body and b"Traceback" not in body
    # The server is still there and still answers.
    ok, _ = request(hostile_standin.url, "GET", "/api/clusters/", token=hostile_standin.token)
    assert ok == 200


def test_go_texts_for_the_worst_bodies(hostile_standin: StandIn) -> None:
    """The texts the real server gave (measured on v1.5.4), where they are short."""
    url, token = hostile_standin.url, hostile_standin.token
    deep = b'{"metaData":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    _, body = request(url, "POST", "/api/jobs/start_job/", deep, token)
    assert json.loads(body)["error"] == ("parsing request body failed: invalid character "
                                         "'[' exceeded max depth")
    _, body = request(url, "GET", "/api/jobs/?page=100000000000000000000", token=token)
    assert json.loads(body)["error"] == ('strconv.Atoi: parsing "100000000000000000000": '
                                         "value out of range")
    _, body = request(url, "GET", "/api/jobs/100000000000000000000000", token=token)
    assert json.loads(body)["error"] == (
        'integer expected in path for id: strconv.ParseInt: parsing '
        '"100000000000000000000000": value out of range')
    chunked = (f"POST /api/jobs/start_job/ HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n"
               "Transfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n").encode()
    status, body = send(url, chunked)
    assert (status, json.loads(body)["error"]) == (
        400, "parsing request body failed: invalid byte in chunk length")


def test_lone_surrogate_in_metadata_is_served_as_replacement_char(
        hostile_standin: StandIn) -> None:
    """Measured on v1.5.4: start 201, later GETs 200 with U+FFFD (no 500)."""
    job_id = next(_ids)
    raw = json.dumps(start_body(job_id)).encode()[:-1] + b',"metaData":{"a":"\\ud800"}}'
    url, token = hostile_standin.url, hostile_standin.token
    assert request(url, "POST", "/api/jobs/start_job/", raw, token)[0] == 201
    status, body = request(url, "GET", "/api/jobs/?with-metadata=true&items-per-page=500",
                           token=token)
    assert status == 200
    jobs = [j for j in json.loads(body)["jobs"] if j["jobId"] == job_id]
    assert jobs[0]["metaData"] == {"a": "\ufffd"}


def test_page_offset_wraps_as_in_go(hostile_standin: StandIn) -> None:
    """items * (page - 1) wraps in int64: page 2^62+1 with 4 items is offset 0
    (measured on v1.5.4: the first page of jobs)."""
    url, token = hostile_standin.url, hostile_standin.token
    assert request(url, "POST", "/api/jobs/start_job/",
                   json.dumps(start_body(next(_ids))).encode(), token)[0] == 201
    status, body = request(url, "GET", "/api/jobs/?page=4611686018427387905&items-per-page=4",
                           token=token)
    assert status == 200 and json.loads(body)["jobs"]


def _wait_closed(sock: socket.socket, limit: float) -> float:
    started = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(1024):
            pass
    except TimeoutError:
        pytest.fail(f"connection still open after {limit} s")
    except ConnectionError:
        pass
    return time.monotonic() - started


@pytest.mark.parametrize("sent", [b"", b"GET /api/clusters/ HTTP/1.1\r\nHost: x\r\n",
                                  b"POST /api/jobs/start_job/ HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Length: 10\r\n\r\n12"],
                         ids=["idle", "half a header", "half a body"])
def test_read_timeout_closes_slow_connections(sent: bytes) -> None:
    """cc-backend closes an idle or half-sent request after its 20 s ReadTimeout
    (measured: idle and half a header closed after 20.0 s); the stand-in does the same
    with its own timeout (short here)."""
    with StandIn(profile="v1.5", read_timeout=0.5) as standin:
        host, port = standin.url.rsplit("//", 1)[1].split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(sent)
            assert _wait_closed(sock, 10) < 5


def test_connection_cap() -> None:
    with StandIn(profile="v1.5", max_connections=4) as standin:
        host, port = standin.url.rsplit("//", 1)[1].split(":")
        held = [socket.create_connection((host, int(port))) for _ in range(4)]
        try:
            time.sleep(0.2)  # let the server accept them
            with socket.create_connection((host, int(port))) as extra:
                assert _wait_closed(extra, 5) < 5  # closed at once, not held
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.2)
        status, _ = request(standin.url, "GET", "/api/clusters/", token=standin.token)
        assert status == 200
