"""The Slurm layer: run Slurm commands, read every release's JSON into one record.

``record`` holds the types, ``values`` the value encodings and hostlists, ``gres``
the ``gres_detail`` grammar, ``resources`` the three ``job_resources`` layouts,
``tres`` TRES strings, memory sizes and GPU counts, ``phase`` the one answer to "has
this job started, is it still running, has it ended", ``parse`` the per-release JSON
normalisers, ``text`` the text outputs read where JSON is missing or too expensive
(``scontrol show job -d -o``, ``squeue -o``, ``sacct -B``), ``runner`` the
subprocess wrapper and ``source`` the bounded set of bulk queries per poll cycle.
"""

from __future__ import annotations

from cc_slurm_adapter.slurm.gres import gpus_from_detail, parse_gres_detail
from cc_slurm_adapter.slurm.parse import ParseResult, detect_meta, parse_exit_code, parse_jobs
from cc_slurm_adapter.slurm.phase import Phase, job_phase
from cc_slurm_adapter.slurm.record import (
    ExitCode,
    GpuAlloc,
    JobRecord,
    NodeResources,
    NodeTopology,
    SlurmMeta,
)
from cc_slurm_adapter.slurm.values import expand_hostlist, parse_index_list

__all__ = [
    "ExitCode",
    "GpuAlloc",
    "JobRecord",
    "NodeResources",
    "NodeTopology",
    "ParseResult",
    "Phase",
    "SlurmMeta",
    "detect_meta",
    "expand_hostlist",
    "gpus_from_detail",
    "job_phase",
    "parse_exit_code",
    "parse_gres_detail",
    "parse_index_list",
    "parse_jobs",
]
