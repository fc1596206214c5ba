"""GET /api/jobs/used_nodes?ts= (contract §7, v1.5 only; swagger
``api.GetUsedNodesAPIResponse``). Shapes and texts as the real v1.5.4 answered them:
``{"usedNodes":{"testcluster":["node1"]}}``, ``{"usedNodes":{}}``, 400 ``missing
required query parameter: ts`` / ``invalid timestamp format: strconv.ParseInt: …``; a
POST falls through to the job-by-id route (400)."""

from __future__ import annotations

from typing import Any

import httpx

from .conftest import minimal_start

T0 = 1_700_000_000


def _start(client: httpx.Client, job_id: int, hosts: list[str], start: int = T0) -> None:
    body = minimal_start(jobId=job_id, startTime=start, numNodes=len(hosts),
                         resources=[{"hostname": h} for h in hosts])
    assert client.post("/api/jobs/start_job/", json=body).status_code == 201


def _used(client: httpx.Client, ts: Any) -> httpx.Response:
    return client.get("/api/jobs/used_nodes", params={"ts": ts})


def test_used_nodes_lists_running_hosts_started_before_ts(client: httpx.Client) -> None:
    _start(client, 1, ["node2", "node1"])
    _start(client, 2, ["node1"], start=T0 + 100)
    _start(client, 3, ["smt1"], start=T0 + 200)
    stop = {"jobId": 3, "cluster": "testcluster", "stopTime": T0 + 300}
    assert client.post("/api/jobs/stop_job/", json=stop).status_code == 200
    resp = _used(client, T0 + 1000)
    assert resp.status_code == 200
    assert resp.content == b'{"usedNodes":{"testcluster":["node1","node2"]}}\n'
    # start_time < ts, strictly
    assert _used(client, T0).json() == {"usedNodes": {}}
    assert _used(client, T0 + 1).json() == {"usedNodes": {"testcluster": ["node1", "node2"]}}


def test_used_nodes_does_not_see_the_job_cache(make_standin: Any) -> None:
    standin = make_standin("v1.5", commit_interval=3600)
    with httpx.Client(base_url=standin.url, headers=standin.headers(), timeout=10) as client:
        _start(client, 5, ["node1"])
        assert _used(client, T0 + 10).json() == {"usedNodes": {}}
        standin.commit_cache()
        assert _used(client, T0 + 10).json() == {"usedNodes": {"testcluster": ["node1"]}}


def test_used_nodes_errors(client: httpx.Client) -> None:
    missing = client.get("/api/jobs/used_nodes")
    assert (missing.status_code, missing.json()["error"]) == (
        400, "missing required query parameter: ts")
    assert client.get("/api/jobs/used_nodes?ts=").status_code == 400
    bad = _used(client, "abc")
    assert (bad.status_code, bad.json()["error"]) == (
        400, 'invalid timestamp format: strconv.ParseInt: parsing "abc": invalid syntax')
    assert _used(client, "99999999999999999999").status_code == 400
    assert _used(client, "+5").status_code == 200
    post = client.post("/api/jobs/used_nodes?ts=5")
    assert post.status_code == 400 and "integer expected in path for id" in post.text
    assert client.get("/api/jobs/used_nodes/?ts=5").status_code == 404


def test_used_nodes_needs_a_token(standin: Any) -> None:
    resp = httpx.get(f"{standin.url}/api/jobs/used_nodes?ts=5")
    assert resp.status_code == 401


def test_used_nodes_is_v15_only(make_standin: Any) -> None:
    standin = make_standin("v1.4")
    resp = httpx.get(f"{standin.url}/api/jobs/used_nodes?ts=5", headers=standin.headers())
    assert resp.status_code != 200
