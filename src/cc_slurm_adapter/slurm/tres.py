"""TRES strings, memory sizes and GPU counts, as every Slurm release writes them.

Shared by the JSON normalisers (``parse``) and the ``scontrol show job -d -o`` text
reader (``text``), so a job reads the same whichever command it came from.

* ``cpu=16,mem=120000M,node=1,billing=80,gres/gpu=8`` – slurmctld TRES strings
  (``tres_alloc_str``/``tres_req_str`` in JSON, ``TRES=`` ≤ 23.02 and
  ``AllocTRES=``/``ReqTRES=`` 23.11+ in text);
* ``[{"type": "gres", "name": "gpu", "id": 1001, "count": 8}, …]`` – sacct's
  ``tres.allocated``/``tres.requested`` (``name`` is ``null`` ≤ 22.05, ``""`` 23.02+
  for non-gres TRES; energy ``-2`` = not collected);
* requested GPUs: ``gres:gpu:8`` (23.02), ``gres/gpu:1`` (23.11+), ``gpu:h100:1``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cc_slurm_adapter.slurm.values import FieldLog, as_int, as_str, get

__all__ = [
    "ctld_memory",
    "db_memory",
    "db_tres",
    "gpus_from_tres",
    "gpus_requested",
    "mem_to_mb",
    "parse_tres_string",
]


def parse_tres_string(value: Any) -> dict[str, str]:
    """``"cpu=16,mem=120000M,node=1,gres/gpu=8"`` → ``{"cpu": "16", "mem": "120000M", …}``.

    ``(null)`` (text output of a job without allocation) and ``""`` give ``{}``.
    """
    text = as_str(value)
    if not text or text == "(null)":
        return {}
    out: dict[str, str] = {}
    for item in text.split(","):
        key, sep, val = item.partition("=")
        if sep and key.strip():
            out[key.strip()] = val.strip()
    return out


def db_tres(items: Any) -> dict[str, str]:
    """sacct ``tres.allocated[]`` (``{type, name, id, count}``) → the same dict shape."""
    out: dict[str, str] = {}
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, Mapping):
            continue
        kind = as_str(item.get("type"))
        count = as_int(item.get("count"))
        if kind is None or count is None or count < 0:  # energy -2 = not collected
            continue
        name = as_str(item.get("name"))  # ≤ 22.05 null, 23.02+ "" for non-gres
        out[f"{kind}/{name}" if name else kind] = str(count)
    return out


_MEM_UNITS = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024, "P": 1024 ** 3}


def mem_to_mb(value: Any) -> int | None:
    """``"120000M"``, ``"62.50G"``, ``"512"`` (MB) or an int → MB."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    text = as_str(value)
    if not text:
        return None
    unit = text[-1].upper()
    factor = _MEM_UNITS.get(unit)
    number = text[:-1] if factor is not None else text
    try:
        mb = round(float(number) * (factor if factor is not None else 1))
    except (ValueError, OverflowError):
        return None
    return mb if mb >= 0 else None


def gpus_from_tres(tres: Mapping[str, str]) -> int | None:
    """GPUs in a TRES dict: ``gres/gpu``, else the sum of the typed ``gres/gpu:<type>``."""
    if "gres/gpu" in tres:
        return as_int(tres["gres/gpu"])
    typed = [as_int(v) for k, v in tres.items() if k.startswith("gres/gpu:")]
    counts = [c for c in typed if c is not None]
    return sum(counts) if counts else None


def gpus_requested(value: Any, multiplier: int) -> int | None:
    """``"gres/gpu:8"`` (23.11+), ``"gres:gpu:8"`` (23.02), ``"gpu:h100:1"``; × multiplier."""
    text = as_str(value)
    if not text or text == "(null)":
        return None
    total = 0
    for item in text.split(","):
        item = item.strip()
        for prefix in ("gres/", "gres:"):
            if item.startswith(prefix):
                item = item[len(prefix):]
        parts = item.split(":")
        if parts[0] != "gpu":
            continue
        count = as_int(parts[-1]) if len(parts) > 1 else 1
        total += count or 0
    return total * multiplier if total else None


def ctld_memory(tres_alloc: Any, tres_req: Any, per_node: Any, per_cpu: Any,
                cpus: int | None, node_count: int | None, flog: FieldLog | None) -> int | None:
    """Memory of a slurmctld job in MB (JSON fields or their text equivalents).

    Allocated TRES once the job has an allocation, else the request: per-CPU memory
    × allocated CPUs overcounts with SMT (23.02 Jean Zay: 8 tasks, 16 CPUs). The TRES
    arguments are strings or already parsed dicts; ``per_node``/``per_cpu`` are MB
    (ints, NO_VAL structs or text sizes such as ``"1G"``).
    """
    for tres in (tres_alloc, tres_req):
        parsed = tres if isinstance(tres, Mapping) else parse_tres_string(tres)
        mem = mem_to_mb(parsed.get("mem"))
        if mem:
            return mem
    node_mb = as_int(per_node) if not isinstance(per_node, str) else mem_to_mb(per_node)
    cpu_mb = as_int(per_cpu) if not isinstance(per_cpu, str) else mem_to_mb(per_cpu)
    if node_mb and node_count:
        return node_mb * node_count
    if cpu_mb and cpus:
        return cpu_mb * cpus
    if flog is not None:
        flog.note("memory", "no TRES mem and no memory_per_node/_cpu")
    return None


_MEM_PER_CPU_FLAG = 1 << 63


def db_memory(required: Any, tres_alloc: Mapping[str, str], tres_req: Mapping[str, str],
              cpus: int | None, node_count: int | None) -> int | None:
    """Memory of a sacct job in MB: allocated TRES, requested TRES, then ``required``."""
    for tres in (tres_alloc, tres_req):
        mem = as_int(tres.get("mem"))
        if mem:
            return mem
    per_node = as_int(get(required, "memory_per_node"))  # 23.02.5+
    per_cpu = as_int(get(required, "memory_per_cpu"))
    if per_node and node_count:
        return per_node * node_count
    if per_cpu and cpus:
        return per_cpu * cpus
    legacy = as_int(get(required, "memory"))  # ≤ 23.02: MEM_PER_CPU flag in bit 63
    if legacy is None or legacy == 0:
        return None
    if legacy < 0 or legacy & _MEM_PER_CPU_FLAG:
        per_cpu = (legacy & (_MEM_PER_CPU_FLAG - 1)) if legacy > 0 else legacy + (1 << 63)
        return per_cpu * cpus if cpus else None
    return legacy * node_count if node_count else legacy
