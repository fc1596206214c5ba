"""NatsPublisher and the stand-in's NATS job API against Debian's real ``nats-server``.

Each test starts its own nats-server on a free port (tests/integration/conftest_nats.py)
and is skipped with the reason when nats-server is missing. Expected message formats
come from cc-backend-contract.md §9.2 and cc-slurm-adapter-behaviour.md §5; the last
test hands our messages to the real cc-backend v1.5.4 (../shared/cc-backend, skipped
when missing) and reads the jobs back from its REST API.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cc_slurm_adapter.config import Config
from cc_slurm_adapter.log import add_secrets, clear_secrets, setup_logging
from cc_slurm_adapter.nats import NatsPublisher, event_message, message_id
from cc_slurm_adapter.testing.ccbackend import StandIn, StandInProcess

from ..conftest import REPO_ROOT, SHARED_DIR
from .conftest_nats import (
    HAVE_NKEYS,
    NatsServer,
    make_operator,
    make_tls,
    needs_nats_server,
    new_nkey,
)

nats = pytest.importorskip("nats")

pytestmark = [pytest.mark.nats, needs_nats_server]

T0 = 1_700_000_000
# §9.2/§5: measurement job, tag function (sorted tags after it), string field event,
# timestamp in ns
LINE = re.compile(rb'^job,function=(start_job|stop_job),hostname=[^ ,]+,type=node,type-id=0 '
                  rb'event="((?:[^"\\]|\\.)*)" ([0-9]+)$', re.S)
CLUSTER_JSON = REPO_ROOT / "src" / "cc_slurm_adapter" / "testing" / "data" / \
    "testcluster.cluster.json"


def start_payload(job_id: int, **over: Any) -> bytes:
    body: dict[str, Any] = {
        "jobId": job_id, "cluster": "testcluster", "user": "alice", "project": "p1",
        "startTime": T0, "numNodes": 1, "resources": [{"hostname": "node1"}]}
    body.update(over)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def stop_payload(job_id: int, stop: int = T0 + 60, state: str = "completed") -> bytes:
    return json.dumps({"jobId": job_id, "cluster": "testcluster", "jobState": state,
                       "stopTime": stop}, separators=(",", ":")).encode()


def unescape(field: bytes) -> bytes:
    """influxdata line-protocol v2: in a string field only \\\\ and \\" are escapes."""
    return re.sub(rb'\\([\\"])', rb"\1", field)


def config(server: NatsServer, **over: Any) -> Config:
    return dataclasses.replace(Config(), **{"nats_server": "127.0.0.1",
                                            "nats_port": server.port, "nats_subject": "jobs",
                                            **over})


