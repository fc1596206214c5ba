"""Synthetic Slurm JSON for the benchmarks: real records repeated with fresh job ids."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SLURM_JSON = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "slurm-json"


def build_document(seeds: Iterable[str], n_jobs: int, first_id: int) -> bytes:
    """One document of ``n_jobs`` jobs cycling over the jobs of the seed files
    (paths under tests/fixtures/slurm-json), numbered from ``first_id``."""
    jobs_in: list[dict[str, Any]] = []
    meta: Any = None
    for rel in seeds:
        doc = json.loads((SLURM_JSON / rel).read_bytes())
        meta = meta or doc["meta"]
        jobs_in.extend(doc["jobs"])
    jobs = []
    for i in range(n_jobs):
        job = copy.deepcopy(jobs_in[i % len(jobs_in)])
        job["job_id"] = first_id + i
        jobs.append(job)
    return json.dumps({"jobs": jobs, "meta": meta, "errors": [], "warnings": []}).encode()
