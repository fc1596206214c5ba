"""The ``gres_detail`` grammar: which devices a job holds on one node.

One ``gres_detail`` string per allocated node (slurmctld family only, while the job
is in slurmctld memory), in the order of the job's hostlist. Forms seen in real
output (``shared/reference/slurm-json-versions.md`` §6):

* ``gpu:8(IDX:0-7)``                           untyped (23.02)
* ``gpu:h100:4(IDX:0-3)``                      typed
* ``gpu:a100:2(IDX:0,2)``                      comma inside the index list
* ``gpu:h100:2(IDX:0-1),gpu:h200:4(IDX:2-5)``  several types on one node (23.11)
* ``gpu:h100:1(IDX:0),gpu:h200:0(IDX:)``       a zero-count type with empty IDX (23.11)
* ``gpu:1(IDX:N/A)``                           no bitmap
* ``gpu(CNT:2)``                               a count without device bitmap
* ``shard:2(1/4,1/4,0/4,0/4)``                 shared gres (23.11.2+): per device used/total
* ``gpu:(null):4(IDX:0-3)``                    ``(null)`` type (node views; tolerated)
* ``gpu:tesla:2(S:0-1)(IDX:0-1)``              socket affinity group before IDX (text views)

The same grammar is used for ``GRES=`` of ``scontrol show job -d`` text.
"""

from __future__ import annotations

import re

import msgspec

from cc_slurm_adapter.slurm.record import GpuAlloc
from cc_slurm_adapter.slurm.values import parse_index_list

__all__ = ["GresEntry", "gpu_count_from_detail", "gpus_from_detail", "parse_gres_detail"]

# head = name[:type][:count]; then one or more "(…)" groups.
_ENTRY = re.compile(r"\s*([^,()]+?)\s*((?:\([^()]*\))+)")
_GROUP = re.compile(r"\(([^()]*)\)")
_SHARE = re.compile(r"^\s*([0-9]+)\s*/\s*([0-9]+)\s*$")
_GPU_KINDS = frozenset({"gpu"})
_SHARED_KINDS = frozenset({"shard", "mps"})


class GresEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One ``name[:type]:count(…)`` item of a node's gres string."""

    name: str
    type: str | None = None
    count: int | None = None
    indices: tuple[int, ...] | None = None
    """IDX list; ``None`` when Slurm gave none (``N/A``, ``CNT:``), ``()`` for ``IDX:``."""
    shares: tuple[tuple[int, int], ...] = ()
    """Shared gres: ``(allocated, available)`` per physical device, in device order."""


def _split_head(head: str) -> tuple[str, str | None, int | None]:
    parts = [p for p in head.strip().split(":")]
    name = parts[0].strip()
    count: int | None = None
    rest = parts[1:]
    if rest and rest[-1].strip().isascii() and rest[-1].strip().isdigit():
        count = int(rest[-1])
        rest = rest[:-1]
    gtype = ":".join(p.strip() for p in rest).strip() or None
    if gtype in ("(null)", "null"):
        gtype = None
    return name, gtype, count


def parse_gres_detail(text: str) -> tuple[GresEntry, ...] | None:
    """Parse one node's gres string; ``()`` for ``""``; ``None`` if nothing parses."""
    if not isinstance(text, str):
        return None
    text = text.replace("(null)", "null").strip()
    if not text:
        return ()
    entries: list[GresEntry] = []
    pos = 0
    for match in _ENTRY.finditer(text):
        gap = text[pos:match.start()].strip().strip(",")
        if gap:  # a bare "gpu:2" without parentheses between entries
            for item in gap.split(","):
                if item.strip():
                    name, gtype, count = _split_head(item)
                    entries.append(GresEntry(name=name, type=gtype, count=count))
        pos = match.end()
        name, gtype, count = _split_head(match.group(1))
        indices: tuple[int, ...] | None = None
        shares: list[tuple[int, int]] = []
        for group in _GROUP.findall(match.group(2)):
            body = group.strip()
            if body.startswith("IDX:"):
                idx = body[4:].strip()
                if idx.upper() not in ("N/A", "NA"):
                    indices = parse_index_list(idx)
            elif body.startswith("CNT:"):
                if count is None and body[4:].strip().isascii() and body[4:].strip().isdigit():
                    count = int(body[4:])
            elif "/" in body:
                for item in body.split(","):
                    share = _SHARE.match(item)
                    if share:
                        shares.append((int(share.group(1)), int(share.group(2))))
        entries.append(GresEntry(name=name, type=gtype, count=count,
                                 indices=indices, shares=tuple(shares)))
    tail = text[pos:].strip().strip(",")
    if tail:
        for item in tail.split(","):
            if item.strip():
                name, gtype, count = _split_head(item)
                entries.append(GresEntry(name=name, type=gtype, count=count))
    return tuple(entries) if entries else None


def gpus_from_detail(text: str) -> tuple[GpuAlloc, ...] | None:
    """The devices one ``gres_detail`` string allocates, GPUs and GPU shares.

    ``None`` when the string does not parse. Shared gres (``shard``/``mps``) report
    the devices with a non-zero share as ``GpuAlloc(kind="shard")``.
    """
    entries = parse_gres_detail(text)
    if entries is None:
        return None
    out: list[GpuAlloc] = []
    for entry in entries:
        kind = entry.name.lower()
        if kind in _GPU_KINDS and entry.indices:
            out.extend(GpuAlloc(index=i, type=entry.type) for i in entry.indices)
        elif kind in _SHARED_KINDS:
            if entry.indices:
                out.extend(GpuAlloc(index=i, type=entry.type, kind=kind)
                           for i in entry.indices)
            else:
                out.extend(GpuAlloc(index=i, type=entry.type, kind=kind)
                           for i, (used, _total) in enumerate(entry.shares) if used > 0)
    return tuple(out)


def gpu_count_from_detail(text: str) -> int | None:
    """Number of GPUs in a gres string (counts, not shards); None if unknown."""
    entries = parse_gres_detail(text)
    if not entries:
        return None
    total = 0
    known = False
    for entry in entries:
        if entry.name.lower() in _GPU_KINDS:
            if entry.indices is not None:
                total += len(entry.indices)
                known = True
            elif entry.count is not None:
                total += entry.count
                known = True
    return total if known else None