async def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def eventually(call: Callable[[], Awaitable[Any]], ok: Callable[[Any], bool],
                     timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await call()
        if ok(result) or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    srv = NatsServer(tmp_path / "nats").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
async def publishers() -> AsyncIterator[list[NatsPublisher]]:
    made: list[NatsPublisher] = []
    try:
        yield made
    finally:
        for pub in made:
            await pub.close()


def fast(cfg: Config, made: list[NatsPublisher]) -> NatsPublisher:
    pub = NatsPublisher(cfg, connect_timeout=2, publish_timeout=2, backoff_min=0.1,
                        backoff_max=0.5)
    made.append(pub)
    return pub


async def subscriber(url: str, subject: str = "jobs", **kwargs: Any
                     ) -> tuple[Any, list[bytes]]:
    got: list[bytes] = []

    async def on_msg(msg: Any) -> None:
        got.append(msg.data)

    nc = await nats.connect(url, **kwargs)
    await nc.subscribe(subject, cb=on_msg)
    await nc.flush()
    return nc, got


# --- core NATS ------------------------------------------------------------------------

async def test_core_publish_format_and_payload(server: NatsServer,
                                               publishers: list[NatsPublisher]) -> None:
    nc, got = await subscriber(server.url)
    pub = fast(config(server), publishers)
    await pub.start()
    await wait_until(lambda: pub.connected)
    start = start_payload(1, metaData={"jobName": 'a "q" \\ b\\n ü'})
    stop = stop_payload(1)
    r1 = await pub.publish("start_job", start, message_id("testcluster", 1, T0, "start_job"))
    r2 = await pub.publish("stop_job", stop, message_id("testcluster", 1, T0, "stop_job"))
    assert (r1.ok, r1.retry, r2.ok, r2.retry) == (True, False, True, False)
    await wait_until(lambda: len(got) == 2)
    await nc.close()
    kinds = []
    for data, payload, ts in ((got[0], start, T0), (got[1], stop, T0 + 60)):
        m = LINE.match(data)
        assert m is not None, data
        kinds.append(m.group(1))
        assert unescape(m.group(2)) == payload  # the REST JSON, byte for byte
        assert int(m.group(3)) == ts * 1_000_000_000
    assert kinds == [b"start_job", b"stop_job"]


async def test_core_not_connected_is_retry_and_resent_after_outage(
        server: NatsServer, publishers: list[NatsPublisher]) -> None:
    pub = fast(config(server), publishers)
    await pub.start()
    await wait_until(lambda: pub.connected)
    server.stop()
    await wait_until(lambda: not pub.connected)
    down = await pub.publish("stop_job", stop_payload(2), "x")
    assert (down.ok, down.retry) == (False, True)
    server.start()
    nc, got = await subscriber(server.url)
    await wait_until(lambda: pub.connected, timeout=15)
    again = await pub.publish("stop_job", stop_payload(2), "x")
    assert again.ok
    await wait_until(lambda: len(got) == 1)
    await nc.close()


async def test_unreachable_server_never_raises_and_logs_once(
        tmp_path: Path, publishers: list[NatsPublisher],
        caplog: pytest.LogCaptureFixture) -> None:
    srv = NatsServer(tmp_path / "n")  # never started: nobody listens on the port
    caplog.set_level(logging.DEBUG, logger="cc_slurm_adapter.nats")
    pub = fast(config(srv), publishers)
    await pub.start()
    await asyncio.sleep(1.5)  # several attempts at 0.1-0.5 s backoff
    result = await pub.publish("start_job", start_payload(3), "id")
    assert (result.ok, result.retry) == (False, True)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    attempts = [r for r in caplog.records if "cannot connect" in r.getMessage()]
    assert len(errors) == 1 and "connection refused" in errors[0].getMessage()
    assert len(attempts) >= 3  # kept retrying, the repeats only at debug level
    srv.start()
    try:
        await wait_until(lambda: pub.connected, timeout=10)
        assert any("connected again" in r.getMessage() for r in caplog.records)
    finally:
        srv.stop()


# --- JetStream ------------------------------------------------------------------------

async def test_jetstream_creates_stream_and_dedupes(server: NatsServer,
                                                    publishers: list[NatsPublisher]) -> None:
    cfg = config(server, nats_jet_stream=True, nats_stream_name="CCSA_T",
                 nats_stream_subjects="jobs, jobs.>")
    pub = fast(cfg, publishers)
    await pub.start()
    await wait_until(lambda: pub.connected)
    mid = message_id("testcluster", 4, T0, "start_job")
    first = await pub.publish("start_job", start_payload(4), mid)
    second = await pub.publish("start_job", start_payload(4), mid)
    other = await pub.publish("stop_job", stop_payload(4),
                              message_id("testcluster", 4, T0, "stop_job"))
    assert first.ok and second.ok and other.ok
    assert "already in stream" in second.detail
    nc = await nats.connect(server.url)
    try:
        info = await nc.jetstream().stream_info("CCSA_T")
        assert info.config.subjects == ["jobs", "jobs.>"]
        assert info.config.duplicate_window == 24 * 3600
        assert info.state.messages == 2  # the repeated Nats-Msg-Id was stored once
        msg = await nc.jetstream().get_msg("CCSA_T", 1)
        assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == mid
        assert msg.data == event_message("start_job", start_payload(4))
    finally:
        await nc.close()


async def test_jetstream_uses_existing_stream(server: NatsServer,
                                              publishers: list[NatsPublisher]) -> None:
    nc = await nats.connect(server.url)
    js = nc.jetstream()
    await js.add_stream(name="SITE", subjects=["jobs"])  # the site's own stream
    pub = fast(config(server, nats_jet_stream=True, nats_stream_name="SITE"), publishers)
    await pub.start()
    await wait_until(lambda: pub.connected)
    assert (await pub.publish("start_job", start_payload(5), "m5")).ok
    info = await js.stream_info("SITE")
    assert info.state.messages == 1 and info.config.duplicate_window == 120  # untouched
    # natsStreamName names a missing stream, but another one takes the subject: used
    pub2 = fast(config(server, nats_jet_stream=True, nats_stream_name="MINE"), publishers)
    await pub2.start()
    await wait_until(lambda: pub2.connected)
    assert (await pub2.publish("start_job", start_payload(6), "m6")).ok
    assert (await js.stream_info("SITE")).state.messages == 2
    names = await js.streams_info()
    assert [s.config.name for s in names] == ["SITE"]
    await nc.close()


async def test_jetstream_outage_exactly_once(server: NatsServer,
                                             publishers: list[NatsPublisher]) -> None:
    pub = fast(config(server, nats_jet_stream=True), publishers)
    await pub.start()
    await wait_until(lambda: pub.connected)
    pending = [(f"stop_job-{i}", stop_payload(i)) for i in range(20)]
    sent = 0
    for mid, payload in pending[:10]:
        sent += (await pub.publish("stop_job", payload, mid)).ok
    server.stop()
    await wait_until(lambda: not pub.connected)
    queued = []
    for mid, payload in pending[10:]:
        result = await pub.publish("stop_job", payload, mid)
        assert result.retry and not result.ok
        queued.append((mid, payload))
    server.start()
    await wait_until(lambda: pub.connected, timeout=15)
    # the outbox re-sends everything not acked, and (as after a lost ack) a few acked ones
    for mid, payload in queued + pending[:3]:
        def send(m: str = mid, p: bytes = payload) -> Awaitable[Any]:
            return pub.publish("stop_job", p, m)
        result = await eventually(send, lambda r: bool(r.ok))
        assert result.ok, result
    nc = await nats.connect(server.url)
    try:
        info = await nc.jetstream().stream_info("CC_SLURM_ADAPTER")
        assert sent == 10 and info.state.messages == 20
        seen = set()
        for seq in range(1, 21):
            msg = await nc.jetstream().get_msg("CC_SLURM_ADAPTER", seq)
            assert msg.headers is not None
            seen.add(msg.headers["Nats-Msg-Id"])
        assert seen == {mid for mid, _ in pending}
    finally:
        await nc.close()


async def test_jetstream_missing_on_server_waits_and_logs_once(
        tmp_path: Path, publishers: list[NatsPublisher],
        caplog: pytest.LogCaptureFixture) -> None:
    srv = NatsServer(tmp_path / "nojs", jetstream=False).start()
    try:
        caplog.set_level(logging.DEBUG, logger="cc_slurm_adapter.nats")
        pub = fast(config(srv, nats_jet_stream=True), publishers)
        await pub.start()
        await wait_until(lambda: pub.connected)
        for _ in range(3):
            result = await pub.publish("start_job", start_payload(11), "m11")
            assert (result.ok, result.retry) == (False, True), result
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "JetStream unavailable" in errors[0], errors
    finally:
        srv.stop()


# --- auth and TLS ---------------------------------------------------------------------

def auth_server(tmp_path: Path, extra: str) -> NatsServer:
    return NatsServer(tmp_path / "auth", extra, jetstream=False).start()


async def test_user_password(tmp_path: Path, publishers: list[NatsPublisher],
                             caplog: pytest.LogCaptureFixture,
                             capsys: pytest.CaptureFixture[str]) -> None:
    secret = "s3cret-Passw0rd-xyz"
    srv = auth_server(tmp_path, f'authorization {{ user: ccsa, password: "{secret}" }}')
    try:
        good = fast(config(srv, nats_user="ccsa", nats_password=secret), publishers)
        await good.start()
        await wait_until(lambda: good.connected)
        assert (await good.publish("start_job", start_payload(7), "a")).ok

        wrong = "wrong-Passw0rd-abc"
        cfg = config(srv, nats_user="ccsa", nats_password=wrong)
        add_secrets(cfg.secrets)
        root = logging.getLogger()
        saved = (list(root.handlers), root.level, logging.getLogger("cc_slurm_adapter").level)
        setup_logging(4)
        try:
            bad = fast(cfg, publishers)
            await bad.start()
            await asyncio.sleep(1.5)
            assert not bad.connected and bad.state == "connecting"
            result = await bad.publish("start_job", start_payload(7), "a")
            assert result.retry
        finally:
            clear_secrets()
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])
            logging.getLogger("cc_slurm_adapter").setLevel(saved[2])
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("ERROR")]
        assert len(errors) == 1, err
        assert "authorization violation" in errors[0]
        assert "natsUser/natsPassword" in errors[0]
        assert wrong not in err and secret not in err
        assert err.count("cannot connect") >= 3  # still retrying (debug lines)
    finally:
        srv.stop()


