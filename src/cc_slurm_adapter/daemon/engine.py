"""The sync decisions: Slurm records + the store → store transitions and outbox entries.

No asyncio and no I/O other than the store, so every rule here is tested with
hand-made :class:`~cc_slurm_adapter.slurm.record.JobRecord`\\ s. The loop
(:mod:`.loop`) asks Slurm, hands the records to :meth:`Engine.apply` inside one store
transaction together with the cursor, and drains the outbox.

Rules, per record (one cluster at a time):

* **Never started** (no start time, no host, pending): nothing. A pending job means
  nothing to cc-backend.
* **Details first.** A slurmctld detail record (per-node CPU ids, GPU indices) is
  checked against sacct's identity (``slurm.merge``: user, account and hosts come
  from slurmdbd, which no job field can shape) and stored as the run's resource
  snapshot. A later, poorer view (sacct after MinJobAge) never replaces it, and the
  start payload is built from the richest view the store holds.
* **Start** once per run, with the startTime stored when the run was first seen
  (``Run.start_time``), whichever source saw it first; the payload is built from the
  richest view. A running job whose details are deferred (over the per-cycle cap)
  waits one cycle, so it is not sent without hwthreads.
* **Stop** from an ENDED record with a real end time (``mapping.stop_payload``), with
  that same startTime; queued right behind a start that is still pending, so a job
  cancelled seconds after it started gets both. An UNKNOWN state never gives a stop.
* **Provisional** sacct records (22.05's placeholder, a replay after a slurmdbd
  outage) are not final: the run is kept (so the by-id query finds it again if it
  leaves the window) and the engine waits for the real record, at most
  ``provisional_wait_s``; then it takes what it has and logs so.
* **Requeues**: a run whose start cc-backend 1.5 would refuse under its 24 h rule
  (``Store.conflicting_run``) is marked unrepresentable with the reason, logged once.
* **Skipped** jobs (host in no sub-cluster, every host ignored …): a running one is
  looked at again next cycle (the topology may change); an ended one is marked
  unrepresentable with the reason, so it is not asked for again.
* **One bad job never blocks the others**: a failure while handling one record is
  logged with its job id and the rest of the cycle goes on. Only a failure of the
  store itself (disk full) fails the cycle, and then the cursor stays.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from cc_slurm_adapter.errors import StoreError
from cc_slurm_adapter.mapping import Site, log_once, map_job, stop_payload
from cc_slurm_adapter.slurm.merge import with_accounting_identity
from cc_slurm_adapter.slurm.phase import Phase
from cc_slurm_adapter.slurm.record import JobRecord
from cc_slurm_adapter.store import Run, RunState, Store

__all__ = ["LIVE_RUNNING_STATES", "CycleReport", "Engine", "EngineSettings", "is_live_running"]

log = logging.getLogger("cc_slurm_adapter.daemon")

LIVE_RUNNING_STATES = frozenset({
    "RUNNING", "SUSPENDED", "STOPPED", "CONFIGURING", "COMPLETING", "SIGNALING",
    "STAGE_OUT", "POWER_UP_NODE", "RESIZING", "UPDATE_DB",
})
"""``squeue -o %T`` names of a job that holds its nodes (slurm.phase: running, ctld)."""

_WATCHED = (RunState.SEEN, RunState.START_PENDING, RunState.STARTED)
"""Runs whose end the daemon still waits for."""


def is_live_running(state: str | None) -> bool:
    return state is not None and state.upper() in LIVE_RUNNING_STATES


@dataclass(frozen=True, slots=True)
class EngineSettings:
    provisional_wait_s: float = 600.0
    """How long a provisional sacct record is waited on before it is taken as it is."""
    reconcile_grace_s: float = 300.0
    """A start acknowledged less than this long ago may still be missing from cc-backend
    1.5's ``GET /api/jobs/`` (its job cache is committed every 1–2 min, contract §6)."""
    missing_query_limit: int = 1000
    """Job ids per cycle asked for by id (runs the window and squeue no longer show)."""


