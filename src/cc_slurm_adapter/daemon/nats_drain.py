"""The NATS side of the outbox: job events published in order, each target on its own.

Every start and stop the engine queues gets an entry per enabled target
(``store.set_targets``); this module drains the ``nats`` ones, and the REST drain in
:mod:`.loop` the ``rest`` ones, so an outage of one never holds the other back.

* **In order.** ``Store.claim_in_order`` hands out the oldest entries in creation
  order; they are published one after the other. The first one NATS cannot take
  (down, no JetStream ack in time) ends the batch: it backs off
  (``Backoff``, attempts counted) and holds back every later one, which are released
  uncounted. A job's stop is created after its start, and is never handed out while
  its start is still queued, so NATS never sees a stop before its start.
* **Acknowledged.** An entry leaves the outbox only in the transaction that records
  the answer of its batch. If the daemon dies between publishing and that
  transaction, the batch is published again with the same ``Nats-Msg-Id``
  (``message_id``: cluster, jobId, the startTime sent, event): JetStream keeps one
  copy; core NATS subscribers may see the event twice (cc-backend answers a second
  start or stop of the same run as a duplicate and changes nothing).
* **Reconnects.** The publisher reconnects on its own; when it is connected again the
  backoff of the oldest entry is cut short, so the queue moves within a second.
* **Refused** (neither ok nor retry, e.g. a message over the server's max_payload):
  with NATS as the primary target (``ccRestSubmitJobs: false``) the run is rejected
  like a REST 400; with REST on, only this run's NATS entries are dropped. Logged
  either way; one bad job never blocks the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Protocol

from cc_slurm_adapter.ccbackend import Backoff
from cc_slurm_adapter.errors import StoreError
from cc_slurm_adapter.store import NATS, Store, Submission

__all__ = ["EVENT", "NatsDrain", "PublishAnswer", "Publisher"]

log = logging.getLogger("cc_slurm_adapter.daemon")

EVENT = {"start": "start_job", "stop": "stop_job"}
"""Outbox kind → the ``function`` tag of cc-backend's NATS job API (contract §9.2)."""


class PublishAnswer(Protocol):
    """What :class:`~cc_slurm_adapter.nats.PublishResult` holds."""

    @property
    def ok(self) -> bool: ...

    @property
    def retry(self) -> bool: ...

    @property
    def detail(self) -> str: ...


class Publisher(Protocol):
    """What the drain needs of :class:`~cc_slurm_adapter.nats.NatsPublisher`."""

    @property
    def connected(self) -> bool: ...

    async def publish(self, kind: str, payload: bytes, msg_id: str) -> PublishAnswer: ...


class NatsDrain:
    """Publishes the store's ``nats`` entries with one :class:`Publisher`."""

    def __init__(self, store: Store, publisher: Publisher, *, backoff: Backoff,
                 clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random, batch_size: int = 100,
                 stats: dict[str, int] | None = None) -> None:
        self.store = store
        self.publisher = publisher
        self.backoff = backoff
        self.clock = clock
        self.rand = rand
        self.batch_size = batch_size
        self.stats = stats if stats is not None else {}
        self.failures = 0
        self._was_connected = False
        # here, not at the top: cc_slurm_adapter.nats brings nats-py (~6 MB of RSS), which
        # a daemon without natsServer never needs, and loop.py imports this module
        from cc_slurm_adapter.nats.message import message_id

        self._message_id = message_id

    def _count(self, name: str) -> None:
        self.stats[name] = self.stats.get(name, 0) + 1

    async def _publish(self, sub: Submission) -> PublishAnswer | Exception:
        kind = EVENT[sub.kind]
        try:
            return await self.publisher.publish(
                kind, sub.payload, self._message_id(sub.cluster, sub.job_id, sub.start_time,
                                                    kind))
        except Exception as exc:  # the publisher never raises; this is a last guard
            return exc

    async def drain_once(self) -> int:
        """Publish one batch in order, then settle its answers in one transaction.
        Returns how many entries were published or refused."""
        batch = self.store.claim_in_order(self.batch_size, target=NATS)
        if not batch:
            return 0
        answers: list[tuple[Submission, PublishAnswer | Exception]] = []
        refused: set[int] = set()
        for sub in batch:
            if sub.run_id in refused:
                continue  # its start was refused: the reject drops this entry too
            answer = await self._publish(sub)
            answers.append((sub, answer))
            if isinstance(answer, Exception) or (not answer.ok and answer.retry):
                break
            if not answer.ok:
                refused.add(sub.run_id)
        sent = {sub.id for sub, _ in answers}
        with self.store.transaction():
            for sub, answer in answers:
                try:
                    self._settle(sub, answer)
                except StoreError as exc:
                    log.error("job %s: NATS: %s", sub.job_id, exc)
            self.store.release(s.id for s in batch if s.id not in sent)
        return sum(1 for _, a in answers if not isinstance(a, Exception) and
                   (a.ok or not a.retry))

    def _settle(self, sub: Submission, answer: PublishAnswer | Exception) -> None:
        what = f"job {sub.job_id}"
        if isinstance(answer, Exception) or answer.retry:
            detail = (f"{type(answer).__name__}: {answer}" if isinstance(answer, Exception)
                      else answer.detail)
            self.failures += 1
            self._count("nats_retried")
            if self.failures == 1 or self.failures % 1000 == 0:
                log.warning("NATS: %s of %s not published (%s); it and the events after "
                            "it are kept and sent in order once NATS takes them", sub.kind,
                            what, detail)
            delay = self.backoff.delay(sub.attempts, self.rand)
            self.store.fail(sub.id, retry_at=self.clock() + delay, error=f"nats: {detail}")
            log.debug("NATS %s %s: %s; again in %.1f s", sub.kind, what, detail, delay)
            return
        if self.failures:
            log.warning("NATS takes events again after %d failed attempt(s)", self.failures)
            self.failures = 0
        if answer.ok:
            self._count("nats_published")
            self.store.ack(sub.id)
            log.info("%s: %s published on NATS%s", what, EVENT[sub.kind],
                     f" ({answer.detail})" if answer.detail else "")
            return
        self._count("nats_refused")
        primary = self.store.primary == NATS
        self.store.reject(sub.id, f"NATS refused the {EVENT[sub.kind]}: {answer.detail}")
        log.error("%s: NATS refused its %s (%s); %s", what, EVENT[sub.kind], answer.detail,
                  "the job is rejected" if primary else "its NATS events are dropped, "
                  "REST still gets them")

    def wait_s(self) -> float:
        """How long the drain may sleep now (it is woken early by new entries)."""
        due = self.store.head_due(NATS)
        wait = 30.0 if due is None else min(30.0, max(0.5, due - self.clock()))
        connected = self.publisher.connected
        # connected again: no need to sit out the backoff of the oldest entry
        if connected and not self._was_connected and due is not None \
                and self.store.retry_now(NATS):
            wait = 0.0
        self._was_connected = connected
        return wait if connected else min(wait, 1.0)

    async def run(self, stopping: asyncio.Event, wake: asyncio.Event) -> None:
        """Drain until ``stopping`` is set; the batch on the wire is finished first."""
        while not stopping.is_set():
            try:
                n = await self.drain_once()
            except StoreError as exc:
                log.error("outbox (NATS): %s", exc)
                n = 0
                await _sleep(wake, 5.0)
            if n:
                continue
            try:
                wait = self.wait_s()
            except StoreError as exc:
                log.error("outbox (NATS): %s", exc)
                wait = 5.0
            if wait:
                await _sleep(wake, wait)


async def _sleep(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    event.clear()
