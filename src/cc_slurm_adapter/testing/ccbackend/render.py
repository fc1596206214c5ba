"""Job objects and error bodies as cc-backend writes them (contract §2.4, §8.1)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from .contract import ServerRelease
from .store import JobRow

__all__ = ["error_body", "go_json", "render_job"]


def go_json(value: Any) -> bytes:
    """JSON the way Go's ``json.Encoder`` writes it: compact, HTML-escaped, newline."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    text = (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return (text + "\n").encode("utf-8")


def error_body(status_text: str, message: str) -> bytes:
    return go_json({"status": status_text, "error": message})


def _go_float(value: Any) -> Any:
    """Go prints a whole float64 without a fraction (0, not 0.0)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, dict):
        return {k: _go_float(v) for k, v in value.items()}
    return value


def _resource(res: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"hostname": res.get("hostname", "")}
    for key in ("hwthreads", "accelerators", "configuration"):
        if res.get(key):
            out[key] = res[key]
    return out


def render_job(row: JobRow, profile: ServerRelease, *, with_metadata: bool = True,
               with_tags: bool = True, start_time_as_string: bool = False,
               now: float | None = None) -> dict[str, Any]:
    """The job object of a response. Running jobs report duration = now − startTime."""
    duration = row.duration
    if row.job_state == "running":
        duration = max(0, int((time.time() if now is None else now) - row.start_time))
    resources = [_resource(r or {}) for r in (row.resources or [])]
    start: Any = row.start_time
    if start_time_as_string:
        start = datetime.fromtimestamp(row.start_time, UTC).isoformat().replace("+00:00", "Z")
    job: dict[str, Any] = {"cluster": row.cluster, "subCluster": row.subcluster}
    if row.partition:
        job["partition"] = row.partition
    job["project"] = row.project
    job["user"] = row.user
    if profile.sharing_key == "shared":
        job["shared"] = row.shared
    job["jobState"] = row.job_state
    job["resources"] = resources
    if profile.name != "v1.3":
        job["energyFootprint"] = _go_float(row.energy_footprint)
        job["footprint"] = _go_float(row.footprint)
    job["metaData"] = row.meta_data if with_metadata else None
    job["concurrentJobs"] = {"items": None, "count": 0}
    if profile.name != "v1.3":
        job["energy"] = _go_float(row.energy)
    if with_tags and row.tags:
        job["tags"] = row.tags
    if row.array_job_id:
        job["arrayJobId"] = row.array_job_id
    if row.walltime:
        job["walltime"] = row.walltime
    job["jobId"] = row.job_id
    job["duration"] = duration
    if profile.sharing_key == "exclusive":
        job["exclusive"] = row.exclusive if row.exclusive is not None else 1
    if row.smt:
        job["smt"] = row.smt
    if row.monitoring_status:
        job["monitoringStatus"] = row.monitoring_status
    if row.num_acc:
        job["numAcc"] = row.num_acc
    if row.num_hwthreads:
        job["numHwthreads"] = row.num_hwthreads
    job["numNodes"] = row.num_nodes
    job["statistics"] = None
    job["id"] = row.id
    job["startTime"] = start
    return job
