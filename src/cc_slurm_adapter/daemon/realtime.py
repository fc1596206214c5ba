"""The real-time path: a Prolog/Epilog event → Slurm asked at once → start/stop queued.

The hook's event (``on_event(job_id, context)``) names a job and whether it starts
(``prolog_slurmctld``) or ends (``epilog_slurmctld``). Instead of waiting
``slurmQueryDelay`` and polling everything, the job is asked for by id right away:

* **Batched.** Events are collected for :data:`COALESCE_S` (a few ms), so a burst goes
  into one round; a round asks for at most :data:`MAX_IDS` jobs, so a 1,000-task array
  costs a handful of rounds. Events that arrive while a round is on the wire go into the
  next one. A round makes at most three calls, concurrently: slurmctld's detail
  (``SlurmSource.details``: per-node CPUs and GPUs), ``sacct -j`` (accounting: identity,
  hosts, the state slurmdbd keeps) and, where slurmdbd stores batch scripts, the
  scripts; a node listing only when a host is not in the cached topology.
* **Through the engine.** The records go to :meth:`Engine.apply` in one store
  transaction, exactly as a poll's would: the snapshot first, then the start (or the
  stop) queued in the outbox; then the drain is woken. So the startTime is the one the
  poll would store (the run is keyed by (cluster, job id, start time), found again by
  the poll), provisional sacct records are waited on, a requeue within 24 h is
  unrepresentable and an unknown phase gives no stop.
* **Retried.** The first try is immediate; what is not there yet (22.05: no sacct record
  or its placeholder at prolog time; the end not yet in slurmdbd) is asked again after
  50 ms, 100 ms, … at most 1 s apart, until ``slurmMaxRetries`` × ``slurmQueryDelay``
  seconds have passed since the event. Then the job is left to the next poll (which is
  brought forward), so a lost answer changes nothing but timing.
* **Epilog.** At ``EpilogSlurmctld`` time slurmctld still holds the job as completing:
  ``["COMPLETED", "COMPLETING"]`` from 23.11 (data_parser lists the base state first;
  seen on 24.11.5), and the single name ``COMPLETING`` on 22.05 and 23.02, where the
  base state is not shown at all. sacct's record is asked first (on 24.11.5 it was
  final when the epilog started); where it is not final yet, slurmctld's final base
  state is taken from 23.11 on, for a run whose start is already queued (so the
  identity rule of the start is kept). Before 23.11 only sacct is asked, retrying.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from cc_slurm_adapter.errors import SlurmError, StoreError
from cc_slurm_adapter.slurm.phase import FINAL_STATES, Phase
from cc_slurm_adapter.slurm.record import JobRecord
from cc_slurm_adapter.slurm.source import SlurmSource
from cc_slurm_adapter.store import RunState

if TYPE_CHECKING:
    from .loop import Daemon

__all__ = ["COALESCE_S", "MAX_IDS", "Realtime", "retry_delay"]

log = logging.getLogger("cc_slurm_adapter.daemon")

COALESCE_S = 0.003
"""How long the first event of a round waits for others (a burst's prologs)."""
MAX_IDS = 500
"""Job ids per round (per ``-j`` list): a 1,000-task array is two rounds."""
MAX_PENDING = 100_000
"""Events waiting at most; more are left to the poll."""
FIRST_RETRY_S = 0.05
MAX_RETRY_S = 1.0

START, END = "prolog_slurmctld", "epilog_slurmctld"
_STARTED_STATES = (RunState.START_PENDING, RunState.STARTED)
_DONE_AFTER_END = (RunState.STOP_PENDING, RunState.STOPPED, RunState.REJECTED,
                   RunState.UNREPRESENTABLE)

Accounting = Callable[[SlurmSource, Sequence[int]], Awaitable[list[JobRecord]]]


def retry_delay(attempts: int) -> float:
    """Seconds before try ``attempts + 1``: 0 for the first, then 50 ms doubling to 1 s."""
    if attempts <= 0:
        return 0.0
    return float(min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** (attempts - 1)))


def final_at_epilog(record: JobRecord) -> JobRecord | None:
    """slurmctld's record of a job whose EpilogSlurmctld runs, as ended, or None.

    From 23.11 the state list names the base first: ``["COMPLETED", "COMPLETING"]`` at
    epilog time (24.11.5). The base is final and the end time real; COMPLETING only says
    that the epilog we were told of still runs. Before 23.11 slurmctld prints the one
    name ``COMPLETING`` (no base): None, sacct decides. Any other flag (requeue,
    stage-out, …) leaves it to the phase model: None."""
    if record.state not in FINAL_STATES or not record.end_time or record.requeued:
        return None
    if not set(record.state_flags) <= {"COMPLETING"}:
        return None
    return msgspec.structs.replace(record, state_flags=(), phase=Phase.ENDED)


@dataclass(slots=True)
class _Pending:
    since: float
    """monotonic time of the event"""
    due: float
    attempts: int = 0


