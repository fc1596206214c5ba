"""Job record → cc-backend start_job / stop_job payloads (pure: no I/O, no clock).

:func:`map_job` gives both payloads of one record at once, for the profile in the
:class:`~cc_slurm_adapter.mapping.site.Site`. Every payload carries only keys the
profile's strict decoder accepts (contract §2.3, §4, §5).

Decisions
---------
* **Phase** (``slurm.phase``, the one lifecycle model) decides: a PENDING job gets
  nothing; a RUNNING one (completing included) a start; an ENDED one a start and a
  stop; an UNKNOWN one (no state, or one Slurm does not document) a start if it has
  started, never a stop: the daemon asks Slurm again.
* **Not started** (pending, no start time, or no host ever assigned): no start_job.
  If such a job has *ended* (pending, then cancelled, or a job that failed to be
  scheduled) nothing is sent at all: cc-backend has no place for a job without
  hosts (start_job needs ``resources``, forces ``running``; a stop without a start is
  404/422). The job is reported as skipped with the reason "never started".
* **ignoreHosts**: matching hosts are dropped from ``resources``, ``numNodes``,
  ``numHwthreads`` and ``numAcc`` follow; a job with no host left is skipped.
* **Unknown to cc-backend**: with a topology (``Site.topology``), a job whose cluster
  is not there, or whose first host is in no sub-cluster, is skipped with the reason
  (cc-backend would answer 400, §10). Without a topology the payload is sent.
* **Start and stop agree**: the stop carries the same ``startTime`` as the start,
  so cc-backend stops exactly that run even when job ids repeat (§5.1).
* **A stop needs a real end**: Slurm's end time; never the start time as a stand-in,
  nor start + elapsed (slurmdbd's elapsed of a record without an end is *now* - start).
  An ended job without an end gets no stop yet (warning "ended, end time not known
  yet"). stopTime == startTime
  only when Slurm's own times say so (an end before the start, clock skew, is raised
  to the start). For v1.3 and v1.4 it is strictly greater (start + 1): v1.4.0–1.4.2
  and v1.3 refuse equal times (§1, §5.3), and one second of duration is harmless
  against that 400.
* **Field checks** (``mapping.checks``): every field is checked against cc-backend's
  Go types; a host that is no hostname is left out (a job with no valid host is
  skipped), an out-of-range optional field is left out with a warning.
* **Tags** only with ``Site.send_tags`` (ccRestSendTags): with tags cc-backend 1.5
  writes the job straight into ``job``, past ``job_cache`` (§4.2), and tags sent over
  NATS always fail (§9.2). The one tag is the Slurm QOS.
* **Energy** (``energy``, ``footprint``, ``energyFootprint``) and ``smt``,
  ``monitoringStatus``, ``subCluster``, ``jobState`` are never sent: we have no
  energy data, and cc-backend's defaults / its own sub-cluster assignment are right.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import hostlist

from cc_slurm_adapter.mapping.checks import check_start, check_stop, hostname_problem
from cc_slurm_adapter.mapping.resources import accelerators, hwthreads
from cc_slurm_adapter.mapping.site import Site, log_once
from cc_slurm_adapter.mapping.states import map_state
from cc_slurm_adapter.profiles import SHARED_TO_EXCLUSIVE, SharingKey
from cc_slurm_adapter.slurm.phase import Phase, family_of, job_phase
from cc_slurm_adapter.slurm.record import JobRecord, NodeResources

__all__ = ["MappedJob", "map_job", "record_phase", "shared_value", "slurm_info",
           "stop_payload"]

# record.shared (normalised by slurm.parse) → cc-backend v1.5 ``shared``.
_SHARED: dict[str | None, str] = {
    "exclusive": "none",  # --exclusive: whole nodes
    "topo": "none",  # --exclusive=topo: the whole topology block, so the nodes too
    "user": "single_user",  # --exclusive=user
    "mcs": "multi_user",  # --exclusive=mcs: shared by all users with the MCS label
    "oversubscribe": "multi_user",
    None: "multi_user",  # partition default / unknown: upstream's choice
}


@dataclass(frozen=True, slots=True)
class MappedJob:
    """The payloads for one record, or why there are none."""

    job_id: int
    cluster: str | None
    start: dict[str, Any] | None
    """start_job body; None if the job has not started or is skipped."""
    stop: dict[str, Any] | None
    """stop_job body; None if the job has not ended, never started or is skipped."""
    warnings: tuple[str, ...] = ()
    skip_reason: str | None = None
    """Set when the job will never be sent (also the first warning)."""


def shared_value(record: JobRecord) -> str:
    return _SHARED.get(record.shared, "multi_user")


def _fmt_time(epoch: int | None) -> str:
    if epoch is None:
        return "Unknown"
    try:
        return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return str(epoch)


def slurm_info(record: JobRecord) -> str:
    """A ``scontrol show job``-like text of the record (metaData ``slurmInfo``).

    Upstream sends the first block of ``scontrol show job`` output. We build the same
    ``Key=Value`` lines from the record, so it is there for every source (sacct,
    purged jobs); times are UTC.
    """
    def v(value: object) -> str:
        return "(null)" if value is None or value == "" else str(value)

    user = v(record.user) + (f"({record.user_id})" if record.user_id is not None else "")
    if len(record.nodes) <= 1:
        nodelist = record.nodes[0] if record.nodes else "(null)"
    else:
        try:
            nodelist = hostlist.collect_hostlist(list(record.nodes))
        except Exception:  # python-hostlist raises plain errors on odd names
            nodelist = ",".join(record.nodes)
    lines = [
        f"JobId={record.job_id} JobName={v(record.name)}",
        f"   UserId={user} GroupId={v(record.group)}",
        f"   Account={v(record.account)} QOS={v(record.qos)}",
        f"   JobState={record.state} Reason={v(record.state_reason)}",
    ]
    if record.array_job_id is not None:
        lines.append(f"   ArrayJobId={record.array_job_id} "
                     f"ArrayTaskId={v(record.array_task_id)}")
    if record.het_job_id is not None:
        lines.append(f"   HetJobId={record.het_job_id} HetJobOffset={v(record.het_job_offset)}")
    limit = "UNLIMITED" if record.unlimited_time else v(record.time_limit_min)
    lines += [
        f"   TimeLimit={limit} SubmitTime={_fmt_time(record.submit_time)}",
        f"   StartTime={_fmt_time(record.start_time)} EndTime={_fmt_time(record.end_time)}",
        f"   Partition={v(record.partition)} NodeList={nodelist}",
        f"   NumNodes={v(record.node_count)} NumCPUs={v(record.cpus)}",
    ]
    if record.tres_alloc:
        tres = ",".join(f"{k}={val}" for k, val in record.tres_alloc.items())
        lines.append(f"   TRES={tres}")
    if record.work_dir:
        lines.append(f"   WorkDir={record.work_dir}")
    if record.comment:
        lines.append(f"   Comment={record.comment}")
    return "\n".join(lines)


def record_phase(record: JobRecord) -> Phase:
    """The record's phase; worked out from its state for a record built without one
    (``phase`` is a pure function of state, flags and family, so both agree)."""
    if record.phase is not Phase.UNKNOWN:
        return record.phase
    return job_phase(record.state, record.state_flags, family=family_of(record.source))


def _started(record: JobRecord, phase: Phase) -> bool:
    return (phase is not Phase.PENDING and record.start_time is not None
            and record.start_time > 0 and bool(record.nodes or record.resources))


def _nodes(record: JobRecord) -> list[NodeResources]:
    if record.resources:
        return list(record.resources)
    return [NodeResources(hostname=host) for host in record.nodes]


class _Builder:
    """Collects the warnings of one record while the payloads are built."""

    def __init__(self, record: JobRecord, site: Site, cluster: str | None) -> None:
        self.record = record
        self.site = site
        self.cluster = cluster
        self.phase = record_phase(record)
        self.warnings: list[str] = []

    def warn(self, key: tuple[str, ...], message: str, level: int = logging.INFO) -> None:
        self.warnings.append(message)
        log_once(key, level, "job %s: %s", self.record.job_id, message)

    def skip(self, reason: str) -> MappedJob:
        log_once(("skip", self.cluster or "", str(self.record.job_id), reason),
                 logging.INFO, "job %s skipped: %s", self.record.job_id, reason)
        return MappedJob(self.record.job_id, self.cluster, None, None,
                         (reason, *self.warnings), reason)

    def resources(self, nodes: list[NodeResources]) -> tuple[list[dict[str, Any]], bool, int]:
        """The resource objects; whether all nodes have hwthreads; accelerator count."""
        cluster = self.cluster or ""
        topo = self.site.topology
        out: list[dict[str, Any]] = []
        all_threads = True
        n_acc = 0
        for node in nodes:
            entry: dict[str, Any] = {"hostname": node.hostname}
            sub = topo.for_host(cluster, node.hostname) if topo is not None else None
            threads = hwthreads(node, sub)
            if threads.ids:
                entry["hwthreads"] = list(threads.ids)
            else:
                all_threads = False
            if threads.fallback and (threads.ids or node.cores or node.cpu_ids):
                self.warn(("hwthreads", cluster, node.hostname),
                          f"{node.hostname}: hwthreads by threads-per-core arithmetic "
                          f"({threads.fallback})")
            if node.gpus:
                acc = accelerators(node, self.site.gpu_pci_addresses(node.hostname))
                if acc.ids:
                    entry["accelerators"] = list(acc.ids)
                    n_acc += len(acc.ids)
                if acc.fallback:
                    self.warn(("gpu", node.hostname), f"{node.hostname}: {acc.fallback}")
            out.append(entry)
        return out, all_threads, n_acc

    def start(self) -> dict[str, Any] | MappedJob:
        record, profile = self.record, self.site.profile
        all_nodes = _nodes(record)
        valid = []
        for node in all_nodes:
            problem = hostname_problem(node.hostname)
            if problem is None:
                valid.append(node)
            else:
                self.warn(("hostname", str(record.job_id), node.hostname[:60]),
                          f"host {node.hostname[:60]!r} {problem}; left out",
                          logging.WARNING)
        if not valid:
            return self.skip("no valid host name")
        nodes = [n for n in valid if not self.site.is_ignored_host(n.hostname)]
        dropped = len(all_nodes) - len(nodes)
        if not nodes:
            return self.skip(f"all {len(valid)} host(s) match ignoreHosts")
        if dropped:
            self.warnings.append(f"{dropped} host(s) left out (ignoreHosts)")
        if self.cluster is None:
            return self.skip("no cluster name (Slurm gave none; use --cluster)")
        topo = self.site.topology
        if topo is not None and self.site.check_hosts:
            # cc-backend answers 400 for these (§10); a known topology lets us say why.
            if self.cluster not in topo.clusters:
                return self.skip(f"cluster {self.cluster!r} is not in cc-backend's "
                                 "cluster config")
            first = nodes[0].hostname
            if topo.for_host(self.cluster, first) is None:
                return self.skip(f"host {first} is in no sub-cluster of {self.cluster} "
                                 "in cc-backend's cluster config")
        user = record.user or (str(record.user_id) if record.user_id is not None else None)
        if not user:
            return self.skip("no user name")
        if not record.user:
            self.warnings.append(f"no user name; sending the uid {user}")
        resources, all_threads, n_acc = self.resources(nodes)
        job: dict[str, Any] = {
            "jobId": record.job_id,
            "cluster": self.cluster,
            "user": user,
            "project": record.account or "",
            "startTime": record.start_time,
            "numNodes": len(resources),
            "resources": resources,
        }
        if record.partition:
            job["partition"] = record.partition
        if record.array_job_id:
            job["arrayJobId"] = record.array_job_id
        if all_threads:
            job["numHwthreads"] = sum(len(r["hwthreads"]) for r in resources)
        elif not dropped and record.cpus:
            job["numHwthreads"] = record.cpus
        elif all(n.cpus for n in nodes):
            job["numHwthreads"] = sum(n.cpus or 0 for n in nodes)
        if n_acc:
            job["numAcc"] = n_acc
        elif not dropped and record.gpus and not any(n.gpus for n in nodes):
            job["numAcc"] = record.gpus
        shared = shared_value(record)
        if profile.sharing_key is SharingKey.SHARED:
            job["shared"] = shared
        else:
            job["exclusive"] = SHARED_TO_EXCLUSIVE[shared]
        if record.time_limit_min and record.time_limit_min > 0 and not record.unlimited_time:
            job["walltime"] = record.time_limit_min * 60
        if "submitTime" in profile.start_keys and record.submit_time and record.submit_time > 0:
            job["submitTime"] = record.submit_time
        if ("requestedMemory" in profile.start_keys and record.requested_memory_mb
                and record.requested_memory_mb > 0):
            job["requestedMemory"] = record.requested_memory_mb
        meta = {"jobName": record.name or "", "slurmInfo": slurm_info(record)}
        if record.submit_time:
            meta["submitTime"] = str(record.submit_time)  # upstream keeps it here too
        if record.batch_script:
            meta["jobScript"] = record.batch_script
        job["metaData"] = meta
        if self.site.send_tags and record.qos:
            tag: dict[str, Any] = {"type": "qos", "name": record.qos}
            if "scope" in profile.tag_keys:
                tag["scope"] = "global"
            job["tags"] = [tag]
        checked = check_start(job)
        for message in checked.warnings:
            self.warn(("check", str(record.job_id), message), message, logging.WARNING)
        if checked.payload is None:
            return self.skip(checked.skip_reason or "payload out of range")
        return checked.payload

    def stop(self, start_time: int) -> dict[str, Any] | None:
        record, profile = self.record, self.site.profile
        if self.phase is Phase.UNKNOWN:
            self.warn(("state-unknown", str(record.job_id), record.state),
                      f"Slurm state {record.state!r} is not known: no stop until Slurm "
                      "says the job ended")
            return None
        mapping = map_state(record.state, record.state_flags, profile, phase=self.phase)
        if mapping.state is None:
            return None
        stop_time = record.end_time
        if stop_time is None or stop_time <= 0:
            # Not start + elapsed: for a record without an end, slurmdbd computes elapsed
            # as *now* - start when sacct runs (as_mysql_jobacct_process.c), so it would
            # date the end to the query (21.08 NODE_FAIL records keep end 0 for good). The
            # daemon waits for the end, within a bound, and decides with what it saw.
            self.warn(("no-end", str(record.job_id)),
                      "ended, end time not known yet: no stop until Slurm gives it")
            return None
        if mapping.reason:
            self.warn(("state", record.state, profile.name), mapping.reason)
        if stop_time < start_time:
            self.warnings.append(f"end time {stop_time} is before the start time "
                                 f"{start_time} (clock skew); using the start time")
            stop_time = start_time
        if profile.name != "v1.5" and stop_time <= start_time:
            stop_time = start_time + 1  # v1.3 and v1.4.0–1.4.2 need stopTime > startTime
        checked = check_stop({"jobId": record.job_id, "cluster": self.cluster,
                              "startTime": start_time, "stopTime": stop_time,
                              "jobState": mapping.state})
        if checked.payload is None:
            self.warn(("check-stop", str(record.job_id)),
                      f"no stop: {checked.skip_reason}", logging.WARNING)
        return checked.payload


def map_job(record: JobRecord, site: Site) -> MappedJob:
    """Both payloads for ``record`` (see the module docstring for the rules).

    Never raises for any record the parser can produce.
    """
    cluster = site.cluster or record.cluster or None
    builder = _Builder(record, site, cluster)
    if record.provisional:
        return builder.skip("slurmdbd's record is provisional (a placeholder, or final "
                            "without its end time yet): wait for the real record")
    if not _started(record, builder.phase):
        if builder.phase is Phase.ENDED:
            return builder.skip(f"never started ({record.state.lower()} before it ran): "
                                "nothing is sent")
        return MappedJob(record.job_id, cluster, None, None)
    start = builder.start()
    if isinstance(start, MappedJob):
        return start
    stop = builder.stop(start["startTime"])
    return MappedJob(record.job_id, cluster, start, stop, tuple(builder.warnings))


def stop_payload(record: JobRecord, site: Site, *, start_time: int | None = None,
                 ) -> MappedJob:
    """The stop_job body alone, for a job whose start was sent earlier.

    ``start_time`` is the ``startTime`` that start_job carried (the daemon keeps it);
    by default the record's own start time.
    """
    cluster = site.cluster or record.cluster or None
    builder = _Builder(record, site, cluster)
    started = start_time if start_time is not None else record.start_time
    if started is None or started <= 0 or cluster is None:
        return builder.skip("no start time or cluster: cannot name the job to stop")
    return MappedJob(record.job_id, cluster, None, builder.stop(started),
                     tuple(builder.warnings))
