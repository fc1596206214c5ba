"""One node of a job → ``{"hostname", "hwthreads", "accelerators"}``.

hwthreads
---------
cc-backend joins a job with its metrics through the hwthread ids in
``resources[].hwthreads``; they have to be the OS CPU ids the metric collector
reports, numbered the way the sub-cluster's ``topology.core`` numbers them.
Slurm tells which *cores* it allocated, as ``(socket, core-within-socket)`` pairs.

1. core index = socket × coresPerSocket + core (node-local, socket-major – the
   order of ``topology.core``);
2. the job's hwthreads = ``topology.core[index]`` for each allocated core, all SMT
   siblings included, sorted.

Worked example: the stand-in's ``testcluster/smt`` sub-cluster has 2 sockets × 4
cores × 2 threads, and Linux numbers the second thread of each core after all first
threads, so ``topology.core = [[0,8],[1,9],[2,10],[3,11],[4,12],[5,13],[6,14],[7,15]]``.
A job holds cores (socket 0, core 1) and (socket 1, core 2) on ``smt1``:

* (0, 1) → index 0×4+1 = 1 → core[1] = [1, 9]
* (1, 2) → index 1×4+2 = 6 → core[6] = [6, 14]
* hwthreads = [1, 6, 9, 14]  (upstream would send [1, 6]: no SMT siblings)

Fallback when cc-backend knows no topology for the host (or the index is past its
``core`` list): the usual Linux numbering, thread t of core i is
``i + t × (sockets × coresPerSocket)``, using Slurm's node layout where it gave one
and the sub-cluster's counts otherwise. With one thread per core (or unknown
threads) that is just ``[i]``. The caller logs once per host that it was used.

When Slurm gave abstract CPU ids (``CPU_IDs=``) instead of cores, core i holds the
CPU ids ``i × threadsPerCore … i × threadsPerCore + threadsPerCore − 1`` (Slurm's
abstract numbering is core-major), so the core index is ``cpu_id // threadsPerCore``.

accelerators
------------
Slurm's GPU indices (``IDX:`` of ``gres_detail``, NVML order) become PCI addresses
through gpuPciAddrs (the first hostname regex that matches). Shards and MPS slices
name the device they run on, so they map to that device once. No matching entry, or
an index past the list: the index as a string, as upstream does (logged once per
host by the caller).
"""

from __future__ import annotations

from dataclasses import dataclass

from cc_slurm_adapter.slurm.record import NodeResources
from cc_slurm_adapter.topology import SubClusterTopology

__all__ = ["NodeMapping", "accelerators", "core_indices", "hwthreads"]


@dataclass(frozen=True, slots=True)
class NodeMapping:
    """The ids for one node plus what went wrong (for logging)."""

    ids: tuple[int, ...] | tuple[str, ...]
    fallback: str | None = None
    """Why the preferred source could not be used, or None."""


def core_indices(node: NodeResources, sub: SubClusterTopology | None,
                 ) -> tuple[tuple[int, ...], str | None]:
    """The node-local core indices the job holds, socket-major, sorted and unique."""
    if node.cores:
        cps = node.cores_per_socket or (sub.cores_per_socket if sub else None)
        if cps is None:
            if all(socket == 0 for socket, _ in node.cores):
                return tuple(sorted({core for _, core in node.cores})), None
            return (), "cores per socket unknown: no hwthreads"
        return tuple(sorted({socket * cps + core for socket, core in node.cores
                             if socket >= 0 and core >= 0})), None
    if node.cpu_ids:
        tpc = node.threads_per_core or (sub.threads_per_core if sub else None) or 1
        return tuple(sorted({cpu // tpc for cpu in node.cpu_ids if cpu >= 0})), None
    return (), None


def hwthreads(node: NodeResources, sub: SubClusterTopology | None) -> NodeMapping:
    """The OS hwthread ids of the job's cores on ``node`` (see the module docstring)."""
    indices, problem = core_indices(node, sub)
    if not indices:
        return NodeMapping((), problem)
    if sub is not None and sub.cores and indices[-1] < len(sub.cores):
        ids = sorted({hw for index in indices for hw in sub.cores[index]})
        return NodeMapping(tuple(ids))
    if sub is None:
        why = "no cc-backend topology for this host"
    elif not sub.cores:
        why = f"sub-cluster {sub.name} has no topology.core"
    else:
        why = (f"core index {indices[-1]} is past topology.core of sub-cluster {sub.name} "
               f"({len(sub.cores)} cores)")
    tpc = node.threads_per_core or (sub.threads_per_core if sub else None) or 1
    sockets = node.sockets or (sub.sockets_per_node if sub else None)
    cps = node.cores_per_socket or (sub.cores_per_socket if sub else None)
    if tpc <= 1:
        return NodeMapping(indices, why)
    if not sockets or not cps:
        return NodeMapping(indices, why + "; node layout unknown, SMT siblings left out")
    per_node = sockets * cps
    ids = sorted({index + thread * per_node for index in indices for thread in range(tpc)})
    return NodeMapping(tuple(ids), why)


def accelerators(node: NodeResources, pci: tuple[str, ...] | None) -> NodeMapping:
    """The accelerator ids of ``node``: PCI addresses where gpuPciAddrs has them."""
    seen: dict[int, None] = {}
    for gpu in node.gpus:
        if gpu.index >= 0:
            seen.setdefault(gpu.index)
    if not seen:
        return NodeMapping(())
    ids: list[str] = []
    missing: list[int] = []
    for index in seen:
        if pci is not None and index < len(pci):
            ids.append(pci[index])
        else:
            ids.append(str(index))
            missing.append(index)
    if pci is None:
        return NodeMapping(tuple(ids), "no gpuPciAddrs entry matches this host; "
                                       "sending GPU indices")
    if missing:
        return NodeMapping(tuple(ids), f"GPU index {','.join(map(str, missing))} is past the "
                                       f"{len(pci)} gpuPciAddrs addresses; sending the index")
    return NodeMapping(tuple(ids))