@pytest.mark.skipif(not HAVE_NKEYS, reason="the nkeys package (nats-py[nkeys]) is missing")
async def test_nkey_seed_file(tmp_path: Path, publishers: list[NatsPublisher],
                              caplog: pytest.LogCaptureFixture) -> None:
    seed, public = new_nkey()
    other_seed, _ = new_nkey()
    seed_file, other_file = tmp_path / "user.nk", tmp_path / "other.nk"
    seed_file.write_text(seed + "\n")
    other_file.write_text(other_seed + "\n")
    srv = auth_server(tmp_path, f"authorization {{ users: [ {{ nkey: {public} }} ] }}")
    try:
        nc, got = await subscriber(srv.url, nkeys_seed=str(seed_file))
        pub = fast(config(srv, nats_nkey_seed_file=str(seed_file)), publishers)
        await pub.start()
        await wait_until(lambda: pub.connected)
        assert (await pub.publish("start_job", start_payload(8), "a")).ok
        await wait_until(lambda: len(got) == 1)
        await nc.close()
        caplog.set_level(logging.ERROR, logger="cc_slurm_adapter.nats")
        bad = fast(config(srv, nats_nkey_seed_file=str(other_file)), publishers)
        await bad.start()
        await asyncio.sleep(1.0)
        assert not bad.connected
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "natsNKeySeedFile" in errors[0]
        assert other_seed not in caplog.text and seed not in caplog.text
    finally:
        srv.stop()


