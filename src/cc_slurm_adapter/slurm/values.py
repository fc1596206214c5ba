"""Slurm's value encodings, read in one place.

Slurm has changed how it writes the same value several times (see
``shared/reference/slurm-json-versions.md`` §2). Every accessor here accepts all
of them and never raises; it returns ``None`` (or an empty tuple) for anything it
cannot read, so one odd value costs one field, never the job or the daemon.

1. Numbers: a plain int (≤ 22.05), a raw 32/64-bit sentinel (``NO_VAL``,
   ``INFINITE``), ``null`` (≤ 22.05 squeue: NO_VAL/INFINITE), the NO_VAL struct
   ``{"set", "infinite", "number"}`` (23.02 and later), a float (``billable_tres``),
   or the strings ``"Infinity"``/``"NaN"`` (dumps before 24.05.4 / 25.05).
2. Strings: a plain string, or a list of strings (``job_state`` and
   ``state.current`` became flag arrays in 23.11).
3. Absent objects: ``{}`` (≤ 24.05), ``null`` (24.11 and later) or a missing key.

Hostlists are also here: Slurm's compressed ``node[01-04,7]`` syntax is expanded
with python-hostlist, never by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import hostlist

from cc_slurm_adapter.slurm.phase import BASE_STATES

__all__ = [
    "BASE_STATES",
    "FieldLog",
    "as_bool",
    "as_epoch",
    "as_int",
    "as_str",
    "as_str_tuple",
    "expand_hostlist",
    "get",
    "is_absent",
    "is_infinite",
    "parse_index_list",
    "split_state",
]

log = logging.getLogger("cc_slurm_adapter.slurm")

# NO_VAL / INFINITE in 16, 32 and 64 bits. Slurm ≤ 22.05 sacct wrote some of them raw
# (e.g. time.limit 4294967295 = INFINITE, 4294967294 = NO_VAL); 23.02.0-3 squeue wrote
# exit_code 4294967295 for running jobs.
_NO_VAL16 = 0xFFFE
_NO_VAL = 0xFFFFFFFE
_INFINITE = 0xFFFFFFFF
_NO_VAL64 = 0xFFFFFFFFFFFFFFFE
_INFINITE64 = 0xFFFFFFFFFFFFFFFF
_SENTINELS = frozenset({_NO_VAL, _INFINITE, _NO_VAL64, _INFINITE64})

_MISSING: Any = object()


def is_absent(value: Any) -> bool:
    """``None``, ``{}``, ``[]`` and ``""`` are all "Slurm did not say"."""
    return value is None or value == {} or value == [] or value == ""


def get(obj: Any, *path: str | int) -> Any:
    """``obj[p0][p1]…`` or ``None`` if any step is missing or not a container."""
    cur = obj
    for key in path:
        if isinstance(cur, Mapping):
            cur = cur.get(key)
        elif isinstance(cur, list) and isinstance(key, int):
            cur = cur[key] if -len(cur) <= key < len(cur) else None
        else:
            return None
        if cur is None:
            return None
    return cur


def _number(value: Any) -> int | float | None:
    """The number inside any of Slurm's number encodings, without sentinel checks."""
    if isinstance(value, bool):  # bool is an int subclass: never a count
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, Mapping):
        # NO_VAL struct (23.02+): set=false → unset; infinite=true → unlimited.
        if value.get("infinite") is True or value.get("set") is False:
            return None
        return _number(value.get("number"))
    if isinstance(value, str):
        # "Infinity"/"NaN" (before 24.05.4/25.05) and numbers written as strings.
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            num = float(text)
        except ValueError:
            return None
        return num if num == num and num not in (float("inf"), float("-inf")) else None
    return None


def as_int(value: Any) -> int | None:
    """An int from a plain int, NO_VAL struct, float or numeric string; else None.

    ``null``, ``{"set": false}``, ``{"infinite": true}``, raw NO_VAL/INFINITE
    sentinels and non-finite floats all give None.
    """
    num = _number(value)
    if num is None:
        return None
    if isinstance(num, float):
        if num != num or num in (float("inf"), float("-inf")):
            return None
        num = int(num)
    if num in _SENTINELS:
        return None
    return num


def is_infinite(value: Any) -> bool:
    """True for ``{"infinite": true}``, raw INFINITE and the string ``"Infinity"``."""
    if isinstance(value, Mapping):
        return value.get("infinite") is True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value in (_INFINITE, _INFINITE64)
    if isinstance(value, float):
        return value == float("inf")
    if isinstance(value, str):
        return value.strip().lower() in ("infinity", "inf", "unlimited")
    return False


def as_epoch(value: Any) -> int | None:
    """Epoch seconds; 0, negatives, sentinels, ``{set: false}`` and infinite are None.

    sacct ``time.*`` is a plain int in every release (0 = not happened); squeue times
    are plain ints ≤ 23.02 and NO_VAL structs from 23.11 (v0.0.40).
    """
    num = as_int(value)
    if num is None or num <= 0 or num >= _NO_VAL:
        return None
    return num


