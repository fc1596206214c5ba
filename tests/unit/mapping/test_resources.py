"""hwthreads (topology, SMT, fallback) and accelerators of one node."""

from __future__ import annotations

from cc_slurm_adapter.mapping import accelerators, core_indices, hwthreads
from cc_slurm_adapter.slurm.record import GpuAlloc, NodeResources
from cc_slurm_adapter.topology import SubClusterTopology

from .conftest import load_topology

SMT = load_topology().for_host("testcluster", "smt1")


def test_worked_example_from_the_docstring() -> None:
    # testcluster/smt: 2 sockets x 4 cores x 2 threads, core[i] = [i, i+8]
    assert SMT is not None and SMT.cores[1] == (1, 9)
    node = NodeResources(hostname="smt1", cores=((0, 1), (1, 2)), sockets=2,
                         cores_per_socket=4, threads_per_core=2)
    assert core_indices(node, SMT) == ((1, 6), None)
    got = hwthreads(node, SMT)
    assert got.ids == (1, 6, 9, 14)
    assert got.fallback is None


def test_topology_supplies_cores_per_socket() -> None:
    node = NodeResources(hostname="smt1", cores=((1, 3),))
    assert hwthreads(node, SMT).ids == (7, 15)


def test_fallback_without_topology_uses_thread_arithmetic() -> None:
    node = NodeResources(hostname="x1", cores=((0, 1), (1, 0)), sockets=2,
                         cores_per_socket=4, threads_per_core=2)
    got = hwthreads(node, None)
    assert got.ids == (1, 4, 9, 12)
    assert got.fallback and "no cc-backend topology" in got.fallback


def test_fallback_without_smt_is_the_core_index() -> None:
    node = NodeResources(hostname="x1", cores=((1, 2),), sockets=2, cores_per_socket=16)
    assert hwthreads(node, None).ids == (18,)


def test_fallback_when_index_past_topology() -> None:
    small = SubClusterTopology(cluster="c", name="s", sockets_per_node=1, cores_per_socket=2,
                               threads_per_core=1, cores=((0,), (1,)))
    node = NodeResources(hostname="h", cores=((0, 5),), sockets=1, cores_per_socket=8)
    got = hwthreads(node, small)
    assert got.ids == (5,)
    assert got.fallback and "past topology.core" in got.fallback


def test_smt_without_layout_keeps_core_ids() -> None:
    node = NodeResources(hostname="h", cores=((0, 1),), threads_per_core=2)
    got = hwthreads(node, None)
    assert got.ids == (1,)
    assert got.fallback and "siblings left out" in got.fallback


def test_unknown_cores_per_socket_on_socket_1_gives_nothing() -> None:
    node = NodeResources(hostname="h", cores=((1, 1),))
    got = hwthreads(node, None)
    assert got.ids == ()
    assert got.fallback and "cores per socket unknown" in got.fallback


def test_cpu_ids_become_cores() -> None:
    # Slurm abstract CPU ids 2,3 = both threads of core 1 with 2 threads per core
    node = NodeResources(hostname="smt1", cpu_ids=(2, 3), threads_per_core=2)
    assert hwthreads(node, SMT).ids == (1, 9)


def test_no_core_data_no_hwthreads() -> None:
    got = hwthreads(NodeResources(hostname="h"), SMT)
    assert got.ids == () and got.fallback is None


PCI = ("0000:01:00.0", "0000:41:00.0", "0000:81:00.0", "0000:c1:00.0")


def test_accelerators_map_to_pci_in_index_order() -> None:
    node = NodeResources(hostname="g", gpus=(GpuAlloc(index=2, type="a100"),
                                            GpuAlloc(index=0, type=None)))
    got = accelerators(node, PCI)
    assert got.ids == ("0000:81:00.0", "0000:01:00.0")
    assert got.fallback is None


def test_shards_name_their_device_once() -> None:
    node = NodeResources(hostname="g", gpus=(GpuAlloc(index=1, kind="shard"),
                                            GpuAlloc(index=1, kind="shard")))
    assert accelerators(node, PCI).ids == ("0000:41:00.0",)


def test_no_pci_entry_falls_back_to_index() -> None:
    node = NodeResources(hostname="g", gpus=(GpuAlloc(index=0), GpuAlloc(index=3)))
    got = accelerators(node, None)
    assert got.ids == ("0", "3")
    assert got.fallback and "gpuPciAddrs" in got.fallback


def test_index_past_pci_list_falls_back_to_index() -> None:
    node = NodeResources(hostname="g", gpus=(GpuAlloc(index=0), GpuAlloc(index=7)))
    got = accelerators(node, PCI)
    assert got.ids == ("0000:01:00.0", "7")
    assert got.fallback and "index 7" in got.fallback
