"""cluster.json / GET /api/clusters/ → host lookup."""

from __future__ import annotations

import json

import pytest

from cc_slurm_adapter.topology import Topology, TopologyError

from .conftest import CLUSTER_FILES, FIXTURES


def _sub(name: str, nodes: str, cores: list[list[int]] | None = None) -> dict[str, object]:
    return {"name": name, "nodes": nodes, "socketsPerNode": 1, "coresPerSocket": 2,
            "threadsPerCore": 1, "topology": {"core": cores or [[0], [1]]}}


def test_hostlist_ranges_and_first_match_wins() -> None:
    topo = Topology.from_json({"name": "c", "subClusters": [
        _sub("a", "f[0101-0103,0201-0202]"), _sub("b", "f[0102-0104]")]})
    assert topo.for_host("c", "f0102").name == "a"  # type: ignore[union-attr]
    assert topo.for_host("c", "f0104").name == "b"  # type: ignore[union-attr]
    assert topo.for_host("c", "f0202").name == "a"  # type: ignore[union-attr]
    assert topo.for_host("c", "f0105") is None
    assert topo.for_host("other", "f0101") is None


def test_wildcard_only_on_first_subcluster() -> None:
    topo = Topology.from_json({"clusters": [{"name": "c", "subClusters": [
        _sub("all", "*"), _sub("x", "x[1-2]")]}]})
    assert topo.for_host("c", "x1").name == "x"  # type: ignore[union-attr]
    assert topo.for_host("c", "anything").name == "all"  # type: ignore[union-attr]
    late = Topology.from_json({"name": "c", "subClusters": [_sub("x", "x1"), _sub("all", "*")]})
    assert late.for_host("c", "y") is None
    assert late.warnings


def test_bad_nodelist_is_a_warning_not_an_error() -> None:
    topo = Topology.from_json({"name": "c", "subClusters": [_sub("bad", "f[01-"),
                                                            _sub("ok", "g1")]})
    assert topo.for_host("c", "g1") is not None
    assert any("bad node list" in w for w in topo.warnings)


def test_reads_the_fixture_clusters_and_fritz() -> None:
    docs = [json.loads(p.read_text()) for p in CLUSTER_FILES]
    topo = Topology.from_json({"clusters": docs})
    ia = topo.for_host("hpc", "ia2")
    assert ia is not None and ia.threads_per_core == 2 and ia.cores[0] == (0, 32)
    fritz = Topology.from_json(json.loads(
        (FIXTURES / "ccbackend" / "fritz.cluster.json").read_text()))
    sub = fritz.for_host("fritz", "f0726")
    assert sub is not None and sub.name == "main" and len(sub.cores) == 72


@pytest.mark.parametrize("doc", [42, "x", {"clusters": [{"nope": 1}]}, [{"name": "c"}]])
def test_not_a_cluster_document(doc: object) -> None:
    with pytest.raises(TopologyError):
        Topology.from_json(doc)
