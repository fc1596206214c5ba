"""Cluster configurations in cc-backend's own ``cluster.json`` format (contract §10).

A cluster file names the cluster and its sub-clusters; each sub-cluster has a
``nodes`` expression in cc-backend's compact host-list syntax: comma-separated
terms, each a literal prefix followed by optional bracketed ranges of
zero-padded, equal-width numbers (``f[0101-0188,0201-0288]``, ``node01,node02``).
``*`` means "every node", but only on the first sub-cluster.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "Cluster",
    "ClusterConfigError",
    "ClusterRegistry",
    "NodeList",
    "SubCluster",
    "default_cluster_files",
    "load_cluster_file",
]

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


class ClusterConfigError(ValueError):
    """A cluster.json that cannot be read (raised at start-up, not per request)."""


@dataclass(frozen=True, slots=True)
class _Range:
    low: int
    high: int
    width: int


# One part of a term: a literal string or a set of ranges.
_Part = str | tuple[_Range, ...]


class NodeList:
    """A parsed ``nodes`` expression that can tell whether a host belongs to it."""

    def __init__(self, expr: str) -> None:
        self.expr = expr.strip()
        self.all_nodes = self.expr == "*"
        self._terms: list[list[_Part]] = [] if self.all_nodes else _parse(self.expr)

    def contains(self, hostname: str) -> bool:
        """True if ``hostname`` is one of the nodes (``*`` matches everything)."""
        if self.all_nodes:
            return True
        return any(_match(term, 0, hostname, 0) for term in self._terms)

    def __repr__(self) -> str:
        return f"NodeList({self.expr!r})"


def _split_terms(expr: str) -> list[str]:
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(expr):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            terms.append(expr[start:i])
            start = i + 1
    terms.append(expr[start:])
    return [t.strip() for t in terms if t.strip()]


def _parse(expr: str) -> list[list[_Part]]:
    terms: list[list[_Part]] = []
    for raw in _split_terms(expr):
        parts: list[_Part] = []
        rest = raw
        while rest:
            open_at = rest.find("[")
            if open_at < 0:
                parts.append(rest)
                break
            if open_at:
                parts.append(rest[:open_at])
            close_at = rest.find("]", open_at)
            if close_at < 0:
                raise ClusterConfigError(f"unbalanced '[' in node list {expr!r}")
            ranges = []
            for item in rest[open_at + 1:close_at].split(","):
                m = _RANGE.match(item.strip())
                if not m:
                    raise ClusterConfigError(f"bad range {item!r} in node list {expr!r}")
                lo_s, hi_s = m.group(1), m.group(2) or m.group(1)
                if len(lo_s) != len(hi_s):
                    raise ClusterConfigError(
                        f"range {item!r} in {expr!r}: bounds must have equal width")
                ranges.append(_Range(int(lo_s), int(hi_s), len(lo_s)))
            parts.append(tuple(ranges))
            rest = rest[close_at + 1:]
        terms.append(parts)
    return terms


def _match(parts: Sequence[_Part], index: int, host: str, pos: int) -> bool:
    if index == len(parts):
        return pos == len(host)
    part = parts[index]
    if isinstance(part, str):
        return host.startswith(part, pos) and _match(parts, index + 1, host, pos + len(part))
    for rng in part:
        digits = host[pos:pos + rng.width]
        if (len(digits) == rng.width and digits.isdigit()
                and rng.low <= int(digits) <= rng.high
                and _match(parts, index + 1, host, pos + rng.width)):
            return True
    return False


@dataclass(frozen=True, slots=True)
class SubCluster:
    name: str
    nodes: NodeList


@dataclass(frozen=True, slots=True)
class Cluster:
    """One cluster.json: its name, sub-clusters and the raw document (for GET)."""

    name: str
    subclusters: tuple[SubCluster, ...]
    raw: dict[str, Any] = field(repr=False)

    def subcluster(self, name: str) -> SubCluster | None:
        return next((s for s in self.subclusters if s.name == name), None)

    def assign(self, hostname: str) -> SubCluster | None:
        """The sub-cluster for a host, as cc-backend picks it (§10, steps 3-4)."""
        for sub in self.subclusters:
            if not sub.nodes.all_nodes and sub.nodes.contains(hostname):
                return sub
        if self.subclusters and self.subclusters[0].nodes.all_nodes:
            return self.subclusters[0]
        return None


def load_cluster_file(path: str | Path) -> Cluster:
    """Read one cluster.json. Raises :class:`ClusterConfigError` when unusable."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ClusterConfigError(f"{path}: {exc}") from exc
    return cluster_from_doc(doc, source=str(path))


def cluster_from_doc(doc: Any, *, source: str = "<cluster.json>") -> Cluster:
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str) or not doc["name"]:
        raise ClusterConfigError(f"{source}: a cluster needs a non-empty 'name'")
    subs_raw = doc.get("subClusters")
    if not isinstance(subs_raw, list) or not subs_raw:
        raise ClusterConfigError(f"{source}: 'subClusters' must be a non-empty list")
    subs = []
    for i, sub in enumerate(subs_raw):
        if not isinstance(sub, dict) or not isinstance(sub.get("name"), str):
            raise ClusterConfigError(f"{source}: subClusters[{i}] needs a 'name'")
        nodes = sub.get("nodes", "")
        if not isinstance(nodes, str):
            raise ClusterConfigError(f"{source}: subClusters[{i}].nodes must be a string")
        if nodes.strip() == "*" and i != 0:
            raise ClusterConfigError(f"{source}: '*' is only allowed on the first sub-cluster")
        subs.append(SubCluster(sub["name"], NodeList(nodes)))
    return Cluster(doc["name"], tuple(subs), doc)


def default_cluster_files() -> list[Path]:
    """The cluster.json files shipped with the package (``testcluster``)."""
    data = resources.files("cc_slurm_adapter.testing") / "data"
    return [Path(str(data / "testcluster.cluster.json"))]


class ClusterRegistry:
    """The clusters the stand-in knows, by name."""

    def __init__(self, clusters: Iterable[Cluster]) -> None:
        self._clusters: dict[str, Cluster] = {}
        for cluster in clusters:
            self._clusters[cluster.name] = cluster

    @classmethod
    def from_files(cls, paths: Iterable[str | Path]) -> ClusterRegistry:
        return cls(load_cluster_file(p) for p in paths)

    @classmethod
    def default(cls) -> ClusterRegistry:
        return cls.from_files(default_cluster_files())

    def get(self, name: str) -> Cluster | None:
        return self._clusters.get(name)

    def __iter__(self) -> Any:
        return iter(self._clusters.values())

    def names(self) -> list[str]:
        return list(self._clusters)
