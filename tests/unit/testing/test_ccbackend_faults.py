"""Each fault mode, and what a client sees."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from cc_slurm_adapter.testing.ccbackend import StandIn

from .conftest import err, minimal_start

START = "/api/jobs/start_job/"


def test_down_refuses_connections(standin: StandIn, client: httpx.Client) -> None:
    standin.set_fault("down")
    with pytest.raises(httpx.ConnectError):
        client.post(START, json=minimal_start())
    standin.clear_fault()
    assert client.post(START, json=minimal_start()).status_code == 201
    assert len(standin.jobs()) == 1


def test_down_for_a_while_comes_back(standin: StandIn) -> None:
    standin.set_fault("down", seconds=0.3)
    with httpx.Client(base_url=standin.url, headers=standin.headers()) as client:
        with pytest.raises(httpx.ConnectError):
            client.get("/api/jobs/")
        deadline = time.monotonic() + 5
        while True:
            try:
                assert client.get("/api/jobs/").status_code == 200
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.05)


def test_delay_makes_client_time_out(standin: StandIn) -> None:
    standin.set_fault("delay", seconds=0.5)
    with httpx.Client(base_url=standin.url, headers=standin.headers(), timeout=0.1) as c, \
            pytest.raises(httpx.ReadTimeout):
        c.post(START, json=minimal_start())
    with httpx.Client(base_url=standin.url, headers=standin.headers(), timeout=5) as c:
        t0 = time.monotonic()
        resp = c.post(START, json=minimal_start(jobId=101))
        assert resp.status_code == 201 and time.monotonic() - t0 >= 0.45
    # The timed-out request was still processed: the job exists.
    assert {row.job_id for row in standin.jobs()} == {100, 101}


@pytest.mark.parametrize("status", [500, 502, 503])
def test_error_status_is_not_processed(standin: StandIn, client: httpx.Client,
                                       status: int) -> None:
    standin.set_fault("error", status=status)
    resp = client.post(START, json=minimal_start())
    assert resp.status_code == status
    if status == 500:
        assert resp.content == err("Internal Server Error", "injected fault")
    else:
        assert resp.headers["content-type"].startswith("text/plain")
    assert standin.jobs() == []
    assert standin.audit()[-1].outcome == "fault:error"


def test_error_rate_hits_a_share(standin: StandIn, client: httpx.Client) -> None:
    standin.set_fault("error", status=503, rate=0.5, seed=7)
    codes = [client.post(START, json=minimal_start(jobId=i)).status_code for i in range(60)]
    assert 10 < codes.count(503) < 50 and codes.count(201) == 60 - codes.count(503)
    assert len(standin.jobs()) == codes.count(201)


def test_error_count_limits_hits(standin: StandIn, client: httpx.Client) -> None:
    standin.set_fault("error", status=502, count=2)
    codes = [client.post(START, json=minimal_start(jobId=i)).status_code for i in range(4)]
    assert codes == [502, 502, 201, 201]


def test_drop_after_store(standin: StandIn, client: httpx.Client) -> None:
    standin.set_fault("drop", count=1, paths=[START])
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(START, json=minimal_start())
    assert [row.job_id for row in standin.jobs()] == [100]  # stored anyway
    # The client retries: the server now says "already exists".
    resp = client.post(START, json=minimal_start())
    assert resp.status_code == 422
    assert standin.audit()[-2].outcome == "fault:drop(201)"


def test_expired_token_fault(standin: StandIn, client: httpx.Client) -> None:
    standin.set_fault("expired")
    resp = client.post(START, json=minimal_start())
    assert resp.status_code == 401
    assert resp.content == err("Unauthorized", "token has invalid claims: token is expired")
    assert standin.jobs() == []


def test_fault_paths_filter(standin: StandIn, client: httpx.Client) -> None:
    standin.set_fault("error", status=503, paths=["/api/jobs/stop_job/"])
    assert client.post(START, json=minimal_start()).status_code == 201
    resp = client.post("/api/jobs/stop_job/", json={"jobId": 100, "stopTime": 1_800_000_000})
    assert resp.status_code == 503


def test_control_endpoint_over_http(standin: StandIn, client: httpx.Client) -> None:
    resp = client.post("/_standin/faults", json={"mode": "error", "status": 503})
    assert resp.status_code == 200 and resp.json()["mode"] == "error"
    assert client.post(START, json=minimal_start()).status_code == 503
    assert client.post("/_standin/faults", json={"mode": "bogus"}).status_code == 400
    client.post("/_standin/faults", json={"mode": "none"})
    assert client.post(START, json=minimal_start()).status_code == 201
    audit: list[dict[str, Any]] = client.get("/_standin/audit").json()["entries"]
    assert [e["status"] for e in audit] == [503, 201]
    assert "token" not in str(audit).lower()  # tokens are never recorded
