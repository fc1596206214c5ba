"""The stand-in against cc-backend-contract.md: exact status and body per profile.

Each case: a profile, requests that set the scene (each must succeed), then one
request whose status and body are compared byte for byte (or by a check function).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from cc_slurm_adapter.testing.ccbackend import StandIn

from .conftest import err, minimal_start

START, STOP = "/api/jobs/start_job/", "/api/jobs/stop_job/"
OK_START = b'{"msg":"success"}\n'
STOP_OK = {"jobId": 100, "cluster": "testcluster", "startTime": 1_700_000_000,
           "stopTime": 1_700_000_600, "jobState": "completed"}
BAD_REQ, UNAUTH, UNPROC = "Bad Request", "Unauthorized", "Unprocessable Entity"


def start_v14(**over: Any) -> dict[str, Any]:
    return minimal_start(**over)


@dataclass
class Case:
    id: str
    profile: str
    method: str
    path: str
    body: Any
    status: int
    expect: bytes | Callable[[httpx.Response], object] | None
    setup: list[tuple[str, str, Any]] = field(default_factory=list)
    auth: str = "ok"
    raw: bytes | None = None


def unknown_key(profile: str, key: str, value: Any) -> Case:
    return Case(f"{profile}-start-unknown-{key}", profile, "POST", START,
                minimal_start(**{key: value}), 400,
                err(BAD_REQ, f'parsing request body failed: json: unknown field "{key}"'))


def _job_body(check: Callable[[dict[str, Any]], object]) -> Callable[[httpx.Response], None]:
    def inner(resp: httpx.Response) -> None:
        check(resp.json())
    return inner


def _stopped_v15(job: dict[str, Any]) -> None:
    assert job["jobState"] == "completed" and job["duration"] == 600
    assert job["startTime"] == 1_700_000_000 and job["metaData"] is None
    assert job["shared"] == "none" and job["subCluster"] == "main" and "tags" not in job
    assert list(job)[:3] == ["cluster", "subCluster", "project"]


def _stopped_v14(job: dict[str, Any]) -> None:
    assert job["jobState"] == "completed" and job["startTime"] == "2023-11-14T22:13:20Z"
    assert job["exclusive"] == 1 and "shared" not in job


def _double_body(resp: httpx.Response) -> None:
    one = err(UNAUTH, "unauthorized")
    assert resp.content == one + one


CASES: list[Case] = [
    # --- strict decoding: unknown keys per profile (§2.3, §4.1, §1) -------------------
    unknown_key("v1.5", "exclusive", 1),
    unknown_key("v1.5", "state", "running"),
    unknown_key("v1.5", "nodes", "node1"),
    unknown_key("v1.4", "shared", "none"),
    unknown_key("v1.4", "submitTime", 1),
    unknown_key("v1.4", "requestedMemory", 1024),
    unknown_key("v1.3", "energy", 1.0),
    unknown_key("v1.3", "footprint", {}),
    unknown_key("v1.3", "energyFootprint", {}),
    Case("v1.5-start-unknown-resource-key", "v1.5", "POST", START,
         minimal_start(resources=[{"hostname": "node1", "cpus": [0]}]), 400,
         err(BAD_REQ, 'parsing request body failed: json: unknown field "cpus"')),
    Case("v1.5-stop-unknown-state-key", "v1.5", "POST", STOP,
         {"jobId": 100, "state": "completed", "stopTime": 1}, 400,
         err(BAD_REQ, 'parsing request body failed: json: unknown field "state"')),
    Case("v1.4-stop-unknown-key", "v1.4", "POST", STOP,
         {"jobId": 100, "partition": "main", "stopTime": 1}, 400,
         err(BAD_REQ, 'parsing request body failed: json: unknown field "partition"')),
    Case("v1.5-keys-case-insensitive", "v1.5", "POST", START,
         {**{k: v for k, v in minimal_start().items() if k != "jobId"}, "JOBID": 5}, 201,
         OK_START),
    # --- types and syntax ---------------------------------------------------------------
    Case("v1.5-jobid-string", "v1.5", "POST", START, minimal_start(jobId="100"), 400,
         err(BAD_REQ, "parsing request body failed: json: cannot unmarshal string into "
                      "Go struct field Job.jobId of type int64")),
    Case("v1.4-jobid-string", "v1.4", "POST", START, minimal_start(jobId="100"), 400,
         err(BAD_REQ, "parsing request body failed: json: cannot unmarshal string into "
                      "Go struct field JobMeta.jobId of type int64")),
    Case("v1.5-numnodes-fraction", "v1.5", "POST", START, minimal_start(numNodes=1.5), 400,
         err(BAD_REQ, "parsing request body failed: json: cannot unmarshal number 1.5 "
                      "into Go struct field Job.numNodes of type int32")),
    Case("v1.5-numnodes-overflow", "v1.5", "POST", START,
         minimal_start(numNodes=3_000_000_000), 400,
         err(BAD_REQ, "parsing request body failed: json: cannot unmarshal number "
                      "3000000000 into Go struct field Job.numNodes of type int32")),
    Case("v1.5-metadata-not-string", "v1.5", "POST", START,
         minimal_start(metaData={"jobName": 7}), 400,
         err(BAD_REQ, "parsing request body failed: json: cannot unmarshal number into "
                      "Go struct field Job.metaData of type string")),
    Case("v1.5-empty-body", "v1.5", "POST", START, None, 400,
         err(BAD_REQ, "parsing request body failed: EOF"), raw=b""),
    Case("v1.5-null-shared-is-default", "v1.5", "POST", START, minimal_start(shared=None),
         201, OK_START),
    # --- missing required fields, start checks in §4.2 order ----------------------------
    Case("v1.5-missing-cluster", "v1.5", "POST", START,
         {k: v for k, v in minimal_start().items() if k != "cluster"}, 400,
         err(BAD_REQ, "no such cluster: ")),
    Case("v1.5-unknown-cluster", "v1.5", "POST", START, minimal_start(cluster="nope"), 400,
         err(BAD_REQ, "no such cluster: nope")),
    Case("v1.5-unknown-subcluster", "v1.5", "POST", START,
         minimal_start(subCluster="gpu"), 400,
         err(BAD_REQ, "ARCHIVE/CLUSTERCONFIG > already assigned subcluster gpu unkown "
                      "(cluster: testcluster)")),
    Case("v1.5-host-not-in-cluster", "v1.5", "POST", START,
         minimal_start(resources=[{"hostname": "login1"}]), 400,
         err(BAD_REQ, "ARCHIVE/CLUSTERCONFIG > no subcluster found for cluster testcluster "
                      "and host login1")),
    Case("v1.5-missing-resources", "v1.5", "POST", START,
         {k: v for k, v in minimal_start().items() if k != "resources"}, 400,
         err(BAD_REQ, "ARCHIVE/CLUSTERCONFIG > job without any resources/hosts")),
    Case("v1.5-missing-resources-with-subcluster", "v1.5", "POST", START,
         {**{k: v for k, v in minimal_start().items() if k != "resources"},
          "subCluster": "main"}, 400,
         err(BAD_REQ, "'resources' and 'user' should not be empty")),
    Case("v1.5-missing-user", "v1.5", "POST", START,
         {k: v for k, v in minimal_start().items() if k != "user"}, 400,
         err(BAD_REQ, "'resources' and 'user' should not be empty")),
    Case("v1.5-missing-numnodes", "v1.5", "POST", START,
         {k: v for k, v in minimal_start().items() if k != "numNodes"}, 400,
         err(BAD_REQ, "'numNodes', 'numAcc' or 'numHWThreads' invalid")),
    Case("v1.5-negative-numacc", "v1.5", "POST", START, minimal_start(numAcc=-1), 400,
         err(BAD_REQ, "'numNodes', 'numAcc' or 'numHWThreads' invalid")),
    Case("v1.5-resources-ne-numnodes", "v1.5", "POST", START, minimal_start(numNodes=2),
         400, err(BAD_REQ, "len(resources) does not equal numNodes (1 vs 2)")),
    Case("v1.5-project-may-be-empty", "v1.5", "POST", START, minimal_start(project=""),
         201, OK_START),
    Case("v1.5-start-state-ignored", "v1.5", "POST", START,
         minimal_start(jobState="bogus"), 201, OK_START),
    Case("v1.3-start-state-checked", "v1.3", "POST", START,
         minimal_start(jobState="bogus"), 400, None),
    Case("v1.5-bad-shared-is-500", "v1.5", "POST", START, minimal_start(shared="yes"), 500,
         lambda r: r.json()["error"].startswith(
             "insert into database failed: CHECK constraint failed")
         or pytest.fail(r.text)),
    Case("v1.5-smt-2-is-500", "v1.5", "POST", START, minimal_start(smt=2), 500, None),
    Case("v1.4-bad-exclusive-is-500", "v1.4", "POST", START, minimal_start(exclusive=5),
         500, None),
    Case("v1.3-start-returns-id", "v1.3", "POST", START, minimal_start(), 201,
         b'{"id":1}\n'),
    Case("v1.4-start", "v1.4", "PUT", START, minimal_start(exclusive=0), 201, OK_START),
    # --- duplicates (§4.2 step 5, §4.3) -------------------------------------------------
    Case("v1.5-duplicate-start", "v1.5", "POST", START, minimal_start(), 422,
         err(UNPROC, "a job with that jobId, cluster and startTime already exists: "
                     "dbid: 1, jobid: 100"), setup=[("POST", START, minimal_start())]),
    Case("v1.5-duplicate-within-day", "v1.5", "POST", START,
         minimal_start(startTime=1_700_000_000 + 86399), 422, None,
         setup=[("POST", START, minimal_start())]),
    Case("v1.5-requeue-after-day", "v1.5", "POST", START,
         minimal_start(startTime=1_700_000_000 + 86400), 201, OK_START,
         setup=[("POST", START, minimal_start())]),
    Case("v1.5-earlier-start-is-duplicate", "v1.5", "POST", START,
         minimal_start(startTime=1_600_000_000), 422, None,
         setup=[("POST", START, minimal_start())]),
    Case("v1.4-duplicate-start", "v1.4", "POST", START, minimal_start(), 422,
         err(UNPROC, "a job with that jobId, cluster and startTime already exists: "
                     "dbid: 1, jobid: 100"), setup=[("POST", START, minimal_start())]),
    # --- stop (§5) ----------------------------------------------------------------------
    Case("v1.5-stop", "v1.5", "POST", STOP, STOP_OK, 200, _job_body(_stopped_v15),
         setup=[("POST", START, minimal_start())]),
    Case("v1.4-stop", "v1.4", "PUT", STOP, STOP_OK, 200, _job_body(_stopped_v14),
         setup=[("POST", START, minimal_start())]),
    Case("v1.5-stop-default-completed", "v1.5", "POST", STOP,
         {"jobId": 100, "stopTime": 1_700_000_001}, 200,
         _job_body(lambda j: j["jobState"] == "completed" or pytest.fail(str(j))),
         setup=[("POST", START, minimal_start())]),
    Case("v1.5-stop-before-start", "v1.5", "POST", STOP, STOP_OK, 404,
         err("Not Found", "finding job failed: sql: no rows in result set")),
    Case("v1.4-stop-before-start", "v1.4", "POST", STOP, STOP_OK, 422,
         err(UNPROC, "finding job failed: sql: no rows in result set")),
    Case("v1.3-stop-before-start", "v1.3", "POST", STOP, STOP_OK, 422,
         err(UNPROC, "finding job failed: sql: no rows in result set")),
    Case("v1.5-stop-missing-jobid", "v1.5", "POST", STOP, {"stopTime": 1}, 400,
         err(BAD_REQ, "the field 'jobId' is required")),
    Case("v1.5-stop-null-jobid", "v1.5", "POST", STOP, {"jobId": None, "stopTime": 1}, 400,
         err(BAD_REQ, "the field 'jobId' is required")),
    Case("v1.5-double-stop", "v1.5", "POST", STOP, STOP_OK, 422,
         err(UNPROC, "jobId 100 (id 1) on testcluster : job has already been stopped "
                     "(state is: completed)"),
         setup=[("POST", START, minimal_start()), ("POST", STOP, STOP_OK)]),
    Case("v1.4-double-stop", "v1.4", "POST", STOP, STOP_OK, 422,
         err(UNPROC, "jobId 100 (id 1) on testcluster : job has already been stopped "
                     "(state is: completed)"),
         setup=[("POST", START, minimal_start()), ("POST", STOP, STOP_OK)]),
    Case("v1.3-double-stop", "v1.3", "POST", STOP, STOP_OK, 400,
         err(BAD_REQ, "stopTime must be larger than startTime and only running jobs can "
                      "be stopped"),
         setup=[("POST", START, minimal_start()), ("POST", STOP, STOP_OK)]),
    Case("v1.5-stop-time-before-start", "v1.5", "POST", STOP,
         {**STOP_OK, "stopTime": 1_699_999_999}, 400,
         err(BAD_REQ, "jobId 100 (id 1) on testcluster : stopTime 1699999999 must be "
                      "larger/equal than startTime 1700000000"),
         setup=[("POST", START, minimal_start())]),
    Case("v1.5-stop-time-equal", "v1.5", "POST", STOP,
         {**STOP_OK, "stopTime": 1_700_000_000}, 200, None,
         setup=[("POST", START, minimal_start())]),
    Case("v1.3-stop-time-equal", "v1.3", "POST", STOP,
         {**STOP_OK, "stopTime": 1_700_000_000}, 400,
         err(BAD_REQ, "stopTime must be larger than startTime and only running jobs can "
                      "be stopped"),
         setup=[("POST", START, minimal_start())]),
    Case("v1.5-stop-state-stopped", "v1.5", "POST", STOP, {**STOP_OK, "jobState": "stopped"},
         400, err(BAD_REQ, 'jobId 100 (id 1) on testcluster : invalid requested job state: '
                           '"stopped"'), setup=[("POST", START, minimal_start())]),
    Case("v1.5-stop-state-requeued", "v1.5", "POST", STOP,
         {**STOP_OK, "jobState": "requeued"}, 400, None,
         setup=[("POST", START, minimal_start())]),
    Case("v1.4-stop-state-node-fail", "v1.4", "POST", STOP,
         {**STOP_OK, "jobState": "node_fail"}, 400,
         err(BAD_REQ, 'jobId 100 (id 1) on testcluster : invalid requested job state: '
                      '"node_fail"'), setup=[("POST", START, minimal_start())]),
    Case("v1.3-stop-state-node-fail", "v1.3", "POST", STOP,
         {**STOP_OK, "jobState": "node_fail"}, 400,
         err(BAD_REQ, 'invalid job state: "node_fail"'),
         setup=[("POST", START, minimal_start())]),
    Case("v1.5-stop-state-node-fail-ok", "v1.5", "POST", STOP,
         {**STOP_OK, "jobState": "node_fail"}, 200, None,
         setup=[("POST", START, minimal_start())]),
    Case("v1.5-stopped-job-bogus-state-is-422", "v1.5", "POST", STOP,
         {**STOP_OK, "jobState": "bogus"}, 422, None,
         setup=[("POST", START, minimal_start()), ("POST", STOP, STOP_OK)]),
    # --- auth (§3) ----------------------------------------------------------------------
    Case("v1.5-no-token", "v1.5", "POST", START, minimal_start(), 401,
         err(UNAUTH, "no user for secured check"), auth="none"),
    Case("v1.5-bearer-header", "v1.5", "POST", START, minimal_start(), 201, OK_START,
         auth="bearer"),
    Case("v1.5-lowercase-bearer", "v1.5", "POST", START, minimal_start(), 401,
         err(UNAUTH, "token is malformed: could not base64 decode header: illegal base64 "
                     "data at input byte 6"), auth="bearer-lower"),
    Case("v1.5-garbage-token", "v1.5", "POST", START, minimal_start(), 401,
         err(UNAUTH, "token is malformed: token contains an invalid number of segments"),
         auth="garbage"),
    Case("v1.5-bad-signature", "v1.5", "POST", START, minimal_start(), 401,
         err(UNAUTH, "token signature is invalid: ed25519: verification error"),
         auth="bad-sig"),
    Case("v1.5-expired-token", "v1.5", "POST", START, minimal_start(), 401,
         err(UNAUTH, "token has invalid claims: token is expired"), auth="expired"),
    Case("v1.5-not-yet-valid-token", "v1.5", "POST", STOP, STOP_OK, 401,
         err(UNAUTH, "token has invalid claims: token is not valid yet"), auth="nbf"),
    Case("v1.5-hs256-token", "v1.5", "POST", START, minimal_start(), 401,
         err(UNAUTH, "token is unverifiable: error while executing keyfunc: "
                     "only Ed25519/EdDSA supported"), auth="alg-hs256"),
    Case("v1.5-user-role", "v1.5", "POST", START, minimal_start(), 401,
         err(UNAUTH, "unauthorized"), auth="role-user"),
    Case("v1.5-user-api-roles", "v1.5", "POST", START, minimal_start(), 401,
         err(UNAUTH, "unauthorized"), auth="roles-user-api"),
    Case("v1.5-admin-api-roles", "v1.5", "POST", START, minimal_start(), 201, OK_START,
         auth="roles-admin-api"),
    Case("v1.5-no-roles-double-body", "v1.5", "POST", START, minimal_start(), 401,
         _double_body, auth="roles-none"),
    Case("v1.5-no-sub", "v1.5", "POST", START, minimal_start(), 401,
         err(UNAUTH, "missing 'sub' claim in JWT"), auth="no-sub"),
    Case("v1.4-no-sub-ok", "v1.4", "POST", START, minimal_start(), 201, OK_START,
         auth="no-sub"),
    Case("v1.3-user-role-403", "v1.3", "POST", START, minimal_start(), 403,
         err("Forbidden", "missing role: api"), auth="role-user"),
    # --- routing and trailing slashes (§2.2, §2.4) ---------------------------------------
    Case("v1.5-start-no-slash", "v1.5", "POST", START.rstrip("/"), minimal_start(), 400,
         err(BAD_REQ, 'integer expected in path for id: strconv.ParseInt: parsing '
                      '"start_job": invalid syntax')),
    Case("v1.5-get-jobs-no-slash", "v1.5", "GET", "/api/jobs", None, 404,
         b'{"status":"Resource not found","error":"the requested endpoint does not exist"}\n'),
    Case("v1.4-start-no-slash-redirects", "v1.4", "POST", START.rstrip("/"),
         minimal_start(), 301,
         lambda r: r.headers["location"] == START or pytest.fail(str(r.headers))),
    Case("v1.5-wrong-method", "v1.5", "GET", START, None, 405, b""),
    Case("v1.5-unknown-api-route", "v1.5", "GET", "/api/nothing/", None, 404,
         b'{"status":"Resource not found","error":"the requested endpoint does not exist"}\n'),
    # --- GET /api/jobs/, clusters, nodestate (§6, §7) -----------------------------------
    Case("v1.5-jobs-unknown-param", "v1.5", "GET", "/api/jobs/?user=alice", None, 400,
         err(BAD_REQ, "invalid query parameter: user")),
    Case("v1.4-jobs-project-param", "v1.4", "GET", "/api/jobs/?project=p1", None, 400,
         err(BAD_REQ, "invalid query parameter: project")),
    Case("v1.5-jobs-bad-state", "v1.5", "GET", "/api/jobs/?state=stopped", None, 400,
         err(BAD_REQ, "invalid query parameter value: state")),
    Case("v1.5-jobs-page-zero", "v1.5", "GET", "/api/jobs/?page=0", None, 400,
         err(BAD_REQ, "page must be >= 1")),
    Case("v1.4-jobs-page-zero-ok", "v1.4", "GET", "/api/jobs/?page=0", None, 200, None),
    Case("v1.5-jobs-bad-start-time", "v1.5", "GET", "/api/jobs/?start-time=5", None, 400,
         err(BAD_REQ, "invalid query parameter value: startTime")),
    Case("v1.5-jobs-running", "v1.5", "GET",
         "/api/jobs/?state=running&cluster=testcluster&project=p1&page=1&items-per-page=10"
         "&with-metadata=false&start-time=0-1800000000", None, 200,
         _job_body(lambda d: (d["items"], d["page"], len(d["jobs"]),
                              d["jobs"][0]["metaData"]) == (10, 1, 1, {"jobName": "x"})
                   or pytest.fail(str(d))),
         setup=[("POST", START, minimal_start(metaData={"jobName": "x"}))]),
    Case("v1.5-clusters-unknown", "v1.5", "GET", "/api/clusters/?cluster=nope", None, 400,
         err(BAD_REQ, "unknown cluster: nope")),
    Case("v1.5-nodestate", "v1.5", "POST", "/api/nodestate/",
         {"cluster": "testcluster", "nodes": [{"hostname": "node1", "states": ["idle"]}]},
         200, b""),
    Case("v1.5-smt-subcluster", "v1.5", "POST", STOP,
         {"jobId": 7, "stopTime": 1_700_000_010}, 200,
         _job_body(lambda j: j["subCluster"] == "smt" or pytest.fail(str(j))),
         setup=[("POST", START, minimal_start(
             jobId=7, resources=[{"hostname": "smt3", "hwthreads": [0, 8]}]))]),
]


def _token(standin: StandIn, kind: str) -> dict[str, str]:
    now = time.time()
    tokens = {
        "ok": standin.token,
        "expired": standin.make_token(exp=now - 10),
        "nbf": standin.make_token(nbf=now + 3600),
        "alg-hs256": standin.make_token(alg="HS256"),
        "role-user": standin.make_token(["user"]),
        "roles-user-api": standin.make_token(["user", "api"]),
        "roles-admin-api": standin.make_token(["admin", "api"]),
        "roles-none": standin.make_token([]),
        "no-sub": standin.make_token(sub=None),
    }
    if kind == "none":
        return {}
    if kind == "bearer":
        return {"Authorization": f"Bearer {standin.token}"}
    if kind == "bearer-lower":
        return {"Authorization": f"bearer {standin.token}"}
    if kind == "garbage":
        return {"X-Auth-Token": "not-a-jwt"}
    if kind == "bad-sig":
        head, payload, sig = standin.token.split(".")
        return {"X-Auth-Token": f"{head}.{payload}.{sig[::-1]}"}
    return {"X-Auth-Token": tokens[kind]}


def test_at_least_40_cases() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_contract_case(case: Case, make_standin: Any) -> None:
    standin = make_standin(case.profile)
    with httpx.Client(base_url=standin.url, timeout=10) as client:
        for method, path, body in case.setup:
            resp = client.request(method, path, json=body, headers=standin.headers())
            assert resp.is_success, (method, path, resp.status_code, resp.text)
        content = case.raw if case.raw is not None else (
            None if case.body is None else json.dumps(case.body).encode())
        resp = client.request(case.method, case.path, content=content,
                              headers=_token(standin, case.auth))
    assert resp.status_code == case.status, resp.text
    if isinstance(case.expect, bytes):
        assert resp.content == case.expect
    elif case.expect is not None:
        case.expect(resp)