@dataclass(slots=True)
class CycleReport:
    """What one :meth:`Engine.apply` did (counts for the log and the tests)."""

    seen: int = 0
    starts: int = 0
    stops: int = 0
    snapshots: int = 0
    waiting: list[int] = field(default_factory=list)
    """Job ids whose provisional record is waited on."""
    deferred: int = 0
    skipped: int = 0
    unrepresentable: int = 0
    errors: int = 0

    def add(self, other: CycleReport) -> None:
        for name in ("seen", "starts", "stops", "snapshots", "deferred", "skipped",
                     "unrepresentable", "errors"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.waiting.extend(other.waiting)

    def __str__(self) -> str:
        text = (f"{self.seen} jobs seen, {self.starts} starts and {self.stops} stops "
                f"queued, {self.snapshots} resource snapshots")
        for name in ("deferred", "skipped", "unrepresentable", "errors"):
            if getattr(self, name):
                text += f", {getattr(self, name)} {name}"
        if self.waiting:
            text += f", waiting for the final record of {len(self.waiting)}"
        return text


def _encode(payload: Mapping[str, Any]) -> bytes:
    return msgspec.json.encode(payload)


class Engine:
    """The decisions of the sync, against one :class:`Store`.

    ``site_for(cluster)`` gives the mapping's :class:`Site` for a cluster (with the
    current topology and the cluster name the payloads carry).
    """

    def __init__(self, store: Store, site_for: Callable[[str], Site], *,
                 settings: EngineSettings | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.site_for = site_for
        self.settings = settings or EngineSettings()
        self.clock = clock
        self._provisional_since: dict[tuple[str, int], float] = {}
        self._not_found_once: set[int] = set()

    # ----------------------------------------------------------------- the cycle

    def apply(self, cluster: str, accounting: Sequence[JobRecord], *,
              details: Sequence[JobRecord] = (), live: Mapping[int, str] | None = None,
              deferred: Collection[int] = (), hold_live: bool = False,
              force_stop: Collection[int] = ()) -> CycleReport:
        """Take one batch of Slurm records into the store. Call it inside
        ``store.transaction()`` together with the cursor it covers.

        ``details`` are slurmctld records of running jobs (with resources), ``live``
        the listing (job id → state), ``deferred`` running jobs whose details did not
        fit this cycle. ``hold_live``: a catch-up chunk; jobs slurmctld runs now are
        left to the final chunk, which has their details. ``force_stop``: job ids that
        cc-backend still lists as running although the store has them stopped
        (reconciliation): their stop is queued again.
        """
        report = CycleReport()
        by_id: dict[int, JobRecord] = {}
        for record in accounting:
            by_id[record.job_id] = record
        for detail in details:
            try:
                self._snapshot(cluster, detail, by_id.get(detail.job_id), report)
            except StoreError as exc:
                self._failed(detail, exc, report)
        live = live or {}
        for record in by_id.values():
            if hold_live and is_live_running(live.get(record.job_id)):
                continue
            try:
                self._one(cluster, record, deferred, report,
                          force_stop=record.job_id in force_stop)
            except StoreError as exc:
                self._failed(record, exc, report)
        return report

    def _failed(self, record: JobRecord, exc: Exception, report: CycleReport) -> None:
        report.errors += 1
        log.error("job %s: %s", record.job_id, exc)

    def _snapshot(self, cluster: str, detail: JobRecord, accounting: JobRecord | None,
                  report: CycleReport) -> None:
        if detail.start_time is None:
            return
        merged = with_accounting_identity(detail, accounting)
        before = self.store.find_run(cluster, detail.job_id, detail.start_time)
        run = self.store.observe_record(merged, cluster=cluster)
        if before is None or run.snapshot_rank != before.snapshot_rank:
            report.snapshots += 1
            log.debug("job %s: resources captured (%s)", detail.job_id,
                      ", ".join(detail.nodes) or "no hosts")

    def _one(self, cluster: str, record: JobRecord, deferred: Collection[int],
             report: CycleReport, *, force_stop: bool = False) -> None:
        if record.start_time is None or record.start_time <= 0 or not record.nodes \
                or record.phase is Phase.PENDING:
            return  # never started (map_job would say so): nothing for cc-backend
        report.seen += 1
        run = self.store.observe_record(record, cluster=cluster)
        if run.state in (RunState.REJECTED, RunState.UNREPRESENTABLE, RunState.STOP_PENDING):
            return
        if run.state is RunState.STOPPED and not force_stop:
            return
        key = (cluster, run.id)
        if record.provisional:
            since = self._provisional_since.setdefault(key, self.clock())
            waited = self.clock() - since
            if waited < self.settings.provisional_wait_s:
                report.waiting.append(record.job_id)
                log.debug("job %s: slurmdbd's record is provisional (%s); waiting for the "
                          "real one (%.0f s so far)", record.job_id, record.state, waited)
                return
            log.warning("job %s: slurmdbd's record is still provisional after %.0f s "
                        "(state %s); taking it as it is", record.job_id, waited, record.state)
            record = msgspec.structs.replace(record, provisional=False)
        self._provisional_since.pop(key, None)
        site = self.site_for(cluster)
        if run.state is RunState.SEEN:
            if record.phase is Phase.RUNNING and record.job_id in deferred:
                report.deferred += 1
                return  # its details come next cycle: no start without hwthreads
            if not self._start(run, record, site, report):
                return
        if record.phase is Phase.ENDED:
            self._stop(run, record, site, report)

    def _best(self, run: Run, record: JobRecord) -> JobRecord:
        """The richest view of this run for its start payload: the stored snapshot
        (slurmctld's, checked against accounting) when it is richer than ``record``."""
        snap = self.store.snapshot_record(run.id)
        if snap is None or snap.detail_rank <= record.detail_rank:
            return record
        if snap.source == "sacct":
            return snap
        merged = with_accounting_identity(snap, record)
        # The account of the run (hosts, identity) is slurmdbd's; the state of the
        # snapshot may be older: the stop is built from ``record`` anyway.
        return msgspec.structs.replace(merged, provisional=False)

    def _start(self, run: Run, record: JobRecord, site: Site, report: CycleReport) -> bool:
        conflict = self.store.conflicting_run(run)
        if conflict is not None:
            reason = (f"requeued run: cc-backend keeps the run of startTime "
                      f"{conflict.start_time} and refuses another start of job "
                      f"{run.job_id} within 24 h (it answers 422)")
            self.store.mark_unrepresentable(run.id, reason)
            report.unrepresentable += 1
            log.warning("%s not sent: %s", run.label, reason)
            if conflict.state in (RunState.START_PENDING, RunState.STARTED) \
                    and conflict.start_time < run.start_time:
                self._stop_requeued(conflict, run, record, site, report)
            return False
        mapped = map_job(self._best(run, record), site)
        if mapped.skip_reason is not None:
            report.skipped += 1
            if record.phase is Phase.ENDED:
                self.store.mark_unrepresentable(run.id, f"not sent: {mapped.skip_reason}")
                report.unrepresentable += 1
            return False
        if mapped.start is None:
            return False
        start = dict(mapped.start)
        start["startTime"] = run.start_time  # the one stored when the run was first seen
        self.store.enqueue_start(run.id, _encode(start))
        report.starts += 1
        log.info("job %s: start queued (%s)", run.job_id, run.label)
        return True

    def _stop_requeued(self, old: Run, new: Run, record: JobRecord, site: Site,
                       report: CycleReport) -> None:
        """The earlier run of a requeued job ended when the job went back to the queue;
        ``sacct -X`` shows only the newest run, so that end is not in any record we
        read. The new run's start is the latest it can have been: stop it there, as
        REQUEUED (mapped like upstream's preempted), so cc-backend does not show it
        running forever."""
        base = self.store.snapshot_record(old.id) or record
        ended = msgspec.structs.replace(
            base, state="REQUEUED", state_flags=(), phase=Phase.ENDED,
            end_time=max(old.start_time, new.start_time), provisional=False)
        log.info("%s: requeued; its run ends at the next run's start (%s)", old.label,
                 new.start_time)
        self._stop(old, ended, site, report)

    def _stop(self, run: Run, record: JobRecord, site: Site, report: CycleReport) -> None:
        mapped = stop_payload(record, site, start_time=run.start_time)
        if mapped.stop is None:
            return  # no end time yet, or a state that is no stop: ask again next cycle
        self.store.enqueue_stop(run.id, _encode(mapped.stop))
        report.stops += 1
        log.info("job %s: stop queued (%s, %s)", run.job_id, mapped.stop.get("jobState"),
                 run.label)

    # ----------------------------------------------------------------- by-id queries

    def missing(self, cluster: str, present: Collection[int]) -> list[int]:
        """Job ids of runs the store still watches (seen, start pending, started) that
        neither the window nor the live listing shows: the loop asks sacct for them by
        id (upstream asks ``squeue -j`` forever and loses the job)."""
        found: list[int] = []
        after = 0
        while len(found) < self.settings.missing_query_limit:
            page = self.store.runs_in(_WATCHED, cluster=cluster, after_id=after, limit=500)
            if not page:
                break
            for run in page:
                if run.job_id not in present and run.job_id not in found:
                    found.append(run.job_id)
            after = page[-1].id
        return found[:self.settings.missing_query_limit]

    def captured(self, cluster: str) -> set[int]:
        """Job ids of watched runs whose snapshot has per-node detail (level ≥ 2), so
        the Slurm source does not ask slurmctld for them again."""
        return self.holdings(cluster)[0]

    def holdings(self, cluster: str) -> tuple[set[int], dict[int, int]]:
        """:meth:`captured`, and the captured runs whose start is queued or sent (job id
        → start time): a sacct record that shows one of them still running since that
        start changes nothing here (:meth:`_one` would only look it up), so the Slurm
        source need not read it (``SlurmSource.cycle(unchanged=...)``)."""
        captured: set[int] = set()
        started: dict[int, int] = {}
        after = 0
        while True:
            page = self.store.runs_in(_WATCHED, cluster=cluster, after_id=after, limit=500)
            if not page:
                return captured, started
            for r in page:
                if r.snapshot_rank is not None and r.snapshot_rank[0] >= 2:
                    captured.add(r.job_id)
                    if r.state is not RunState.SEEN:
                        started[r.job_id] = r.start_time
            after = page[-1].id

    # ----------------------------------------------------------------- reconcile

    def reconcile(self, cluster: str, cc_running: Iterable[Mapping[str, Any]],
                  live: Mapping[int, str] | None) -> tuple[list[int], int]:
        """Compare cc-backend's running jobs of ``cluster`` with the store.

        * a run cc-backend lacks although slurmctld runs it (acknowledged longer than
          the grace ago): its start, the very bytes sent before, goes again;
        * a job cc-backend lists as running that the store has stopped, or does not
          know while slurmctld does not run it: its id is returned, for the loop to ask
          sacct and pass to :meth:`apply` with ``force_stop``.

        Returns (job ids to look up, starts queued again).
        """
        listed: set[tuple[int, int]] = set()
        lookup: list[int] = []
        for job in cc_running:
            job_id, start_time = job.get("jobId"), job.get("startTime")
            if not isinstance(job_id, int) or not isinstance(start_time, int):
                continue
            listed.add((job_id, start_time))
            run = self.store.find_run(cluster, job_id, start_time)
            if run is None:
                if live is not None and is_live_running(live.get(job_id)):
                    continue  # the window brings it
                lookup.append(job_id)
            elif run.state is RunState.STOPPED:
                lookup.append(job_id)
        resent = 0
        if live is None:
            return lookup, resent
        now = self.clock()
        after = 0
        while True:
            page = self.store.runs_in((RunState.STARTED,), cluster=cluster, after_id=after)
            if not page:
                break
            after = page[-1].id
            for run in page:
                if (run.job_id, run.start_time) in listed \
                        or not is_live_running(live.get(run.job_id)):
                    continue
                if run.start_acked is None \
                        or now - run.start_acked < self.settings.reconcile_grace_s:
                    continue
                payload = self.store.start_payload(run.id)
                if payload is None:
                    continue
                try:
                    self.store.enqueue_start(run.id, payload)
                except StoreError as exc:
                    log.error("%s: %s", run.label, exc)
                    continue
                resent += 1
                log.warning("%s: running in Slurm but missing in cc-backend; start sent "
                            "again", run.label)
        return lookup, resent

    # ----------------------------------------------------------------- answers

    def stop_not_found(self, entry_id: int, run_id: int) -> bool:
        """cc-backend has no job for a stop (404): queue the start again, ahead of it.
        The second time for the same run in this process, cc-backend evidently keeps
        another run of the job (its start was answered 422 under the 24 h rule): the
        run is marked unrepresentable instead of looping start, stop, start.
        Returns True if the start was queued again."""
        if run_id in self._not_found_once:
            run = self.store.get_run(run_id)
            reason = ("cc-backend answers 404 to its stop after accepting its start with "
                      "422: it holds another run of this job id within 24 h")
            self.store.mark_unrepresentable(run_id, reason)
            log_once(("unrepresentable", str(run_id)), logging.WARNING, "%s not sent: %s",
                     run.label, reason)
            return False
        if len(self._not_found_once) > 100_000:
            self._not_found_once.clear()
        self._not_found_once.add(run_id)
        self.store.stop_not_found(entry_id)
        return True
