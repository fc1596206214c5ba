"""Every payload field against cc-backend's Go types, before a payload leaves ``map_job``.

cc-backend decodes start_job/stop_job with Go's ``encoding/json`` into ``schema.Job``
(contract §2.3, §8.1): a number that does not fit the field's type, or a hostname it
cannot use, is a 400 for the whole request. Slurm data is not bounded like that
(a hostile or broken record can carry ``walltime`` beyond int64 or a node called
``node[1-2,``), so each field is checked here, in one table:

* int64 fields: ``jobId``, ``arrayJobId``, ``startTime``, ``stopTime``, ``walltime``,
  ``submitTime``, ``requestedMemory``; int32: ``numNodes``, ``numHwthreads``,
  ``numAcc``. Lower bounds from the swagger / ``job-meta.schema.json`` (``minimum: 1``
  / ``exclusiveMinimum: 0`` for startTime, walltime, requestedMemory and the counts).
* ``resources[].hostname``: non-empty, at most 255 characters, printable, with no
  blank, ``[``, ``]`` or ``,`` (a hostlist expression or several names are not a host).
* ``resources[].hwthreads``: ints 0 … int64 (OS processor ids); ``accelerators``:
  non-empty printable strings of at most 255 characters.

A field that identifies the job (``jobId``, ``startTime``, ``numNodes``; ``stopTime``
of a stop) makes the payload unsendable: the job is skipped with the reason. Any
other bad field is left out, with a warning. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = ["INT32_MAX", "INT64_MAX", "Checked", "check_start", "check_stop", "hostname_problem"]

INT32_MAX: Final = 2**31 - 1
INT64_MAX: Final = 2**63 - 1
_MAX_NAME: Final = 255
_NOT_IN_HOSTNAME: Final = frozenset("[],")


@dataclass(frozen=True, slots=True)
class _Int:
    key: str
    low: int
    high: int
    on_bad: Literal["skip", "drop"]


_START: Final = (
    _Int("jobId", 1, INT64_MAX, "skip"),
    _Int("startTime", 1, INT64_MAX, "skip"),
    _Int("numNodes", 1, INT32_MAX, "skip"),
    _Int("arrayJobId", 0, INT64_MAX, "drop"),
    _Int("walltime", 1, INT64_MAX, "drop"),
    _Int("submitTime", 0, INT64_MAX, "drop"),
    _Int("requestedMemory", 1, INT64_MAX, "drop"),
    _Int("numHwthreads", 1, INT32_MAX, "drop"),
    _Int("numAcc", 1, INT32_MAX, "drop"),
)
_STOP: Final = (
    _Int("jobId", 1, INT64_MAX, "skip"),
    _Int("startTime", 1, INT64_MAX, "skip"),
    _Int("stopTime", 1, INT64_MAX, "skip"),
)


@dataclass(frozen=True, slots=True)
class Checked:
    """The payload as it may be sent (None when it cannot), and what was changed."""

    payload: dict[str, Any] | None
    warnings: tuple[str, ...] = ()
    skip_reason: str | None = None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "empty or not a string"
    if len(value) > _MAX_NAME:
        return f"longer than {_MAX_NAME} characters"
    if not value.isprintable() or any(ch.isspace() for ch in value):
        return "has blanks, newlines or control characters"
    return None


def hostname_problem(name: Any) -> str | None:
    """Why ``name`` is not a hostname cc-backend can use, or None when it is one."""
    problem = _text_problem(name)
    if problem is None and _NOT_IN_HOSTNAME & set(name):
        problem = "has '[', ']' or ',' (a hostlist, not a host)"
    return problem


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_ints(payload: dict[str, Any], rules: tuple[_Int, ...],
                warnings: list[str]) -> str | None:
    for rule in rules:
        if rule.key not in payload:
            if rule.on_bad == "skip":
                return f"{rule.key} is missing"
            continue
        value = payload[rule.key]
        if _is_int(value) and rule.low <= value <= rule.high:
            continue
        why = (f"{rule.key} {_shown(value)} is outside cc-backend's range "
               f"{rule.low}..{rule.high}")
        if rule.on_bad == "skip":
            return why
        del payload[rule.key]
        warnings.append(f"{why}; left out")
    return None


def _check_resources(payload: dict[str, Any], warnings: list[str]) -> str | None:
    resources = payload.get("resources")
    if not isinstance(resources, list):
        return "resources is missing"
    kept: list[dict[str, Any]] = []
    threads_dropped = False
    for entry in resources:
        name = entry.get("hostname") if isinstance(entry, dict) else None
        problem = hostname_problem(name)
        if problem is not None:
            warnings.append(f"host {_shown(name)} {problem}; left out")
            continue
        threads = entry.get("hwthreads")
        if threads is not None:
            good = [t for t in threads if _is_int(t) and 0 <= t <= INT64_MAX] if isinstance(
                threads, list) else []
            if len(good) != (len(threads) if isinstance(threads, list) else -1):
                threads_dropped = True
                warnings.append(f"{name}: hwthread ids outside 0..{INT64_MAX} left out")
                if good:
                    entry["hwthreads"] = good
                else:
                    del entry["hwthreads"]
        accs = entry.get("accelerators")
        if accs is not None:
            good_acc = [a for a in accs if _text_problem(a) is None] if isinstance(
                accs, list) else []
            if len(good_acc) != (len(accs) if isinstance(accs, list) else -1):
                warnings.append(f"{name}: accelerator ids that are not names left out")
                if good_acc:
                    entry["accelerators"] = good_acc
                else:
                    del entry["accelerators"]
        kept.append(entry)
    if not kept:
        return "no valid host"
    if len(kept) != len(resources):
        payload["resources"] = kept
        payload["numNodes"] = len(kept)
    if threads_dropped and "numHwthreads" in payload:
        if all("hwthreads" in entry for entry in kept):
            payload["numHwthreads"] = sum(len(entry["hwthreads"]) for entry in kept)
        else:  # the count no longer follows from the ids that are left
            del payload["numHwthreads"]
    return None


def check_start(payload: dict[str, Any]) -> Checked:
    """A start_job body checked field by field (see the module docstring)."""
    out = dict(payload)
    out["resources"] = [dict(r) if isinstance(r, dict) else r
                        for r in payload.get("resources") or ()]
    warnings: list[str] = []
    reason = _check_resources(out, warnings) or _check_ints(out, _START, warnings)
    if reason is not None:
        return Checked(None, tuple(warnings), reason)
    return Checked(out, tuple(warnings))


def check_stop(payload: dict[str, Any]) -> Checked:
    """A stop_job body checked field by field."""
    out = dict(payload)
    warnings: list[str] = []
    reason = _check_ints(out, _STOP, warnings)
    if reason is not None:
        return Checked(None, tuple(warnings), reason)
    return Checked(out, tuple(warnings))