@pytest.mark.skipif(not HAVE_NKEYS, reason="the nkeys package (nats-py[nkeys]) is missing")
async def test_creds_file(tmp_path: Path, publishers: list[NatsPublisher],
                          caplog: pytest.LogCaptureFixture) -> None:
    setup = make_operator(tmp_path / "op")
    srv = auth_server(tmp_path, setup.server_conf)
    try:
        nc, got = await subscriber(srv.url, user_credentials=str(setup.creds))
        pub = fast(config(srv, nats_creds_file=str(setup.creds)), publishers)
        await pub.start()
        await wait_until(lambda: pub.connected)
        assert (await pub.publish("stop_job", stop_payload(9), "a")).ok
        await wait_until(lambda: len(got) == 1)
        await nc.close()
        caplog.set_level(logging.ERROR, logger="cc_slurm_adapter.nats")
        bad = fast(config(srv, nats_creds_file=str(setup.other_creds)), publishers)
        await bad.start()
        await asyncio.sleep(1.0)
        assert not bad.connected
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "natsCredsFile" in errors[0], errors
    finally:
        srv.stop()


async def test_tls_with_test_ca_and_client_cert(tmp_path: Path,
                                                publishers: list[NatsPublisher],
                                                caplog: pytest.LogCaptureFixture) -> None:
    files = make_tls(tmp_path / "tls")
    srv = auth_server(tmp_path, (
        f'tls {{ cert_file: "{files.server_cert}", key_file: "{files.server_key}", '
        f'ca_file: "{files.ca}", verify: true }}'))
    try:
        pub = fast(config(srv, nats_tls_ca_file=str(files.ca),
                          nats_tls_cert_file=str(files.client_cert),
                          nats_tls_key_file=str(files.client_key)), publishers)
        assert pub.url.startswith("tls://")
        await pub.start()
        await wait_until(lambda: pub.connected)
        assert (await pub.publish("start_job", start_payload(10), "a")).ok

        caplog.set_level(logging.ERROR, logger="cc_slurm_adapter.nats")
        untrusted = fast(config(srv, nats_tls_ca_file=str(files.other_ca),
                                nats_tls_cert_file=str(files.client_cert),
                                nats_tls_key_file=str(files.client_key)), publishers)
        no_cert = fast(config(srv, nats_tls_ca_file=str(files.ca)), publishers)
        await untrusted.start()
        await no_cert.start()
        await asyncio.sleep(3.0)  # closing a refused TLS connection takes up to 2 s
        assert not untrusted.connected and not no_cert.connected
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 2, errors
        assert any("server certificate not trusted" in e for e in errors), errors
        assert any("client certificate" in e for e in errors), errors
    finally:
        srv.stop()


