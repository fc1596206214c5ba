"""TRES/memory helpers and the lazy per-job decode of large documents."""

from __future__ import annotations

import json

import pytest

from cc_slurm_adapter.errors import SlurmParseError
from cc_slurm_adapter.slurm.parse import decode_document, parse_jobs
from cc_slurm_adapter.slurm.tres import (
    ctld_memory,
    db_memory,
    db_tres,
    gpus_from_tres,
    gpus_requested,
    mem_to_mb,
    parse_tres_string,
)


@pytest.mark.parametrize(("value", "mb"), [
    ("120000M", 120000), ("62.50G", 64000), ("512", 512), (2048, 2048), ("1T", 1048576),
    ("1024K", 1), ("", None), ("x", None), ("1e400G", None), (-1, None), (True, None),
])
def test_mem_to_mb(value: object, mb: int | None) -> None:
    assert mem_to_mb(value) == mb


def test_tres_strings_and_gpus() -> None:
    assert parse_tres_string("(null)") == {} and parse_tres_string(None) == {}
    tres = parse_tres_string("cpu=3,mem=300M,node=2,billing=3,gres/gpu=4,gres/gpu:tesla=4")
    assert gpus_from_tres(tres) == 4
    assert gpus_from_tres({"gres/gpu:a100": "2", "gres/gpu:h100": "1"}) == 3
    assert gpus_from_tres({"cpu": "1"}) is None
    assert gpus_requested("gres:gpu:2", 2) == 4  # 22.05/23.02 text and JSON
    assert gpus_requested("gres/gpu:tesla:1", 1) == 1 and gpus_requested("(null)", 1) is None
    assert db_tres([{"type": "cpu", "name": None, "count": 2}, {"type": "energy", "count": -2},
                    {"type": "gres", "name": "gpu", "count": 1}, "odd"]) == {
        "cpu": "2", "gres/gpu": "1"}


def test_memory_fallbacks() -> None:
    # allocation first, then the request, then per node × nodes, per CPU × CPUs
    assert ctld_memory("cpu=1,mem=2G", "mem=1G", None, None, 1, 1, None) == 2048
    assert ctld_memory({}, {"mem": "200M"}, None, None, 2, 2, None) == 200
    assert ctld_memory(None, None, "1G", None, 4, 2, None) == 2048  # text MinMemoryNode=1G
    assert ctld_memory(None, None, None, "100M", 3, 2, None) == 300  # MinMemoryCPU=100M
    assert ctld_memory(None, None, {"set": True, "number": 512}, None, 1, 2, None) == 1024
    assert ctld_memory(None, None, None, None, 1, 1, None) is None
    assert db_memory({"memory": (1 << 63) | 100}, {}, {}, 4, 1) == 400  # ≤ 23.02 per-CPU flag
    assert db_memory({"memory": 1000}, {}, {}, 4, 2) == 2000


def test_odd_job_elements_cost_only_themselves() -> None:
    meta = {"plugin": {"type": "openapi/v0.0.38"},
            "Slurm": {"version": {"major": 22, "minor": 5, "micro": 8}, "release": "22.05.8"}}
    doc = {"meta": meta, "jobs": [1, "x", None, {"job_id": 7, "job_state": "RUNNING"},
                                  {"job_id": "bad"}, {"job_id": 8, "job_state": ["PENDING"]}]}
    result = parse_jobs(json.dumps(doc).encode())
    assert [j.job_id for j in result.jobs] == [7, 8] and result.skipped == 4
    # `jobs` not a list is no Slurm document: an error, never "no jobs in this window"
    with pytest.raises(SlurmParseError):
        parse_jobs(json.dumps({"meta": meta, "jobs": {"7": {}}}))
    # Infinity tokens (dumps before 24.05.4) go through the slow path, job by job
    text = json.dumps({"meta": meta, "jobs": [{"job_id": 9, "job_state": "RUNNING",
                                               "cpus": 1}]}).replace('"cpus": 1',
                                                                     '"cpus": Infinity')
    (job,) = parse_jobs(text).jobs
    assert (job.job_id, job.cpus) == (9, None)
    assert decode_document(b'{"meta": {}}').jobs is None
