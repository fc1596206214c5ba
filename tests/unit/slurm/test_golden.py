"""Exact values for hand-picked jobs of every release (the golden table).

Each expectation was written by reading the raw JSON, not the parser's output.
Files live in tests/fixtures/slurm-json/ (copied, see its PROVENANCE.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cc_slurm_adapter.slurm import GpuAlloc, JobRecord, parse_jobs


def _gpus(kind: str | None, *idx: int) -> tuple[GpuAlloc, ...]:
    return tuple(GpuAlloc(index=i, type=kind) for i in idx)


GOLDEN: list[tuple[str, int, dict[str, Any]]] = [
    # 21.08 squeue, layout A (index-keyed dict), raw int exit code, TRES mem in G
    ("21.08/squeue_21.08.5_rivosinc.json", 26515966, dict(
        source="squeue", slurm_version="21.08.5", cluster="rivos", state="RUNNING",
        user="bkd", account="account1", partition="hw-l", nodes=("cs75",),
        submit_time=1684114900, start_time=1684114921, end_time=None,
        time_limit_min=30240, cpus=1, requested_memory_mb=64000,
        flags=("JOB_CPUS_SET", "JOB_ACCRUE_OVER", "JOB_WAS_RUNNING", "JOB_MEM_SET"),
        _exit=("SUCCESS", 0, None), _cores={"cs75": ((1, 0),)}, _memory={"cs75": 64000})),
    # 21.08 squeue: pending array meta-record (task id null, task string "1-10")
    ("21.08/squeue_21.08.5_rivosinc.json", 58948420, dict(
        state="PENDING", state_reason="Dependency", array_job_id=58948420,
        array_task_id=None, array_task_string="1-10", start_time=None, end_time=None,
        nodes=(), resources=(), shared="oversubscribe", time_limit_min=1439)),
    # 21.08 sacct: REQUEUED, GPU count from TRES, name null for non-gres TRES
    ("21.08/sacct_21.08.8_SARC.json", 55978384, dict(
        source="sacct", cluster="cedar", state="REQUEUED", user="purah",
        account="rrg-bengioy-ad_gpu", nodes=("cdr896",), gpus=1, cpus=4,
        requested_memory_mb=40960, time_limit_min=1440, submit_time=1673275023,
        start_time=1673275023, end_time=1673369386, resources=())),
    # 21.08 sacct: array task (array.job_id 1, task_id 7) that ended NODE_FAIL
    ("21.08/sacct_21.08.8-2_clockwork_sacct_1.json", 10, dict(
        state="NODE_FAIL", array_job_id=1, array_task_id=7)),
    # 22.05 sacct: FAILED but exit_code SUCCESS/0 (the dbv0.0.38 bug, kept as reported)
    ("22.05/sacct_22.05.9_SARC.json", 20247445, dict(
        state="FAILED", cluster="narval", array_job_id=20247445, array_task_id=100,
        nodes=("ng30103", "ng30203", "ng30706", "ng30707"), node_count=4, gpus=16, cpus=96,
        requested_memory_mb=262144, time_limit_min=2880, _exit=("SUCCESS", 0, None))),
    # 23.02 squeue: untyped gres gpu:8(IDX:0-7), layout B, NO_VAL structs
    ("23.02/squeue_23.02.6_SlurmTUI_jeanzay.json", 1618871, dict(
        data_parser="v0.0.39", cluster="data-center", state="RUNNING", gpus=8, cpus=16,
        nodes=("data-center-ia830",), requested_memory_mb=120000, time_limit_min=6000,
        _gpus={"data-center-ia830": _gpus(None, *range(8))},
        _cores={"data-center-ia830": tuple((0, c) for c in range(8))},
        _memory={"data-center-ia830": 120000})),
    # 23.02 sacct: running (time.end 0 → None), limit as NO_VAL struct, script ""
    ("23.02/sacct_23.02.6_SARC.json", 4, dict(
        state="RUNNING", cluster="mila", nodes=("mila02",), end_time=None,
        start_time=1613725209, time_limit_min=7200, gpus=2, requested_memory_mb=32768,
        batch_script=None)),
    # 23.11 sacct: state.current became a list
    ("23.11/sacct_23.11.5_SARC.json", 4, dict(
        state="RUNNING", state_flags=(), data_parser="v0.0.40", time_limit_min=7200,
        _exit=("SUCCESS", 0, None))),
    # 23.11 slurmrestd: a zero-count second type "gpu:h200:0(IDX:)" on each node
    ("23.11/slurmrestd_v0.0.40/slurm-job-gpus-per-node.json", 795, dict(
        source="slurmrestd", state="RUNNING", nodes=("ia1", "ia2"), gpus=2,
        _gpus={"ia1": _gpus("h100", 0), "ia2": _gpus("h100", 0)},
        _cores={"ia1": ((0, 0),), "ia2": ((0, 0),)})),
    # 23.11: two GPU types on one node
    ("23.11/slurmrestd_v0.0.40/slurm-job-gpus-multi-types.json", 796, dict(
        nodes=("ia2",), gpus=2,
        _gpus={"ia2": (GpuAlloc(index=0, type="h100"), GpuAlloc(index=2, type="h200"))})),
    # 23.11: timeout, verbose exit code with signal
    ("23.11/slurmrestd_v0.0.40/slurm-job-timeout.json", 776, dict(
        state="TIMEOUT", state_reason="TimeLimit", start_time=1747045576,
        end_time=1747045655, submit_time=1747045574, time_limit_min=1,
        requested_memory_mb=512, _exit=("SIGNALED", None, 15),
        _cores={"cn1": ((0, 0),)}, _memory={"cn1": 512})),
    # 23.11: failed job, verbose exit code ERROR/1
    ("23.11/slurmrestd_v0.0.40/slurm-job-failed.json", 778, dict(
        state="FAILED", start_time=1747045579, end_time=1747045580, _exit=("ERROR", 1, None))),
    # 24.05: pending with job_resources {} and an expected start that must be dropped
    ("24.05/slurmrestd_v0.0.41/slurm-job-pending.json", 649730, dict(
        state="PENDING", state_reason="BeginTime", start_time=None, end_time=None,
        submit_time=1747754494, nodes=(), resources=(), cpus=64,
        requested_memory_mb=32768)),
    # 24.11 v0.0.42: layout C with all cores listed, two types on one node
    ("24.11/slurmrestd_v0.0.42/slurm-job-gpus-multi-types.json", 6356, dict(
        nodes=("ia1",), gpus=2,
        _gpus={"ia1": (GpuAlloc(index=0, type="h100"), GpuAlloc(index=2, type="h200"))},
        _cores={"ia1": ((0, 0),)}, _topo={"ia1": (2, 16)}, _memory={"ia1": 512})),
    # 25.11 v0.0.44: multi-node GPU job, sluid and submit_line
    ("25.11/slurmrestd_v0.0.44/slurm-job-gpus-multi-nodes.json", 5679, dict(
        data_parser="v0.0.44", slurm_version="25.11.0", cluster="hpc", state="RUNNING",
        nodes=("gpu1", "gpu2"), node_count=2, cpus=2, gpus=8, requested_memory_mb=1024,
        sluid="sDXHK9Q5PW3N00", user="dperez", account="acoustic", partition="gpu",
        submit_line="sbatch --time 1 --wrap sleep 30 && true --partition gpu --gpus 8",
        _gpus={"gpu1": _gpus("h100", 0, 1, 2, 3), "gpu2": _gpus("h100", 0, 1, 2, 3)},
        _cores={"gpu1": ((0, 0),), "gpu2": ((0, 0),)}, _topo={"gpu1": (2, 16)})),
    # 25.11 v0.0.44: pending with job_resources null
    ("25.11/slurmrestd_v0.0.44/slurm-job-pending.json", 5750, dict(
        state="PENDING", start_time=None, end_time=None, nodes=(), resources=(),
        cpus=128, node_count=2, requested_memory_mb=65536, time_limit_min=1)),
    # 25.11 sacct family: timeout; exit SUCCESS/0 as Slurm reports it
    ("25.11/slurmrestd_v0.0.44/slurmdb-job-timeout.json", 5737, dict(
        source="slurmrestd-db", state="TIMEOUT", cluster="hpc", user="vhartman",
        account="biology", partition="normal", nodes=("cn1",), start_time=1762942457,
        end_time=1762942539, submit_time=1762942456, time_limit_min=1, cpus=1,
        requested_memory_mb=512, gpus=None, _exit=("SUCCESS", 0, None))),
]


def _job(path: Path, job_id: int) -> JobRecord:
    result = parse_jobs(path.read_bytes())
    matches = [j for j in result.jobs if j.job_id == job_id]
    assert len(matches) == 1, f"job {job_id} not found exactly once in {path.name}"
    return matches[0]


@pytest.mark.parametrize(("rel", "job_id", "expected"), GOLDEN,
                         ids=[f"{r.split('/')[0]}-{j}" for r, j, _ in GOLDEN])
def test_golden(slurm_json: Path, rel: str, job_id: int, expected: dict[str, Any]) -> None:
    job = _job(slurm_json / rel, job_id)
    assert job.warnings == ()
    for field, want in expected.items():
        if field == "_exit":
            assert job.exit_code is not None
            assert (job.exit_code.status, job.exit_code.return_code,
                    job.exit_code.signal) == want
        elif field == "_gpus":
            assert {r.hostname: r.gpus for r in job.resources} == want
        elif field == "_cores":
            assert {r.hostname: r.cores for r in job.resources} == want
        elif field == "_memory":
            assert {r.hostname: r.memory_mb for r in job.resources} == want
        elif field == "_topo":
            by_host = {r.hostname: (r.sockets, r.cores_per_socket) for r in job.resources}
            for host, topo in want.items():
                assert by_host[host] == topo
        else:
            assert getattr(job, field) == want, field


def test_golden_table_is_big_enough() -> None:
    assert len(GOLDEN) >= 15