def as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "yes", "1"):
            return True
        if low in ("false", "no", "0"):
            return False
    if isinstance(value, int):
        return bool(value)
    return None


def as_str(value: Any) -> str | None:
    """A non-empty string, or the first element of a list of strings; else None.

    ``job_state`` / ``state.current`` are strings ≤ 23.02 and lists from 23.11.
    Strings are stripped (21.08 flags carried trailing blanks).
    """
    if isinstance(value, str):
        text = value.strip()
        return text or None
    if isinstance(value, list):
        for item in value:
            found = as_str(item)
            if found is not None:
                return found
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(value)
    return None


def as_str_tuple(value: Any) -> tuple[str, ...]:
    """Every non-empty string of a string-or-list value, stripped, in order."""
    if isinstance(value, str):
        text = value.strip()
        return (text,) if text else ()
    if isinstance(value, list):
        out = []
        for item in value:
            if isinstance(item, str) and item.strip():
                out.append(item.strip())
        return tuple(out)
    return ()


def split_state(value: Any) -> tuple[str | None, tuple[str, ...]]:
    """``(state, flags)`` from ``"RUNNING"`` or ``["COMPLETED", "COMPLETING"]``.

    The state is the first element that is a base state (``phase.BASE_STATES``); the
    flags are the others. A single name that is no base state (≤ 23.02 and text
    outputs print the flag instead of the base: ``"COMPLETING"``, ``"REQUEUED"``,
    ``"RESIZING"``) is kept as it is, as the state and as its only flag: what it means
    is decided in one place, :func:`cc_slurm_adapter.slurm.phase.job_phase`.
    Upper-cased; ``(None, ())`` when there is nothing.
    """
    items = tuple(s.upper() for s in as_str_tuple(value))
    if not items:
        return None, ()
    for i, item in enumerate(items):
        if item in BASE_STATES:
            return item, items[:i] + items[i + 1:]
    return items[0], items


def expand_hostlist(value: Any) -> tuple[str, ...] | None:
    """Expand a Slurm hostlist (``"n[01-03],gpu1"``) into host names, in Slurm's order.

    Returns ``()`` for no hosts (``""``, ``None``, sacct's ``"None assigned"``,
    ``"(null)"``) and ``None`` if the string is not a valid hostlist.
    """
    if isinstance(value, list):  # a list of names (never seen, tolerated)
        names = [n for v in value for n in (expand_hostlist(v) or ())]
        return tuple(names)
    text = as_str(value)
    if text is None or text in ("None assigned", "(null)", "None"):
        return ()
    try:
        return tuple(hostlist.expand_hostlist(text))
    except (hostlist.BadHostlist, ValueError, TypeError, IndexError):
        return None


def parse_index_list(text: str) -> tuple[int, ...] | None:
    """``"0-3,5,7-8"`` → ``(0, 1, 2, 3, 5, 7, 8)``; ``""`` → ``()``; None if malformed.

    Used for gres ``IDX:`` bitmaps and ``CPU_IDs=``. Ranges may use ``-``; a range
    longer than 1,048,576 is rejected as malformed rather than allocated.
    """
    text = text.strip()
    if not text:
        return ()
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            return None
        lo_s, sep, hi_s = part.partition("-")
        # isascii(): str.isdigit() also accepts "¹" and other non-ASCII digits
        if not (lo_s.isascii() and lo_s.isdigit()) or (
                sep and not (hi_s.isascii() and hi_s.isdigit())):
            return None
        lo = int(lo_s)
        hi = int(hi_s) if sep else lo
        if hi < lo or hi - lo > 1 << 20:
            return None
        out.extend(range(lo, hi + 1))
    return tuple(out)


class FieldLog:
    """Collects a job's odd fields and logs each (field, version) once at debug level.

    One instance per parse call; ``seen`` is shared across calls so a field that is
    missing in 100,000 jobs of one release is logged once, not 100,000 times.
    """

    _seen: ClassVar[set[tuple[str, str | None]]] = set()

    __slots__ = ("issues", "job_id", "version")

    def __init__(self, version: str | None) -> None:
        self.version = version
        self.job_id: int | None = None
        self.issues: list[str] = []

    def start(self, job_id: int | None) -> None:
        self.job_id = job_id
        self.issues = []

    def note(self, field: str, why: str) -> None:
        self.issues.append(f"{field}: {why}")
        key = (field, self.version)
        if key not in FieldLog._seen:
            FieldLog._seen.add(key)
            log.debug("Slurm %s: job %s: field %s %s (logged once per field and version)",
                      self.version or "?", self.job_id, field, why)

    def take(self) -> tuple[str, ...]:
        issues = tuple(self.issues)
        self.issues = []
        return issues

    @classmethod
    def reset_seen(cls) -> None:
        """Forget what was logged (tests)."""
        cls._seen.clear()


def first_present(values: Iterable[Any]) -> Any:
    """The first value that is not absent, or None."""
    for value in values:
        if not is_absent(value):
            return value
    return None