# --- the stand-in as cc-backend's NATS job API ------------------------------------------

async def test_standin_consumes_events_like_cc_backend(
        server: NatsServer, publishers: list[NatsPublisher]) -> None:
    pub = fast(config(server), publishers)
    await pub.start()
    await wait_until(lambda: pub.connected)
    with StandIn(profile="v1.5", nats_url=server.url, nats_subject="jobs",
                 commit_interval=0) as standin:
        # REST start/stop are not mounted in this mode (§9.1)
        resp = httpx.post(f"{standin.url}/api/jobs/start_job/", headers=standin.headers(),
                          content=start_payload(20))
        assert resp.status_code == 404
        meta = {"jobName": 'x "y" \\z\\n ü'}
        assert (await pub.publish("start_job", start_payload(20, metaData=meta), "a")).ok
        assert (await pub.publish("stop_job", stop_payload(20, state="failed"), "b")).ok
        # a line without a function tag, a foreign measurement, a bad line
        raw = await nats.connect(server.url)
        await raw.publish("jobs", b'job,hostname=h event="{}"')
        await raw.publish("jobs", b'nodestate event="{}"')
        await raw.publish("jobs", b'job,function=start_job event="{"jobId":1}"')
        await raw.flush()
        await raw.close()
        await wait_until(lambda: len([e for e in standin.audit() if e.method == "NATS"]) >= 4)
        audit = [e for e in standin.audit() if e.method == "NATS"]
        assert [(e.path, e.status, e.outcome) for e in audit] == [
            ("/api/jobs/start_job/", 201, "ok"), ("/api/jobs/stop_job/", 200, "ok"),
            ("nats:jobs", 400, "rejected"), ("nats:jobs", 400, "rejected")]
        rows = standin.jobs()
        assert [(r.job_id, r.job_state, r.start_time) for r in rows] == [(20, "failed", T0)]
        got = httpx.get(f"{standin.url}/api/jobs/?with-metadata=true",
                        headers=standin.headers()).json()["jobs"]
        assert got[0]["metaData"] == meta


