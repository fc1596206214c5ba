"""slurmdbd records that are not settled yet are marked provisional, never final."""

from __future__ import annotations

import json
from typing import Any

from cc_slurm_adapter.mapping import Site, map_job
from cc_slurm_adapter.slurm.parse import parse_jobs
from tests.conftest import FIXTURES

RECORDED = FIXTURES / "slurm" / "22.05"


def test_22_05_placeholder_then_real_record() -> None:
    [placeholder] = parse_jobs((RECORDED / "sacct_quick_placeholder.json").read_bytes()).jobs
    [final] = parse_jobs((RECORDED / "sacct_quick_final.json").read_bytes()).jobs
    assert placeholder.job_id == final.job_id
    assert placeholder.provisional and placeholder.name == "allocation"
    assert not final.provisional and final.partition == "debug"
    mapped = map_job(placeholder, Site())
    assert (mapped.start, mapped.stop) == (None, None)
    assert mapped.skip_reason is not None and "provisional" in mapped.skip_reason
    assert map_job(final, Site()).stop is not None


def test_final_state_without_end_is_provisional_except_node_fail() -> None:
    doc: Any = json.loads((RECORDED / "sacct_quick_final.json").read_bytes())
    job = doc["jobs"][0]
    job["time"]["end"] = 0
    [replayed] = parse_jobs(json.dumps(doc).encode()).jobs
    assert replayed.state == "COMPLETED" and replayed.end_time is None
    assert replayed.provisional
    job["state"]["current"] = "NODE_FAIL"  # 21.08 keeps NODE_FAIL records without an end
    [node_fail] = parse_jobs(json.dumps(doc).encode()).jobs
    assert not node_fail.provisional
