"""The one internal job record that every Slurm release's output is read into.

Everything below ``slurm.parse`` sees only these types. They are immutable
``msgspec.Struct``\\ s, so they are cheap to build, hashable where useful and
serialisable (``msgspec.json.encode(record)``) for the state store.

Conventions (apply to every field):

* ``None`` means *unset / not known*. Slurm's ``0`` epoch, ``INFINITE`` / ``NO_VAL``
  sentinels, ``{"set": false}``, ``{}``, ``null`` and a missing key all become ``None``
  for times and counts. A field that Slurm reports as unlimited (``time_limit``
  ``{"infinite": true}`` or ``null`` on ≤ 22.05) is ``None`` as well; ``unlimited_time``
  tells the two apart where it matters.
* Times are epoch seconds (UTC), counts are ints, memory is MB.
* ``warnings`` lists the fields that were missing or odd in this job's JSON, as
  ``"<field>: <why>"``; the job still went through with that value unset.
"""

from __future__ import annotations

import msgspec

from cc_slurm_adapter.slurm.phase import Phase

__all__ = [
    "ExitCode",
    "GpuAlloc",
    "JobRecord",
    "NodeResources",
    "NodeTopology",
    "SlurmMeta",
]


class SlurmMeta(msgspec.Struct, frozen=True, kw_only=True):
    """What a JSON document says about the Slurm that produced it (its ``meta``)."""

    release: str | None = None
    """``"23.11.5"``, ``"21.08.8-2"``, ``"25.05.0-0rc1"`` …"""
    major: int | None = None
    minor: int | None = None
    micro: int | None = None
    data_parser: str | None = None
    """``"v0.0.39"`` … ``"v0.0.45"`` for data_parser output; ``None`` before 23.02."""
    plugin: str | None = None
    """``"openapi/v0.0.37"``, ``"openapi/dbv0.0.38"``, ``"openapi/slurmctld"`` …"""
    cluster: str | None = None
    """``meta.slurm.cluster`` (23.11.1 and later)."""
    kind: str | None = None
    """``"sacct"`` (accounting family) or ``"squeue"`` (slurmctld family)."""
    command: tuple[str, ...] = ()

    @property
    def version(self) -> tuple[int, int] | None:
        """``(major, minor)`` e.g. ``(23, 11)``, or ``None`` if unknown."""
        if self.major is None or self.minor is None:
            return None
        return (self.major, self.minor)


class ExitCode(msgspec.Struct, frozen=True, kw_only=True):
    """The exit code exactly as Slurm reports it, decoded into one shape.

    Never derive a job state from it: on ≤ 23.02 sacct writes ``SUCCESS``/``0`` for
    *every* normal exit (a job that exits 1 reads as success). Use ``JobRecord.state``.
    """

    status: str | None = None
    """``SUCCESS``, ``ERROR``, ``SIGNALED``, ``CORE_DUMPED``, ``PENDING``, ``INVALID`` or None."""
    return_code: int | None = None
    signal: int | None = None
    signal_name: str | None = None
    raw: int | None = None
    """The raw wait status where Slurm gave one (squeue ≤ 23.02), else None."""


class GpuAlloc(msgspec.Struct, frozen=True, kw_only=True):
    """One device allocated on one node, from ``gres_detail``."""

    index: int
    """Slurm's gres index (``IDX:``) on that node; maps to a device via site config."""
    type: str | None = None
    """``"a100"`` for ``gpu:a100:2(IDX:0-1)``, None for untyped ``gpu:2(IDX:0-1)``."""
    kind: str = "gpu"
    """``"gpu"``, or ``"shard"``/``"mps"`` for a shared slice of the device ``index``."""


class NodeResources(msgspec.Struct, frozen=True, kw_only=True):
    """What a job holds on one node."""

    hostname: str
    cpu_ids: tuple[int, ...] = ()
    """Slurm's abstract CPU ids allocated on this node, when known (``CPU_IDs=`` of
    ``scontrol show job -d``); empty when only cores are known."""
    cores: tuple[tuple[int, int], ...] = ()
    """Allocated ``(socket, core-within-socket)`` pairs, Slurm's logical numbering."""
    sockets: int | None = None
    cores_per_socket: int | None = None
    threads_per_core: int | None = None
    cpus: int | None = None
    """CPUs allocated on this node (Slurm's count, includes SMT threads)."""
    gpus: tuple[GpuAlloc, ...] = ()
    memory_mb: int | None = None
    """Memory allocated on this node in MB."""


class NodeTopology(msgspec.Struct, frozen=True, kw_only=True):
    """One node's hardware as slurmctld knows it (sinfo / scontrol show node)."""

    hostname: str
    sockets: int | None = None
    cores_per_socket: int | None = None
    threads_per_core: int | None = None
    cpus: int | None = None
    memory_mb: int | None = None
    gres: str | None = None
    state: tuple[str, ...] = ()


class JobRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One Slurm job (one array task, one het component) as every release is read into.

    ``source`` tells which family it came from: ``"sacct"`` (slurmdbd: accounting
    truth, no per-node resources) or ``"squeue"``/``"scontrol"``/``"slurmrestd"``
    (slurmctld: live, with ``resources``/GPU indices while the job is in memory).
    """

    source: str
    """``"sacct"``, ``"squeue"``, ``"scontrol"``, ``"slurmrestd"`` or ``"slurmrestd-db"``."""
    job_id: int
    slurm_version: str | None = None
    """``meta`` release, e.g. ``"24.11.5"``."""
    data_parser: str | None = None
    cluster: str | None = None

    array_job_id: int | None = None
    """The array's job id; None when the job is not part of an array."""
    array_task_id: int | None = None
    array_task_string: str | None = None
    """Pending array meta-record only: ``"0-99%10"``."""
    het_job_id: int | None = None
    het_job_offset: int | None = None

    user: str | None = None
    user_id: int | None = None
    group: str | None = None
    account: str | None = None
    partition: str | None = None
    qos: str | None = None
    name: str | None = None

    submit_time: int | None = None
    start_time: int | None = None
    """For slurmctld records of PENDING jobs Slurm reports the *expected* start; the
    parser drops it (None) unless the job has started."""
    end_time: int | None = None
    """Only set for jobs in a terminal state (squeue reports the expected end of a
    running job; the parser drops it)."""
    elapsed_s: int | None = None

    state: str = "UNKNOWN"
    """Upper-case Slurm base state: PENDING, RUNNING, SUSPENDED, COMPLETED, CANCELLED,
    FAILED, TIMEOUT, NODE_FAIL, PREEMPTED, BOOT_FAIL, DEADLINE, OUT_OF_MEMORY; or, where
    Slurm printed one name for base and flags (≤ 23.02, text, sacct's stored run
    states), that name: COMPLETING, REQUEUED, RESIZING, REVOKED, SPECIAL_EXIT, … ;
    ``"UNKNOWN"`` if missing. Read :attr:`phase`, not this, to know if the job ended."""
    state_flags: tuple[str, ...] = ()
    """COMPLETING, CONFIGURING, REQUEUED, RESIZING, SIGNALING, STAGE_OUT, …"""
    phase: Phase = Phase.UNKNOWN
    """``slurm.phase.job_phase(state, state_flags, family)``, set by the parsers."""
    requeued: bool = False
    """Slurm marks the job (slurmctld: back in the queue) or this run (slurmdbd: the
    run that was requeued) as requeued."""
    restart_count: int | None = None
    """How often Slurm restarted (requeued) the job: ``restart_cnt`` of squeue/scontrol
    JSON and of sacct (24.11+), ``Restarts=`` of ``scontrol show job``; None if not given."""
    state_reason: str | None = None
    exit_code: ExitCode | None = None
    derived_exit_code: ExitCode | None = None

    nodes: tuple[str, ...] = ()
    """Allocated hosts, expanded from the Slurm hostlist, in Slurm's order."""
    node_count: int | None = None
    cpus: int | None = None
    """Allocated CPUs (requested while pending)."""
    gpus: int | None = None
    """Total allocated GPUs from TRES / gres_detail; None when unknown."""
    resources: tuple[NodeResources, ...] = ()
    """Per-node allocation; empty when Slurm no longer knows it (sacct, purged jobs)."""
    tres_alloc: dict[str, str] = msgspec.field(default_factory=dict)
    """Allocated TRES as Slurm prints them, e.g. ``{"cpu": "16", "mem": "120000M",
    "gres/gpu": "8"}``."""

    requested_memory_mb: int | None = None
    """Memory of the whole job in MB: the allocated TRES ``mem`` once the job has an
    allocation, else the requested TRES ``mem``, else per-node × nodes or
    per-CPU × CPUs from the request."""
    time_limit_min: int | None = None
    unlimited_time: bool = False

    shared: str | None = None
    """Normalised sharing mode: ``"exclusive"`` (whole nodes, ``--exclusive``),
    ``"user"``, ``"mcs"``, ``"topo"`` (exclusive per user / MCS label / topology),
    ``"oversubscribe"`` (``--oversubscribe``), or None (partition default / unknown)."""
    comment: str | None = None
    batch_script: str | None = None
    work_dir: str | None = None
    submit_line: str | None = None
    sluid: str | None = None
    """Slurm's unique job id (25.11 squeue, 26.05 sacct)."""
    batch_host: str | None = None
    flags: tuple[str, ...] = ()
    provisional: bool = False
    """slurmdbd's record is not settled yet; the next query brings the real one. Seen on
    the testbed (22.05): a placeholder when a job starts (no partition, no requested TRES,
    name "allocation"), and, after a slurmdbd outage, a finished job replayed as
    COMPLETED before its end time arrives. Never take it as final (a sync should still
    bound how long it waits)."""

    warnings: tuple[str, ...] = ()

    @property
    def detail_rank(self) -> tuple[int, int]:
        """How rich this record's resource view is; higher is richer.

        ``(level, nodes)``: level 0 = no hosts, 1 = host names only, 2 = per-node CPU
        counts / memory / GPUs, 3 = per-node CPU ids or cores (the poorest listed node
        decides); nodes = how many nodes the view lists. A COMPLETING job releases its
        nodes one by one (24.11: ``('node2',)`` in one read, ``()`` a moment later), so a
        store keeps the snapshot with the highest rank instead of the latest.
        """
        if self.resources:
            level = min(_node_level(node) for node in self.resources)
            return level, len(self.resources)
        if self.nodes:
            return 1, len(self.nodes)
        return 0, 0

    @property
    def is_array_task(self) -> bool:
        return self.array_job_id is not None and self.array_task_id is not None


def _node_level(node: NodeResources) -> int:
    if node.cpu_ids or node.cores:
        return 3
    if node.cpus is not None or node.memory_mb is not None or node.gpus:
        return 2
    return 1
