"""The bounded set of Slurm queries per poll cycle.

Per cycle and cluster, whatever the number of jobs:

1. ``sacct --json[=v0.0.4x] --allusers -X -S <start> -E <end>`` – accounting truth
   for the time window (one call);
2. ``squeue -h -o "%A %T"`` – the cheap live listing (one call; 0.07 s for 8,000
   jobs, where ``squeue --json`` costs 8 s and 1.2 GB RSS on 24.11);
3. at most one detail call, only when running jobs have no captured resources yet:
   ``squeue --json -j <ids>`` from 24.05.1 (earlier ``squeue --json`` ignores ``-j``
   and dumps the whole queue), else ``scontrol show job -d -o`` (text, one line per
   job, filtered here; ``scontrol --json`` does not exist before 23.02). At most
   ``max_detail_jobs`` ids per cycle; the rest wait for the next cycle;
4. at most one node-topology call (``scontrol show node --json``, ``sinfo --json``
   before 23.02) when the cached topology is older than ``topology_max_age`` or a
   job runs on a host it does not know.

So a cycle makes 2 to 4 calls per cluster, at 10 jobs and at 10,000.
Upstream makes two ``scontrol`` calls per new job and dumps the queue as JSON.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Sequence

import msgspec

from cc_slurm_adapter.errors import SlurmCommandFailed
from cc_slurm_adapter.slurm.parse import parse_jobs, parse_nodes
from cc_slurm_adapter.slurm.record import JobRecord, NodeTopology, SlurmMeta
from cc_slurm_adapter.slurm.runner import Runner
from cc_slurm_adapter.slurm.text import parse_scontrol_jobs, parse_squeue_listing

__all__ = ["KNOWN_PARSERS", "CycleResult", "SlurmInfo", "SlurmSource", "detect_slurm"]

# data_parser versions this parser has been checked against (v0.0.45 = 26.05).
KNOWN_PARSERS = ("v0.0.40", "v0.0.41", "v0.0.42", "v0.0.43", "v0.0.44", "v0.0.45")
_PARSER_RE = re.compile(r"v0\.0\.(\d+)")
_LIVE_DETAIL_STATES = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED"})


class SlurmInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What start-up detection found: the release (from ``meta``) and the parser pin."""

    meta: SlurmMeta
    parsers: tuple[str, ...] = ()
    """``--json=list`` (23.11+)."""
    pin: str | None = None
    """``v0.0.4x`` passed as ``--json=<pin>``; None before 23.11 (no choice there)."""

    @property
    def version(self) -> tuple[int, int, int]:
        m = self.meta
        return (m.major or 0, m.minor or 0, m.micro or 0)

    @property
    def has_scontrol_json(self) -> bool:
        return self.version >= (23, 2, 0)  # scontrol --json came with data_parser (23.02)

    @property
    def squeue_json_filters(self) -> bool:
        return self.version >= (24, 5, 1)  # before 24.05.1 squeue --json ignored -j

    @property
    def json_flag(self) -> str:
        return f"--json={self.pin}" if self.pin else "--json"


def _epoch_arg(epoch: float) -> str:
    # The runner pins TZ=UTC, so sacct reads this as UTC.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))


async def detect_slurm(runner: Runner, *, timeout: float | None = None) -> SlurmInfo:
    """Detect the release and data_parser once at start-up (1–2 calls).

    An empty ``sacct --json`` window gives the ``meta`` block of any release; from
    23.11 ``sacct --json=list`` names the parsers and the newest one we know is pinned.
    """
    result = await runner.run(["sacct", "--json", "-X", "--allusers", "-S",
                               "1970-01-02T00:00:00", "-E", "1970-01-02T00:00:01"],
                              timeout=timeout)
    meta = parse_jobs(result.stdout, source="sacct").meta
    if (meta.major or 0, meta.minor or 0) < (23, 11):
        return SlurmInfo(meta=meta)
    parsers: tuple[str, ...] = ()
    try:
        listing = await runner.run(["sacct", "--json=list"], timeout=timeout)
        text = listing.stdout.decode("utf-8", "replace") + "\n" + listing.stderr
        found = {f"v0.0.{m}" for m in _PARSER_RE.findall(text)}
        parsers = tuple(sorted(found, key=lambda p: int(p.rsplit(".", 1)[1])))
    except SlurmCommandFailed:
        parsers = ()
    usable = [p for p in parsers if p in KNOWN_PARSERS]
    pin = usable[-1] if usable else (
        meta.data_parser if meta.data_parser in KNOWN_PARSERS else None)
    return SlurmInfo(meta=meta, parsers=parsers, pin=pin)


class CycleResult(msgspec.Struct, kw_only=True):
    accounting: list[JobRecord]
    """sacct records for the window (``-X``: allocations, no steps)."""
    live: dict[int, str]
    """job id → state of everything slurmctld holds now."""
    details: list[JobRecord]
    """slurmctld records (with ``resources``/GPU indices) of newly running jobs."""
    deferred: tuple[int, ...] = ()
    """Running jobs still without details (over ``max_detail_jobs``)."""
    topology: dict[str, NodeTopology] = msgspec.field(default_factory=dict)
    calls: int = 0


