"""The asyncio loop: poll Slurm, drain the outbox, reconcile with cc-backend.

Tasks (all on one event loop; the store is called directly, each call a short
transaction, never across an ``await``):

* **poll**, every ``slurmPollInterval`` per cluster: the sacct window from the cursor
  minus an overlap (two poll intervals, at least 60 s) to now, capped at
  ``slurmQueryMaxSpan`` (one warning says what was skipped) and read in chunks of at
  most :data:`CHUNK_S`, each chunk's results and its cursor committed in one
  transaction before the next is read; the last chunk is the Slurm source's cycle
  (window, live listing, details of new running jobs). Jobs the store watches that
  neither the window nor slurmctld shows any more are asked for by id (one bounded
  ``sacct -j`` per cycle). A failed Slurm call (down, timeout, truncated JSON) fails
  the cycle: the cursor stays, the next cycle tries again. If only sacct fails,
  slurmctld's view of running jobs is still snapshotted, so a slurmdbd outage does
  not cost their hwthreads.
* **drain**: the outbox's REST entries, oldest due first, up to ``max_in_flight``
  requests on the wire (the client's semaphore); each claimed batch's answers settle
  in one transaction. Woken by new entries and at ``next_due``. With natsServer set,
  one more drain publishes the NATS entries in order (:mod:`.nats_drain`); each
  target has its own entries, so neither waits for the other.
* **cc**: every ``ccPollInterval``, and after an outage ends (the first success
  after failures): ``GET /api/clusters/`` for the topology (kept on failure), then
  the reconciliation with cc-backend's running jobs of each cluster.
* **housekeeping**: ``prune`` every hour, keeping ``slurmQueryMaxSpan`` + 1 day.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import dataclasses
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from cc_slurm_adapter.ccbackend import Backoff, Outcome, OutcomeKind
from cc_slurm_adapter.config import Config
from cc_slurm_adapter.errors import CCBackendError, SlurmError, StoreError
from cc_slurm_adapter.mapping import Site, log_once
from cc_slurm_adapter.slurm.parse import parse_jobs
from cc_slurm_adapter.slurm.record import JobRecord
from cc_slurm_adapter.slurm.runner import Runner
from cc_slurm_adapter.slurm.source import SlurmInfo, SlurmSource, detect_slurm
from cc_slurm_adapter.store import NATS, REST, RunState, Store, Submission
from cc_slurm_adapter.topology import Topology, TopologyError

from .engine import CycleReport, Engine, EngineSettings, is_live_running
from .nats_drain import NatsDrain, Publisher
from .process import Notifier
from .realtime import Realtime

__all__ = ["CHUNK_S", "CCClient", "ClusterSync", "Daemon", "discover_clusters", "window"]

log = logging.getLogger("cc_slurm_adapter.daemon")

CHUNK_S = 6 * 3600
"""Longest sacct window read at once: a 7-day catch-up is 28 chunks, never all of
it in memory."""
MIN_OVERLAP_S = 60
MAX_OVERLAP_S = 600
"""The window re-reads ``2 × slurmPollInterval`` before the cursor (records slurmdbd
wrote late), between these bounds: slurmdbd's lag does not grow with the poll interval,
and at ``slurmPollInterval`` 3600 an uncapped overlap re-read two hours every cycle (at
the first poll after a start, every job of those two hours queued ahead of the hook's)."""
PRUNE_EVERY_S = 3600.0
DRAIN_LOOPS = 2
RECENT_END_S = 600
"""Jobs that ended this recently may still be in slurmctld (MinJobAge, default 300 s)."""
DAY = 86400


class CCClient(Protocol):
    """What the loop needs of :class:`~cc_slurm_adapter.ccbackend.CCBackendClient`."""

    max_in_flight: int

    async def start_job(self, payload: Any) -> Outcome: ...

    async def stop_job(self, payload: Any) -> Outcome: ...

    async def get_clusters(self) -> list[dict[str, Any]]: ...

    def running_jobs(self, cluster: str, page_size: int = ...) -> Any: ...

    async def aclose(self) -> None: ...


def window(cursor: int | None, now: int, *, poll_interval: int, max_span: int
           ) -> tuple[int, int, int | None]:
    """(start, end, skipped_from): the sacct window of a cycle. ``skipped_from`` is
    where the window would have begun when the cap cut it, else None."""
    overlap = min(MAX_OVERLAP_S, max(MIN_OVERLAP_S, 2 * poll_interval))
    floor = now - max_span
    if cursor is None:
        return floor, now, None
    start = min(cursor, now) - overlap
    if start >= floor:
        return start, now, None
    # only a cursor older than the cap skips jobs; the overlap alone reaching past it
    # (slurmPollInterval 3600: a 2 h overlap) is no gap, and no warning
    return floor, now, (start if cursor < floor else None)


def chunks(start: int, end: int, size: int = CHUNK_S) -> list[tuple[int, int]]:
    """``[start, end]`` in windows of at most ``size``, oldest first. The last one is a
    whole ``size`` long where the span allows: it is the cycle with slurmctld's
    details, so every job that ended recently (still in slurmctld) falls into it."""
    out = []
    b = end
    while b - start > size:
        out.append((b - size, b))
        b -= size
    out.append((start, b))
    return out[::-1]


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


async def discover_clusters(runner: Runner, timeout: float | None = None) -> list[str]:
    """The clusters slurmdbd accounts for (``sacctmgr list clusters``); [] if unknown."""
    try:
        result = await runner.run(["sacctmgr", "-n", "-P", "list", "clusters",
                                   "format=Cluster"], timeout=timeout)
    except SlurmError as exc:
        log.info("cannot list clusters with sacctmgr (%s); syncing the local one", exc)
        return []
    names = [line.strip() for line in result.stdout.decode("utf-8", "replace").splitlines()]
    return list(dict.fromkeys(n for n in names if n))


async def accounting_by_ids(source: SlurmSource, ids: Sequence[int]) -> list[JobRecord]:
    """``sacct -j <ids>`` (no window: with -j sacct looks back to the epoch)."""
    if not ids:
        return []
    argv = ["sacct", source.info.json_flag, "--allusers", "-X", "-j",
            ",".join(str(i) for i in sorted(set(ids)))]
    if source.cluster:
        argv += ["-M", source.cluster]
    result = await source.runner.run(argv, timeout=source.timeout)
    return parse_jobs(result.stdout, source="sacct", topology=source.topology).jobs


def _glibc(name: str) -> Any:
    """glibc's function ``name`` (a ctypes function), or None where there is none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return getattr(libc, name)
    except (OSError, AttributeError):
        return None  # not glibc


def _malloc_trim() -> Callable[[], object] | None:
    trim = _glibc("malloc_trim")
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


_TRIM = _malloc_trim()
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MALLOC_THRESHOLD = 128 * 1024


def fix_malloc_thresholds() -> bool:
    """Pin glibc's mmap and trim thresholds at their 128 KiB defaults; True if set.

    glibc raises both thresholds each time a large mmap'ed block is freed (up to 32 MB):
    after the first cycle, the sacct window's 4-7 MB of JSON comes from the heap, where
    the small objects allocated next keep it from shrinking, and the peak RSS crept up by
    about a megabyte over the first cycles (bench/bench_daemon_steady.py: 48.5 -> 50.2
    MB at 100,000 runs in the store). Pinned, a large output is mapped and unmapped on
    its own, and the peak stays where the first cycle put it (48.7 MB)."""
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MALLOC_THRESHOLD)) and \
        bool(mallopt(M_TRIM_THRESHOLD, MALLOC_THRESHOLD))


def release_free_memory() -> None:
    """Give the heap a cycle freed back to the kernel (glibc's ``malloc_trim``). A cycle's
    sacct window is parsed and dropped (7 MB of JSON for 1,000 running jobs); without
    this glibc keeps those pages, and the daemon's RSS between cycles stays at the peak."""
    if _TRIM is not None:
        _TRIM()


@dataclass(slots=True)
class ClusterSync:
    """One cluster's Slurm source and what the loop remembers of it."""

    name: str
    source: SlurmSource
    live: dict[int, str] | None = None
    """The last live listing (for the reconciliation), None before the first."""
    failures: int = 0
    capped_warned: bool = False
    last_report: CycleReport | None = None
    next_poll: float = 0.0


@dataclass(slots=True)
class _Stats:
    sent: int = 0
    done: int = 0
    retried: int = 0
    rejected: int = 0
    cc_failures: int = 0
    polls: int = 0
    poll_failures: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Daemon:
    """The sync loop for one store, one cc-backend client and one Slurm runner."""

    def __init__(self, config: Config, *, store: Store, client: CCClient, runner: Runner,
                 clock: Callable[[], float] = time.time, notifier: Notifier | None = None,
                 settings: EngineSettings | None = None, backoff: Backoff | None = None,
                 rand: Callable[[], float] = random.random, batch_size: int | None = None,
                 publisher: Publisher | None = None) -> None:
        self.config = config
        self.store = store
        self.client = client
        self.runner = runner
        self.clock = clock
        self.notifier = notifier or Notifier({})
        self.backoff = backoff or Backoff(1.0, 60.0)
        self.rand = rand
        self.batch_size = batch_size or max(16, 4 * client.max_in_flight)
        self.stats = _Stats()
        # Outbox targets: REST when ccRestSubmitJobs, NATS when a publisher is given
        # (natsServer set). Neither: REST, queued until ccRestSubmitJobs is turned on.
        targets = [t for t, on in ((REST, config.cc_rest_submit_jobs),
                                   (NATS, publisher is not None)) if on]
        moved = store.set_targets(targets or [REST])
        if moved:
            log.warning("%d queued submission(s) of a target no longer enabled now go to %s",
                        moved, store.primary)
        self.nats = None if publisher is None else NatsDrain(
            store, publisher, backoff=self.backoff, clock=clock, rand=rand,
            stats=self.stats.extra)
        self.topology: Topology | None = None
        self._sites: dict[str, Site] = {}
        self.engine = Engine(store, self.site_for, settings=settings, clock=clock)
        self.clusters: list[ClusterSync] = []
        self.info: SlurmInfo | None = None
        self.wake_drain = asyncio.Event()
        self.wake_poll = asyncio.Event()
        self.wake_cc = asyncio.Event()
        self.stopping = asyncio.Event()
        self._last_prune = 0.0
        self._cc_outage = False
        self._hook_timer: asyncio.TimerHandle | None = None

    # ----------------------------------------------------------------- set-up

    def site_for(self, cluster: str) -> Site:
        site = self._sites.get(cluster)
        if site is None:
            # check_hosts off: the topology numbers the hwthreads, but whether cc-backend
            # takes a host is cc-backend's to say (400, logged with its reason, kept as
            # rejected). Our copy of its cluster config can be up to ccPollInterval old,
            # and a job skipped on a stale copy would be lost for good.
            site = dataclasses.replace(
                Site.from_config(self.config, topology=self.topology, cluster=cluster),
                check_hosts=False)
            self._sites[cluster] = site
        return site

    def set_config(self, config: Config) -> None:
        self.config = config
        self._sites.clear()
        for cs in self.clusters:
            cs.source.timeout = float(config.slurm_command_timeout)

    async def setup(self) -> None:
        """Detect Slurm and its clusters, import upstream's cursor, read the topology.
        Raises SlurmError when Slurm cannot be asked (the caller retries)."""
        timeout = float(self.config.slurm_command_timeout)
        info = await detect_slurm(self.runner, timeout=timeout)
        self.info = info
        names = await discover_clusters(self.runner, timeout)
        if len(names) > 1:
            # upstream's --cluster loop: one source (sacct/squeue -M NAME) per cluster
            self.clusters = [ClusterSync(n, SlurmSource(self.runner, info, cluster=n,
                                                        timeout=timeout)) for n in names]
        else:
            name = (info.cluster_name or info.meta.cluster or (names[0] if names else None))
            if name is None:
                raise SlurmError("Slurm names no cluster (ClusterName, sacctmgr): cannot "
                                 "tell cc-backend which cluster the jobs run on")
            self.clusters = [ClusterSync(name, SlurmSource(self.runner, info,
                                                           timeout=timeout))]
        log.info("Slurm %s, cluster(s) %s", info.meta.release or "?",
                 ", ".join(c.name for c in self.clusters))
        imported = self.store.import_upstream_cursor(self.config.last_run_path)
        if imported is not None:
            log.warning("first start: carrying on from upstream's lastRunPath %s (%s)",
                        self.config.last_run_path, _iso(imported))
        await self.refresh_topology()

    async def refresh_topology(self) -> bool:
        try:
            clusters = await self.client.get_clusters()
            topology = Topology.from_json({"clusters": clusters})
        except (CCBackendError, TopologyError) as exc:
            log.warning("cannot read cc-backend's cluster topology (%s); %s", exc,
                        "keeping the last one" if self.topology else "hwthreads follow "
                        "Slurm's node layout until it can be read")
            return False
        for warning in topology.warnings:
            log.warning("cc-backend topology: %s", warning)
        for cs in self.clusters:
            if cs.name not in topology.clusters:
                log.warning("cluster %s is not configured in cc-backend: its jobs are not "
                            "sent (cc-backend would refuse them)", cs.name)
        self.topology = topology
        self._sites.clear()
        return True

    # ----------------------------------------------------------------- poll

    async def poll(self, cs: ClusterSync) -> CycleReport | None:
        """One cycle for one cluster. None if it failed (the cursor stays)."""
        self.stats.polls += 1
        try:
            try:
                report = await self._poll(cs)
            except SlurmError as exc:
                argv = getattr(exc, "argv", ())
                if argv and os.path.basename(argv[0]) == "sacct":
                    await self._snapshot_only(cs, self.engine.captured(cs.name))
                raise
        except (SlurmError, StoreError) as exc:
            cs.failures += 1
            self.stats.poll_failures += 1
            level = logging.WARNING if cs.failures < 3 or cs.failures % 10 == 0 \
                else logging.DEBUG
            log.log(level, "cluster %s: poll failed (%s); the cursor stays, retrying next "
                    "cycle", cs.name, exc)
            return None
        if cs.failures:
            log.warning("cluster %s: poll works again after %d failure(s)", cs.name,
                        cs.failures)
        cs.failures = 0
        cs.last_report = report
        if report.starts or report.stops:
            self.wake_drain.set()
        log.debug("cluster %s: %s", cs.name, report)
        return report

    async def _poll(self, cs: ClusterSync) -> CycleReport:
        now = int(self.clock())
        cursor = self.store.get_cursor(cs.name)
        start, end, skipped = window(cursor, now,
                                     poll_interval=max(1, self.config.slurm_poll_interval),
                                     max_span=self.config.slurm_query_max_span)
        if skipped is not None and not cs.capped_warned:
            cs.capped_warned = True
            log.warning("cluster %s: the last sync was at %s, longer ago than "
                        "slurmQueryMaxSpan (%d s): jobs that ended between %s and %s are "
                        "not read", cs.name, _iso(cursor or skipped),
                        self.config.slurm_query_max_span, _iso(skipped), _iso(start))
        elif cursor is None:
            log.info("cluster %s: no sync cursor yet; reading the last %d s", cs.name,
                     now - start)
        total = CycleReport()
        parts = chunks(start, end)
        live_now: dict[int, str] | None = None
        if len(parts) > 1:
            live_now = await cs.source.live_listing()
        recent = now - RECENT_END_S
        for a, b in parts[:-1]:
            # jobs that ended recently are in the last chunk too, where slurmctld's
            # details of them are fetched: leave them to it
            records = [r for r in await cs.source.accounting(a, b)
                       if r.end_time is None or r.end_time < recent]
            with self.store.transaction():
                total.add(self.engine.apply(cs.name, records, live=live_now, hold_live=True))
                self.store.set_cursor(cs.name, b)
            log.info("cluster %s: caught up to %s (%d records)", cs.name, _iso(b),
                     len(records))
            del records
        a, b = parts[-1]
        captured, started = self.engine.holdings(cs.name)
        result = await cs.source.cycle(a, b, captured=captured, unchanged=started)
        cs.live = result.live
        details = list(result.details)
        extra = self._ended_unseen(cs.name, result.accounting, result.live, captured)
        if extra:
            details += await cs.source.details(extra)
        present = {r.job_id for r in result.accounting} | set(result.unchanged) \
            | set(result.live)
        missing = self.engine.missing(cs.name, present)
        by_id: list[JobRecord] = []
        if missing:
            by_id = await accounting_by_ids(cs.source, missing)
            found = {r.job_id for r in by_id}
            for job_id in missing:
                if job_id not in found:
                    log_once(("missing", cs.name, str(job_id)), logging.INFO,
                             "cluster %s: job %s is neither in slurmctld nor in slurmdbd "
                             "(yet); asking again every cycle", cs.name, job_id)
        with self.store.transaction():
            total.add(self.engine.apply(cs.name, [*result.accounting, *by_id],
                                        details=details, live=result.live,
                                        deferred=result.deferred))
            total.seen += len(result.unchanged)
            self.store.set_cursor(cs.name, b)
        self._housekeeping()
        return total

    def _ended_unseen(self, cluster: str, accounting: Sequence[JobRecord],
                      live: dict[int, str], captured: set[int]) -> list[int]:
        """Jobs that ended between two polls, never seen running, that slurmctld may
        still hold (within MinJobAge; 300 s by default): one detail call gets their
        per-node resources. ``squeue -h -a -o`` lists no ended job (it shows pending and
        running ones only without ``-t all``), so the end time decides, not the listing."""
        out = []
        recent = self.clock() - RECENT_END_S
        for rec in accounting:
            if rec.job_id in captured or rec.start_time is None or not rec.nodes \
                    or is_live_running(live.get(rec.job_id)) or rec.end_time is None \
                    or rec.end_time < recent:
                continue
            run = self.store.find_run(cluster, rec.job_id, rec.start_time)
            if run is None or run.state is RunState.SEEN:
                out.append(rec.job_id)
        return out[:500]

    async def _snapshot_only(self, cs: ClusterSync, captured: set[int]) -> None:
        """sacct failed (slurmdbd down): still keep slurmctld's resources of the jobs
        running now, so they are not lost to MinJobAge before slurmdbd is back."""
        try:
            live = await cs.source.live_listing()
            need = sorted(i for i, s in live.items() if is_live_running(s)
                          and i not in captured)[:cs.source.max_detail_jobs]
            details = await cs.source.details(need) if need else []
        except SlurmError as exc:
            log.debug("cluster %s: slurmctld cannot be asked either (%s)", cs.name, exc)
            return
        cs.live = live
        if details:
            with self.store.transaction():
                report = self.engine.apply(cs.name, [], details=details, live=live)
            log.info("cluster %s: slurmdbd cannot be read; resources of %d running job(s) "
                     "kept meanwhile", cs.name, report.snapshots)

    def _housekeeping(self) -> None:
        now = self.clock()
        if now - self._last_prune < PRUNE_EVERY_S:
            return
        self._last_prune = now
        removed = self.store.prune(now - self.config.slurm_query_max_span - DAY)
        if removed:
            log.debug("pruned %d finished job runs", removed)

    # ----------------------------------------------------------------- drain

    async def drain_once(self) -> int:
        """One REST batch and, at the same time, one NATS batch (each settled in one
        transaction). Returns the entries sent."""
        if self.nats is None:
            return await self._drain_rest_once()
        counts = await asyncio.gather(self._drain_rest_once(), self.nats.drain_once())
        return sum(counts)

    async def _drain_rest_once(self) -> int:
        """Send one claimed REST batch and settle the answers in one transaction."""
        batch = self.store.claim(self.batch_size, target=REST)
        if not batch:
            return 0
        outcomes = await asyncio.gather(*(self._send(sub) for sub in batch))
        with self.store.transaction():
            for sub, outcome in zip(batch, outcomes, strict=True):
                try:
                    self._settle(sub, outcome)
                except StoreError as exc:
                    log.error("job %s: %s", sub.job_id, exc)
        return len(batch)

    async def drain(self, timeout: float | None = None) -> int:
        """Drain until nothing is due (tests, shutdown). Returns entries sent."""
        total = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        while deadline is None or time.monotonic() < deadline:
            n = await self.drain_once()
            if not n:
                break
            total += n
        return total

    async def _send(self, sub: Submission) -> Outcome:
        try:
            payload = msgspec.json.decode(sub.payload)
            if sub.kind == "start":
                return await self.client.start_job(payload)
            return await self.client.stop_job(payload)
        except Exception as exc:  # the client never raises; this is a last guard
            return Outcome(OutcomeKind.RETRY, None, f"{type(exc).__name__}: {exc}")

    def _settle(self, sub: Submission, outcome: Outcome) -> None:
        self.stats.sent += 1
        what = f"job {sub.job_id}"
        kind = outcome.kind
        if kind is OutcomeKind.DONE:
            self.stats.done += 1
            if self._cc_outage:
                self._cc_outage = False
                # the entries that failed meanwhile each wait out their own backoff (up
                # to a minute): cc-backend is back, so they are all due now
                released = self.store.retry_now(REST)
                log.warning("cc-backend answers again; %d queued submission(s) due now; "
                            "reconciling", released)
                self.wake_cc.set()
                self.wake_drain.set()
            self.stats.cc_failures = 0
            self.store.ack(sub.id)
            verb = "started" if sub.kind == "start" else "stopped"
            note = " (it was there already)" if outcome.status == 422 else ""
            log.info("%s %s in cc-backend%s", what, verb, note)
        elif kind is OutcomeKind.NEEDS_START:
            if self.engine.stop_not_found(sub.id, sub.run_id):
                log.info("%s: cc-backend has no such job for the stop; sending its start "
                         "first", what)
        elif kind is OutcomeKind.REJECTED:
            self.stats.rejected += 1
            reason = f"{outcome.status or 'not sent'}: {outcome.detail}".strip()
            self.store.reject(sub.id, reason)
            log.error("%s rejected: %s", what, reason)
            if outcome.body:
                log.info("%s: cc-backend answered %s", what, outcome.body[:2000])
        else:
            self.stats.retried += 1
            self.stats.cc_failures += 1
            if self.stats.cc_failures == 1 or self.stats.cc_failures % 1000 == 0:
                log.warning("cc-backend: %s of %s failed (%s); kept, retrying with backoff",
                            sub.kind, what, outcome)
            self._cc_outage = True
            delay = self.backoff.delay(sub.attempts, self.rand)
            self.store.fail(sub.id, retry_at=self.clock() + delay, error=str(outcome))
            log.debug("%s %s: %s; again in %.1f s", sub.kind, what, outcome, delay)

    async def _drain_forever(self) -> None:
        while not self.stopping.is_set():
            try:
                n = await self._drain_rest_once()
            except StoreError as exc:
                log.error("outbox: %s", exc)
                n = 0
                await self._sleep(self.wake_drain, 5.0)
            if n:
                continue
            due = self.store.next_due(REST)
            wait = 30.0 if due is None else min(30.0, max(1.0, due - self.clock()))
            await self._sleep(self.wake_drain, wait)

    # ----------------------------------------------------------------- cc-backend

    async def reconcile(self, cs: ClusterSync) -> bool:
        """Compare cc-backend's running jobs of one cluster with the store."""
        try:
            jobs = [job async for job in self.client.running_jobs(cs.name)]
        except CCBackendError as exc:
            log.warning("cluster %s: cannot read cc-backend's running jobs (%s); "
                        "reconciling later", cs.name, exc)
            return False
        with self.store.transaction():
            lookup, resent = self.engine.reconcile(cs.name, jobs, cs.live)
        if lookup:
            try:
                records = await accounting_by_ids(cs.source, lookup[:1000])
            except SlurmError as exc:
                log.warning("cluster %s: reconcile: sacct failed (%s)", cs.name, exc)
                return False
            found = {r.job_id for r in records}
            for job_id in lookup:
                if job_id not in found:
                    log_once(("cc-only", cs.name, str(job_id)), logging.WARNING,
                             "cluster %s: cc-backend lists job %s as running; Slurm has "
                             "no record of it: left as it is", cs.name, job_id)
            with self.store.transaction():
                report = self.engine.apply(cs.name, records, live=cs.live,
                                           force_stop=set(lookup))
            resent += report.starts + report.stops
        log.info("cluster %s: reconciled with cc-backend (%d running there, %d "
                 "submissions queued again)", cs.name, len(jobs), resent)
        if resent:
            self.wake_drain.set()
        return True

    async def cc_round(self) -> None:
        await self.refresh_topology()
        for cs in self.clusters:
            await self.reconcile(cs)

    # ----------------------------------------------------------------- hook events

    _realtime: Realtime | None = None

    @property
    def realtime(self) -> Realtime:
        """The real-time path (:mod:`.realtime`), made at first use."""
        if self._realtime is None:
            self._realtime = Realtime(self, accounting_by_ids)
        return self._realtime

    def hook_event(self, job_id: int, context: str) -> None:
        """A Prolog/Epilog event: the job is asked for at once (:mod:`.realtime`); an
        event without a context, or on a multi-cluster daemon, polls after
        ``slurmQueryDelay`` (events coalesce)."""
        what = {"prolog_slurmctld": "started", "epilog_slurmctld": "ended"}.get(context,
                                                                               "event")
        self.stats.extra["hook_events"] = self.stats.extra.get("hook_events", 0) + 1
        if self.realtime.takes(context):
            log.debug("hook: job %s %s; asking Slurm now", job_id, what)
            self.realtime.event(job_id, context)
            return
        log.debug("hook: job %s %s; polling in %d s", job_id, what,
                  max(1, self.config.slurm_query_delay))
        if self._hook_timer is None:
            loop = asyncio.get_running_loop()
            self._hook_timer = loop.call_later(max(1, self.config.slurm_query_delay),
                                               self._hook_due)

    def _hook_due(self) -> None:
        self._hook_timer = None
        self.wake_poll.set()

    # ----------------------------------------------------------------- run

    @staticmethod
    async def _sleep(event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
        event.clear()

    async def _poll_forever(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            for cs in self.clusters:
                if self.stopping.is_set():
                    return
                await self.poll(cs)
            release_free_memory()
            self.notifier.status(self.status_line())
            interval = max(1, self.config.slurm_poll_interval)
            await self._sleep(self.wake_poll, max(0.0, interval - (time.monotonic() - started)))

    async def _cc_forever(self) -> None:
        while not self.stopping.is_set():
            await self._sleep(self.wake_cc, float(self.config.cc_poll_interval))
            if self.stopping.is_set():
                return
            await self.cc_round()

    async def _watchdog_forever(self) -> None:
        assert self.notifier.watchdog_s is not None
        while not self.stopping.is_set():
            self.notifier.watchdog()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.notifier.watchdog_s / 2)

    def status_line(self) -> str:
        return (f"{self.store.outbox_size()} submissions queued; "
                f"{self.stats.done} done, {self.stats.rejected} rejected")

    async def run_until_stopped(self) -> None:
        """Every task until :attr:`stopping` is set; then the drain's batch in flight
        is finished and its answers are written before this returns."""
        forever = [asyncio.create_task(self._poll_forever(), name="poll"),
                   asyncio.create_task(self._cc_forever(), name="cc")]
        # two drain loops: one batch's answers are written while the next is on the wire
        # (ccRestSubmitJobs false: nothing is sent over REST; the outbox keeps it all)
        drains = [asyncio.create_task(self._drain_forever(), name=f"drain-{i}")
                  for i in range(DRAIN_LOOPS if self.config.cc_rest_submit_jobs else 0)]
        # one NATS drain: its events go out in order, one after the other
        if self.nats is not None:
            drains.append(asyncio.create_task(self.nats.run(self.stopping, self.wake_drain),
                                              name="drain-nats"))
        tasks = list(forever)
        if self.notifier.watchdog_s:
            tasks.append(asyncio.create_task(self._watchdog_forever(), name="watchdog"))
        # the first reconcile: after the first poll, so the live listing is known
        tasks.append(asyncio.create_task(self._first_cc(), name="first-cc"))
        tasks.append(asyncio.create_task(self.realtime.run_forever(), name="realtime"))
        stop = asyncio.create_task(self.stopping.wait())
        try:
            # only a stop request ends this; a task that ends otherwise has failed
            done, _ = await asyncio.wait([stop, *drains, *forever],
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop and not self.stopping.is_set():
                    exc = task.exception()
                    raise exc if exc is not None else RuntimeError(
                        f"the {task.get_name()} task ended")
        finally:
            self.stopping.set()
            self.wake_drain.set()
            for task in tasks:
                task.cancel()
            # the drain task checks `stopping` between batches: the batch on the wire
            # finishes and its answers are stored
            limit = float(getattr(self.client, "timeout", 30.0)) + 5.0
            if drains:
                _, late = await asyncio.wait(drains, timeout=limit)
                for task in late:
                    task.cancel()
            for task in [*tasks, *drains, stop]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _first_cc(self) -> None:
        while not self.stopping.is_set() and any(cs.live is None for cs in self.clusters):
            await asyncio.sleep(1.0)
        if not self.stopping.is_set():
            for cs in self.clusters:
                await self.reconcile(cs)
