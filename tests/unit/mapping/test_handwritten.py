"""The mapping against payloads written by hand from the raw Slurm output.

Unlike ``golden.json`` (a regression snapshot of the mapper's own output), every
expected value in ``tests/fixtures/mapping/handwritten/expectations.json`` was read
from the Slurm JSON or text by a person and written down as a literal, with a note of
the field and the rule (cc-backend contract, upstream's documented mapping) it comes
from. This test only runs the product (parser → ``map_job``) and compares; nothing
expected is computed here.

The cases cover a GPU job, SMT, two nodes, an array task, cancelled, timeout, failed,
node_fail, an ``--exclusive`` job (24.11 ``shared``, 26.05 sacct ``exclusive``), the two
components of a heterogeneous job (recorded on the 22.05 testbed for this test, see
``handwritten/PROVENANCE.md``), a job that never started, and profile v1.4 for three.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cc_slurm_adapter.mapping import Site, map_job
from cc_slurm_adapter.profiles import PROFILES
from cc_slurm_adapter.slurm import JobRecord, parse_jobs
from cc_slurm_adapter.slurm.parse import parse_nodes
from cc_slurm_adapter.slurm.text import parse_scontrol_jobs
from cc_slurm_adapter.topology import Topology

from .conftest import FIXTURES

HANDWRITTEN = FIXTURES / "mapping" / "handwritten" / "expectations.json"
DOC: dict[str, Any] = json.loads(HANDWRITTEN.read_text())
CASES: dict[str, dict[str, Any]] = {case["name"]: case for case in DOC["cases"]}

# Where the product disagrees with a hand-written expectation that was re-checked
# against the raw output: kept as the expectation, marked strict xfail (so a fix shows).
# The product and this set disagreed once: a 21.08 NODE_FAIL record with time.end 0 got
# a stop at start + elapsed; slurmdbd fills ``elapsed`` of a record without an end as
# "now - start" at query time (as_mysql_jobacct_process.c), so that was when sacct ran.
# The product now sends no stop there. A disagreement found later goes here, as
# (part, case name) -> reason, and the test is xfail(strict=True) until it is settled.
KNOWN_DISAGREEMENTS: dict[tuple[str, str], str] = {}


def _site(name: str, profile: str) -> Site:
    spec = DOC["sites"][name]
    topology = Topology.from_json([json.loads((FIXTURES / p).read_text())
                                   for p in spec["clusterFiles"]])
    pci = {re.compile(pattern): tuple(ids) for pattern, ids in spec["gpuPciAddrs"].items()}

    def lookup(hostname: str) -> tuple[str, ...] | None:
        for pattern, ids in pci.items():
            if pattern.search(hostname):
                return ids
        return None

    def keep_all(_hostname: str) -> bool:  # no ignoreHosts in these cases
        return False

    return Site(profile=PROFILES[profile], gpu_pci_addresses=lookup,
                is_ignored_host=keep_all, topology=topology)


def _record(case: dict[str, Any]) -> JobRecord:
    path: Path = FIXTURES / case["file"]
    nodes = parse_nodes((FIXTURES / case["nodes"]).read_bytes()) if "nodes" in case else None
    if case["reader"] == "scontrol-text":
        records = parse_scontrol_jobs(path.read_bytes(), cluster=case["cluster"],
                                      topology=nodes)
    else:
        records = parse_jobs(path.read_bytes(), topology=nodes).jobs
    matches = [r for r in records if r.job_id == case["jobId"]]
    assert len(matches) == 1, f"job {case['jobId']} is in {case['file']} once"
    return matches[0]


def _expected_start(case: dict[str, Any]) -> dict[str, Any] | None:
    start = case["start"]
    if "is" in start and not isinstance(start["is"], dict | list):
        assert start["is"] is None
        return None
    return {key: spec["is"] for key, spec in start.items() if "is" in spec}


def _comparable(payload: dict[str, Any], job_id: int) -> dict[str, Any]:
    """hwthreads as sorted lists (their order means nothing to cc-backend); slurmInfo
    only checked to be a text about this job (it is our own rendering)."""
    out = dict(payload)
    out["resources"] = [
        {**r, "hwthreads": sorted(r["hwthreads"])} if "hwthreads" in r else dict(r)
        for r in payload["resources"]
    ]
    meta = dict(payload.get("metaData") or {})
    if "slurmInfo" in meta:
        info = meta["slurmInfo"]
        assert isinstance(info, str) and f"JobId={job_id}" in info, info
        meta["slurmInfo"] = "<text>"
    out["metaData"] = meta
    return out


def _params(part: str) -> list[Any]:
    out = []
    for name in CASES:
        reason = KNOWN_DISAGREEMENTS.get((part, name))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(name, id=name, marks=marks))
    return out


def test_the_set_covers_what_was_asked() -> None:
    assert len(CASES) >= 10
    texts = " ".join(c["what"].lower() + " " + c["name"] for c in CASES.values())
    for word in ("gpu", "smt", "two-node", "array", "node_fail", "exclusive", "het",
                 "never"):
        assert word in texts, word
    states = {c["stop"]["is"]["jobState"] for c in CASES.values() if c["stop"]["is"]}
    assert {"completed", "cancelled", "timeout", "failed"} <= states
    assert {c["profile"] for c in CASES.values()} == {"v1.5", "v1.4"}
    assert {c["reader"] for c in CASES.values()} == {"json", "scontrol-text"}


def test_every_expected_field_names_its_source() -> None:
    for case in CASES.values():
        for part in ("start", "stop"):
            spec = case[part]
            if "from" in spec:  # a whole payload that is null
                assert spec["from"].strip()
                continue
            for key, field in spec.items():
                assert set(field) in ({"is", "from"}, {"absent"}), (case["name"], key)
                text = field.get("from") or field.get("absent")
                assert isinstance(text, str) and text.strip(), (case["name"], key)


@pytest.mark.parametrize("name", _params("start"))
def test_start_payload(name: str) -> None:
    case = CASES[name]
    record = _record(case)
    mapped = map_job(record, _site(case["site"], case["profile"]))
    expected = _expected_start(case)
    if expected is None:
        assert mapped.start is None
        return
    assert mapped.start is not None, mapped.warnings
    assert _comparable(mapped.start, record.job_id) == expected


@pytest.mark.parametrize("name", _params("stop"))
def test_stop_payload(name: str) -> None:
    case = CASES[name]
    mapped = map_job(_record(case), _site(case["site"], case["profile"]))
    assert mapped.stop == case["stop"]["is"]
