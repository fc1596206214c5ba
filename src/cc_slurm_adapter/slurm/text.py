"""Slurm text output we read where JSON is missing or too expensive.

* ``squeue -h -o "%A %T"`` – the cheap live listing (0.07 s for 8,000 jobs where
  ``squeue --json`` takes 8 s and 1.2 GB on 24.11).
* ``sacct -n -P -X -o JobIDRaw,State,Start,End`` – the window's jobs in brief, asked
  before the window's JSON on releases where that JSON is slow (22.05: 0.09 s against
  0.37 s), so a cycle in which nothing changed does not pay for it.
* ``scontrol show job -d -o`` – one line per job with per-node ``CPU_IDs`` and
  ``GRES=…(IDX:…)``; the only per-node detail before 23.02 (``scontrol --json`` does
  not exist on 21.08/22.05, and ``squeue --json`` there ignores ``-j``). Times are
  read as UTC because the runner pins ``TZ=UTC``.
"""

from __future__ import annotations

import calendar
import logging
import re
import sys
import time
from collections.abc import Collection, Mapping
from typing import NamedTuple

import msgspec

from cc_slurm_adapter.slurm.gres import gpus_from_detail
from cc_slurm_adapter.slurm.phase import Phase, is_finishing, is_requeue, job_phase
from cc_slurm_adapter.slurm.record import ExitCode, JobRecord, NodeResources, NodeTopology
from cc_slurm_adapter.slurm.scontrol_text import record_complete, split_record
from cc_slurm_adapter.slurm.tres import (
    ctld_memory,
    gpus_from_tres,
    gpus_requested,
    mem_to_mb,
    parse_tres_string,
)
from cc_slurm_adapter.slurm.values import (
    FieldLog,
    as_int,
    expand_hostlist,
    parse_index_list,
    split_state,
)

__all__ = ["WINDOW_FIELDS", "WindowRow", "parse_batch_scripts", "parse_scontrol_jobs",
           "parse_squeue_listing", "parse_window_listing"]

_UNSET = frozenset({"", "None", "(null)", "Unknown", "N/A", "n/a"})
log = logging.getLogger(__name__)


# a whole line: ``<digits> <STATE>``, blanks around it allowed (not newlines)
_LISTING_LINE = re.compile(r"^[^\S\n]*([0-9]+) ([A-Z_]+)[^\S\n]*$", re.MULTILINE)


def parse_squeue_listing(text: bytes | str) -> dict[int, str]:
    """``squeue -h -o "%A %T"`` → ``{job_id: STATE}``; odd lines are skipped.

    Neither field is chosen by a user, and a line must be exactly ``<digits> <STATE>``
    (``CLUSTER: name`` headers of ``-M`` and anything else are skipped); the first line
    of a job id wins.
    """
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    out: dict[int, str] = {}
    # line by line without a list of every line, and one str per state name, not one
    # per job: 9,000 jobs cost 1 MB less at the cycle's peak
    for match in _LISTING_LINE.finditer(text):
        out.setdefault(int(match.group(1)), sys.intern(match.group(2)))
    return out


