"""``job_resources`` + ``gres_detail`` of every release → per-node :class:`NodeResources`.

Three layouts (``shared/reference/slurm-json-versions.md`` §7), one result shape:

* **A** – 21.08 (v0.0.37): ``allocated_nodes`` is a dict keyed by node *index*
  (no names: they come from ``job_resources.nodes``), with ``sockets`` and ``cores``
  as two separate flat dicts, so cores can be paired with a socket only when the
  node has a single allocated socket.
* **B** – 22.05 (v0.0.38), 23.02 (v0.0.39), 23.11 (v0.0.40): ``allocated_nodes`` is a
  list of ``{nodename, sockets: {"<s>": {"cores": {"<c>": "allocated"}}},
  memory_allocated}``; only allocated cores are listed.
* **C** – 24.05 (v0.0.41) → 26.05 (v0.0.45): ``nodes.allocation[]`` of
  ``{index, name, cpus.count, memory.allocated, sockets[{index, cores[{index,
  status[]}]}]}``; every core of each listed socket, filter on ``ALLOCATED``.
  26.05 renamed the ``select_type`` values (``CR_CORE_MEMORY``…), which we do not read.

Absent ``job_resources`` is ``{}`` (≤ 24.05), ``null`` (24.11+) or missing (22.05,
pending jobs): all give no resources. ``gres_detail`` holds one string per node in
hostlist order; GPUs are attached to the node at that position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cc_slurm_adapter.slurm.gres import gpu_count_from_detail, gpus_from_detail
from cc_slurm_adapter.slurm.record import GpuAlloc, NodeResources, NodeTopology
from cc_slurm_adapter.slurm.values import (
    FieldLog,
    as_bool,
    as_int,
    as_str,
    as_str_tuple,
    expand_hostlist,
)

__all__ = ["ctld_resources", "gpu_total", "shared_mode"]


def _int_key(key: Any) -> int | None:
    return as_int(key) if isinstance(key, str | int) else None


class _Node:
    __slots__ = ("cores", "cps", "cpus", "host", "memory", "sockets")

    def __init__(self, host: str) -> None:
        self.host = host
        self.cores: list[tuple[int, int]] = []
        self.sockets: int | None = None
        self.cps: int | None = None
        self.cpus: int | None = None
        self.memory: int | None = None


def _layout_a(alloc: Mapping[str, Any], hosts: Sequence[str], flog: FieldLog) -> list[_Node]:
    out: list[_Node] = []
    for key in sorted(alloc, key=lambda k: _int_key(k) or 0):
        index = _int_key(key)
        item = alloc[key]
        if index is None or not isinstance(item, Mapping) or index >= len(hosts):
            flog.note("job_resources.allocated_nodes", f"node index {key!r} unknown")
            continue
        node = _Node(hosts[index])
        node.cpus = as_int(item.get("cpus"))
        node.memory = as_int(item.get("memory"))
        sockets = [s for s in (_int_key(k) for k in item.get("sockets") or {}) if s is not None]
        cores = sorted(c for c in (_int_key(k) for k in item.get("cores") or {}) if c is not None)
        if len(sockets) == 1:
            node.cores = [(sockets[0], c) for c in cores]
        elif cores:
            # 21.08 flattens sockets and cores: no pairing possible with ≥ 2 sockets.
            flog.note("job_resources.cores", "21.08 layout cannot pair cores with sockets")
        out.append(node)
    return out


def _layout_b(alloc: list[Any], hosts: Sequence[str], flog: FieldLog) -> list[_Node]:
    out: list[_Node] = []
    for pos, item in enumerate(alloc):
        if not isinstance(item, Mapping):
            continue
        host = as_str(item.get("nodename")) or (hosts[pos] if pos < len(hosts) else None)
        if host is None:
            flog.note("job_resources.allocated_nodes", "node without a name")
            continue
        node = _Node(host)
        node.memory = as_int(item.get("memory_allocated"))
        sockets = item.get("sockets")
        if isinstance(sockets, Mapping):
            for s_key, sock in sockets.items():
                s = _int_key(s_key)
                cores = sock.get("cores") if isinstance(sock, Mapping) else None
                if s is None or not isinstance(cores, Mapping):
                    continue
                for c_key in cores:
                    c = _int_key(c_key)
                    if c is not None:
                        node.cores.append((s, c))
        node.cores.sort()
        out.append(node)
    return out


def _layout_c(alloc: list[Any], hosts: Sequence[str], flog: FieldLog) -> list[_Node]:
    out: list[_Node] = []
    for pos, item in enumerate(alloc):
        if not isinstance(item, Mapping):
            continue
        index = as_int(item.get("index"))
        host = as_str(item.get("name"))
        if host is None:
            i = index if index is not None else pos
            host = hosts[i] if 0 <= i < len(hosts) else None
        if host is None:
            flog.note("job_resources.nodes.allocation", "node without a name")
            continue
        node = _Node(host)
        cpus = item.get("cpus")
        node.cpus = as_int(cpus.get("count")) if isinstance(cpus, Mapping) else as_int(cpus)
        mem = item.get("memory")
        node.memory = as_int(mem.get("allocated")) if isinstance(mem, Mapping) else None
        sockets = item.get("sockets")
        if isinstance(sockets, list):
            node.sockets = len(sockets) or None
            per_socket = 0
            for sock in sockets:
                if not isinstance(sock, Mapping):
                    continue
                s = as_int(sock.get("index"))
                cores = sock.get("cores")
                if s is None or not isinstance(cores, list):
                    continue
                per_socket = max(per_socket, len(cores))
                for core in cores:
                    if not isinstance(core, Mapping):
                        continue
                    if "ALLOCATED" in as_str_tuple(core.get("status")):
                        c = as_int(core.get("index"))
                        if c is not None:
                            node.cores.append((s, c))
            node.cps = per_socket or None
        out.append(node)
    return out


def ctld_resources(job_resources: Any, gres_detail: list[Any], hosts: Sequence[str],
                   flog: FieldLog,
                   topology: Mapping[str, NodeTopology] | None = None,
                   ) -> tuple[NodeResources, ...]:
    """Per-node allocation of a slurmctld-family job, any layout."""
    nodes: list[_Node] = []
    jr = job_resources if isinstance(job_resources, Mapping) else {}
    threads = as_int(jr.get("threads_per_core"))  # 24.05+: NO_VAL struct, often unset
    jr_nodes = jr.get("nodes")
    if isinstance(jr_nodes, Mapping):  # layout C (24.05+)
        job_hosts = expand_hostlist(jr_nodes.get("list")) or hosts
        alloc = jr_nodes.get("allocation")
        if isinstance(alloc, Mapping):  # never seen; tolerate a dict keyed by index
            alloc = [alloc[k] for k in sorted(alloc, key=lambda k: _int_key(k) or 0)]
        if isinstance(alloc, list):
            nodes = _layout_c(alloc, job_hosts, flog)
    elif jr:
        job_hosts = expand_hostlist(jr_nodes) or hosts
        alloc = jr.get("allocated_nodes")
        if isinstance(alloc, list):  # layout B (22.05 – 23.11)
            nodes = _layout_b(alloc, job_hosts, flog)
        elif isinstance(alloc, Mapping):  # layout A (21.08)
            nodes = _layout_a(alloc, job_hosts, flog)
        elif alloc is not None:
            flog.note("job_resources.allocated_nodes", f"unknown layout {type(alloc).__name__}")
    if not nodes and gres_detail and hosts:
        # No core detail (pending on 22.05, or job_resources dropped): GPUs still count.
        nodes = [_Node(h) for h in hosts]
    if not nodes:
        return ()
    out: list[NodeResources] = []
    for pos, node in enumerate(nodes):
        gpus: tuple[GpuAlloc, ...] = ()
        if pos < len(gres_detail):
            detail = gres_detail[pos]
            parsed = gpus_from_detail(detail) if isinstance(detail, str) else None
            if parsed is None:
                flog.note("gres_detail", f"unreadable entry {str(detail)[:60]!r}")
            else:
                gpus = parsed
        topo = topology.get(node.host) if topology else None
        out.append(NodeResources(
            hostname=node.host,
            cores=tuple(node.cores),
            sockets=node.sockets if node.sockets is not None else (
                topo.sockets if topo else None),
            cores_per_socket=node.cps if node.cps is not None else (
                topo.cores_per_socket if topo else None),
            threads_per_core=threads if threads is not None else (
                topo.threads_per_core if topo else None),
            cpus=node.cpus,
            gpus=gpus,
            memory_mb=node.memory,
        ))
    return tuple(out)


def gpu_total(gres_detail: list[Any]) -> int | None:
    """Sum of GPUs over every node's ``gres_detail``; None when none is known."""
    total = 0
    known = False
    for detail in gres_detail:
        if isinstance(detail, str):
            count = gpu_count_from_detail(detail)
            if count is not None:
                total += count
                known = True
    return total if known else None


