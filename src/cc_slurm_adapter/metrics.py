"""Prometheus metrics of the daemon at ``/metrics`` (config key ``metricsListen``).

Imported only when ``metricsListen`` is set: prometheus_client costs RSS that a daemon
without metrics never needs (``daemon/__init__.py`` imports this module lazily).

The values are read from the running :class:`~.daemon.loop.Daemon` (its counters, the
store, the NATS publisher) on the daemon's event loop, every :data:`REFRESH_S` seconds,
into a snapshot; prometheus_client's own HTTP server (its thread) serves the latest
snapshot from a registry of its own (not the global one, which would also export this
process's Python and process collectors). The store's SQLite connection belongs to the
loop's thread, so the server's thread never touches it; a snapshot taken between two
awaits is consistent (no transaction is held across an ``await``).

The metrics (all prefixed ``cc_slurm_adapter_``):

``job_runs{state}``                    runs in the store per state
``outbox_entries{target}``             queued submissions per target (rest, nats)
``outbox_next_due_timestamp_seconds{target}``  when the earliest entry is due
``rest_requests_total``                start/stop requests answered by cc-backend (or not)
``rest_submissions_total{result}``     done, retried, rejected
``ccbackend_outage``                   1 while cc-backend's answers fail (after a failure
                                       until the next success), else 0
``ccbackend_consecutive_failures``     failed requests since the last success
``nats_connected``, ``nats_state{state}``, ``nats_connects_total``,
``nats_events_total{result}``          the NATS publisher (only with natsServer)
``polls_total``, ``poll_failures_total``   Slurm poll cycles (every cluster)
``poll_consecutive_failures{cluster}`` failed polls of a cluster since its last success
``sync_cursor_timestamp_seconds{cluster}``, ``seconds_since_last_successful_poll{cluster}``
                                       the sync cursor: the time a successful poll (or
                                       catch-up chunk) read Slurm up to
``hook_events_total``                  Prolog/Epilog events received
``realtime_rounds_total``, ``realtime_slurm_calls_total``, ``realtime_given_up_total``,
``realtime_dropped_total``, ``realtime_pending``   the real-time path
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cc_slurm_adapter.config import Config, listen_address
from cc_slurm_adapter.errors import StoreError
from cc_slurm_adapter.store import NATS, REST

if TYPE_CHECKING:
    from cc_slurm_adapter.daemon.loop import Daemon

__all__ = ["DaemonCollector", "MetricsServer", "start_metrics"]

log = logging.getLogger("cc_slurm_adapter.metrics")

P = "cc_slurm_adapter_"
NATS_STATES = ("idle", "connecting", "connected", "closed")
REFRESH_S = 5.0
"""How often the values are read on the loop (a scrape gets the latest reading)."""


class DaemonCollector(Collector):
    """Reads a :class:`Daemon` at every scrape."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._store_error_logged = False

    def describe(self) -> list[Metric]:
        return []  # registering must not run a collection (the store may not be ready)

    def collect(self) -> Iterator[Metric]:
        yield from self._store()
        yield from self._rest()
        yield from self._nats()
        yield from self._polls()
        yield from self._realtime()

    def _store(self) -> Iterator[Metric]:
        d = self.daemon
        store = d.store
        try:
            counts = store.counts()
            sizes = {t: store.outbox_size(t) for t in (REST, NATS)}
            due = {t: store.next_due(t) for t in (REST, NATS)}
            cursors = {cs.name: store.get_cursor(cs.name) for cs in d.clusters}
        except StoreError as exc:
            if not self._store_error_logged:
                log.warning("metrics: the state store cannot be read (%s); its metrics "
                            "are left out", exc)
                self._store_error_logged = True
            return
        self._store_error_logged = False
        runs = GaugeMetricFamily(P + "job_runs", "Job runs in the state store, per state.",
                                 labels=["state"])
        for state, n in counts.items():
            runs.add_metric([state.value], n)
        yield runs
        outbox = GaugeMetricFamily(P + "outbox_entries",
                                   "Queued submissions per target (rest, nats).",
                                   labels=["target"])
        next_due = GaugeMetricFamily(P + "outbox_next_due_timestamp_seconds",
                                     "When the earliest queued submission of a target is "
                                     "due (Unix time); absent when none is queued.",
                                     labels=["target"])
        for target in (REST, NATS):
            outbox.add_metric([target], sizes[target])
            when = due[target]
            if when is not None:
                next_due.add_metric([target], when)
        yield outbox
        yield next_due
        cursor = GaugeMetricFamily(P + "sync_cursor_timestamp_seconds",
                                   "How far Slurm was read by the last successful poll "
                                   "(Unix time; the sync cursor).", labels=["cluster"])
        age = GaugeMetricFamily(P + "seconds_since_last_successful_poll",
                                "Seconds since the time the last successful poll read "
                                "Slurm up to (the sync cursor).", labels=["cluster"])
        now = d.clock()
        for name, value in cursors.items():
            if value is not None:
                cursor.add_metric([name], value)
                age.add_metric([name], max(0.0, now - value))
        yield cursor
        yield age

    def _rest(self) -> Iterator[Metric]:
        stats = self.daemon.stats
        yield CounterMetricFamily(P + "rest_requests", "start_job/stop_job requests sent "
                                  "to cc-backend and answered (or failed).", value=stats.sent)
        results = CounterMetricFamily(P + "rest_submissions", "cc-backend's answers to "
                                      "start_job/stop_job, per result.", labels=["result"])
        for result, n in (("done", stats.done), ("retried", stats.retried),
                          ("rejected", stats.rejected)):
            results.add_metric([result], n)
        yield results
        yield GaugeMetricFamily(P + "ccbackend_outage", "1 while cc-backend's answers "
                                "fail (from a failed request to the next success).",
                                value=1 if getattr(self.daemon, "_cc_outage", False) else 0)
        yield GaugeMetricFamily(P + "ccbackend_consecutive_failures", "Failed cc-backend "
                                "requests since the last success.", value=stats.cc_failures)

    def _nats(self) -> Iterator[Metric]:
        drain = self.daemon.nats
        if drain is None:
            return
        publisher = drain.publisher
        yield GaugeMetricFamily(P + "nats_connected", "1 while connected to the NATS "
                                "server.", value=1 if publisher.connected else 0)
        state = getattr(publisher, "state", None)
        if isinstance(state, str):
            states = GaugeMetricFamily(P + "nats_state", "The NATS connection's state (1 for "
                                       "the current one).", labels=["state"])
            for name in dict.fromkeys((*NATS_STATES, state)):
                states.add_metric([name], 1 if name == state else 0)
            yield states
        connects = getattr(publisher, "connects", None)
        if isinstance(connects, int):
            yield CounterMetricFamily(P + "nats_connects", "Successful connections to NATS "
                                      "(the first one and every reconnect).", value=connects)
        events = CounterMetricFamily(P + "nats_events", "Job events given to NATS, per "
                                     "result.", labels=["result"])
        extra = self.daemon.stats.extra
        for result in ("published", "retried", "refused"):
            events.add_metric([result], extra.get(f"nats_{result}", 0))
        yield events

    def _polls(self) -> Iterator[Metric]:
        d = self.daemon
        yield CounterMetricFamily(P + "polls", "Slurm poll cycles (every cluster).",
                                  value=d.stats.polls)
        yield CounterMetricFamily(P + "poll_failures", "Slurm poll cycles that failed "
                                  "(every cluster).", value=d.stats.poll_failures)
        failing = GaugeMetricFamily(P + "poll_consecutive_failures", "Failed polls of a "
                                    "cluster since its last successful one.",
                                    labels=["cluster"])
        for cs in d.clusters:
            failing.add_metric([cs.name], cs.failures)
        yield failing
        yield CounterMetricFamily(P + "hook_events", "Prolog/Epilog events received.",
                                  value=d.stats.extra.get("hook_events", 0))

    def _realtime(self) -> Iterator[Metric]:
        rt = self.daemon.realtime
        for name, doc, value in (
                ("rounds", "Rounds of the real-time path (Slurm asked for due events).",
                 rt.rounds),
                ("slurm_calls", "Slurm commands run by the real-time path.", rt.calls),
                ("given_up", "Events the real-time path left to the poll after its "
                 "retries.", rt.given_up),
                ("dropped", "Events dropped by the real-time path (too many waiting); the "
                 "poll still finds their jobs.", rt.dropped)):
            yield CounterMetricFamily(f"{P}realtime_{name}", doc, value=value)
        yield GaugeMetricFamily(P + "realtime_pending", "Events waiting in the real-time "
                                "path.", value=len(rt.starts) + len(rt.ends))


