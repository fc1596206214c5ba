"""What an answer of cc-backend means for the job it was about: a pure table.

The daemon never looks at status codes itself; it asks :func:`classify` and acts on
the :class:`OutcomeKind`:

``DONE``         cc-backend has the start (or the stop): forget the submission.
``NEEDS_START``  a stop found no job: cc-backend never got the start. Send the start
                 (with the same startTime), then this stop again.
``REJECTED``     cc-backend refuses this payload for good (400): log the body once,
                 keep it in the store, never block another job on it.
``AUTH``         the token is refused (401/403): log loudly once, keep everything,
                 retry later with backoff. Every other job fails the same way.
``RETRY``        5xx, timeout, refused or dropped connection, or an answer we did
                 not expect: keep the submission and retry with backoff.

The table (contract §4.2, §5.2, §5.3, §12.1; profiles in :mod:`cc_slurm_adapter.profiles`):

=======  ===========  ==========================  ==============================
status   start        stop v1.5                   stop v1.4 / v1.3
=======  ===========  ==========================  ==============================
200/201  DONE         DONE                        DONE
400      REJECTED     REJECTED                    REJECTED (v1.3: CHECK_STOPPED)
401/403  AUTH         AUTH                        AUTH
404      RETRY ¹      NEEDS_START                 RETRY ¹
422      DONE ²       DONE (already stopped)      CHECK_FOUND
5xx      RETRY ³      RETRY                       RETRY
other    RETRY        RETRY                       RETRY
=======  ===========  ==========================  ==============================

¹ a 404 on start (or v1.5's "the requested endpoint does not exist" on stop) means the
  route is not mounted (wrong ``ccRestUrl``, or cc-backend in NATS mode): a site
  problem, not this job's, so nothing is dropped.
² cc-backend 1.5 answers 422 to *any* start of the same jobId and cluster within 24 h
  (§4.3), so a requeued job's second run is refused with 422 too; ``Outcome.status`` and
  ``detail`` let the caller tell, since only it knows which run it sent.
³ cc-backend 1.5's job cache: a resent start with the *same* startTime hits the
  ``job_cache`` UNIQUE constraint and answers **500** until the commit worker has moved
  the row into the job table (``cron.commit-job-worker``, 1 min by default), then
  **422**. That 500 is RETRY: the caller keeps retrying until the 422 comes. A 500 for a
  database CHECK constraint (a bad ``shared``, ``smt`` or ``monitoringStatus`` value,
  §4.1) is deterministic, so it is REJECTED.

``CHECK_FOUND`` (v1.3/v1.4 stop, 422): "not found" and (1.4.3+) "already stopped" share
the code, so the client asks ``GET /api/jobs/`` first: no such job → NEEDS_START, job
there and not running → DONE. ``CHECK_STOPPED`` (v1.3 stop, 400): "not running" and "stop
time too early" share one message; a job there and not running → DONE, else REJECTED.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

__all__ = [
    "BODY_LIMIT",
    "START_TABLE",
    "STOP_TABLES",
    "Check",
    "Outcome",
    "OutcomeKind",
    "classify",
    "describe",
    "error_message",
]

BODY_LIMIT: Final[int] = 4096
"""Bytes of an answer body kept (and logged) at most."""

_DETAIL_LIMIT: Final[int] = 300


class OutcomeKind(StrEnum):
    DONE = "done"
    NEEDS_START = "needs_start"
    REJECTED = "rejected"
    AUTH = "auth"
    RETRY = "retry"


class Check(StrEnum):
    """An answer that needs a ``GET /api/jobs/`` before it means anything (v1.3/v1.4)."""

    CHECK_FOUND = "check_found"
    CHECK_STOPPED = "check_stopped"


Rule = OutcomeKind | Check

_D, _N, _R, _A = OutcomeKind.DONE, OutcomeKind.NEEDS_START, OutcomeKind.REJECTED, \
    OutcomeKind.AUTH
_COMMON: Final[dict[int, Rule]] = {200: _D, 201: _D, 400: _R, 401: _A, 403: _A}

START_TABLE: Final[dict[int, Rule]] = {**_COMMON, 422: _D}
"""start_job, every profile (§4.2, §4.5)."""

STOP_TABLES: Final[dict[str, dict[int, Rule]]] = {
    # §5.2: not found → 404, not running → 422.
    "v1.5": {**_COMMON, 404: _N, 422: _D},
    # §5.3 1.4.3–1.4.4: not found and not running are both 422.
    "v1.4": {**_COMMON, 422: Check.CHECK_FOUND},
    # §5.3 1.3.x: not found → 422; not running shares a 400 with the time check.
    "v1.3": {**_COMMON, 422: Check.CHECK_FOUND, 400: Check.CHECK_STOPPED},
}
"""stop_job per profile name."""

_ROUTE_MISSING = "the requested endpoint does not exist"
_JOB_CACHE_DUP = "UNIQUE constraint failed: job_cache"
_DB_CHECK = "CHECK constraint failed"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The meaning of one answer (or of no answer) for one submission."""

    kind: OutcomeKind
    status: int | None = None
    """The HTTP status, or None when no answer came (timeout, connection error)."""
    detail: str = ""
    """One line for the log: the server's error message or why there was no answer."""
    body: str = ""
    """The answer body, at most :data:`BODY_LIMIT` bytes (kept for REJECTED)."""

    @property
    def done(self) -> bool:
        return self.kind is OutcomeKind.DONE

    @property
    def retry_later(self) -> bool:
        """RETRY and AUTH: keep the submission, back off, send it again."""
        return self.kind in (OutcomeKind.RETRY, OutcomeKind.AUTH)

    def __str__(self) -> str:
        code = "no answer" if self.status is None else str(self.status)
        return f"{self.kind.value} ({code}{': ' + self.detail if self.detail else ''})"


