"""Differential test: the stand-in (profile v1.5) against the REAL cc-backend v1.5.4.

The same requests go to both; their status codes must be the same (bodies may differ
in wording). Three groups: the contract cases (expected statuses from
cc-backend-contract.md, section named next to each), the project's payloads for every
job recorded on the testbed (tests/fixtures/slurm/<release>/sacct_after.json, mapped by
``cc_slurm_adapter.mapping.map_job``), and hostile requests
(tests/unit/testing/hostile_cases.py, statuses measured on the real server).

Needs ../shared/cc-backend (README there); skipped with the reason when it is missing.
One real server per module; job ids are distinct per request group.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cc_slurm_adapter.mapping import Site, map_job
from cc_slurm_adapter.slurm import parse_jobs
from cc_slurm_adapter.slurm.parse import parse_nodes
from cc_slurm_adapter.testing.ccbackend import StandIn
from cc_slurm_adapter.topology import Topology

from ..conftest import FIXTURES, REPO_ROOT, SHARED_DIR
from ..unit.testing.hostile_cases import CASES, Case, Target, start_body
from ..unit.testing.rawhttp import request, send

pytestmark = pytest.mark.shared

CC_DIR = SHARED_DIR / "cc-backend" if SHARED_DIR is not None else None
CLUSTER_JSON = REPO_ROOT / "src" / "cc_slurm_adapter" / "testing" / "data" / \
    "testcluster.cluster.json"
COMMIT = 1.0  # seconds between job-cache commits, on both servers
T0 = 1_700_000_000
RELEASES = ("22.05", "24.11", "26.05")
_ids = itertools.count(800_000)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    binary = CC_DIR / "bin" / "cc-backend" if CC_DIR is not None else None
    if binary is None or not os.access(binary, os.X_OK):
        pytest.skip("the real cc-backend (../shared/cc-backend/bin/cc-backend) is missing; "
                    "set CCSA_SHARED_DIR to the shared folder to run the differential test")
    assert CC_DIR is not None
    work = tmp_path_factory.mktemp("cc-backend-real") / "srv"
    done = subprocess.run(
        [str(CC_DIR / "start.sh"), str(work), "--cluster-json", str(CLUSTER_JSON),
         "--commit-interval", f"{COMMIT:g}s"],
        capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        pytest.fail(f"../shared/cc-backend/start.sh failed: {done.stderr.strip()[-2000:]}")
    info = json.loads(done.stdout.strip().splitlines()[-1])
    pid = int(info["pid"])
    env = (work / ".env").read_text()
    private = re.search(r'JWT_PRIVATE_KEY="([^"]+)"', env)
    assert private is not None
    try:
        # Go's ed25519 private key is seed || public key.
        yield Target(info["url"], info["token"], base64.b64decode(private.group(1))[:32],
                     "apiuser")
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def standin() -> Iterator[Target]:
    with StandIn(profile="v1.5", commit_interval=COMMIT) as s:
        assert s.app is not None
        yield Target(s.url, s.token, s.app.keys.seed, "apiuser")


Build = Callable[[Target], bytes]


def _both(real: Target, standin: Target, build: Build) -> tuple[Any, Any, bytes, bytes]:
    real_status, real_body = send(real.url, build(real))
    standin_status, standin_body = send(standin.url, build(standin))
    return real_status, standin_status, real_body, standin_body


def _req(method: str, path: str, body: Any = None, token: str = "own",
         headers: str = "") -> Build:
    raw = None if body is None else body if isinstance(body, bytes) else \
        json.dumps(body).encode()

    def build(t: Target) -> bytes:
        tok = t.token if token == "own" else None if token == "none" else token
        head = f"{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        if tok is not None:
            head += f"X-Auth-Token: {tok}\r\n"
        head += headers
        if raw is not None:
            head += f"Content-Length: {len(raw)}\r\n"
        return head.encode() + b"\r\n" + (raw or b"")
    return build


def _wait_committed(targets: tuple[Target, ...], job_ids: set[int]) -> None:
    """Until GET ?state=running lists every job on every target (§6 visibility)."""
    deadline = time.monotonic() + 20 * COMMIT + 5
    for target in targets:
        while True:
            status, body = request(target.url, "GET",
                                   "/api/jobs/?state=running&items-per-page=10000",
                                   token=target.token)
            assert status == 200
            if job_ids <= {j["jobId"] for j in json.loads(body)["jobs"]}:
                break
            assert time.monotonic() < deadline, f"{target.url}: jobs not committed"
            time.sleep(0.2)


# --- 1. the contract cases ---------------------------------------------------------------

def test_contract_cases(real: Target, standin: Target) -> None:
    a, b = next(_ids), next(_ids)
    stop_a = {"jobId": a, "cluster": "testcluster", "stopTime": T0 + 60,
              "jobState": "completed"}
    bad_token = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.AAAA"
    mismatches: list[str] = []

    def step(name: str, build: Build, expected: int) -> tuple[bytes, bytes]:
        got_real, got_standin, body_real, body_standin = _both(real, standin, build)
        if (got_real, got_standin) != (expected, expected):
            mismatches.append(f"{name}: contract {expected}, real {got_real} "
                              f"{body_real[:160]!r}, stand-in {got_standin} "
                              f"{body_standin[:160]!r}")
        return body_real, body_standin

    start = "/api/jobs/start_job/"
    stop = "/api/jobs/stop_job/"
    step("§4.2 good start", _req("POST", start, start_body(a)), 201)
    step("§4.3 identical start while in job_cache", _req("POST", start, start_body(a)), 500)
    step("§4.2 start with tags (no cache)", _req("POST", start, start_body(
        b, tags=[{"type": "t", "name": "n"}])), 201)
    _wait_committed((real, standin), {a, b})
    step("§4.2 step 5 duplicate after commit", _req("POST", start, start_body(a)), 422)
    step("§4.2 unknown cluster", _req("POST", start, start_body(
        next(_ids), cluster="nope")), 400)
    step("§10 host in no sub-cluster", _req("POST", start, start_body(
        next(_ids), resources=[{"hostname": "elsewhere1"}])), 400)
    step("§2.3 unknown key", _req("POST", start, start_body(next(_ids), exclusive=1)), 400)
    step("§2.3 wrong type", _req("POST", start, start_body(next(_ids), jobId="1")), 400)
    step("§2.3 empty body", _req("POST", start, b""), 400)
    step("§4.2 numNodes != len(resources)", _req("POST", start, start_body(
        next(_ids), numNodes=2)), 400)
    step("§4.1 shared outside the CHECK", _req("POST", start, start_body(
        next(_ids), shared="x")), 500)
    step("§5.2 stop", _req("POST", stop, stop_a), 200)
    step("§5.2 stop twice", _req("POST", stop, stop_a), 422)
    step("§5.2 stop unknown", _req("POST", stop, {**stop_a, "jobId": next(_ids)}), 404)
    step("§5.1 stop without jobId", _req("POST", stop, {"cluster": "testcluster"}), 400)
    step("§5.2 stop before start", _req("POST", stop, {
        "jobId": b, "cluster": "testcluster", "stopTime": T0 - 1}), 400)
    step("§5.2 invalid stop state", _req("POST", stop, {
        "jobId": b, "cluster": "testcluster", "stopTime": T0 + 1, "jobState": "stopped"}), 400)
    step("§3 no token", _req("POST", start, start_body(next(_ids)), token="none"), 401)
    step("§3 bad token", _req("POST", start, start_body(next(_ids)), token=bad_token), 401)
    step("§3 no token on GET", _req("GET", "/api/jobs/", token="none"), 401)
    step("§6 state/cluster/page", _req(
        "GET", "/api/jobs/?state=running&cluster=testcluster&page=1&items-per-page=10"), 200)
    step("§6 project, with-metadata", _req(
        "GET", "/api/jobs/?project=p1&with-metadata=false&start-time=0-2000000000"), 200)
    step("§6 invalid state", _req("GET", "/api/jobs/?state=stopped"), 400)
    step("§6 page 0", _req("GET", "/api/jobs/?page=0"), 400)
    step("§6 unknown key", _req("GET", "/api/jobs/?foo=1"), 400)
    step("§6 bad start-time", _req("GET", "/api/jobs/?start-time=5"), 400)
    step("§2.2 no trailing slash", _req("GET", "/api/jobs"), 404)
    step("§2.2 start without slash", _req("POST", "/api/jobs/start_job",
                                          start_body(next(_ids))), 400)
    step("§2.4 wrong method", _req("GET", start), 405)
    step("§7 clusters", _req("GET", "/api/clusters/"), 200)
    step("§7 unknown cluster", _req("GET", "/api/clusters/?cluster=nope"), 400)
    step("§7 job by db id, unknown", _req("GET", "/api/jobs/999999999"), 422)
    step("§7 nodestate", _req("POST", "/api/nodestate/", {"cluster": "testcluster",
                                                         "nodes": []}), 200)
    real_used, standin_used = step("§7 used_nodes", _req(
        "GET", "/api/jobs/used_nodes?ts=2000000000"), 200)
    step("§7 used_nodes without ts", _req("GET", "/api/jobs/used_nodes"), 400)
    step("§7 used_nodes bad ts", _req("GET", "/api/jobs/used_nodes?ts=x"), 400)
    assert not mismatches, "\n".join(mismatches)
    # Same jobs were sent to both, so the answer itself must be the same.
    assert json.loads(real_used) == json.loads(standin_used)
    assert json.loads(real_used)["usedNodes"]["testcluster"] == ["node1"]


# --- 2. the mapping's payloads for every recorded testbed job -------------------------

def _mapped(release: str) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    folder = FIXTURES / "slurm" / release
    if not (folder / "sacct_after.json").is_file():
        pytest.skip(f"no testbed recording in {folder}")
    nodes_file = "sinfo_after.json" if release == "22.05" else "scontrol_show_node_after.json"
    nodes = parse_nodes((folder / nodes_file).read_bytes())
    topology = Topology.from_json([json.loads(CLUSTER_JSON.read_text())])
    site = Site(topology=topology, gpu_pci_addresses=lambda host: (
        ("00000000:01:00.0", "00000000:02:00.0") if re.fullmatch(r"node\d+", host) else None))
    out = []
    for record in parse_jobs((folder / "sacct_after.json").read_bytes(), topology=nodes).jobs:
        mapped = map_job(record, site)
        if mapped.start is not None and mapped.stop is not None:
            out.append((record.job_id, mapped.start, mapped.stop))
    return out


@pytest.mark.parametrize("release", RELEASES)
def test_mapped_payloads_of_recorded_jobs(real: Target, standin: Target,
                                          release: str) -> None:
    jobs = _mapped(release)
    assert len(jobs) == 11  # every job that ran (the held one never started)
    offset = 900_000 + 1000 * RELEASES.index(release)
    results: list[str] = []
    for slurm_id, start, stop in jobs:
        start = {**start, "jobId": start["jobId"] + offset}
        stop = {**stop, "jobId": stop["jobId"] + offset}
        for path, body, expected in (("/api/jobs/start_job/", start, 201),
                                     ("/api/jobs/stop_job/", stop, 200)):
            got = _both(real, standin, _req("POST", path, body))
            if got[:2] != (expected, expected):
                results.append(f"job {slurm_id} {path}: real {got[0]} {got[2][:200]!r}, "
                               f"stand-in {got[1]} {got[3][:200]!r}")
    assert not results, "\n".join(results)


# --- 3. hostile requests -------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_request_same_status(real: Target, standin: Target, case: Case) -> None:
    job_id = next(_ids)
    got_real, got_standin, body_real, body_standin = _both(
        real, standin, lambda t: case.build(t, job_id))
    assert got_real == case.status, f"real server changed: {got_real} {body_real[:200]!r}"
    assert got_standin == got_real, (f"real {got_real} {body_real[:200]!r}, stand-in "
                                     f"{got_standin} {body_standin[:200]!r}")


def test_lone_surrogate_metadata_then_get(real: Target, standin: Target) -> None:
    job_id = next(_ids)
    raw = json.dumps(start_body(job_id)).encode()[:-1] + b',"metaData":{"a":"\\ud800"}}'
    got = _both(real, standin, _req("POST", "/api/jobs/start_job/", raw))
    assert got[:2] == (201, 201)
    _wait_committed((real, standin), {job_id})
    path = "/api/jobs/?with-metadata=true&state=running&items-per-page=10000"
    for target in (real, standin):
        status, body = request(target.url, "GET", path, token=target.token)
        assert status == 200
        meta = [j["metaData"] for j in json.loads(body)["jobs"] if j["jobId"] == job_id]
        assert meta == [{"a": "\ufffd"}], target.url