def _time(value: str | None) -> int | None:
    if value is None or value in _UNSET:
        return None
    try:
        return calendar.timegm(time.strptime(value, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


WINDOW_FIELDS = "JobIDRaw,State,Start,End"
"""The ``sacct -o`` fields of :func:`parse_window_listing`; none is chosen by a user."""
# JobIDRaw: digits (an array task and a het-job component have their own raw id);
# State: "RUNNING", "CANCELLED by 1000", ...; Start/End: a time, "Unknown" or "None"
_WINDOW_LINE = re.compile(r"([0-9]+)\|([A-Z_]+(?: by [0-9]+)?)\|([^|\s]*)\|([^|\s]*)")


class WindowRow(NamedTuple):
    """One job of ``sacct -n -P -X -o JobIDRaw,State,Start,End`` (text, 21.08+)."""

    job_id: int
    state: str
    start: int | None
    end: int | None


def parse_window_listing(text: bytes | str) -> list[WindowRow] | None:
    """``sacct -n -P -X -o JobIDRaw,State,Start,End`` → its rows, or None when the
    output is not wholly such rows.

    The caller decides from these rows whether the window's JSON must be read at all,
    so any doubt means None (then the JSON is read): a line of another shape, output
    that does not end with a newline (a cut-off listing must never read as "nothing
    changed"), bytes that are not ASCII. Times are UTC (the runner pins ``TZ=UTC`` and
    ``SLURM_TIME_FORMAT=standard``); ``Unknown`` and ``None`` read as None.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            return None
    if text and not text.endswith("\n"):
        return None
    rows: list[WindowRow] = []
    for line in text.split("\n")[:-1]:  # split at "\n" only; the last part is empty
        match = _WINDOW_LINE.fullmatch(line)
        if match is None:
            return None
        job_id, state, start, end = match.groups()
        rows.append(WindowRow(int(job_id), state, _time(start), _time(end)))
    return rows


def _minutes(value: str | None) -> tuple[int | None, bool]:
    """``UNLIMITED``, ``1-02:03:04``, ``02:03:04``, ``03:04`` → (minutes, unlimited)."""
    if value is None or value in _UNSET or value == "NONE":
        return None, False
    if value.upper() in ("UNLIMITED", "INFINITE"):
        return None, True
    days = 0
    if "-" in value:
        d, _, value = value.partition("-")
        days = int(d) if d.isdigit() else 0
    parts = [int(p) if p.isdigit() else 0 for p in value.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    h, m, s = parts[-3:]
    return days * 1440 + h * 60 + m + (1 if s else 0), False


def _name_id(value: str | None) -> tuple[str | None, int | None]:
    """``bob(1000)`` → ("bob", 1000)."""
    if not value or value in _UNSET:
        return None, None
    name, _, rest = value.partition("(")
    return (name or None), as_int(rest.rstrip(")")) if rest else None


def _str(fields: Mapping[str, str], key: str) -> str | None:
    value = fields.get(key)
    return None if value is None or value in _UNSET else value


# ≤ 25.11 ``OverSubscribe=`` carries exclusivity too (NO = --exclusive, OK = default);
# 26.05 splits it into ``Exclusive=`` (NO/NODE/USER/MCS/TOPO) and ``OverSubscribe=``
# (NO = default, YES/FORCE).
_OVERSUBSCRIBE = {"NO": "exclusive", "YES": "oversubscribe", "FORCE": "oversubscribe",
                  "USER": "user", "MCS": "mcs", "TOPO": "topo"}
_EXCLUSIVE = {"NODE": "exclusive", "YES": "exclusive", "USER": "user", "MCS": "mcs",
              "TOPO": "topo"}


def _shared(fields: Mapping[str, str]) -> str | None:
    over = (fields.get("OverSubscribe") or "").upper()
    if "Exclusive" in fields:  # 26.05+
        mode = _EXCLUSIVE.get(fields["Exclusive"].upper())
        if mode:
            return mode
        return "oversubscribe" if over in ("YES", "FORCE") else None
    return _OVERSUBSCRIBE.get(over)


def _first_int(value: str | None) -> int | None:
    """``NumNodes=2`` or ``NumNodes=2-2`` (a range while pending) → 2."""
    if not value:
        return None
    return as_int(value.split("-", 1)[0])


def _exit_code(value: str | None) -> ExitCode | None:
    """``3:0`` (return code 3) or ``0:15`` (signal 15) → :class:`ExitCode`."""
    code, _, sig = (value or "").partition(":")
    if not (code.isascii() and code.isdigit()):
        return None
    signal = as_int(sig) or None
    if signal:  # as the JSON records of a signalled job: no return code
        return ExitCode(status="SIGNALED", signal=signal)
    return ExitCode(status="SUCCESS" if code == "0" else "ERROR", return_code=int(code))


def _tokens(line: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Fields and node groups (``Nodes= CPU_IDs= Mem= GRES=``) of one record, split
    only at the keys scontrol prints, in its order, so that a user-chosen value (job
    name, comment, paths …) can never become a key (:mod:`.scontrol_text`)."""
    split = split_record(line)
    return dict(split.fields), [dict(g) for g in split.groups]


def _resources(groups: list[dict[str, str]], topology: Mapping[str, NodeTopology] | None,
               ) -> tuple[NodeResources, ...]:
    out: list[NodeResources] = []
    for grp in groups:
        hosts = expand_hostlist(grp.get("Nodes")) or ()
        cpu_ids = parse_index_list(grp.get("CPU_IDs", "")) or ()
        gpus = gpus_from_detail(grp.get("GRES", "")) or ()
        for host in hosts:
            topo = topology.get(host) if topology else None
            out.append(NodeResources(
                hostname=host, cpu_ids=cpu_ids, cpus=len(cpu_ids) or None, gpus=gpus,
                memory_mb=mem_to_mb(grp.get("Mem")),
                sockets=topo.sockets if topo else None,
                cores_per_socket=topo.cores_per_socket if topo else None,
                threads_per_core=topo.threads_per_core if topo else None))
    return tuple(out)


def _job(line: str, flog: FieldLog, cluster: str | None, version: str | None,
         topology: Mapping[str, NodeTopology] | None) -> JobRecord | None:
    fields, groups = _tokens(line.strip())
    job_id = as_int(fields.get("JobId"))
    flog.start(job_id)
    if job_id is None:
        return None
    base, flags = split_state(fields.get("JobState"))
    if base is None:
        flog.note("JobState", "missing")
    state = base or "UNKNOWN"
    phase = job_phase(state, flags, family="ctld")
    user, uid = _name_id(fields.get("UserId"))
    group, _gid = _name_id(fields.get("GroupId"))
    nodes = expand_hostlist(_str(fields, "NodeList"))
    if nodes is None:
        flog.note("NodeList", f"not a valid hostlist: {fields.get('NodeList', '')[:60]!r}")
        nodes = ()
    limit, unlimited = _minutes(fields.get("TimeLimit"))
    start = _time(fields.get("StartTime"))
    end = _time(fields.get("EndTime"))
    if phase is Phase.PENDING:
        start = None  # the scheduler's expected start (or a requeued run's)
    if phase is not Phase.ENDED and not is_finishing(state, flags):
        end = None  # start + time limit: the expected end
    array_job = as_int(fields.get("ArrayJobId")) or None
    task = fields.get("ArrayTaskId")
    array_task = as_int(task) if array_job else None
    het_job = as_int(fields.get("HetJobId")) or None
    # ≤ 23.02: one TRES= (the allocation once there is one, else the request: pending,
    # or cancelled before it started); 23.11+: ReqTRES= and AllocTRES= ("(null)").
    if "AllocTRES" in fields or "ReqTRES" in fields:
        tres = parse_tres_string(fields.get("AllocTRES"))
        tres_req = parse_tres_string(fields.get("ReqTRES"))
    elif phase is Phase.PENDING or not nodes:
        tres, tres_req = {}, parse_tres_string(fields.get("TRES"))
    else:
        tres, tres_req = parse_tres_string(fields.get("TRES")), {}
    cpus = as_int(fields.get("NumCPUs"))
    node_count = _first_int(fields.get("NumNodes"))
    resources = _resources(groups, topology)
    gpus = gpus_from_tres(tres)
    if gpus is None and any(r.gpus for r in resources):
        gpus = sum(1 for r in resources for g in r.gpus if g.kind == "gpu")
    if gpus is None and phase is not Phase.PENDING:
        gpus = gpus_requested(fields.get("TresPerJob"), 1) or gpus_requested(
            fields.get("TresPerNode"), node_count or len(nodes) or 1)
    return JobRecord(
        source="scontrol", job_id=job_id, slurm_version=version, cluster=cluster,
        array_job_id=array_job, array_task_id=array_task,
        array_task_string=task if array_job and array_task is None and task else None,
        het_job_id=het_job,
        het_job_offset=as_int(fields.get("HetJobOffset")) if het_job else None,
        user=user, user_id=uid, group=group, account=_str(fields, "Account"),
        partition=_str(fields, "Partition"), qos=_str(fields, "QOS"),
        name=_str(fields, "JobName"), submit_time=_time(fields.get("SubmitTime")),
        start_time=start, end_time=end,
        elapsed_s=(end - start) if start is not None and end is not None else None,
        state=state, state_flags=flags, state_reason=_str(fields, "Reason"),
        phase=phase, requeued=is_requeue(state, flags),
        restart_count=as_int(fields.get("Restarts")),
        exit_code=_exit_code(fields.get("ExitCode")),
        derived_exit_code=_exit_code(fields.get("DerivedExitCode")),
        nodes=nodes, node_count=node_count, cpus=cpus, gpus=gpus,
        resources=resources, tres_alloc=tres,
        requested_memory_mb=ctld_memory(tres, tres_req, _str(fields, "MinMemoryNode"),
                                        _str(fields, "MinMemoryCPU"), cpus,
                                        node_count or len(nodes) or None, flog),
        time_limit_min=limit, unlimited_time=unlimited, shared=_shared(fields),
        comment=_str(fields, "Comment"), work_dir=_str(fields, "WorkDir"),
        submit_line=_str(fields, "SubmitLine"),  # 23.02+
        sluid=_str(fields, "SLUID"),  # 25.11+
        batch_host=_str(fields, "BatchHost"), warnings=flog.take())


def _line_job_id(line: str) -> int | None:
    """The id of a ``JobId=123 JobName=…`` line without tokenising it."""
    if not line.startswith("JobId="):
        return None
    end = line.find(" ", 6)
    ident = line[6:end if end != -1 else len(line)]
    return int(ident) if ident.isascii() and ident.isdigit() else None


def _version_tuple(version: str | None) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", version or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def _decode_line(raw: bytes | str) -> tuple[str, bool]:
    if isinstance(raw, str):
        return raw, False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace"), True


class _Record:
    __slots__ = ("_complete", "bad_bytes", "blank", "job_id", "joined", "lines")

    def __init__(self, job_id: int, line: str, bad: bool) -> None:
        self.job_id = job_id
        self.lines = [line]
        self.joined = False
        self.bad_bytes = bad
        self.blank: list[str] = []  # empty lines after it (part of a value if it goes on)
        self._complete: bool | None = None

    def complete(self, version: tuple[int, int] | None) -> bool:
        if self._complete is None:
            self._complete = record_complete(self.text, version)
        return self._complete

    @property
    def text(self) -> str:
        return "\n".join(self.lines).strip()  # as _job splits it (one cached split)

    def take(self, lines: list[str], bad: bool) -> None:
        self._complete = None
        self.lines.extend((*self.blank, *lines))
        self.blank = []
        self.joined = True
        self.bad_bytes = self.bad_bytes or bad


# Lines joined into one record at most: real values hold a few newlines; a record that
# is still not whole after that is left out (parse_scontrol_jobs), and the join stays
# linear in the output's size.
_MAX_JOIN = 64


def _segments(text: bytes | str) -> list[_Record]:
    """Each ``JobId=`` line with the lines after it that do not start with ``JobId=``."""
    lines: list[bytes] | list[str] = (text.split(b"\n") if isinstance(text, bytes)
                                      else text.split("\n"))
    out: list[_Record] = []
    for raw in lines:
        line, bad = _decode_line(raw)
        if not line.strip():
            if out:
                out[-1].blank.append(line)
            continue
        ident = _line_job_id(line)
        if ident is not None:
            out.append(_Record(ident, line, bad))
        elif out:
            out[-1].take([line], bad)
    return out


def _records(text: bytes | str, only: Collection[int] | None,
             version: tuple[int, int] | None) -> tuple[list[_Record], bool]:
    """Physical lines → job records.

    scontrol writes a newline inside a value raw (22.05.8, 24.11.5, 26.05.5: a job name
    ``$'a\nb'`` or a ``--comment`` with a newline). So a line that does not start with
    ``JobId=`` continues the record before it, and a line that does start with
    ``JobId=`` begins a new record only if the record before it is complete (every
    mandatory key, Std* of a batch job, ``Power=`` ≤ 22.05): a user's ``\nJobId=99 …``
    inside a comment is not a job. Completeness is only checked where a wanted job is
    involved (``only``), so unwanted lines stay cheap. Text in which no record is
    complete is not scontrol's full output (a release whose key order we do not know,
    or a hand-made sample): there each ``JobId=`` line is a record, read leniently
    (returned with False; True when records were checked).
    """
    segments = _segments(text)
    out: list[_Record] = []
    for seg in segments:
        cur = out[-1] if out else None
        if cur is not None:
            need = only is None or seg.job_id in only or cur.job_id in only or cur.joined
            if need and len(cur.lines) < _MAX_JOIN and not cur.complete(version):
                cur.take(seg.lines, seg.bad_bytes)  # part of a user-chosen value
                cur.blank = seg.blank
                continue
        out.append(seg)
    if not any(rec.complete(version) for rec in out):
        return _segments(text), False  # not scontrol's whole output: one per JobId= line
    return out, True


def parse_scontrol_jobs(text: bytes | str, *, cluster: str | None = None,
                        version: str | None = None,
                        topology: Mapping[str, NodeTopology] | None = None,
                        only: Collection[int] | None = None) -> list[JobRecord]:
    """Parse ``scontrol show job -d -o`` (one job per line) into records.

    Fields mean what they mean in the JSON records (``parse``): TRES and memory go
    through the same helpers, the expected start/end of live jobs are dropped, and a
    field that does not read costs that field only. ``only``: parse just these job ids
    (the other lines are skipped by their ``JobId=`` prefix, untokenised).

    User-chosen values are hostile (issue 10): records are split as described in
    :func:`_records` and :mod:`.scontrol_text`; a job id that shows up in two records
    (a user's fake record beside the real one) is left out, with a warning; non-UTF-8
    bytes are replaced (22.05.8 prints a job name's bytes raw).
    """
    vt = _version_tuple(version)
    flog = FieldLog(f"{version or '?'}/scontrol-text")
    records, checked = _records(text, only, vt)
    counts: dict[int, int] = {}
    for rec in records:
        counts[rec.job_id] = counts.get(rec.job_id, 0) + 1
    jobs: list[JobRecord] = []
    for rec in records:
        if only is not None and rec.job_id not in only:
            continue
        if counts[rec.job_id] > 1:
            log.warning("scontrol text: job %s appears in %d records (a user-chosen field "
                        "holds a fake record); its details are left out",
                        rec.job_id, counts[rec.job_id])
            counts[rec.job_id] = -1  # warn once
            continue
        if counts[rec.job_id] < 0:
            continue
        body = rec.text
        if checked and not rec.complete(vt):
            # beside whole records, a part that is not one is a user's text after a
            # newline (24.11+ end a batch job's line with StdOut=, so a newline there
            # can start a ``JobId=`` line of its own): not a job
            log.warning("scontrol text: a record of job %s is not whole (a user-chosen "
                        "field holds a newline?); its details are left out", rec.job_id)
            continue
        record = _job(body, flog, cluster, version, topology)
        if record is None:
            continue
        extra: list[str] = []
        if rec.bad_bytes:
            extra.append("text: non-UTF-8 bytes replaced")
            log.warning("scontrol text: job %s has non-UTF-8 bytes (replaced)", rec.job_id)
        if rec.joined:
            extra.append("text: a user-chosen field holds a newline")
        if not split_record(body.strip()).strict:
            extra.append("text: key order not as known for this release; read leniently")
            log.warning("scontrol text: job %s: key order not as known; read leniently "
                        "(user, account and hosts must come from accounting)", rec.job_id)
        if extra:
            record = msgspec.structs.replace(record, warnings=(*record.warnings, *extra))
        jobs.append(record)
    return jobs


_SCRIPT_HEADER = re.compile(r"^Batch Script for (\d+(?:_\d+)?)\n-{20,}\n", re.MULTILINE)


def parse_batch_scripts(text: bytes | str, wanted: Collection[int] = (),
                        aliases: Mapping[str, int] | None = None) -> dict[int, str]:
    """``sacct -B -j IDS`` text (the only bulk form before 23.02) → job id → script.

    Each job is ``Batch Script for ID``, a line of dashes, then the script; ``NONE``
    when slurmdbd has none (``AccountingStoreFlags`` without ``job_script``, or a job
    that is not a batch job). Array tasks are headed ``ARRAYID_TASKID`` even when asked
    for by their own job id (seen on 22.05.8): ``aliases`` maps such names to job ids.
    Only headers of ``wanted`` ids and array tasks split (when ``wanted`` is given), so
    a script that prints such a header itself mostly stays in one piece.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    names = dict(aliases or {})

    def job_id(name: str) -> int | None:
        if name in names:
            return names[name]
        return int(name) if name.isdigit() else None

    heads = [(m, job_id(m.group(1))) for m in _SCRIPT_HEADER.finditer(text)]
    # split at wanted ids, and at every array-task header (dropped when not resolvable)
    heads = [(m, i) for m, i in heads
             if (i is not None and (not wanted or i in wanted)) or "_" in m.group(1)]
    # A script can print a header of a wanted job itself: the id then heads two parts,
    # and the part before each copy may hold the fake one. All of them are left out.
    seen: dict[int, int] = {}
    for _m, ident in heads:
        if ident is not None:
            seen[ident] = seen.get(ident, 0) + 1
    doubtful: set[int] = set()
    for n, (_m, ident) in enumerate(heads):
        if ident is not None and seen[ident] > 1:
            doubtful.add(ident)
            prev = heads[n - 1][1] if n else None
            if prev is not None:
                doubtful.add(prev)
    if doubtful:
        log.warning("sacct -B: a batch script prints the header of job(s) %s; their "
                    "scripts are left out", ",".join(map(str, sorted(doubtful))))
    out: dict[int, str] = {}
    for n, (head, ident) in enumerate(heads):
        end = heads[n + 1][0].start() if n + 1 < len(heads) else len(text)
        body = text[head.end():end].rstrip("\n")
        if ident is not None and ident not in doubtful and body.strip() \
                and body.strip() != "NONE":
            out[ident] = body + "\n"
    return out