class _Snapshot(Collector):
    """The families collected last on the loop; the server's thread only reads them."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)  # one reference, swapped whole by refresh()


class MetricsServer:
    """``/metrics`` on prometheus_client's HTTP server, fed by :meth:`refresh`."""

    def __init__(self, daemon: Daemon, host: str | None, port: int, *,
                 refresh_s: float = REFRESH_S) -> None:
        self.host, self.port = host, port
        self.refresh_s = refresh_s
        self.collector = DaemonCollector(daemon)
        self._snapshot = _Snapshot()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self._snapshot)
        self._httpd: Any = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, daemon: Daemon, config: Config) -> MetricsServer:
        host, port = listen_address(config.metrics_listen)
        return cls(daemon, host, port)

    def refresh(self) -> None:
        """Collect now (on the loop)."""
        try:
            families = list(self.collector.collect())
        except Exception:  # a bug in a collector must not end the daemon
            log.exception("metrics: collecting failed; serving the last values")
            return
        self._snapshot.families = families

    async def start(self) -> None:
        """Listen; OSError if the address cannot be bound."""
        self.refresh()
        self._httpd, self._thread = start_http_server(
            self.port, addr=self.host or "0.0.0.0", registry=self.registry)
        if self.port == 0:
            self.port = int(self._httpd.server_address[1])
        self._task = asyncio.create_task(self._refresh_forever(), name="metrics")

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            self.refresh()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._httpd is not None:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
            await asyncio.to_thread(httpd.shutdown)
            httpd.server_close()
            if thread is not None:
                await asyncio.to_thread(thread.join, 2.0)


async def start_metrics(daemon: Daemon, config: Config) -> MetricsServer | None:
    """The metrics server of ``metricsListen``, listening; None (one error logged) if the
    address cannot be bound: the daemon runs on without metrics."""
    server = MetricsServer.from_config(daemon, config)
    try:
        await server.start()
    except OSError as exc:
        log.error("cannot serve metrics on %s (%s); the daemon runs without them",
                  config.metrics_listen, exc.strerror or exc)
        return None
    log.info("metrics at http://%s/metrics", config.metrics_listen)
    return server
