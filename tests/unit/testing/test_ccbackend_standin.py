"""Examples, the v1.5 job_cache quirk, the checker, persistence and the CLI."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from cc_slurm_adapter.testing.ccbackend import StandIn, StandInProcess
from cc_slurm_adapter.testing.ccbackend.clusters import (
    ClusterRegistry,
    NodeList,
    load_cluster_file,
)

from .conftest import FIXTURES, FRITZ, err, load_fixture, minimal_start

START, STOP = "/api/jobs/start_job/", "/api/jobs/stop_job/"


# --- the official examples ------------------------------------------------------------

def test_fixture_copies_match_shared(shared_dir: Path) -> None:
    examples = shared_dir / "cc-backend-api" / "examples"
    pairs = {"startJobPayload.json": "startJobPayload.json",
             "stopJobPayload.json": "stopJobPayload.json",
             "fritz.cluster.json": "fritz/cluster.json"}
    for local, remote in pairs.items():
        assert (FIXTURES / local).read_bytes() == (examples / remote).read_bytes()
    # every example in shared is covered by a local copy
    found = {p.relative_to(examples).as_posix() for p in examples.rglob("*.json")}
    assert found == set(pairs.values())


def test_examples_v15(make_standin: Any) -> None:
    standin = make_standin("v1.5")
    with httpx.Client(base_url=standin.url, headers=standin.headers()) as client:
        resp = client.post(START, json=load_fixture("startJobPayload.json"))
        assert (resp.status_code, resp.content) == (201, b'{"msg":"success"}\n')
        resp = client.post(STOP, json=load_fixture("stopJobPayload.json"))
    assert resp.status_code == 200
    job = resp.json()
    # The contract's example answer (§8.1), apart from the database id.
    expected = ('{"cluster":"fritz","subCluster":"main","partition":"main","project":"k106eb",'
                '"user":"k106eb10","shared":"none","jobState":"completed","resources":'
                '[{"hostname":"f0726"}],"energyFootprint":null,"footprint":null,'
                '"metaData":null,"concurrentJobs":{"items":null,"count":0},"energy":0,'
                '"walltime":86400,"jobId":123000,"duration":40027,"monitoringStatus":1,'
                '"numHwthreads":72,"numNodes":1,"statistics":null,"id":ID,'
                '"startTime":1649723812}\n').replace("ID", str(job["id"]))
    assert resp.text == expected


@pytest.mark.parametrize("profile", ["v1.4", "v1.3"])
def test_start_example_rejected_by_older_profiles(make_standin: Any, profile: str) -> None:
    standin = make_standin(profile)
    with httpx.Client(base_url=standin.url, headers=standin.headers()) as client:
        resp = client.post(START, json=load_fixture("startJobPayload.json"))
    assert resp.status_code == 400
    assert resp.content == err("Bad Request", 'parsing request body failed: json: unknown '
                                              'field "requestedMemory"')


def test_stop_example_on_v14(make_standin: Any) -> None:
    standin = make_standin("v1.4")
    body = {k: v for k, v in load_fixture("startJobPayload.json").items()
            if k not in ("requestedMemory", "submitTime")}
    with httpx.Client(base_url=standin.url, headers=standin.headers()) as client:
        assert client.post(START, json=body).status_code == 201
        resp = client.post(STOP, json=load_fixture("stopJobPayload.json"))
    assert resp.status_code == 200
    assert resp.json()["startTime"] == "2022-04-12T00:36:52Z"


# --- clusters ---------------------------------------------------------------------------

@pytest.mark.parametrize(("expr", "host", "member"), [
    ("node[1-2]", "node1", True), ("node[1-2]", "node3", False),
    ("node[1-2]", "node01", False), ("f[0101-0188,0201-0288]", "f0150", True),
    ("f[0101-0188,0201-0288]", "f0190", False), ("a01,a02", "a02", True),
    ("cn-00[10-20]", "cn-0015", True), ("*", "anything", True),
])
def test_node_list(expr: str, host: str, member: bool) -> None:
    assert NodeList(expr).contains(host) is member


def test_fritz_subclusters() -> None:
    fritz = load_cluster_file(FRITZ)
    assert [s.name for s in fritz.subclusters] == ["main", "spr1tb", "spr2tb"]
    main = fritz.assign("f0726")
    assert main is not None and main.name == "main"
    assert fritz.assign("x1") is None
    assert ClusterRegistry.default().names() == ["testcluster"]


# --- the v1.5 job_cache quirk (§4.3) ------------------------------------------------------

def test_v15_cache_window(make_standin: Any) -> None:
    standin: StandIn = make_standin("v1.5", commit_interval=120)
    with httpx.Client(base_url=standin.url, headers=standin.headers()) as client:
        assert client.post(START, json=minimal_start()).status_code == 201
        same = client.post(START, json=minimal_start())
        assert same.status_code == 500
        assert same.json()["error"].startswith(
            "insert into database failed: UNIQUE constraint failed: job_cache.")
        # same jobId, another startTime: accepted, two running jobs
        assert client.post(START, json=minimal_start(startTime=1_700_000_100)
                           ).status_code == 201
        running = client.get("/api/jobs/", params={"state": "running"}).json()
        assert running["jobs"] == []  # cached jobs are not visible yet
        assert standin.commit_cache() == 2
        running = client.get("/api/jobs/", params={"state": "running"}).json()
        assert len(running["jobs"]) == 2
        # now the duplicate rule sees them
        assert client.post(START, json=minimal_start()).status_code == 422
    report = standin.check()
    assert [d["jobId"] for d in report.duplicates] == [100]


def test_stop_moves_job_out_of_cache(make_standin: Any) -> None:
    standin: StandIn = make_standin("v1.5", commit_interval=120)
    with httpx.Client(base_url=standin.url, headers=standin.headers()) as client:
        client.post(START, json=minimal_start())
        resp = client.post(STOP, json={"jobId": 100, "stopTime": 1_700_000_050})
    assert resp.status_code == 200 and resp.json()["duration"] == 50
    assert [(r.table, r.job_state) for r in standin.jobs()] == [("job", "completed")]


# --- audit checker --------------------------------------------------------------------------

def test_checker_reports(standin: StandIn, client: httpx.Client) -> None:
    client.post(START, json=minimal_start(jobId=1))
    client.post(START, json=minimal_start(jobId=2))
    client.post(STOP, json={"jobId": 2, "stopTime": 1_700_000_100})
    client.post(START, json=minimal_start(jobId=3, exclusive=1))  # rejected payload
    report = standin.check([
        {"jobId": 1, "cluster": "testcluster"},                    # still running
        {"jobId": 2, "cluster": "testcluster", "startTime": 1_700_000_000},
        {"jobId": 3, "cluster": "testcluster", "stopped": False},  # never arrived
    ])
    assert [x["jobId"] for x in report.lost] == [3]
    assert [x["jobId"] for x in report.never_stopped] == [1]
    assert report.duplicates == []
    assert len(report.rejected) == 1 and "exclusive" in report.rejected[0]["error"]
    assert not report.ok
    over_http = client.post("/_standin/check", json={"expected": None}).json()
    assert over_http["neverStopped"][0]["jobId"] == 1


def test_audit_records_outcomes(standin: StandIn, client: httpx.Client) -> None:
    client.post(START, json=minimal_start())
    client.post(START, json=minimal_start())
    entries = standin.audit()
    assert [(e.status, e.outcome) for e in entries] == [(201, "ok"), (422, "rejected")]
    assert entries[0].job is not None and entries[0].job["jobId"] == 100


# --- subprocess, CLI and persistence ---------------------------------------------------------

def test_subprocess_restart_keeps_jobs_and_key(tmp_path: Path) -> None:
    db = str(tmp_path / "standin.db")
    with StandInProcess(["--db", db, "--commit-interval", "0"]) as proc:
        assert proc.url.startswith("http://127.0.0.1:") and proc.token.count(".") == 2
        with httpx.Client(base_url=proc.url, headers={"X-Auth-Token": proc.token}) as c:
            assert c.post(START, json=minimal_start()).status_code == 201
        token = proc.token
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(timeout=10) == 0
    with StandInProcess(["--db", db]) as proc, \
            httpx.Client(base_url=proc.url, headers={"X-Auth-Token": token}) as c:
        resp = c.post(STOP, json={"jobId": 100, "stopTime": 1_700_000_500})
        assert resp.status_code == 200 and resp.json()["duration"] == 500
        proc.set_fault("error", status=503)
        assert c.get("/api/jobs/").status_code == 503
        assert proc.audit()[-1]["outcome"] == "fault:error"


def test_cli_nats_mode_and_profiles() -> None:
    with StandInProcess(["--nats-mode", "--profile", "v1.5"]) as proc, \
            httpx.Client(base_url=proc.url, headers={"X-Auth-Token": proc.token}) as c:
        resp = c.post(START, json=minimal_start())
        assert resp.status_code == 404
        assert resp.json() == {"status": "Resource not found",
                               "error": "the requested endpoint does not exist"}
        assert c.get("/api/jobs/").status_code == 200
    with pytest.raises(RuntimeError, match="NATS"):
        StandInProcess(["--nats-mode", "--profile", "v1.4"]).start()


def test_cluster_config_option() -> None:
    with StandInProcess(["--cluster-config", str(FRITZ)]) as proc, \
            httpx.Client(base_url=proc.url, headers={"X-Auth-Token": proc.token}) as c:
        clusters = c.get("/api/clusters/").json()["clusters"]
    assert [cl["name"] for cl in clusters] == ["fritz"]
    assert json.loads(FRITZ.read_text()) == clusters[0]
