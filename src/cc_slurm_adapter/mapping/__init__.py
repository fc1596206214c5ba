"""Job record → cc-backend payloads, per cc-backend profile. Pure: no I/O, no clock.

``payload`` builds start_job/stop_job bodies, ``resources`` the hwthreads and
accelerators of one node, ``states`` the state table, ``site`` the site data
(gpuPciAddrs, ignoreHosts, topology, profile) and the "log once" helper.
"""

from __future__ import annotations

from cc_slurm_adapter.mapping.payload import (
    MappedJob,
    map_job,
    shared_value,
    slurm_info,
    stop_payload,
)
from cc_slurm_adapter.mapping.resources import NodeMapping, accelerators, core_indices, hwthreads
from cc_slurm_adapter.mapping.site import Site, SiteConfig, log_once, reset_log_once
from cc_slurm_adapter.mapping.states import StateMapping, map_state

__all__ = [
    "MappedJob",
    "NodeMapping",
    "Site",
    "SiteConfig",
    "StateMapping",
    "accelerators",
    "core_indices",
    "hwthreads",
    "log_once",
    "map_job",
    "map_state",
    "reset_log_once",
    "shared_value",
    "slurm_info",
    "stop_payload",
]
