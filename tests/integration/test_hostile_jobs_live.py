"""Hostile job fields on real Slurm (issue 10, points 1 and 7), on every live release.

testuser submits jobs whose name or comment mimic scontrol's ``Key=value`` text (the
issue's ``x UserId=root(0) Account=evilacct Nodes=evil1 CPU_IDs=0-63``, the same in the
comment, a comment with a newline and a fake ``JobId=`` record) and one job with a
non-UTF-8 byte in its name. Each runs pinned on a node (``HOSTS``), so the expected user
(testuser), account (the testbed's account for testuser) and hosts come from the
submission. They are read through the Slurm layer (``SlurmSource.details`` with
the scontrol text and, where it filters, ``squeue --json``) and through ``convert
--job``; sacct's own answer is checked to say the same.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from cc_slurm_adapter.slurm.parse import parse_jobs
from cc_slurm_adapter.slurm.runner import CommandRunner
from cc_slurm_adapter.slurm.source import SlurmSource, detect_slurm
from cc_slurm_adapter.testing.demo import convert_job
from cc_slurm_adapter.testing.slurm_testbed import SlurmTestbed

pytestmark = pytest.mark.slurm

SPOOF = "x UserId=root(0) Account=evilacct Nodes=evil1 CPU_IDs=0-63"
JOBS: dict[str, tuple[str, ...]] = {
    "name": ("-J", SPOOF),
    "comment": ("-J", "c1", "--comment", SPOOF),
    "newline": ("-J", "a\nb UserId=root(0)", "--comment",
                "c\nJobId=1 JobName=x UserId=root(0) Account=evilacct NodeList=evil1"),
    # surrogateescape: the argv byte is 0xE9, as `sbatch -J $'gpu\xe9x'`
    "bytes": ("-J", "gpu\udce9x"),
}


# Where each job runs, so that all four run at once: node1 has 2 CPUs (no SMT, one per
# task), node2 2x2 cores x 2 threads (a task gets a whole core: 2 CPUs). Four jobs pinned
# to node1 would run two at a time, and the last two start only when the first two end.
HOSTS = {"name": "node1", "comment": "node1", "newline": "node2", "bytes": "node2"}
CPUS = {"node1": 1, "node2": 2}


def _submit_all(tb: SlurmTestbed) -> dict[str, int]:
    ids: dict[str, int] = {}
    for key, args in JOBS.items():
        ids[key] = tb.submit(["-w", HOSTS[key], "-n", "1", "--mem=32", "-t", "5", *args,
                              "--wrap", "sleep 120"])
    return ids


def _cancel(tb: SlurmTestbed, ids: dict[str, int]) -> None:
    for job_id in ids.values():
        tb.run("scancel", str(job_id), check=False)


def test_hostile_fields_leave_user_account_hosts_intact(slurm_cluster: SlurmTestbed,
                                                        tmp_path: Path) -> None:
    tb = slurm_cluster
    ids = _submit_all(tb)
    try:
        for job_id in ids.values():
            tb.wait_state(job_id, "RUNNING", timeout=180)
        expected = ("testuser", tb.account)
        # what Slurm's accounting says (JSON fields no job text reaches)
        for job_id in ids.values():
            acct = [j for j in parse_jobs(tb.run("sacct", "--json", "-X", "-j", str(job_id))
                                          .stdout.encode(errors="surrogateescape"),
                                          source="sacct").jobs if j.job_id == job_id]
            assert acct and (acct[0].user, acct[0].account) == expected

        async def details(mode: str) -> dict[int, Any]:
            runner = CommandRunner(timeout=60, env=tb.env, bin_dir=str(tb.bin_dir))
            info = await detect_slurm(runner, timeout=60)
            source = SlurmSource(runner, info, timeout=60, detail_mode=mode)
            return {r.job_id: r for r in await source.details(list(ids.values()))}

        modes = ["scontrol-text"]
        if tb.release != "22.05":  # 22.05's squeue --json ignores -j; cheap elsewhere
            modes.append("squeue-json")
        for mode in modes:
            found = asyncio.run(details(mode))
            # the non-UTF-8 job costs no other job
            assert sorted(found) == sorted(ids.values()), mode
            for key, job_id in ids.items():
                rec = found[job_id]
                host = HOSTS[key]
                assert (rec.user, rec.account, rec.nodes) == (*expected, (host,)), (mode, key)
                assert {r.hostname for r in rec.resources} == {host}, (mode, key)
                assert rec.resources[0].cpus == CPUS[host], (mode, key)
            assert found[ids["name"]].name == SPOOF
            assert "\ufffd" in (found[ids["bytes"]].name or "")

        config = tmp_path / "config.json"
        config.write_text(json.dumps({"ccRestUrl": "http://127.0.0.1:9", "ccRestJwt": "x"}))
        config.chmod(0o600)
        adapter = Path(sys.executable).with_name("cc-slurm-adapter")
        for key, job_id in ids.items():
            line = convert_job(adapter, config, tb.env, job_id)
            start = line["start_job"]
            assert start is not None, key
            assert (start["user"], start["project"]) == expected, key
            assert [r["hostname"] for r in start["resources"]] == [HOSTS[key]], key
            assert len(start["resources"][0].get("hwthreads") or [0]) <= 2, key
    finally:
        _cancel(tb, ids)