class SlurmSource:
    """The per-cycle queries for one cluster (``cluster=None``: the local one)."""

    def __init__(self, runner: Runner, info: SlurmInfo, *, cluster: str | None = None,
                 max_detail_jobs: int = 500, topology_max_age: float = 3600.0,
                 timeout: float | None = None) -> None:
        self.runner = runner
        self.info = info
        self.cluster = cluster
        self.max_detail_jobs = max_detail_jobs
        self.topology_max_age = topology_max_age
        self.timeout = timeout
        self.topology: dict[str, NodeTopology] = {}
        self._topology_at: float | None = None

    def _cluster_args(self) -> list[str]:
        return ["-M", self.cluster] if self.cluster else []

    async def accounting(self, start: float, end: float) -> list[JobRecord]:
        """One ``sacct`` for the window ``[start, end]`` (epoch seconds)."""
        argv = ["sacct", self.info.json_flag, "--allusers", "-X", "-S", _epoch_arg(start),
                "-E", _epoch_arg(end), *self._cluster_args()]
        result = await self.runner.run(argv, timeout=self.timeout)
        return parse_jobs(result.stdout, source="sacct", topology=self.topology).jobs

    async def live_listing(self) -> dict[int, str]:
        """One cheap text ``squeue``: job id → state."""
        argv = ["squeue", "-h", "-a", "-o", "%A %T", *self._cluster_args()]
        result = await self.runner.run(argv, timeout=self.timeout)
        return parse_squeue_listing(result.stdout)

    async def details(self, job_ids: Sequence[int]) -> list[JobRecord]:
        """slurmctld records for ``job_ids``, in one call whatever their number."""
        if not job_ids:
            return []
        wanted = set(job_ids)
        if self.info.squeue_json_filters:
            argv = ["squeue", self.info.json_flag, "-a", "-j",
                    ",".join(str(i) for i in sorted(wanted)), *self._cluster_args()]
            try:
                result = await self.runner.run(argv, timeout=self.timeout)
            except SlurmCommandFailed as exc:
                # `squeue -j <one id>` fails with "Invalid job id" once the job is purged
                if "invalid job id" in exc.stderr.lower():
                    return []
                raise
            jobs = parse_jobs(result.stdout, source="squeue", topology=self.topology).jobs
        else:
            # ≤ 24.05.0: squeue --json ignores -j; ≤ 22.05: no scontrol --json. The text
            # dump of every job is cheap (≈0.00 s per job on 22.05) and carries CPU_IDs.
            argv = ["scontrol", "show", "job", "-d", "-o", *self._cluster_args()]
            result = await self.runner.run(argv, timeout=self.timeout)
            jobs = parse_scontrol_jobs(result.stdout, cluster=self.cluster or
                                       self.info.meta.cluster,
                                       version=self.info.meta.release,
                                       topology=self.topology)
        return [j for j in jobs if j.job_id in wanted]

    async def refresh_topology(self) -> dict[str, NodeTopology]:
        """One node listing (``scontrol show node --json``; ``sinfo --json`` ≤ 22.05)."""
        if self.info.has_scontrol_json:
            argv = ["scontrol", "show", "node", self.info.json_flag, *self._cluster_args()]
        else:
            argv = ["sinfo", "--json", *self._cluster_args()]
        result = await self.runner.run(argv, timeout=self.timeout)
        self.topology = parse_nodes(result.stdout)
        self._topology_at = time.monotonic()
        return self.topology

    def _topology_stale(self, hosts: Collection[str]) -> bool:
        if self._topology_at is None:
            return True
        if time.monotonic() - self._topology_at > self.topology_max_age:
            return True
        return any(h not in self.topology for h in hosts)

    async def cycle(self, start: float, end: float,
                    captured: Collection[int] = ()) -> CycleResult:
        """One poll cycle: window accounting, live listing, details for new running jobs.

        ``captured`` are job ids whose resources the caller already holds.
        """
        before = self.runner.calls
        accounting = await self.accounting(start, end)
        live = await self.live_listing()
        need = sorted(i for i, state in live.items()
                      if state in _LIVE_DETAIL_STATES and i not in captured)
        batch, deferred = need[:self.max_detail_jobs], need[self.max_detail_jobs:]
        if batch and self._topology_stale(()):
            await self.refresh_topology()
        details = await self.details(batch)
        hosts = {h for job in details for h in job.nodes}
        if hosts and self._topology_stale(hosts) and self.runner.calls - before < 4:
            await self.refresh_topology()
        return CycleResult(accounting=accounting, live=live, details=details,
                           deferred=tuple(deferred), topology=self.topology,
                           calls=self.runner.calls - before)
