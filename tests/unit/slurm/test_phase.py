"""The one job lifecycle model (``slurm.phase``) on every state encoding of every release.

The expected phases are written from Slurm's documented states and flags
(``job_state_codes.html``: 12 base states, 17 flags) and from how each release writes
them: 23.11+ JSON lists (base first, then flags), ≤ 23.02 JSON and every text output
one name from ``job_state_string()`` (a flag name instead of the base when a flag is
set), sacct's stored run states (REQUEUED, RESIZING, REVOKED).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cc_slurm_adapter.mapping import map_job
from cc_slurm_adapter.mapping.payload import shared_value
from cc_slurm_adapter.slurm import parse_jobs
from cc_slurm_adapter.slurm.phase import Phase, is_requeue, job_phase
from cc_slurm_adapter.slurm.record import JobRecord, NodeResources
from cc_slurm_adapter.slurm.text import parse_scontrol_jobs
from cc_slurm_adapter.slurm.values import split_state

from ..mapping.conftest import make_site
from .conftest import LIVE_FIXTURES, SLURM_JSON

P, R, E, U = Phase.PENDING, Phase.RUNNING, Phase.ENDED, Phase.UNKNOWN
FINAL = ["COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
         "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY"]

# (Slurm's state value as a release writes it, ctld phase, db phase, requeue marker)
LISTS: list[tuple[Any, Phase, Phase, bool]] = [
    (["PENDING"], P, P, False),
    (["PENDING", "REQUEUED"], P, E, True),
    (["PENDING", "REQUEUE_HOLD"], P, E, True),
    (["PENDING", "REQUEUE_FED"], P, E, True),
    (["PENDING", "REQUEUE_HOLD", "SPECIAL_EXIT"], P, E, True),
    (["PENDING", "COMPLETING", "REQUEUED"], P, E, True),  # the old run still releasing
    (["PENDING", "RESV_DEL_HOLD"], P, P, False),
    (["PENDING", "EXPEDITING"], P, P, False),
    (["PENDING", "LAUNCH_FAILED"], P, P, False),
    (["PENDING", "REVOKED"], E, E, False),
    (["RUNNING"], R, R, False),
    (["RUNNING", "CONFIGURING"], R, R, False),
    (["RUNNING", "POWER_UP_NODE"], R, R, False),
    (["RUNNING", "SIGNALING"], R, R, False),
    (["RUNNING", "STOPPED"], R, R, False),
    (["RUNNING", "RECONFIG_FAIL"], R, R, False),
    (["RUNNING", "RESIZING"], R, E, False),
    (["SUSPENDED"], R, R, False),
    *(([s], E, E, False) for s in FINAL),
    *(([s, "COMPLETING"], R, R, False) for s in FINAL),
    *(([s, "STAGE_OUT"], R, R, False) for s in FINAL),
    (["COMPLETED", "UPDATE_DB"], R, R, False),
    (["COMPLETED", "COMPLETING", "STAGE_OUT"], R, R, False),
    (["FAILED", "LAUNCH_FAILED"], E, E, False),
    (["CANCELLED", "REQUEUED"], P, E, True),
    (["COMPLETING", "COMPLETED"], R, R, False),  # order inside the list does not matter
    (["UNKNOWN"], U, U, False),
    ([], U, U, False),
    (["WEIRD_NEW_STATE"], U, U, False),
]
# ≤ 23.02 JSON, scontrol -o and squeue %T: one name, the flag's when one is set
STRINGS: list[tuple[Any, Phase, Phase, bool]] = [
    ("PENDING", P, P, False),
    ("RUNNING", R, R, False),
    ("SUSPENDED", R, R, False),
    *((s, E, E, False) for s in FINAL),
    ("COMPLETING", R, R, False),
    ("STAGE_OUT", R, R, False),
    ("UPDATE_DB", R, R, False),
    ("CONFIGURING", R, R, False),
    ("POWER_UP_NODE", R, R, False),
    ("SIGNALING", R, R, False),
    ("STOPPED", R, R, False),
    ("RESIZING", R, E, False),
    ("REQUEUED", P, E, True),
    ("REQUEUE_HOLD", P, E, True),
    ("REQUEUE_FED", P, E, True),
    ("SPECIAL_EXIT", P, E, True),
    ("REVOKED", E, E, False),
    ("RESV_DEL_HOLD", P, P, False),
    ("completed ", E, E, False),  # 21.08 wrote some values with trailing blanks
    ("", U, U, False),
    (None, U, U, False),
    ("UNKNOWN", U, U, False),
    ("LAUNCH_FAILED", U, U, False),  # a flag job_state_string() never prints alone
    ("WEIRD_NEW_STATE", U, U, False),
]


@pytest.mark.parametrize(("value", "ctld", "db", "requeued"), LISTS + STRINGS,
                         ids=lambda v: str(v))
def test_phase_table(value: Any, ctld: Phase, db: Phase, requeued: bool) -> None:
    state, flags = split_state(value)
    assert job_phase(state, flags, family="ctld") is ctld
    assert job_phase(state, flags, family="db") is db
    assert is_requeue(state, flags) is requeued


def test_every_documented_name_has_a_phase() -> None:
    documented = {"PENDING", "RUNNING", "SUSPENDED", *FINAL, "COMPLETING", "CONFIGURING",
                  "POWER_UP_NODE", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING",
                  "RESV_DEL_HOLD", "REVOKED", "SIGNALING", "SPECIAL_EXIT", "STAGE_OUT",
                  "STOPPED", "UPDATE_DB"}
    named = {str(v).strip().upper() for v, *_ in STRINGS if v}
    assert documented <= named


# ------------------------------------------------------------------ parsed records


def _json_files() -> list[Path]:
    roots = [LIVE_FIXTURES, SLURM_JSON, Path("/work/shared/slurm-json")]
    out: list[Path] = []
    for root in roots:
        if root.is_dir():
            out += [p for p in sorted(root.rglob("*.json"))
                    if p.name not in ("provenance.json", "files.json", "jobs.json", "meta.json")
                    and "specs" not in p.parts]
    return out


def _records(path: Path) -> list[JobRecord]:
    try:
        return parse_jobs(path.read_bytes()).jobs
    except Exception:  # not a job document (node listings, partial files)
        return []


def _text_records() -> list[JobRecord]:
    out: list[JobRecord] = []
    for path in sorted(LIVE_FIXTURES.rglob("scontrol_show_job_d_o_*.txt")):
        out += parse_scontrol_jobs(path.read_text(), cluster="testcluster")
    return out


def test_no_fixture_yields_a_zero_length_stop_unless_slurm_says_so() -> None:
    records = [r for p in _json_files() for r in _records(p)] + _text_records()
    assert len(records) > 100
    stops = 0
    for record in records:
        mapped = map_job(record, make_site("v1.5", topology=False, cluster="fixture"))
        if mapped.stop is None:
            continue
        stops += 1
        assert record.phase is Phase.ENDED, record
        start, stop = mapped.stop["startTime"], mapped.stop["stopTime"]
        assert stop >= start
        if stop == start:  # only when Slurm's own end is the start (or before it)
            assert record.end_time is not None and record.start_time is not None
            assert record.end_time <= record.start_time, record
    assert stops > 20


def test_parsers_set_phase_requeue_restarts_and_sluid() -> None:
    recs = {r.job_id: r for r in _records(
        SLURM_JSON / "21.08" / "sacct_21.08.8-2_clockwork_sacct_1.json")}
    requeued = recs[20]  # state "REQUEUED" with its end: that run ended
    assert (requeued.phase, requeued.requeued, requeued.state) == (E, True, "REQUEUED")
    assert requeued.end_time == 1680215981
    sacct = {r.job_id: r for r in _records(LIVE_FIXTURES / "26.05" / "sacct_after.json")}
    assert sacct[1].sluid == "s88HM89XTWAK00" and sacct[1].restart_count == 0
    ctld = {r.job_id: r for r in _records(LIVE_FIXTURES / "26.05" / "squeue_running1.json")}
    assert ctld[1].sluid == "s88HM89XTWAK00" and ctld[1].phase is R
    assert ctld[9].phase is P and ctld[9].restart_count == 0
    text = {r.job_id: r for r in parse_scontrol_jobs(
        (LIVE_FIXTURES / "26.05" / "scontrol_show_job_d_o_after.txt").read_text())}
    assert text[1].phase is E and text[1].restart_count == 0
    assert text[1].sluid == "s88HM89XTWAK00"


def test_ctld_requeued_and_unknown_records() -> None:
    # ≤ 23.02 squeue (v0.0.37/38 string) of a job being requeued: pending again
    doc = {"meta": {"plugin": {"type": "openapi/v0.0.38"}}, "jobs": [
        {"job_id": 5, "job_state": "REQUEUED", "start_time": 1700000000,
         "end_time": 1700000100, "nodes": "node1", "cluster": "c"},
        {"job_id": 6, "start_time": 1700000000, "end_time": 1700000100, "nodes": "node1",
         "cluster": "c", "submit_time": 1699999999},
        {"job_id": 7, "job_state": "RESIZING", "start_time": 1700000000,
         "end_time": 1700000100, "nodes": "node1", "cluster": "c"},
    ]}
    jobs = {r.job_id: r for r in parse_jobs(json.dumps(doc)).jobs}
    assert (jobs[5].phase, jobs[5].requeued, jobs[5].start_time, jobs[5].end_time) == (
        P, True, None, None)
    assert jobs[6].phase is U and jobs[6].end_time is None
    assert jobs[7].phase is R and jobs[7].end_time is None
    for job in jobs.values():
        assert map_job(job, make_site("v1.5", topology=False)).stop is None


def test_completing_keeps_its_real_end_but_no_stop() -> None:
    doc = {"meta": {"plugin": {"type": "", "data_parser": "data_parser/v0.0.42"}},
           "jobs": [{"job_id": 8, "job_state": ["COMPLETED", "COMPLETING"],
                     "start_time": {"set": True, "number": 1700000000},
                     "end_time": {"set": True, "number": 1700000100},
                     "nodes": "node1", "cluster": "c", "user_name": "alice"}]}
    (job,) = parse_jobs(json.dumps(doc)).jobs
    assert job.phase is R and job.end_time == 1700000100
    mapped = map_job(job, make_site("v1.5", topology=False))
    assert mapped.start is not None and mapped.stop is None


# -------------------------------------------------------------------- 26.05 shared


@pytest.mark.parametrize("name", ["sacct_after.json", "scontrol_show_job_after.json"])
def test_2605_exclusive_job_is_not_shared(name: str) -> None:
    # jobs.json: job 9 was submitted with -N2 --exclusive, job 4 without
    jobs = {r.job_id: r for r in _records(LIVE_FIXTURES / "26.05" / name)}
    assert shared_value(jobs[9]) == "none"
    assert shared_value(jobs[4]) == "multi_user"
    mapped = map_job(jobs[9], make_site("v1.5", testbed=True))
    assert mapped.start is not None and mapped.start["shared"] == "none"


def test_2605_exclusive_text() -> None:
    text = {r.job_id: r for r in parse_scontrol_jobs(
        (LIVE_FIXTURES / "26.05" / "scontrol_show_job_d_o_after.txt").read_text())}
    assert shared_value(text[9]) == "none" and shared_value(text[4]) == "multi_user"


# -------------------------------------------------------------------- detail_rank


def _rec(**kw: Any) -> JobRecord:
    return JobRecord(source="squeue", job_id=1, **kw)


def test_detail_rank_orders_views() -> None:
    none = _rec()
    names = _rec(nodes=("node1", "node2"))
    one_name = _rec(nodes=("node2",))
    counts = _rec(nodes=("node1",), resources=(NodeResources(hostname="node1", cpus=2),))
    ids_one = _rec(nodes=("node2",), resources=(
        NodeResources(hostname="node2", cpu_ids=(0, 1)),))
    ids_two = _rec(nodes=("node1", "node2"), resources=(
        NodeResources(hostname="node1", cores=((0, 0),)),
        NodeResources(hostname="node2", cpu_ids=(0, 1)),))
    mixed = _rec(nodes=("node1", "node2"), resources=(
        NodeResources(hostname="node1", cpu_ids=(0,)), NodeResources(hostname="node2")))
    assert none.detail_rank == (0, 0)
    assert one_name.detail_rank == (1, 1) and names.detail_rank == (1, 2)
    assert counts.detail_rank == (2, 1)
    assert ids_one.detail_rank == (3, 1) and ids_two.detail_rank == (3, 2)
    assert mixed.detail_rank == (1, 2)  # the poorest node decides the level
    ordered = [none, one_name, names, counts, ids_one, ids_two]
    assert sorted(ordered, key=lambda r: r.detail_rank) == ordered
    # a COMPLETING job releasing node2 (issue 10 point 4): the earlier view is richer
    assert ids_one.detail_rank > none.detail_rank
