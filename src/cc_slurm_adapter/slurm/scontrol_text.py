"""``scontrol show job -d -o`` text split so that no user-chosen value becomes a key.

scontrol prints ``Key=value`` pairs separated by one space and never quotes or escapes
a value (checked on 22.05.8, 24.11.5 and 26.05.5): a job name, comment, working
directory, output path, command, submit line … may hold `` UserId=root(0)``, ``=``,
``(``/``)`` and even newlines (printed raw: a newline in ``--comment`` starts a physical
line ``JobId=99 …`` of its own). Reading "the first ``Key=`` seen" lets any user rewrite
the job's user, account and hosts (issue 10).

So a record is split only at the keys scontrol is known to print, in the order that
``slurm_sprint_job_info()`` (``src/api/job_info.c``) prints them, checked against the
recorded and live text of 22.05, 24.11 and 26.05:

* a key that slurmctld fills itself (``UserId``, ``Account``, ``NodeList``, …) has a value
  without white space (Slurm writes ``Reason`` with ``_`` for spaces for that reason);
* a *free* key (user text) may hold anything, and a free value takes the **latest**
  split that still leaves a valid rest. A fake `` UserId=…`` inside ``JobName`` (printed
  before the real one) is therefore part of the name; a fake key inside a later free
  field (``Comment``, ``StdOut``, …) comes after the real key and is skipped because the
  keys must appear in order and every *mandatory* key exactly once;
* keys scontrol always prints are mandatory: a split that leaves one out is refused.

What this cannot tell apart: a later free field that repeats, in order, every mandatory
key from ``UserId`` to itself with valid values. That is why the caller takes user,
account and hosts from sacct's JSON where it has it (:mod:`cc_slurm_adapter.slurm.merge`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice

__all__ = ["Split", "record_complete", "split_record"]


@dataclass(frozen=True)
class _Slot:
    names: tuple[str, ...]
    mandatory: bool = False
    free: bool = False


def _s(names: str, mandatory: bool = False, free: bool = False) -> _Slot:
    return _Slot(tuple(names.split("|")), mandatory, free)


M, F = True, True
# The print order of slurm_sprint_job_info() (22.05 source), with the keys newer releases
# add where 24.11.5 / 26.05.5 print them: SLUID (25.11+) after JobName, ReqTRES/AllocTRES
# (23.11+) where TRES was, Exclusive and LicensesAlloc (26.05), SubmitLine (23.02+;
# 26.05.5 prints it, 24.11.5 only for some jobs). Power= is gone in 24.11.
_ORDER: tuple[_Slot, ...] = (
    _s("JobId", M),
    _s("ArrayJobId"), _s("ArrayTaskId"), _s("ArrayTaskThrottle"),
    _s("HetJobId"), _s("HetJobOffset"),
    _s("JobName", M, F),
    _s("HetJobIdSet"), _s("SLUID"),
    _s("UserId", M), _s("GroupId", M), _s("MCS_label", M, F),
    _s("Priority", M), _s("Nice", M), _s("Account", M), _s("QOS", M), _s("WCKey", free=F),
    _s("JobState", M), _s("Reason", M), _s("Dependency", M),
    _s("Requeue", M), _s("Restarts", M), _s("BatchFlag", M), _s("Reboot", M),
    _s("ExitCode", M), _s("DerivedExitCode"),
    _s("RunTime", M), _s("TimeLimit", M), _s("TimeMin", M),
    _s("SubmitTime", M), _s("EligibleTime", M), _s("AccrueTime", M), _s("ResizeTime"),
    _s("StartTime", M), _s("EndTime", M), _s("Deadline", M),
    _s("CronJob"), _s("CrontabSpec", free=F),
    _s("PreemptEligibleTime"), _s("PreemptTime"),
    _s("SuspendTime", M), _s("SecsPreSuspend", M), _s("LastSchedEval", M),
    _s("Scheduler", M),
    _s("Partition", M), _s("AllocNode:Sid", M),
    _s("ReqNodeList", M), _s("ExcNodeList", M), _s("NodeList", M), _s("SchedNodeList"),
    _s("BatchFeatures", free=F), _s("BatchHost"),
    _s("FedOrigin"), _s("FedViableSiblings"), _s("FedActiveSiblings"),
    _s("NumNodes", M), _s("NumCPUs", M), _s("NumTasks", M), _s("CPUs/Task", M),
    _s("ReqB:S:C:T", M),
    _s("TRES"), _s("ReqTRES"), _s("AllocTRES"),
    _s("Socks/Node", M), _s("NtasksPerN:B:S:C", M), _s("CoreSpec|ThreadSpec", M),
    _s("JOB_GRES"),
    _s("Nodes"), _s("CPU_IDs"), _s("Mem"), _s("GRES"),  # repeated per node group
    _s("MinCPUsNode", M), _s("MinMemoryCPU|MinMemoryNode", M), _s("MinTmpDiskNode", M),
    _s("Features", M, F), _s("DelayBoot", M),
    _s("ClusterFeatures", free=F), _s("Prefer", free=F), _s("Reservation", free=F),
    _s("OverSubscribe", M), _s("Exclusive"), _s("Contiguous", M),
    _s("Licenses", M, F), _s("LicensesAlloc", free=F), _s("Network", M, F),
    _s("Command", M, F), _s("SubmitLine", free=F), _s("WorkDir", M, F),
    _s("AdminComment", free=F), _s("SystemComment", free=F), _s("Comment", free=F),
    _s("Extra", free=F),
    _s("StdErr", free=F), _s("StdIn", free=F), _s("StdOut", free=F),
    _s("Switches"), _s("BurstBuffer", free=F), _s("BurstBufferState"),
    _s("CpuFreqMin"), _s("CpuFreqMax"), _s("CpuFreqGov"),
    _s("Power"),
    _s("GresEnforceBind"), _s("KillOInInvalidDependent"), _s("SpreadJob"),
    _s("CpusPerTres"), _s("MemPerTres"), _s("TresBind"), _s("TresFreq"),
    _s("TresPerJob"), _s("TresPerNode"), _s("TresPerSocket"), _s("TresPerTask"),
    _s("MailUser", free=F), _s("MailType"), _s("NtasksPerTRES"),
    _s("Container", free=F), _s("ContainerID", free=F), _s("SELinuxContext", free=F),
)
_SLOT_OF = {name: i for i, slot in enumerate(_ORDER) for name in slot.names}
_GROUP_FIRST, _GROUP_LAST = _SLOT_OF["Nodes"], _SLOT_OF["GRES"]
_GROUP_KEYS = frozenset(("Nodes", "CPU_IDs", "Mem", "GRES"))

# A key at a field boundary: one space before it (two before Nodes=), or the start;
# only the keys of _ORDER count.
_KEY_RE = re.compile(r"(?:(?<= )|^)([A-Za-z_:/]+)=")
_UNKNOWN_PAIRS = re.compile(r"(?:\s+[A-Za-z_:/]+=\S*)*\s*")


_BATCH_KEYS = frozenset(("StdErr", "StdIn", "StdOut"))


@dataclass(frozen=True)
class _Tables:
    succ: tuple[frozenset[int], ...]
    may_end: tuple[bool, ...]
    mand_succ: tuple[int | None, ...]


def _tables(batch: bool) -> _Tables:
    """Successor tables; ``batch``: StdErr/StdIn/StdOut are mandatory (scontrol prints
    them whenever BatchFlag is set), which anchors the tail of a batch job."""
    mandatory = [slot.mandatory or (batch and slot.names[0] in _BATCH_KEYS)
                 for slot in _ORDER]

    def successors(slot: int) -> tuple[int, ...]:
        # the next slots up to and including the next mandatory one; a node group
        # (Nodes= CPU_IDs= Mem= GRES=, printed together) also repeats: GRES → Nodes
        out: list[int] = []
        for nxt in range(slot + 1, len(_ORDER)):
            out.append(nxt)
            if mandatory[nxt]:
                break
        if _GROUP_FIRST <= slot <= _GROUP_LAST:
            out = [slot + 1] if slot < _GROUP_LAST else [_GROUP_FIRST, *out]
        return tuple(out)

    succ = tuple(frozenset(successors(i)) for i in range(len(_ORDER)))
    may_end = tuple(not any(mandatory[i + 1:]) and not (_GROUP_FIRST <= i < _GROUP_LAST)
                    for i in range(len(_ORDER)))
    mand_succ = tuple(next((j for j in sorted(succ[i]) if mandatory[j]), None)
                      for i in range(len(_ORDER)))
    return _Tables(succ, may_end, mand_succ)


_PLAIN, _BATCH = _tables(False), _tables(True)


@dataclass(frozen=True)
class Split:
    """One record split into fields: ``fields`` (first value of each key), node
    ``groups`` (``Nodes``/``CPU_IDs``/``Mem``/``GRES``), ``strict`` = the known key order
    held (False: read leniently, see :func:`split_record`)."""

    fields: dict[str, str]
    groups: list[dict[str, str]]
    strict: bool


def _valid_fixed(value: str) -> bool:
    """A slurmctld-filled value: one word, optionally followed by ``Key=word`` pairs of
    keys we do not know (a newer release's addition)."""
    if " " not in value and "\n" not in value and "\t" not in value:
        return True
    stripped = value.strip()
    if not stripped or not any(c.isspace() for c in stripped):
        return True
    first = stripped.split(None, 1)
    return _UNKNOWN_PAIRS.fullmatch(" " + first[1]) is not None


def _fixed_value(value: str) -> str:
    stripped = value.strip()
    return stripped.split(None, 1)[0] if stripped else ""


_SCAN_LIMIT = 64  # optional keys tried before a free value's mandatory successor


def _reaches(best: list[int | None], start: int, target: int) -> bool:
    """Whether the split chosen from token ``start`` runs through token ``target``."""
    idx: int | None = start
    while idx is not None and idx < target:
        idx = best[idx]
    return idx == target


def _chain(line: str, tokens: list[tuple[int, int, int]], tab: _Tables,
           ) -> list[int] | None:
    """Indices of the tokens that start fields, or None if no valid split exists.

    Dynamic programming from the right: ``best[i]`` is the next token of the split
    chosen from token ``i`` (``len(tokens)`` = the record ends there).

    * a fixed value ends at the first token after it;
    * a free value followed (within its reach) by a mandatory key ends at the *latest*
      valid token of that key (fake copies inside the value come before the real one),
      or at an optional key between them whose split runs through that token;
    * a free value followed only by optional keys (the tail: Comment, StdOut …) ends at
      the nearest valid token: nothing there decides user, account or hosts.
    """
    n = len(tokens)
    best: list[int | None] = [None] * n
    by_slot: dict[int, list[int]] = {}  # slot → valid token indices, latest first
    for i in range(n - 1, -1, -1):
        slot, _kstart, vstart = tokens[i]
        spec = _ORDER[slot]
        choice: int | None = None
        if spec.free:
            mand = tab.mand_succ[slot]
            if mand is not None:
                found = by_slot.get(mand)
                if found:
                    target = found[0]
                    choice = target
                    cands = sorted((t for s in tab.succ[slot] if s != mand
                                    for t in islice((t for t in by_slot.get(s, ())
                                                     if t < target), _SCAN_LIMIT)),
                                   reverse=True)
                    for t in cands[:_SCAN_LIMIT]:
                        if _reaches(best, t, target):
                            choice = t
                            break
            else:
                near = [by_slot[s][-1] for s in tab.succ[slot] if by_slot.get(s)]
                if near:
                    choice = min(near)
                elif tab.may_end[slot]:
                    choice = n
        else:
            nxt = i + 1
            stop = tokens[nxt][1] if nxt < n else len(line)
            if _valid_fixed(line[vstart:stop]):
                if nxt < n and tokens[nxt][0] in tab.succ[slot] and best[nxt] is not None:
                    choice = nxt
                elif nxt == n and tab.may_end[slot]:
                    choice = n
        best[i] = choice
        if choice is not None:
            by_slot.setdefault(slot, []).append(i)
    if not tokens or tokens[0][0] != _SLOT_OF["JobId"] or best[0] is None:
        return None
    chain = [0]
    while True:
        follow = best[chain[-1]]
        if follow is None or follow >= n:
            return chain
        chain.append(follow)


def _tokens(line: str) -> list[tuple[int, int, int]]:
    slot_of = _SLOT_OF
    return [(slot_of[m.group(1)], m.start(), m.end()) for m in _KEY_RE.finditer(line)
            if m.group(1) in slot_of]


@lru_cache(maxsize=256)
def split_record(line: str) -> Split:
    """Split one job record (one ``-o`` line, or several joined where a value held a
    newline). Falls back to a lenient split (first value of each known key, in order of
    appearance) only when the known order does not fit at all: ``strict`` is then False
    and the caller must not trust it more than the accounting record."""
    tokens = _tokens(line)
    chain = _chain(line, tokens, _PLAIN)
    if chain is not None:
        batch = next((line[tokens[i][2]:tokens[i][2] + 2] for i in chain
                      if _ORDER[tokens[i][0]].names[0] == "BatchFlag"), "0 ")
        if batch[:1] not in ("0", " ", ""):
            # a batch job: split again with its StdErr/StdIn/StdOut as anchors, so a
            # fake tail key in Comment/WorkDir does not take their place
            chain = _chain(line, tokens, _BATCH) or chain
    fields: dict[str, str] = {}
    groups: list[dict[str, str]] = []
    strict = chain is not None
    picks = chain if chain is not None else list(range(len(tokens)))
    for n, idx in enumerate(picks):
        slot, _kstart, vstart = tokens[idx]
        stop = tokens[picks[n + 1]][1] if n + 1 < len(picks) else len(line)
        raw = line[vstart:stop]
        spec = _ORDER[slot]
        key = line[_kstart:vstart - 1]
        value = raw.strip(" ") if spec.free else _fixed_value(raw)
        if spec.free:
            value = value.rstrip("\n")
        if key == "Nodes":
            groups.append({"Nodes": value})
        elif groups and key in _GROUP_KEYS:
            groups[-1][key] = value
        else:
            fields.setdefault(key, value)
    return Split(fields=fields, groups=groups, strict=strict)


_QUICK = tuple(f" {slot.names[0]}=" for slot in _ORDER
               if slot.mandatory and len(slot.names) == 1 and slot.names[0] != "JobId")


def record_complete(line: str, version: tuple[int, int] | None = None) -> bool:
    """Whether ``line`` is a whole record: a strict split exists, a batch job has its
    StdErr/StdIn/StdOut (printed whenever BatchFlag is set), and ≤ 22.05 its ``Power=``
    (printed for every job up to 22.05 at least; gone in 24.11)."""
    if any(key not in line for key in _QUICK):  # cheap refusal before the split
        return False
    split = split_record(line)
    if not split.strict:
        return False
    f = split.fields
    if f.get("BatchFlag", "0") not in ("", "0") and not all(
            k in f for k in ("StdErr", "StdIn", "StdOut")):
        return False
    return not (version is not None and version <= (22, 5) and "Power" not in f)
