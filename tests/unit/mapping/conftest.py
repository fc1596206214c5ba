"""Fixtures for the mapping tests: test clusters, topology, one stand-in per profile."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cc_slurm_adapter.mapping import Site, reset_log_once
from cc_slurm_adapter.profiles import PROFILES
from cc_slurm_adapter.testing.ccbackend import StandIn
from cc_slurm_adapter.testing.ccbackend.clusters import default_cluster_files
from cc_slurm_adapter.topology import Topology

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
MAPPING = FIXTURES / "mapping"
CLUSTER_FILES = sorted((MAPPING / "clusters").glob("*.cluster.json"))
SLURM_JSON = FIXTURES / "slurm-json"

# gpuPciAddrs of the test site: every GPU host of the test clusters (NVML order).
GPU_PCI: dict[str, tuple[str, ...]] = {
    r"^node\d+$": ("00000000:01:00.0", "00000000:02:00.0"),  # the stand-in's testcluster
    r"^gpu\d+$": tuple(f"00000000:{0x10 + i:02x}:00.0" for i in range(4)),
    r"^ia\d+$": tuple(f"00000000:{0x10 + i:02x}:00.0" for i in range(6)),
}


def all_cluster_files() -> list[Path]:
    return [*default_cluster_files(), *CLUSTER_FILES]


def load_topology() -> Topology:
    return Topology.from_json([json.loads(p.read_text()) for p in all_cluster_files()])


def gpu_lookup(hostname: str) -> tuple[str, ...] | None:
    import re

    for pattern, addresses in GPU_PCI.items():
        if re.search(pattern, hostname):
            return addresses
    return None


TESTBED_TOPOLOGY = MAPPING / "testbed" / "testcluster.cluster.json"


def make_site(profile: str = "v1.5", *, ignore: str | None = None, topology: bool = True,
              gpus: bool = True, testbed: bool = False, **kw: Any) -> Site:
    import re

    ignored = re.compile(ignore) if ignore else None
    return Site(profile=PROFILES[profile],
                gpu_pci_addresses=gpu_lookup if gpus else (lambda _h: None),
                is_ignored_host=(lambda h: bool(ignored and ignored.search(h))),
                topology=(Topology.from_json(json.loads(TESTBED_TOPOLOGY.read_text()))
                          if testbed else load_topology() if topology else None), **kw)


@pytest.fixture(autouse=True)
def _fresh_log_once() -> None:
    reset_log_once()


@pytest.fixture(scope="session")
def standins() -> Iterator[dict[str, StandIn]]:
    """One stand-in per profile, knowing the test clusters; cache committed at once."""
    started = {name: StandIn(profile=name, cluster_files=all_cluster_files(),
                             commit_interval=0).start() for name in PROFILES}
    try:
        yield started
    finally:
        for standin in started.values():
            standin.stop()


class Api:
    """A small client for one stand-in."""

    def __init__(self, standin: StandIn) -> None:
        self.standin = standin
        self.client = httpx.Client(base_url=standin.url, headers=standin.headers(), timeout=10)

    def start(self, payload: dict[str, Any]) -> httpx.Response:
        return self.client.post("/api/jobs/start_job/", content=json.dumps(payload))

    def stop(self, payload: dict[str, Any]) -> httpx.Response:
        return self.client.post("/api/jobs/stop_job/", content=json.dumps(payload))

    def reset(self) -> None:
        """Forget every stored job (so job ids can be reused)."""
        app = self.standin.app
        assert app is not None
        app.store.clear()

    def rows(self, job_id: int, cluster: str) -> list[Any]:
        return [r for r in self.standin.jobs() if r.job_id == job_id and r.cluster == cluster]

    def close(self) -> None:
        self.client.close()


@pytest.fixture(scope="session")
def apis(standins: dict[str, StandIn]) -> Iterator[dict[str, Api]]:
    made = {name: Api(s) for name, s in standins.items()}
    yield made
    for api in made.values():
        api.close()