async def test_standin_process_nats_url(server: NatsServer,
                                       publishers: list[NatsPublisher]) -> None:
    pub = fast(config(server, nats_subject="cc.jobs"), publishers)
    await pub.start()
    await wait_until(lambda: pub.connected)
    with StandInProcess(["--nats-url", server.url, "--nats-subject", "cc.jobs",
                         "--commit-interval", "0"]) as proc:
        assert (await pub.publish("start_job", start_payload(21), "a")).ok
        entries: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while not entries and time.monotonic() < deadline:
            entries = [e for e in proc.audit() if e["method"] == "NATS"]
            await asyncio.sleep(0.05)
        assert [(e["path"], e["status"]) for e in entries] == [("/api/jobs/start_job/", 201)]
        assert proc.control("health", method="GET")["natsMode"] is True


# --- the real cc-backend ----------------------------------------------------------------

@pytest.fixture
def real_backend(tmp_path: Path, server: NatsServer) -> Iterator[dict[str, Any]]:
    cc_dir = SHARED_DIR / "cc-backend" if SHARED_DIR is not None else None
    if cc_dir is None or not os.access(cc_dir / "bin" / "cc-backend", os.X_OK):
        pytest.skip("the real cc-backend (../shared/cc-backend) is missing")
    done = subprocess.run(
        [str(cc_dir / "start.sh"), str(tmp_path / "ccb"), "--cluster-json", str(CLUSTER_JSON),
         "--commit-interval", "1s", "--nats-address", server.url, "--nats-subject", "jobs"],
        capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        pytest.fail(f"start.sh failed: {done.stderr.strip()[-2000:]}")
    info: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    try:
        yield info
    finally:
        os.kill(int(info["pid"]), signal.SIGTERM)


async def test_real_cc_backend_takes_our_messages(
        server: NatsServer, real_backend: dict[str, Any],
        publishers: list[NatsPublisher]) -> None:
    url, token = real_backend["url"], real_backend["token"]
    headers = {"X-Auth-Token": token}
    pub = fast(config(server), publishers)
    await pub.start()
    await wait_until(lambda: pub.connected)
    # cc-backend subscribes at start; make sure it is there before publishing
    await wait_until(lambda: "NATS API subscriptions started" in
                     Path(real_backend["log"]).read_text(), timeout=10)
    meta = {"jobName": 'tricky "name" \\ back\\nslash ü €'}
    for job_id in (31, 32):
        payload = start_payload(job_id, metaData=meta, startTime=T0 + job_id)
        assert (await pub.publish("start_job", payload, str(job_id))).ok
    assert (await pub.publish("stop_job", stop_payload(31, stop=T0 + 600, state="failed"),
                              "s31")).ok
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
        async def jobs() -> list[dict[str, Any]]:
            resp = await client.get("/api/jobs/?with-metadata=true&items-per-page=100")
            assert resp.status_code == 200, resp.text
            found: list[dict[str, Any]] = resp.json()["jobs"] or []
            return found

        def done(found: list[dict[str, Any]]) -> bool:
            by_id = {j["jobId"]: j for j in found}
            return {31, 32} <= set(by_id) and by_id[31]["jobState"] == "failed"

        found = await eventually(jobs, done, timeout=20)
        if not done(found):  # the stop may have come before the commit: send it again
            await pub.publish("stop_job", stop_payload(31, stop=T0 + 600, state="failed"), "s")
            found = await eventually(jobs, done, timeout=10)
    log = Path(real_backend["log"]).read_text()
    by_id = {j["jobId"]: j for j in found}
    assert done(found), (found, log[-3000:])
    assert by_id[31]["startTime"] == T0 + 31 and by_id[31]["duration"] == 600 - 31
    assert by_id[32]["jobState"] == "running"
    assert by_id[31]["metaData"] == meta and by_id[32]["metaData"] == meta
    assert "failed to decode" not in log