# v0.0.37/38 dump job->shared as a number or name; 0 = exclusive … (JOB_SHARED_*)
_SHARED_NUMBERS = {0: "exclusive", 1: "oversubscribe", 2: "user", 3: "mcs", 4: "topo"}
_SHARED_NAMES = {
    "none": "exclusive",  # shared=none: the job shares nothing (23.02+ arrays, 24.11 only)
    "exclusive": "exclusive",
    "oversubscribe": "oversubscribe",
    "yes": "oversubscribe",
    "force": "oversubscribe",
    "user": "user",
    "mcs": "mcs",
    "topo": "topo",
}
# exclusive[] (23.02 – 24.05; removed from job_info in 24.11) and 26.05 sacct `exclusive`
_EXCLUSIVE_NAMES = {"true": "exclusive", "yes": "exclusive", "exclusive": "exclusive",
                    "node": "exclusive", "user": "user", "mcs": "mcs", "topo": "topo"}


def shared_mode(shared: Any, exclusive: Any, whole: Any = None,
                oversubscribe: Any = None) -> str | None:
    """Normalise every release's sharing fields to one word (see ``JobRecord.shared``).

    Order: ``exclusive`` (23.02–24.05 arrays, 26.05 sacct string), then ``shared``
    (``[]`` = default), then 26.05 sacct ``oversubscribe``, then layout-C
    ``nodes.whole`` (whole nodes allocated) as a last hint. ``None`` = default/unknown.
    """
    for word in as_str_tuple(exclusive):
        mode = _EXCLUSIVE_NAMES.get(word.lower())
        if mode:
            return mode
    if isinstance(shared, int) and not isinstance(shared, bool):
        return _SHARED_NUMBERS.get(shared)
    for word in as_str_tuple(shared):
        mode = _SHARED_NAMES.get(word.lower())
        if mode:
            return mode
    for word in as_str_tuple(oversubscribe):
        if word.lower() in ("yes", "true", "force", "oversubscribe"):
            return "oversubscribe"
    if as_bool(whole) is True:
        return "exclusive"
    return None
