"""The Slurm layer: run Slurm commands, read every release's JSON into one record.

``record`` holds the types, ``values`` the value encodings, ``gres`` the
``gres_detail`` grammar, ``parse`` the per-release normalisers, ``runner`` the
subprocess wrapper and ``source`` the bounded set of bulk queries per poll cycle.
"""

from __future__ import annotations

from cc_slurm_adapter.slurm.record import (
    ExitCode,
    GpuAlloc,
    JobRecord,
    NodeResources,
    NodeTopology,
    SlurmMeta,
)

__all__ = [
    "ExitCode",
    "GpuAlloc",
    "JobRecord",
    "NodeResources",
    "NodeTopology",
    "SlurmMeta",
]
