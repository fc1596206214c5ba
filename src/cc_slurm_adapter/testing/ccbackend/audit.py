"""The audit view: every request with its outcome, and a consistency checker.

:func:`check` compares what the stand-in holds with what Slurm says should be
there (the expected jobs are an input) and reports

* ``lost``: expected jobs that are not stored;
* ``duplicates``: (jobId, cluster) stored more than once;
* ``never_stopped``: stored jobs still running although expected to be stopped
  (or, without expectations, every running job);
* ``rejected``: requests the real server would refuse (4xx from decoding or
  validation) — those payloads show a bug in the client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .store import JobRow

__all__ = ["AuditEntry", "AuditLog", "CheckReport", "ExpectedJob", "check"]


@dataclass(slots=True)
class AuditEntry:
    """One request. ``outcome`` is ``ok``, ``rejected`` (4xx), ``error`` (5xx by the
    server), or ``fault:<mode>`` when an injected fault answered or dropped it."""

    seq: int
    time: float
    method: str
    path: str
    status: int | None
    outcome: str
    error: str | None = None
    body: str | None = None
    job: dict[str, Any] | None = None  # jobId/cluster/startTime when known

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class AuditLog:
    """Bounded list of :class:`AuditEntry` (oldest dropped first)."""

    def __init__(self, limit: int = 200_000, keep_bodies: bool = True) -> None:
        self._entries: list[AuditEntry] = []
        self._limit = limit
        self._seq = 0
        self.keep_bodies = keep_bodies
        self._lock = threading.Lock()

    def add(self, method: str, path: str, status: int | None, outcome: str, *,
            error: str | None = None, body: bytes | None = None,
            job: dict[str, Any] | None = None) -> AuditEntry:
        with self._lock:
            self._seq += 1
            entry = AuditEntry(
                self._seq, time.time(), method, path, status, outcome, error,
                body.decode("utf-8", "replace") if body and self.keep_bodies else None,
                job)
            self._entries.append(entry)
            if len(self._entries) > self._limit:
                del self._entries[: len(self._entries) - self._limit]
            return entry

    def entries(self, since: int = 0) -> list[AuditEntry]:
        with self._lock:
            return [e for e in self._entries if e.seq > since]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass(frozen=True, slots=True)
class ExpectedJob:
    """A job Slurm knows. ``start_time`` None matches any run of the jobId;
    ``stopped`` says the job has ended in Slurm, so it should be stopped here."""

    job_id: int
    cluster: str
    start_time: int | None = None
    stopped: bool = True

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ExpectedJob:
        return cls(int(doc["jobId"]), str(doc["cluster"]),
                   None if doc.get("startTime") is None else int(doc["startTime"]),
                   bool(doc.get("stopped", True)))


@dataclass(slots=True)
class CheckReport:
    lost: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    never_stopped: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicates or self.never_stopped or self.rejected)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "lost": self.lost, "duplicates": self.duplicates,
                "neverStopped": self.never_stopped, "rejected": self.rejected}


def _brief(row: JobRow) -> dict[str, Any]:
    return {"jobId": row.job_id, "cluster": row.cluster, "startTime": row.start_time,
            "dbId": row.id, "table": row.table, "jobState": row.job_state}


def check(rows: Iterable[JobRow], entries: Iterable[AuditEntry],
          expected: Iterable[ExpectedJob] | None = None) -> CheckReport:
    """The report described in the module docstring."""
    rows = list(rows)
    report = CheckReport()
    by_key: dict[tuple[int, str], list[JobRow]] = {}
    for row in rows:
        by_key.setdefault((row.job_id, row.cluster), []).append(row)
    for (job_id, cluster), group in sorted(by_key.items()):
        if len(group) > 1:
            report.duplicates.append({"jobId": job_id, "cluster": cluster,
                                      "rows": [_brief(r) for r in group]})
    if expected is None:
        report.never_stopped = [_brief(r) for r in rows if r.job_state == "running"]
    else:
        for exp in expected:
            matches = [r for r in by_key.get((exp.job_id, exp.cluster), [])
                       if exp.start_time is None or r.start_time == exp.start_time]
            if not matches:
                report.lost.append({"jobId": exp.job_id, "cluster": exp.cluster,
                                    "startTime": exp.start_time})
            elif exp.stopped and all(r.job_state == "running" for r in matches):
                report.never_stopped.extend(_brief(r) for r in matches)
    for entry in entries:
        if (entry.outcome == "rejected" and entry.status in (400, 405)) or (
                entry.status == 500 and entry.outcome == "error"
                and (entry.error or "").startswith("insert into database failed: CHECK")):
            report.rejected.append({"seq": entry.seq, "path": entry.path,
                                    "status": entry.status, "error": entry.error,
                                    "body": entry.body})
    return report