def _one_line(text: str, limit: int = _DETAIL_LIMIT) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def error_message(body: str) -> str:
    """The ``error`` text of a cc-backend error body, else its first line (capped).

    Bodies may be text/plain, HTML, or the JSON object twice in a row (a token with no
    roles, §2.4), so only the first JSON value is read.
    """
    text = body.strip()
    if text.startswith("{"):
        try:
            doc, _ = json.JSONDecoder().raw_decode(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("error"), str):
            return _one_line(doc["error"])
    return _one_line(text.splitlines()[0] if text else "")


def classify(op: Literal["start", "stop"], profile: str, status: int,
             body: str = "") -> Rule:
    """The rule for ``status`` on ``op`` under ``profile`` (a profile name).

    Pure: a :class:`Check` tells the client that it must look the job up before it
    can answer with an :class:`OutcomeKind`.
    """
    table = START_TABLE if op == "start" else STOP_TABLES.get(profile, STOP_TABLES["v1.5"])
    rule = table.get(status)
    if status == 404 and _ROUTE_MISSING in body:
        return OutcomeKind.RETRY  # the route is not mounted: not this job's fault
    if rule is not None:
        return rule
    if op == "start" and status == 500 and _DB_CHECK in body and _JOB_CACHE_DUP not in body:
        return OutcomeKind.REJECTED  # §4.1: bad shared/smt/monitoringStatus, deterministic
    return OutcomeKind.RETRY


def describe(status: int, body: str) -> str:
    """The ``detail`` line for an answer: the server's message, with the job-cache
    500 explained (it is expected, see the module docstring)."""
    message = error_message(body)
    if status == 500 and _JOB_CACHE_DUP in body:
        return ("job cache not committed yet (cc-backend 1.5 answers 500 to a resent start "
                "until its commit worker runs, then 422): " + message)
    if status == 404 and _ROUTE_MISSING in body:
        return "route not mounted (wrong ccRestUrl, or cc-backend takes jobs over NATS): " \
            + message
    return message
