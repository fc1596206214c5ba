"""cc-backend's view of the hardware: which hwthread ids make up each core of a node.

cc-backend describes every cluster in a ``cluster.json`` (job archive) and serves the
same objects through ``GET /api/clusters/`` (contract §7, §10). Each sub-cluster has

* ``nodes``: a host-list expression such as ``f[0101-0188,0201-0288]`` or ``*``;
* ``socketsPerNode``, ``coresPerSocket``, ``threadsPerCore``;
* ``topology.core``: ``core[i]`` lists the OS hwthread ids of core ``i`` – the ids the
  metric collector reports, so the ids a job's ``resources[].hwthreads`` must use.

This module turns that JSON into a lookup ``(cluster, hostname) → SubClusterTopology``.
It is pure (no I/O): the daemon fetches the JSON, ``convert`` reads a file, and both
hand the decoded document to :meth:`Topology.from_json`. The mapping only reads it.

Host lists are expanded with python-hostlist. As in cc-backend, ``*`` matches any host
but only on the first sub-cluster, and where lists overlap the first sub-cluster in
document order wins (cc-backend's choice there is unpredictable, §10).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import hostlist

from cc_slurm_adapter.errors import AdapterError

__all__ = ["SubClusterTopology", "Topology", "TopologyError"]

_MAX_HOSTS_PER_SUBCLUSTER = 1_000_000


class TopologyError(AdapterError, ValueError):
    """The document is not a cluster.json / GET /api/clusters/ answer.

    Part of the :class:`~cc_slurm_adapter.errors.AdapterError` tree; still a
    ValueError, as it was, for callers that catch that."""


@dataclass(frozen=True, slots=True)
class SubClusterTopology:
    """One sub-cluster's node layout, as cc-backend numbers it."""

    cluster: str
    name: str
    sockets_per_node: int | None = None
    cores_per_socket: int | None = None
    threads_per_core: int | None = None
    cores: tuple[tuple[int, ...], ...] = ()
    """``topology.core``: the hwthread ids of core i (node-local core index)."""
    accelerators: tuple[str, ...] = ()
    """``topology.accelerators[].id`` (PCI addresses), in document order."""


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _cores(value: Any) -> tuple[tuple[int, ...], ...]:
    if not isinstance(value, list):
        return ()
    out: list[tuple[int, ...]] = []
    for core in value:
        if not isinstance(core, list):
            return ()
        ids = tuple(x for x in core if isinstance(x, int) and not isinstance(x, bool))
        out.append(ids)
    return tuple(out)


def _accelerators(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(a["id"]) for a in value if isinstance(a, Mapping) and a.get("id"))


@dataclass
class _Cluster:
    name: str
    by_host: dict[str, SubClusterTopology] = field(default_factory=dict)
    wildcard: SubClusterTopology | None = None
    subclusters: list[SubClusterTopology] = field(default_factory=list)


class Topology:
    """Every known cluster's sub-clusters, looked up by hostname."""

    def __init__(self, clusters: Iterable[Mapping[str, Any]] = ()) -> None:
        self._clusters: dict[str, _Cluster] = {}
        self.warnings: list[str] = []
        """Sub-clusters that could not be read (bad host list, no topology)."""
        for doc in clusters:
            self._add(doc)

    @classmethod
    def from_json(cls, doc: Any) -> Topology:
        """Build from a ``cluster.json`` object, a list of them, or the
        ``{"clusters": [...]}`` answer of ``GET /api/clusters/``."""
        if isinstance(doc, Mapping) and isinstance(doc.get("clusters"), list):
            items: Sequence[Any] = doc["clusters"]
        elif isinstance(doc, Mapping):
            items = [doc]
        elif isinstance(doc, list):
            items = doc
        else:
            raise TopologyError("expected a cluster.json object or {\"clusters\": [...]}")
        for item in items:
            if not (isinstance(item, Mapping) and isinstance(item.get("name"), str)
                    and isinstance(item.get("subClusters"), list)):
                raise TopologyError("a cluster needs a 'name' and a 'subClusters' list")
        return cls(items)

    def _add(self, doc: Mapping[str, Any]) -> None:
        name = str(doc["name"])
        cluster = self._clusters.setdefault(name, _Cluster(name))
        for index, sub in enumerate(doc.get("subClusters") or ()):
            if not isinstance(sub, Mapping) or not isinstance(sub.get("name"), str):
                self.warnings.append(f"cluster {name}: subClusters[{index}] has no name")
                continue
            raw_topo = sub.get("topology")
            topo: Mapping[str, Any] = raw_topo if isinstance(raw_topo, Mapping) else {}
            entry = SubClusterTopology(
                cluster=name,
                name=sub["name"],
                sockets_per_node=_int(sub.get("socketsPerNode")),
                cores_per_socket=_int(sub.get("coresPerSocket")),
                threads_per_core=_int(sub.get("threadsPerCore")),
                cores=_cores(topo.get("core")),
                accelerators=_accelerators(topo.get("accelerators")),
            )
            cluster.subclusters.append(entry)
            nodes = sub.get("nodes")
            if not isinstance(nodes, str):
                self.warnings.append(f"cluster {name}/{entry.name}: 'nodes' is not a string")
                continue
            if nodes.strip() == "*":
                if index == 0 and cluster.wildcard is None:
                    cluster.wildcard = entry
                else:
                    self.warnings.append(f"cluster {name}/{entry.name}: '*' is only honoured "
                                         f"on the first sub-cluster")
                continue
            try:
                hosts = hostlist.expand_hostlist(nodes.replace(" ", ""))
            except hostlist.BadHostlist as exc:
                self.warnings.append(f"cluster {name}/{entry.name}: bad node list "
                                     f"{nodes!r}: {exc}")
                continue
            if len(hosts) > _MAX_HOSTS_PER_SUBCLUSTER:
                self.warnings.append(f"cluster {name}/{entry.name}: node list too long")
                continue
            for host in hosts:
                cluster.by_host.setdefault(host, entry)

    @property
    def clusters(self) -> list[str]:
        return list(self._clusters)

    def subclusters(self, cluster: str) -> list[SubClusterTopology]:
        known = self._clusters.get(cluster)
        return list(known.subclusters) if known else []

    def for_host(self, cluster: str, hostname: str) -> SubClusterTopology | None:
        """The sub-cluster cc-backend would assign ``hostname`` to, or None."""
        known = self._clusters.get(cluster)
        if known is None:
            return None
        return known.by_host.get(hostname, known.wildcard)

    def __bool__(self) -> bool:
        return bool(self._clusters)
