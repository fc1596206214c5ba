"""The cc-backend client against the stand-in (every profile, every status row, faults)
and against mock transports (headers, odd bodies, concurrency), plus the pure table and
the backoff helper.

Expected status codes and outcomes come from cc-backend-contract.md (§4.2, §5.2, §5.3,
§6, §12.1) and from the real v1.5.4 server (README of ../shared/cc-backend), not from
the code under test.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import ipaddress
import json
import logging
import ssl
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import cc_slurm_adapter.ccbackend.client as client_module
from cc_slurm_adapter.ccbackend import (
    BODY_LIMIT,
    START_TABLE,
    STOP_TABLES,
    Backoff,
    CCBackendClient,
    Check,
    Outcome,
    OutcomeKind,
    classify,
    outcome_of_error,
)
from cc_slurm_adapter.errors import (
    CCBackendStatusError,
    CCBackendUnavailable,
    ConfigError,
)
from cc_slurm_adapter.profiles import PROFILES
from cc_slurm_adapter.testing.ccbackend import StandIn
from cc_slurm_adapter.testing.ccbackend.clusters import default_cluster_files
from cc_slurm_adapter.topology import Topology

DONE, NEEDS_START, REJECTED, AUTH, RETRY = (
    OutcomeKind.DONE, OutcomeKind.NEEDS_START, OutcomeKind.REJECTED, OutcomeKind.AUTH,
    OutcomeKind.RETRY)
T0 = 1_700_000_000
ALL_PROFILES = ["v1.5", "v1.4", "v1.3"]


def start_body(job_id: int = 100, **over: Any) -> dict[str, Any]:
    """The smallest start body every profile accepts (contract §4.1 example)."""
    body: dict[str, Any] = {
        "jobId": job_id, "cluster": "testcluster", "user": "alice", "project": "p1",
        "startTime": T0, "numNodes": 1, "resources": [{"hostname": "node1"}]}
    body.update(over)
    return body


def stop_body(job_id: int = 100, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"jobId": job_id, "cluster": "testcluster", "startTime": T0,
                            "stopTime": T0 + 60, "jobState": "completed"}
    body.update(over)
    return body


@pytest.fixture
def make_standin() -> Iterator[Callable[..., StandIn]]:
    started: list[StandIn] = []

    def factory(profile: str = "v1.5", **kwargs: Any) -> StandIn:
        kwargs.setdefault("cluster_files", default_cluster_files())
        kwargs.setdefault("commit_interval", 0)  # no job cache unless a test asks for it
        standin = StandIn(profile=profile, **kwargs).start()
        started.append(standin)
        return standin

    yield factory
    for standin in started:
        standin.stop()


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., CCBackendClient]]:
    made: list[CCBackendClient] = []

    def factory(standin: StandIn | None = None, *, url: str = "", token: str = "",
                **kwargs: Any) -> CCBackendClient:
        if standin is not None:
            url = url or standin.url
            token = token or standin.token
            kwargs.setdefault("profile", standin.profile)
        kwargs.setdefault("timeout", 5)
        cc = CCBackendClient(url, token, **kwargs)
        made.append(cc)
        return cc

    yield factory
    for cc in made:
        await cc.aclose()


# --- the pure table ---------------------------------------------------------------------

# (op, profile, status) -> rule, straight from the contract's tables.
CONTRACT_ROWS: list[tuple[str, str, int, OutcomeKind | Check]] = [
    *[("start", p, s, DONE) for p in ALL_PROFILES for s in (200, 201)],
    *[("start", p, 422, DONE) for p in ALL_PROFILES],          # §12.1 already known
    *[("start", p, 400, REJECTED) for p in ALL_PROFILES],      # §12.1 permanent
    *[("start", p, s, AUTH) for p in ALL_PROFILES for s in (401, 403)],
    *[("start", p, s, RETRY) for p in ALL_PROFILES for s in (500, 502, 503, 504)],
    ("stop", "v1.5", 200, DONE),
    ("stop", "v1.5", 404, NEEDS_START),                        # §5.2 not found
    ("stop", "v1.5", 422, DONE),                               # §5.2 already stopped
    ("stop", "v1.5", 400, REJECTED),
    ("stop", "v1.4", 200, DONE),
    ("stop", "v1.4", 422, Check.CHECK_FOUND),                  # §5.3 both share 422
    ("stop", "v1.4", 400, REJECTED),
    ("stop", "v1.3", 200, DONE),
    ("stop", "v1.3", 422, Check.CHECK_FOUND),                  # §5.3 not found
    ("stop", "v1.3", 400, Check.CHECK_STOPPED),                # §5.3 combined 400
    *[("stop", p, s, AUTH) for p in ALL_PROFILES for s in (401, 403)],
    *[("stop", p, s, RETRY) for p in ALL_PROFILES for s in (500, 502, 503)],
    *[(op, p, s, RETRY) for op in ("start", "stop") for p in ALL_PROFILES
      for s in (301, 405, 429)],
]


@pytest.mark.parametrize(("op", "profile", "status", "rule"), CONTRACT_ROWS)
def test_table_row(op: str, profile: str, status: int, rule: OutcomeKind | Check) -> None:
    assert classify(op, profile, status) == rule  # type: ignore[arg-type]


def test_table_agrees_with_the_profiles() -> None:
    # The stop "not found" status of each profile must lead to a start, directly or
    # after the look-up.
    for name, profile in PROFILES.items():
        rule = STOP_TABLES[name][profile.stop.not_found_status]
        assert rule in (NEEDS_START, Check.CHECK_FOUND), name
    assert set(STOP_TABLES) == set(PROFILES)
    assert START_TABLE[422] is DONE


def test_route_missing_is_not_needs_start() -> None:
    # v1.5 404 for an unknown /api/ route (§2.4): the route is gone, the job is not.
    body = '{"status":"Resource not found","error":"the requested endpoint does not exist"}'
    assert classify("stop", "v1.5", 404, body) is RETRY
    assert classify("stop", "v1.5", 404,
                    '{"status":"Not Found","error":"finding job failed: sql: no rows in '
                    'result set"}') is NEEDS_START


def test_db_check_500_is_rejected_but_job_cache_500_is_retry() -> None:
    check = ('{"status":"Internal Server Error","error":"insert into database failed: '
             'CHECK constraint failed: shared IN (...)"}')
    cache = ('{"status":"Internal Server Error","error":"insert into database failed: '
             'UNIQUE constraint failed: job_cache.job_id, job_cache.cluster, '
             'job_cache.start_time"}')
    assert classify("start", "v1.5", 500, check) is REJECTED
    assert classify("start", "v1.5", 500, cache) is RETRY


# --- backoff ----------------------------------------------------------------------------

def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    b = Backoff(base=0.5, cap=10.0)
    assert [b.ceiling(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert b.ceiling(100_000) == 10.0


def test_backoff_full_jitter_uses_the_injected_source() -> None:
    b = Backoff(base=1.0, cap=60.0)
    assert b.delay(3, rand=lambda: 0.0) == 0.0
    assert b.delay(3, rand=lambda: 0.5) == 4.0
    assert b.delay(10, rand=lambda: 0.999) == pytest.approx(59.94)
    import random
    rng = random.Random(42)
    delays = [b.delay(4, rng.random) for _ in range(1000)]
    assert all(0.0 <= d <= 16.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 900  # jittered, not lockstep


def test_backoff_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        Backoff(base=0)
    with pytest.raises(ValueError):
        Backoff(base=2, cap=1)
    with pytest.raises(ValueError):
        Backoff().ceiling(-1)


# --- every status row against the stand-in, per profile ---------------------------------

# stop of an already stopped job and of an unknown job: (status the server sends) per
# profile, from §1 / §5.3.
STOP_AGAIN_STATUS = {"v1.5": 422, "v1.4": 422, "v1.3": 400}
STOP_UNKNOWN_STATUS = {"v1.5": 404, "v1.4": 422, "v1.3": 422}
ROLE_STATUS = {"v1.5": 401, "v1.4": 401, "v1.3": 403}  # §3.3 user-only token


@pytest.mark.parametrize("profile", ALL_PROFILES)
async def test_start_rows(profile: str, make_standin: Callable[..., StandIn],
                          make_client: Callable[..., CCBackendClient]) -> None:
    standin = make_standin(profile)
    cc = make_client(standin)
    first = await cc.start_job(start_body())
    assert (first.kind, first.status) == (DONE, 201)
    again = await cc.start_job(start_body())
    assert (again.kind, again.status) == (DONE, 422)
    assert "already exists" in again.detail
    bad = await cc.start_job(start_body(101, cluster="nosuch"))
    assert (bad.kind, bad.status) == (REJECTED, 400)
    assert "no such cluster: nosuch" in bad.body and "no such cluster" in bad.detail
    assert len(standin.jobs()) == 1


@pytest.mark.parametrize("profile", ALL_PROFILES)
async def test_stop_rows(profile: str, make_standin: Callable[..., StandIn],
                         make_client: Callable[..., CCBackendClient]) -> None:
    standin = make_standin(profile)
    cc = make_client(standin)
    assert (await cc.start_job(start_body())).done
    stop = await cc.stop_job(stop_body())
    assert (stop.kind, stop.status) == (DONE, 200)
    twice = await cc.stop_job(stop_body())
    assert (twice.kind, twice.status) == (DONE, STOP_AGAIN_STATUS[profile])
    unknown = await cc.stop_job(stop_body(555))
    assert (unknown.kind, unknown.status) == (NEEDS_START, STOP_UNKNOWN_STATUS[profile])
    # The caller then sends the start and the stop again: both done, one job.
    assert (await cc.start_job(start_body(555))).done
    assert (await cc.stop_job(stop_body(555))).status == 200
    assert sorted(r.job_id for r in standin.jobs()) == [100, 555]
    assert all(r.job_state == "completed" for r in standin.jobs())


@pytest.mark.parametrize("profile", ALL_PROFILES)
async def test_stop_rejections(profile: str, make_standin: Callable[..., StandIn],
                               make_client: Callable[..., CCBackendClient]) -> None:
    standin = make_standin(profile)
    cc = make_client(standin)
    assert (await cc.start_job(start_body())).done
    # 'requeued' is no valid stop state in any release (§5.1).
    bad_state = await cc.stop_job(stop_body(jobState="requeued"))
    assert (bad_state.kind, bad_state.status) == (REJECTED, 400)
    too_early = await cc.stop_job(stop_body(stopTime=T0 - 10))  # §5.2 step 6
    assert (too_early.kind, too_early.status) == (REJECTED, 400)
    assert [r.job_state for r in standin.jobs()] == ["running"]


@pytest.mark.parametrize("profile", ALL_PROFILES)
async def test_auth_rows(profile: str, make_standin: Callable[..., StandIn],
                         make_client: Callable[..., CCBackendClient]) -> None:
    standin = make_standin(profile)
    user_only = make_client(standin, token=standin.make_token(roles=("user",)))
    out = await user_only.start_job(start_body())
    assert (out.kind, out.status) == (AUTH, ROLE_STATUS[profile])
    assert out.retry_later and user_only.auth_problem == out
    garbage = make_client(standin, token="not-a-jwt")
    out = await garbage.stop_job(stop_body())
    assert (out.kind, out.status) == (AUTH, 401)
    assert standin.jobs() == []


async def test_v13_v14_stop_without_start_time_cannot_be_read(
        make_standin: Callable[..., StandIn],
        make_client: Callable[..., CCBackendClient]) -> None:
    cc = make_client(make_standin("v1.4"))
    body = stop_body(777)
    del body["startTime"]
    out = await cc.stop_job(body)
    assert (out.kind, out.status) == (REJECTED, 422)
    assert "startTime" in out.detail


async def test_v15_db_check_500_is_rejected(make_standin: Callable[..., StandIn],
                                            make_client: Callable[..., CCBackendClient]) -> None:
    cc = make_client(make_standin("v1.5"))
    out = await cc.start_job(start_body(shared="yes"))  # §4.1: database CHECK → 500
    assert (out.kind, out.status) == (REJECTED, 500)


async def test_v15_job_cache_500_until_commit_then_422(
        make_standin: Callable[..., StandIn],
        make_client: Callable[..., CCBackendClient]) -> None:
    standin = make_standin("v1.5", commit_interval=3600)
    cc = make_client(standin)
    assert (await cc.start_job(start_body())).status == 201
    resent = await cc.start_job(start_body())
    assert (resent.kind, resent.status) == (RETRY, 500)
    assert "job cache" in resent.detail and "UNIQUE constraint failed" in resent.body
    standin.commit_cache()
    after = await cc.start_job(start_body())
    assert (after.kind, after.status) == (DONE, 422)
    assert len(standin.jobs()) == 1


async def test_v15_stop_finds_a_cached_job(make_standin: Callable[..., StandIn],
                                           make_client: Callable[..., CCBackendClient]) -> None:
    standin = make_standin("v1.5", commit_interval=3600)
    cc = make_client(standin)
    assert (await cc.start_job(start_body())).done
    out = await cc.stop_job(stop_body())  # §5.2: job_cache is searched first
    assert (out.kind, out.status) == (DONE, 200)


async def test_nats_mode_route_missing_keeps_the_job(
        make_standin: Callable[..., StandIn],
        make_client: Callable[..., CCBackendClient]) -> None:
    cc = make_client(make_standin("v1.5", nats_mode=True))
    start = await cc.start_job(start_body())
    stop = await cc.stop_job(stop_body())
    assert (start.kind, start.status) == (RETRY, 404)
    assert (stop.kind, stop.status) == (RETRY, 404)
    assert "route not mounted" in stop.detail


# --- queries ----------------------------------------------------------------------------

async def test_get_clusters_feeds_topology(make_standin: Callable[..., StandIn],
                                           make_client: Callable[..., CCBackendClient]) -> None:
    cc = make_client(make_standin("v1.5"))
    clusters = await cc.get_clusters()
    assert [c["name"] for c in clusters] == ["testcluster"]
    topo = Topology.from_json(clusters)
    sub = topo.for_host("testcluster", "node1")
    assert sub is not None and sub.name == "main"


@pytest.mark.parametrize("profile", ALL_PROFILES)
async def test_running_jobs_pages(profile: str, make_standin: Callable[..., StandIn],
                                  make_client: Callable[..., CCBackendClient]) -> None:
    standin = make_standin(profile)
    cc = make_client(standin)
    for i in range(8):
        assert (await cc.start_job(start_body(200 + i, startTime=T0 + i))).done
    assert (await cc.stop_job(stop_body(207, startTime=T0 + 7))).done
    before = len(standin.audit())
    jobs = [j async for j in cc.running_jobs("testcluster", page_size=3)]
    assert sorted(j["jobId"] for j in jobs) == list(range(200, 207))
    gets = [e for e in standin.audit()[before:] if e.method == "GET"]
    assert len(gets) == 3  # 3 + 3 + 1: the short page ends it (§6)
    assert [j async for j in cc.running_jobs("othercluster", page_size=3)] == []


async def test_running_jobs_exact_multiple_reads_one_empty_page(
        make_standin: Callable[..., StandIn],
        make_client: Callable[..., CCBackendClient]) -> None:
    standin = make_standin("v1.5")
    cc = make_client(standin)
    for i in range(4):
        assert (await cc.start_job(start_body(300 + i, startTime=T0 + i))).done
    before = len(standin.audit())
    assert len([j async for j in cc.running_jobs("testcluster", page_size=2)]) == 4
    assert len([e for e in standin.audit()[before:] if e.method == "GET"]) == 3


async def test_get_job(make_standin: Callable[..., StandIn],
                       make_client: Callable[..., CCBackendClient]) -> None:
    cc = make_client(make_standin("v1.4"))
    assert (await cc.start_job(start_body(400))).done
    assert (await cc.start_job(start_body(401))).done
    job = await cc.get_job(401, "testcluster", T0)
    assert job is not None and job["jobId"] == 401 and job["jobState"] == "running"
    assert await cc.get_job(402, "testcluster", T0) is None
    assert await cc.get_job(401, "testcluster", T0 + 1) is None


# --- faults -----------------------------------------------------------------------------

async def test_down_is_retry(make_standin: Callable[..., StandIn],
                             make_client: Callable[..., CCBackendClient]) -> None:
    standin = make_standin("v1.5")
    cc = make_client(standin)
    standin.set_fault("down")
    out = await cc.start_job(start_body())
    assert (out.kind, out.status) == (RETRY, None)
    assert "cannot connect" in out.detail
    with pytest.raises(CCBackendUnavailable) as info:
        await cc.get_clusters()
    assert outcome_of_error(info.value) is RETRY
    standin.clear_fault()
    assert (await cc.start_job(start_body())).status == 201


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_retry(status: int, make_standin: Callable[..., StandIn],
                            make_client: Callable[..., CCBackendClient]) -> None:
    standin = make_standin("v1.5")
    cc = make_client(standin)
    standin.set_fault("error", status=status)
    out = await cc.start_job(start_body())
    assert (out.kind, out.status) == (RETRY, status)
    with pytest.raises(CCBackendStatusError) as info:
        await cc.get_clusters()
    assert info.value.status == status and outcome_of_error(info.value) is RETRY
    assert standin.jobs() == []


async def test_slow_beyond_timeout_is_retry_and_the_resend_is_no_duplicate(
        make_standin: Callable[..., StandIn],
        make_client: Callable[..., CCBackendClient]) -> None:
    standin = make_standin("v1.5")
    cc = make_client(standin, timeout=0.3)
    standin.set_fault("delay", seconds=1.5)
    out = await cc.start_job(start_body())
    assert (out.kind, out.status) == (RETRY, None)
    assert "no answer within 0.3 s" in out.detail
    standin.clear_fault()
    await asyncio.sleep(1.3)  # the stand-in still processed the first request
    again = await cc.start_job(start_body())
    assert (again.kind, again.status) == (DONE, 422)
    report = standin.check([{"jobId": 100, "cluster": "testcluster", "startTime": T0}])
    assert report.duplicates == [] and report.lost == []


@pytest.mark.parametrize("profile", ALL_PROFILES)
async def test_dropped_after_commit_resend_is_done_without_duplicate(
        profile: str, make_standin: Callable[..., StandIn],
        make_client: Callable[..., CCBackendClient]) -> None:
    standin = make_standin(profile)
    cc = make_client(standin)
    standin.set_fault("drop", count=1)
    out = await cc.start_job(start_body())
    assert (out.kind, out.status) == (RETRY, None)
    assert "dropped" in out.detail or "network" in out.detail
    again = await cc.start_job(start_body())
    assert (again.kind, again.status) == (DONE, 422)
    standin.set_fault("drop", count=1)
    assert (await cc.stop_job(stop_body())).kind is RETRY
    resent = await cc.stop_job(stop_body())
    assert (resent.kind, resent.status) == (DONE, STOP_AGAIN_STATUS[profile])
    report = standin.check([{"jobId": 100, "cluster": "testcluster", "startTime": T0,
                             "stopped": True}])
    assert report.duplicates == [] and report.lost == [] and report.never_stopped == []


async def test_expired_token_is_auth(make_standin: Callable[..., StandIn],
                                     make_client: Callable[..., CCBackendClient]) -> None:
    standin = make_standin("v1.5")
    cc = make_client(standin)
    standin.set_fault("expired")
    out = await cc.start_job(start_body())
    assert (out.kind, out.status) == (AUTH, 401)
    assert out.detail == "token has invalid claims: token is expired"
    with pytest.raises(CCBackendStatusError) as info:
        await cc.get_clusters()
    assert outcome_of_error(info.value) is AUTH
    standin.clear_fault()
    assert (await cc.start_job(start_body())).done
    assert cc.auth_problem is None


async def test_auth_failure_logged_loudly_once_per_distinct_failure(
        make_standin: Callable[..., StandIn], make_client: Callable[..., CCBackendClient],
        caplog: pytest.LogCaptureFixture) -> None:
    standin = make_standin("v1.5")
    cc = make_client(standin)
    caplog.set_level(logging.DEBUG)

    def errors() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.levelno >= logging.ERROR and r.name.startswith("cc_slurm_adapter")]

    standin.set_fault("expired")
    for i in range(3):
        assert (await cc.start_job(start_body(i))).kind is AUTH
    assert len(errors()) == 1 and "token is expired" in errors()[0]
    wrong_role = make_client(standin, token=standin.make_token(roles=("user",)))
    standin.clear_fault()
    for i in range(2):
        assert (await wrong_role.start_job(start_body(i))).kind is AUTH
    assert len(errors()) == 2
    # After a success the same failure is news again.
    assert (await cc.start_job(start_body(9))).done
    standin.set_fault("expired")
    assert (await cc.start_job(start_body(10))).kind is AUTH
    assert len(errors()) == 3


# --- secrets ----------------------------------------------------------------------------

async def test_jwt_never_logged(make_standin: Callable[..., StandIn],
                                make_client: Callable[..., CCBackendClient],
                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(1)  # everything, httpx and httpcore included
    for profile in ("v1.5", "v1.4"):
        standin = make_standin(profile)
        cc = make_client(standin)
        outcomes = [await cc.start_job(start_body()), await cc.start_job(start_body()),
                    await cc.stop_job(stop_body()), await cc.stop_job(stop_body()),
                    await cc.stop_job(stop_body(5))]
        _ = [j async for j in cc.running_jobs("testcluster", page_size=1)]
        await cc.get_clusters()
        standin.set_fault("expired")
        outcomes.append(await cc.start_job(start_body(6)))
        standin.set_fault("drop")
        outcomes.append(await cc.start_job(start_body(7)))
        standin.set_fault("down")
        outcomes.append(await cc.start_job(start_body(8)))
        with pytest.raises(CCBackendUnavailable) as info:
            await cc.get_clusters()
        token = standin.token
        texts = [caplog.text, repr(cc), str(info.value), *map(str, outcomes),
                 *(repr(o) for o in outcomes)]
        assert all(token not in t for t in texts)
        assert all(token[-20:] not in t for t in texts)
    assert "start_job" in caplog.text and "-> 201" in caplog.text  # the trace lines exist


async def test_jwt_echoed_by_a_proxy_is_scrubbed() -> None:
    secret = "eyJhbGciOiJFZERTQSJ9.secret-part.signature"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, text=f"bad request, got {request.headers['authorization']}")

    cc = CCBackendClient("http://cc.example", secret, transport=httpx.MockTransport(handler))
    out = await cc.start_job(start_body())
    await cc.aclose()
    assert out.kind is REJECTED
    assert secret not in out.body and secret not in out.detail and "***" in out.body


# --- the wire: headers, bodies, concurrency (mock transports) ---------------------------

async def test_headers_and_paths() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/clusters/":
            return httpx.Response(200, json={"clusters": []})
        return httpx.Response(201, json={"msg": "success"})

    cc = CCBackendClient("https://cc.example:8443/", "tok.en.x",
                         transport=httpx.MockTransport(handler))
    await cc.start_job(start_body())
    await cc.stop_job(stop_body())
    await cc.get_clusters()
    await cc.aclose()
    assert [r.url.path for r in seen] == ["/api/jobs/start_job/", "/api/jobs/stop_job/",
                                          "/api/clusters/"]  # §2.2 trailing slashes
    assert [r.method for r in seen] == ["POST", "POST", "GET"]
    for r in seen:
        assert r.headers["authorization"] == "Bearer tok.en.x"  # §3.2, exact prefix
        assert r.headers["user-agent"].startswith("cc-slurm-adapter/")
    assert json.loads(seen[0].content) == start_body()
    assert seen[0].headers["content-type"] == "application/json"


async def test_running_jobs_query_keys() -> None:
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json={"jobs": [], "items": 5, "page": 1})

    cc = CCBackendClient("http://cc.example", "t0k", transport=httpx.MockTransport(handler))
    assert [j async for j in cc.running_jobs("fritz", page_size=5)] == []
    await cc.aclose()
    assert dict(seen[0].params) == {"state": "running", "cluster": "fritz", "page": "1",
                                    "items-per-page": "5"}  # §6; no with-metadata


async def test_a_server_ignoring_the_page_does_not_loop_forever() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        jobs = [{"jobId": i, "cluster": "c", "startTime": T0} for i in range(2)]
        return httpx.Response(200, json={"jobs": jobs, "items": 2, "page": 1})

    cc = CCBackendClient("http://cc.example", "t0k", transport=httpx.MockTransport(handler))
    jobs = [j async for j in cc.running_jobs("c", page_size=2)]
    await cc.aclose()
    assert len(jobs) == 2 and calls == 2


@pytest.mark.parametrize(("status", "body", "kind", "detail"), [
    (400, "x" * 1_000_000, REJECTED, None),  # oversized: capped, no crash
    (502, "<html><body><h1>502 Bad Gateway</h1></body></html>", RETRY,
     "<html><body><h1>502 Bad Gateway</h1></body></html>"),
    # §2.4: a token without roles gets the JSON error object twice in one body.
    (401, '{"status":"Unauthorized","error":"unauthorized"}'
          '{"status":"Unauthorized","error":"unauthorized"}', AUTH, "unauthorized"),
    (400, "\xff\xfe not utf-8", REJECTED, None),
    (201, "", DONE, ""),
    (301, "", RETRY, ""),
])
async def test_odd_bodies(status: int, body: str, kind: OutcomeKind, detail: str | None) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body.encode("latin-1"))

    cc = CCBackendClient("http://cc.example", "t0k", transport=httpx.MockTransport(handler))
    out = await cc.start_job(start_body())
    await cc.aclose()
    assert (out.kind, out.status) == (kind, status)
    assert len(out.body.encode()) <= BODY_LIMIT * 3  # ≤ 4 kB read; replacement chars
    assert len(out.body) <= BODY_LIMIT and len(out.detail) <= 300
    if detail is not None:
        assert out.detail == detail


async def test_query_answers_that_are_not_json(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([httpx.Response(200, text="<html>login</html>"),
                    httpx.Response(200, json={"no": "clusters"}),
                    httpx.Response(200, content=b"[" + b"1," * 600 + b"1]"),
                    httpx.Response(200, json={"jobs": "nope"})])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers)

    monkeypatch.setattr(client_module, "JSON_LIMIT", 1000)
    cc = CCBackendClient("http://cc.example", "t0k", transport=httpx.MockTransport(handler))
    for _ in range(3):
        with pytest.raises(CCBackendStatusError) as info:
            await cc.get_clusters()
        assert info.value.status == 200 and "\n" not in str(info.value)
    with pytest.raises(CCBackendStatusError):
        _ = [j async for j in cc.running_jobs("c")]
    await cc.aclose()


async def test_unencodable_payload_is_rejected_without_a_request() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(201)

    cc = CCBackendClient("http://cc.example", "t0k", transport=httpx.MockTransport(handler))
    out = await cc.start_job({"jobId": object()})
    await cc.aclose()
    assert out.kind is REJECTED and calls == 0


async def test_in_flight_requests_are_bounded() -> None:
    active = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.005)
        active -= 1
        return httpx.Response(201, json={"msg": "success"})

    cc = CCBackendClient("http://cc.example", "t0k", max_in_flight=4,
                         transport=httpx.MockTransport(handler))
    outs = await asyncio.gather(*(cc.start_job(start_body(i)) for i in range(100)))
    await cc.aclose()
    assert all(o.done for o in outs)
    assert peak == 4


async def test_connections_are_bounded_and_reused() -> None:
    """A bare HTTP/1.1 server that counts TCP connections: 400 requests with 16 in flight
    use at most 16 connections, kept alive."""
    connections = 0
    active = peak = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections, active, peak
        connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                active += 1
                peak = max(peak, active)
                await asyncio.sleep(0.002)
                active -= 1
                body = b'{"msg":"success"}\n'
                writer.write(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                             + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with CCBackendClient(f"http://127.0.0.1:{port}", "t0k", max_in_flight=16) as cc:
            outs = await asyncio.gather(*(cc.start_job(start_body(i)) for i in range(400)))
    finally:
        server.close()
        await server.wait_closed()
    assert all(o.done for o in outs)
    assert 1 <= connections <= 16 and peak == 16


async def test_many_concurrent_against_the_standin(
        make_standin: Callable[..., StandIn],
        make_client: Callable[..., CCBackendClient]) -> None:
    standin = make_standin("v1.5")
    cc = make_client(standin, max_in_flight=8)
    outs = await asyncio.gather(*(cc.start_job(start_body(i)) for i in range(300)))
    assert {(o.kind, o.status) for o in outs} == {(DONE, 201)}
    assert len(standin.jobs()) == 300


def test_constructor_checks() -> None:
    with pytest.raises(ConfigError, match="ccRestUrl"):
        CCBackendClient("cc.example:8080", "t0k")
    with pytest.raises(ConfigError, match="ccRestJwt"):
        CCBackendClient("http://cc.example", "")
    with pytest.raises(ConfigError, match="ccRestCaFile"):
        CCBackendClient("https://cc.example", "t0k", ca_file="/nonexistent/ca.pem")
    with pytest.raises(ConfigError) as info:
        CCBackendClient("ftp://user:pw@cc.example", "t0k")
    assert "pw" not in str(info.value)


def test_repr_hides_the_token_and_url_password() -> None:
    cc = CCBackendClient("http://user:hunter2@cc.example", "sekrit-token-value")
    text = repr(cc)
    assert "sekrit" not in text and "hunter2" not in text and "cc.example" in text
    asyncio.run(cc.aclose())


def test_httpcore_failed_sniffio_import_is_cached() -> None:
    # httpcore imports sniffio for every lock (several per request); when it is not
    # installed the client records that once (see client.py), so it costs no path scan.
    assert "sniffio" in sys.modules


async def test_success_has_no_detail(make_standin: Callable[..., StandIn],
                                     make_client: Callable[..., CCBackendClient]) -> None:
    cc = make_client(make_standin("v1.5"))
    out = await cc.start_job(start_body())
    assert (out.kind, out.status, out.detail) == (DONE, 201, "")
    assert out.body == '{"msg":"success"}\n'  # §4.2 step 8, Go encoder newline


def test_outcome_str() -> None:
    assert str(Outcome(RETRY, None, "cannot connect")) == "retry (no answer: cannot connect)"
    assert str(Outcome(DONE, 201)) == "done (201)"


# --- TLS --------------------------------------------------------------------------------

def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cc-backend test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"clusters":[]}\n'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the refused handshakes are the point of the test


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = _self_signed(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = _QuietServer(("127.0.0.1", 0), _Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_tls_self_signed_refused_by_default(https_server: tuple[str, Path]) -> None:
    url, _ = https_server
    async with CCBackendClient(url, "t0k", timeout=5) as cc:
        out = await cc.start_job(start_body())
        assert (out.kind, out.status) == (RETRY, None)
        assert "certificate verification failed" in out.detail
        assert "ccRestCaFile" in out.detail
        with pytest.raises(CCBackendUnavailable, match="certificate"):
            await cc.get_clusters()


async def test_tls_with_the_ca_file(https_server: tuple[str, Path]) -> None:
    url, cert = https_server
    async with CCBackendClient(url, "t0k", timeout=5, ca_file=str(cert)) as cc:
        assert await cc.get_clusters() == []


def test_tls_context_loads_the_ca_store_only_where_tls_can_happen(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl

    from cc_slurm_adapter.ccbackend.client import tls_context

    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                 "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    plain = tls_context("http", "")
    assert plain.verify_mode == ssl.CERT_REQUIRED and plain.check_hostname
    assert plain.cert_store_stats()["x509_ca"] == 0
    assert tls_context("https", "").verify_mode == ssl.CERT_REQUIRED
    monkeypatch.setenv("HTTPS_PROXY", "https://proxy.example:3128")
    assert tls_context("http", "").verify_mode == ssl.CERT_REQUIRED
