"""The daemon's Prometheus metrics (metricsListen): scraped over HTTP from a Daemon on the
stand-in and FakeSlurm; every expected value is read from the store's SQLite file, the
stand-in's audit or the test's own clock, never from the code under test."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cc_slurm_adapter.ccbackend import Backoff, CCBackendClient
from cc_slurm_adapter.config import build_config, listen_address
from cc_slurm_adapter.daemon.loop import Daemon
from cc_slurm_adapter.errors import ConfigError
from cc_slurm_adapter.metrics import MetricsServer, start_metrics
from cc_slurm_adapter.store import open_store
from tests.unit.daemon.fakeslurm import FakeSlurm
from tests.unit.daemon.harness import Harness, fresh, make_config

from .fakes import Clock

__all__ = ["fresh"]  # the stand-in fixture of test_loop, used here

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape_raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


async def scrape(server: MetricsServer) -> Samples:
    server.refresh()  # what the loop does every REFRESH_S seconds
    data = await scrape_raw(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split()[1] == b"200", head
    assert b"Content-Type: text/plain; version=0.0.4" in head
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(f"cc_slurm_adapter_{name}", tuple(sorted(labels.items())))]


def sql(harness: Harness, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(harness.config.state_path) as db:
        return db.execute(query, args).fetchall()


def cc_requests(si: Any) -> list[Any]:
    return [e for e in si.audit() if e.method == "POST" and "_job" in e.path]


@pytest.fixture
async def metrics_harness(tmp_path: Path, fresh: Any) -> AsyncIterator[Harness]:
    h = Harness(tmp_path, fresh, FakeSlurm("24.11", "running1"),
                clock=Clock(float(int(time.time()))))
    yield h
    await h.close()


async def serve_metrics(daemon: Daemon) -> MetricsServer:
    server = MetricsServer(daemon, "127.0.0.1", 0)
    await server.start()
    return server


async def test_metrics_follow_the_store_and_the_standin(metrics_harness: Harness) -> None:
    h = metrics_harness
    daemon = await h.open()
    server = await serve_metrics(daemon)
    try:
        cluster = h.slurm.sacct_doc()["jobs"][0]["cluster"]
        await h.cycle()
        got = await scrape(server)
        # before any drain: the queued starts as the store's file holds them
        rest_queued = sql(h, "SELECT count(*) FROM outbox WHERE target = 'rest'")[0][0]
        assert rest_queued > 0
        assert value(got, "outbox_entries", target="rest") == rest_queued
        assert value(got, "outbox_entries", target="nats") == 0
        due = sql(h, "SELECT min(next_attempt) FROM outbox WHERE target = 'rest'")[0][0]
        assert value(got, "outbox_next_due_timestamp_seconds", target="rest") == due
        assert ("cc_slurm_adapter_outbox_next_due_timestamp_seconds",
                (("target", "nats"),)) not in got
        assert value(got, "polls_total") == 1
        assert value(got, "poll_failures_total") == 0
        assert value(got, "poll_consecutive_failures", cluster=cluster) == 0
        # the cursor is the Slurm time the poll read up to: the test's clock then
        start = h.clock.now
        assert value(got, "sync_cursor_timestamp_seconds", cluster=cluster) == start
        h.clock.now += 42.5
        got = await scrape(server)
        assert value(got, "seconds_since_last_successful_poll", cluster=cluster) == 42.5

        await h.drain_all()
        h.slurm.phase = "after"
        await h.cycle()
        await h.drain_all()
        got = await scrape(server)
        by_state = dict(sql(h, "SELECT state, count(*) FROM runs GROUP BY state"))
        assert by_state.get("stopped", 0) == len(h.si.jobs()) > 0
        for state in ("seen", "start_pending", "started", "stop_pending", "stopped",
                      "rejected", "unrepresentable"):
            assert value(got, "job_runs", state=state) == by_state.get(state, 0), state
        sent = cc_requests(h.si)
        assert value(got, "rest_requests_total") == len(sent)
        assert value(got, "rest_submissions_total", result="done") == \
            sum(e.outcome == "ok" for e in sent)
        assert value(got, "rest_submissions_total", result="rejected") == 0
        assert value(got, "outbox_entries", target="rest") == 0
        assert value(got, "ccbackend_outage") == 0
        assert value(got, "polls_total") == 2
        # not started with natsServer: no NATS metrics at all
        assert not any(name.startswith("cc_slurm_adapter_nats") for name, _ in got)
    finally:
        await server.close()


async def test_outage_poll_failures_and_hook_events(metrics_harness: Harness) -> None:
    h = metrics_harness
    daemon = await h.open()
    server = await serve_metrics(daemon)
    try:
        cluster = h.slurm.sacct_doc()["jobs"][0]["cluster"]
        h.si.set_fault("error", status=503)
        await h.cycle()
        await daemon.drain_once()
        got = await scrape(server)
        failed = [e for e in cc_requests(h.si) if e.status == 503]
        assert failed
        assert value(got, "ccbackend_outage") == 1
        assert value(got, "rest_submissions_total", result="retried") == len(failed)
        assert value(got, "ccbackend_consecutive_failures") == len(failed)
        h.si.clear_fault()
        await h.drain_all()
        got = await scrape(server)
        assert value(got, "ccbackend_outage") == 0
        assert value(got, "ccbackend_consecutive_failures") == 0

        h.slurm.fail = {"sacct", "squeue", "scontrol"}  # Slurm down
        await h.cycle()
        await h.cycle()
        got = await scrape(server)
        assert value(got, "polls_total") == 3
        assert value(got, "poll_failures_total") == 2
        assert value(got, "poll_consecutive_failures", cluster=cluster) == 2
        h.slurm.fail = set()
        await h.cycle()
        got = await scrape(server)
        assert value(got, "poll_consecutive_failures", cluster=cluster) == 0

        for job_id in (101, 102, 103):
            daemon.hook_event(job_id, "prolog_slurmctld")
        daemon.hook_event(104, "epilog_slurmctld")
        got = await scrape(server)
        assert value(got, "hook_events_total") == 4
        assert value(got, "realtime_pending") == 4  # the real-time task is not running
        assert value(got, "realtime_rounds_total") == 0
    finally:
        await server.close()


@dataclass
class FakePublisher:
    state: str = "connected"
    connects: int = 3

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    async def publish(self, kind: str, payload: bytes, msg_id: str) -> Any:
        raise AssertionError("not drained in this test")


async def test_nats_connection_state_and_outbox(tmp_path: Path, fresh: Any) -> None:
    pytest.importorskip("nats")  # NatsDrain needs the message-id helper
    config = make_config(tmp_path, fresh)
    store = open_store(config.state_path)
    client = CCBackendClient(fresh.url, fresh.token, timeout=5)
    slurm = FakeSlurm("24.11", "running1")
    publisher = FakePublisher()
    try:
        daemon = Daemon(config, store=store, client=client, runner=slurm.runner,
                        backoff=Backoff(0.01, 0.05), publisher=publisher)
        await daemon.setup()
        server = await serve_metrics(daemon)
        try:
            for cs in daemon.clusters:
                await daemon.poll(cs)
            got = await scrape(server)
            with sqlite3.connect(config.state_path) as db:
                queued = dict(db.execute("SELECT target, count(*) FROM outbox GROUP BY target"))
            assert queued["nats"] > 0
            assert value(got, "outbox_entries", target="nats") == queued["nats"]
            assert value(got, "outbox_entries", target="rest") == queued["rest"]
            assert value(got, "nats_connected") == 1
            assert value(got, "nats_connects_total") == 3
            assert value(got, "nats_state", state="connected") == 1
            assert value(got, "nats_state", state="connecting") == 0
            publisher.state, publisher.connects = "connecting", 4
            got = await scrape(server)
            assert value(got, "nats_connected") == 0
            assert value(got, "nats_state", state="connecting") == 1
            assert value(got, "nats_state", state="connected") == 0
            assert value(got, "nats_connects_total") == 4
            assert value(got, "nats_events_total", result="published") == 0
        finally:
            await server.close()
    finally:
        await client.aclose()
        store.close()


async def test_values_are_read_on_the_loop_and_served_from_the_snapshot(
        metrics_harness: Harness) -> None:
    """The server's thread never reads the store: a change shows after the next refresh."""
    daemon = await metrics_harness.open()
    server = MetricsServer(daemon, "127.0.0.1", 0, refresh_s=3600)
    await server.start()
    try:
        before = await scrape_raw(server.port, b"GET /metrics HTTP/1.1\r\n\r\n")
        daemon.stats.polls += 7
        same = await scrape_raw(server.port, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert before.partition(b"\r\n\r\n")[2] == same.partition(b"\r\n\r\n")[2]
        assert value(await scrape(server), "polls_total") == daemon.stats.polls
    finally:
        await server.close()


async def test_a_port_in_use_is_one_error_and_no_server(metrics_harness: Harness,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    daemon = await metrics_harness.open()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = build_config({"metricsListen": f"127.0.0.1:{port}"}, "c.json",
                              purpose="tool").config
        with caplog.at_level(logging.ERROR, logger="cc_slurm_adapter.metrics"):
            assert await start_metrics(daemon, config) is None
    lines = [r.getMessage() for r in caplog.records if r.name == "cc_slurm_adapter.metrics"]
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], lines
    assert "\n" not in lines[0] and caplog.records[-1].exc_info is None


@pytest.mark.parametrize(("text", "expected"), [
    (":9105", (None, 9105)),
    ("127.0.0.1:9105", ("127.0.0.1", 9105)),
    ("localhost:65535", ("localhost", 65535)),
    ("[::1]:9105", ("::1", 9105)),
])
def test_listen_addresses(text: str, expected: tuple[str | None, int]) -> None:
    assert build_config({"metricsListen": text}, "c.json",
                        purpose="tool").config.metrics_listen == text
    assert listen_address(text) == expected


@pytest.mark.parametrize(("text", "says"), [
    ("9105", "no port"),
    (":0", "from 1 to 65535"),
    ("host:70000", "from 1 to 65535"),
    ("host:http", "from 1 to 65535"),
    ("::1:9105", "needs brackets"),
    ("[nope]:9105", "IPv6 address is not valid"),
    ("bad host:9105", "host name is not valid"),
])
def test_bad_listen_addresses_are_one_clear_error(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config({"metricsListen": text}, "c.json", purpose="tool")
    message = str(info.value)
    assert "metricsListen" in message and says in message and "\n" not in message


def test_off_by_default_and_prometheus_client_not_imported() -> None:
    assert build_config({}, "c.json", purpose="tool").config.metrics_listen == ""
    code = ("import sys, cc_slurm_adapter.daemon, cc_slurm_adapter.cli\n"
            "print('prometheus_client' in sys.modules, 'cc_slurm_adapter.metrics' in "
            "sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.split() == ["False", "False"]


async def test_serve_starts_the_metrics_and_closes_them_at_exit(tmp_path: Path,
                                                                fresh: Any) -> None:
    import dataclasses

    from cc_slurm_adapter.daemon import serve

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = dataclasses.replace(make_config(tmp_path, fresh),
                                 metrics_listen=f"127.0.0.1:{port}")
    task = asyncio.create_task(serve(config, runner=FakeSlurm("24.11", "after").runner))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    got: Samples = {}
    while loop.time() < deadline and not got.get(("cc_slurm_adapter_polls_total", ())):
        await asyncio.sleep(0.1)
        try:
            data = await scrape_raw(port, b"GET /metrics HTTP/1.1\r\n\r\n")
        except OSError:
            continue
        got = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(data.partition(b"\r\n\r\n")[2].decode())
               for s in f.samples}
    assert got.get(("cc_slurm_adapter_polls_total", ()), 0) >= 1
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(task, 30) == 0
    with pytest.raises(OSError):
        await scrape_raw(port, b"GET /metrics HTTP/1.1\r\n\r\n")