class Realtime:
    """The real-time path of one :class:`~.loop.Daemon` (single-cluster daemons)."""

    def __init__(self, daemon: Daemon, accounting: Accounting,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.daemon = daemon
        self.accounting = accounting
        self.monotonic = monotonic
        self.starts: dict[int, _Pending] = {}
        self.ends: dict[int, _Pending] = {}
        self.wake = asyncio.Event()
        self.rounds = 0
        self.calls = 0
        """Slurm calls made by this path (for the log and the benchmarks)."""
        self.given_up = 0
        self.dropped = 0

    # ----------------------------------------------------------------- events

    def takes(self, context: str) -> bool:
        return context in (START, END) and len(self.daemon.clusters) == 1

    def event(self, job_id: int, context: str) -> None:
        now = self.monotonic()
        pending = self.starts if context == START else self.ends
        if job_id not in pending:
            if len(self.starts) + len(self.ends) >= MAX_PENDING:
                self.dropped += 1  # a flood (forged events?): the poll still finds them
                if self.dropped == 1 or self.dropped % 10_000 == 0:
                    log.warning("real-time path: %d events waiting; %d dropped so far, "
                                "left to the poll", MAX_PENDING, self.dropped)
                self.daemon.wake_poll.set()
                return
            pending[job_id] = _Pending(since=now, due=now)
        self.wake.set()

    def deadline_s(self) -> float:
        config = self.daemon.config
        return float(max(1, config.slurm_max_retries) * max(1, config.slurm_query_delay))

    # ----------------------------------------------------------------- the task

    async def run_forever(self) -> None:
        stopping = self.daemon.stopping
        while not stopping.is_set():
            wait = self._next_wait()
            if wait is None or wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), wait)
                if self.wake.is_set():
                    self.wake.clear()
                    await asyncio.sleep(COALESCE_S)  # the rest of a burst joins this round
            if stopping.is_set():
                return
            try:
                await self.round()
            except StoreError as exc:
                log.error("real-time path: %s; the poll takes these jobs", exc)
                self._give_up(list(self.starts), list(self.ends))
            except Exception:  # a bug here must not end the path: the poll still runs
                log.exception("real-time path failed; the poll takes these jobs")
                self._give_up(list(self.starts), list(self.ends))

    def _next_wait(self) -> float | None:
        dues = [p.due for p in (*self.starts.values(), *self.ends.values())]
        if not dues:
            return None
        return max(0.0, min(dues) - self.monotonic())

    async def round(self) -> int:
        """One round over the jobs that are due; returns how many were asked for."""
        now = self.monotonic()
        due_starts = sorted((j for j, p in self.starts.items() if p.due <= now),
                            key=lambda j: self.starts[j].since)
        due_ends = sorted((j for j, p in self.ends.items() if p.due <= now),
                          key=lambda j: self.ends[j].since)
        ids = list(dict.fromkeys([*due_starts, *due_ends]))[:MAX_IDS]
        if not ids:
            return 0
        if len(self.daemon.clusters) != 1:
            self._give_up(list(self.starts), list(self.ends))
            return 0
        chosen = set(ids)
        starts = [j for j in due_starts if j in chosen]
        ends = [j for j in due_ends if j in chosen]
        cs = self.daemon.clusters[0]
        self.rounds += 1
        try:
            details, accounting = await self._ask(cs.source, starts, ends)
        except SlurmError as exc:
            log.info("real-time path: Slurm cannot be asked (%s); trying again", exc)
            self._after(starts, ends, set(), set())
            return len(ids)
        done_s, done_e = self._apply(cs.name, starts, ends, details, accounting)
        self._after(starts, ends, done_s, done_e)
        return len(ids)

    async def _ask(self, source: SlurmSource, starts: list[int], ends: list[int]
                   ) -> tuple[dict[int, JobRecord], dict[int, JobRecord]]:
        """The round's Slurm calls, concurrently: sacct -j (all), details (starts; ends
        from 23.11), the batch scripts of the starts where slurmdbd keeps them."""
        info = source.info
        want_detail = list(dict.fromkeys(
            [*starts, *(ends if _ctld_final_at_epilog(info.version) else [])]))
        scripts_by_id = bool(starts) and source.wants_scripts and info.has_sacct_script_json
        before = source.runner.calls
        try:
            if want_detail and not source.topology:
                await source.refresh_topology()  # hwthreads need the sockets and cores
            got = await asyncio.gather(
                self.accounting(source, [*starts, *ends]),
                source.details(want_detail) if want_detail else _nothing(),
                source.batch_scripts(starts) if scripts_by_id else _no_scripts(),
                return_exceptions=True)
            for result in got:
                if isinstance(result, BaseException):
                    raise result
            acc_list, detail_list, scripts = got
            assert not isinstance(acc_list, BaseException)
            assert not isinstance(detail_list, BaseException)
            assert not isinstance(scripts, BaseException)
            detail_list = await source.fit_topology(detail_list)  # a host we do not know
            details = {r.job_id: r for r in detail_list}
            if not scripts_by_id and starts and details and source.wants_scripts:
                # before 23.02 the text names array tasks ARRAYID_TASKID: records needed
                scripts = await source.batch_scripts([details[j] for j in starts
                                                      if j in details])
            for job_id, script in scripts.items():
                if job_id in details:
                    details[job_id] = msgspec.structs.replace(details[job_id],
                                                              batch_script=script)
        finally:
            self.calls += source.runner.calls - before
        return details, {r.job_id: r for r in acc_list}

    def _apply(self, cluster: str, starts: list[int], ends: list[int],
               details: dict[int, JobRecord], accounting: dict[int, JobRecord]
               ) -> tuple[set[int], set[int]]:
        """The records into the engine in one transaction; (starts done, ends done)."""
        engine, store = self.daemon.engine, self.daemon.store
        records: dict[int, JobRecord] = {}
        deferred: list[int] = []
        for job_id in dict.fromkeys([*starts, *ends]):
            acc = accounting.get(job_id)
            if acc is not None and acc.phase is Phase.ENDED and not acc.provisional:
                records[job_id] = acc
                continue
            if job_id in ends:
                ctld = details.get(job_id)
                ended = final_at_epilog(ctld) if ctld is not None else None
                if ended is not None and ctld is not None and ctld.start_time is not None:
                    run = store.find_run(cluster, job_id, ctld.start_time)
                    if run is not None and run.state in _STARTED_STATES:
                        records[job_id] = ended
                        continue
            if acc is not None:
                records[job_id] = acc
                if acc.phase is Phase.RUNNING and job_id not in details:
                    deferred.append(job_id)  # no start without hwthreads: details first
        # the starts' details are the snapshots; an epilog's detail only where it still
        # has per-node resources (a job whose prolog we missed). Once slurmctld has
        # finished the job it lists no hosts (24.11.5): nothing to keep then.
        snapshots = [d for j, d in details.items()
                     if j in starts or (d.nodes and d.resources)]
        with store.transaction():
            report = engine.apply(cluster, list(records.values()), details=snapshots,
                                  deferred=deferred)
        if report.starts or report.stops:
            self.daemon.wake_drain.set()
        log.debug("real-time path: %d start(s), %d end(s) asked for: %s", len(starts),
                  len(ends), report)
        done_s = {j for j in starts if self._state(cluster, j, records, details)
                  not in (None, RunState.SEEN)}
        done_e = {j for j in ends if self._state(cluster, j, records, details)
                  in _DONE_AFTER_END}
        return done_s, done_e

    def _state(self, cluster: str, job_id: int, records: dict[int, JobRecord],
               details: dict[int, JobRecord]) -> RunState | None:
        rec = records.get(job_id) or details.get(job_id)
        if rec is None or rec.start_time is None:
            return None
        run = self.daemon.store.find_run(cluster, job_id, rec.start_time)
        if run is None:
            # the run was first stored with another start time (slurmctld's, which the
            # poll keeps too); the newest run of the job is the one this event is about
            runs = self.daemon.store.runs_of(cluster, job_id)
            run = runs[-1] if runs else None
        return None if run is None else run.state

    def _after(self, starts: list[int], ends: list[int], done_s: set[int],
               done_e: set[int]) -> None:
        now = self.monotonic()
        limit = self.deadline_s()
        late_s: list[int] = []
        late_e: list[int] = []
        for ids, done, pending, late in ((starts, done_s, self.starts, late_s),
                                         (ends, done_e, self.ends, late_e)):
            for job_id in ids:
                p = pending.get(job_id)
                if p is None:
                    continue
                if job_id in done:
                    del pending[job_id]
                    continue
                p.attempts += 1
                if now - p.since >= limit:
                    late.append(job_id)
                else:  # the last try falls on the deadline itself
                    p.due = min(now + retry_delay(p.attempts), p.since + limit)
        if late_s or late_e:
            self._give_up(late_s, late_e)

    def _give_up(self, starts: list[int], ends: list[int]) -> None:
        for job_id in starts:
            self.starts.pop(job_id, None)
        for job_id in ends:
            self.ends.pop(job_id, None)
        self.given_up += len(starts) + len(ends)
        log.info("real-time path: job(s) %s not settled within %.0f s "
                 "(slurmMaxRetries × slurmQueryDelay); the next poll takes them",
                 ",".join(str(j) for j in sorted({*starts, *ends})[:20]), self.deadline_s())
        self.daemon.wake_poll.set()


def _ctld_final_at_epilog(version: tuple[int, int, int]) -> bool:
    # 22.05 and 23.02 print one state name, COMPLETING, at EpilogSlurmctld time (the base
    # is hidden): only sacct knows the end there. From 23.11 the base comes first.
    return version >= (23, 11, 0)


async def _nothing() -> list[JobRecord]:
    return []


async def _no_scripts() -> dict[int, str]:
    return {}

