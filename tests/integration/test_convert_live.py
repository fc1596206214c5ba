"""Live Slurm → the adapter's Slurm layer and mapping → the strict cc-backend stand-in.

On each live release: real jobs are read while they run and after they end with
``cc-slurm-adapter convert --job ID`` (the live queries), and the payloads are
sent to the stand-in, which accepts them only if the real cc-backend would. The
hwthreads of the SMT node (node2: 2 sockets x 2 cores x 2 threads) must include
both threads of every allocated core, as cc-backend's topology numbers them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cc_slurm_adapter.testing.ccbackend.standin import StandIn
from cc_slurm_adapter.testing.demo import convert_job
from cc_slurm_adapter.testing.slurm_testbed import FINAL_STATES, SlurmTestbed

pytestmark = pytest.mark.slurm

PCI = ["00000000:3B:00.0", "00000000:D8:00.0"]
# node2's topology in the stand-in's default cluster.json: core i has hwthreads [i, i+4].
NODE2_SIBLING_OFFSET = 4


@pytest.fixture()
def standin() -> Iterator[StandIn]:
    with StandIn(commit_interval=0) as server:
        yield server


@pytest.fixture()
def adapter_config(tmp_path: Path, standin: StandIn) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({
        "ccRestUrl": standin.url, "ccRestJwt": standin.token,
        "gpuPciAddrs": {"^node[0-9]+$": PCI},
    }))
    path.chmod(0o600)
    return path


def adapter() -> Path:
    return Path(sys.executable).with_name("cc-slurm-adapter")


def convert(tb: SlurmTestbed, config: Path, job_id: int) -> dict[str, Any]:
    return convert_job(adapter(), config, tb.env, job_id)


def test_running_and_finished_jobs_reach_the_standin(
        slurm_cluster: SlurmTestbed, standin: StandIn, adapter_config: Path) -> None:
    tb = slurm_cluster
    # Each job must still run when its turn to be read comes, however the scheduler orders
    # the three and however slow each `convert --job` is on a loaded 2-core machine: they
    # run until the test opens a gate (a file the job script waits for), then end.
    gate_name = f"gate-convert-live-{os.getpid()}-{time.monotonic_ns()}"
    gate_inside, gate_host = f"{tb.job_dir_in_root}/{gate_name}", tb.job_dir / gate_name
    hold = f"while [ ! -e {gate_inside} ]; do sleep 0.5; done"
    jobs = {
        "gpu2node": tb.submit(["-J", "live-gpu2node", "-N2", "--ntasks-per-node=1",
                               "--gres=gpu:1", "-t", "5", "--wrap", hold]),
        "smt": tb.submit(["-J", "live-smt", "-w", "node2", "-n", "2", "-t", "5",
                          "--wrap", hold]),
        "fail": tb.submit(["-J", "live-fail", "-t", "5", "--wrap", f"{hold}; exit 3"]),
    }
    try:
        _reach_the_standin(tb, jobs, standin, adapter_config, gate_host)
    finally:
        gate_host.touch()
        for job_id in jobs.values():
            tb.run("scancel", str(job_id), check=False)
        for job_id in jobs.values():
            with contextlib.suppress(Exception):
                tb.wait_state(job_id, FINAL_STATES, timeout=30)
        gate_host.unlink(missing_ok=True)


def _reach_the_standin(tb: SlurmTestbed, jobs: dict[str, int], standin: StandIn,
                       adapter_config: Path, gate: Path) -> None:
    client = httpx.Client(base_url=standin.url, headers=standin.headers(), timeout=10)
    with client:
        starts: dict[str, dict[str, Any]] = {}
        for name, job_id in jobs.items():
            tb.wait_state(job_id, "RUNNING", timeout=90)
            line = convert(tb, adapter_config, job_id)
            assert line["jobId"] == job_id and line["cluster"] == tb.cluster
            assert line["stop_job"] is None, f"{name} is still running"
            start = line["start_job"]
            assert start is not None, line["warnings"]
            answer = client.post("/api/jobs/start_job/", json=start)
            assert answer.status_code == 201, (name, answer.text, start)
            starts[name] = start

        gpu = starts["gpu2node"]
        assert gpu["user"] == "testuser" and gpu["project"] == "testacct"
        assert gpu["numNodes"] == 2 and gpu["numAcc"] == 2
        assert sorted(r["hostname"] for r in gpu["resources"]) == ["node1", "node2"]
        for resource in gpu["resources"]:
            assert len(resource["accelerators"]) == 1
            assert resource["accelerators"][0] in PCI
        assert gpu["metaData"]["jobName"] == "live-gpu2node"
        assert gpu["walltime"] == 300

        smt = starts["smt"]
        [node2] = smt["resources"]
        assert node2["hostname"] == "node2"
        threads = set(node2["hwthreads"])
        # Every allocated core brings both of its hardware threads (SMT siblings).
        assert threads and len(threads) % 2 == 0
        for thread in threads:
            sibling = (thread + NODE2_SIBLING_OFFSET if thread < NODE2_SIBLING_OFFSET
                       else thread - NODE2_SIBLING_OFFSET)
            assert sibling in threads, (sorted(threads), thread)
        assert smt["numHwthreads"] == len(threads)

        gate.touch()  # every job was read while it ran: let them end
        expected_state = {"gpu2node": "completed", "smt": "completed", "fail": "failed"}
        for name, job_id in jobs.items():
            tb.wait_sacct(job_id, timeout=90)
            line = convert(tb, adapter_config, job_id)
            deadline = time.monotonic() + 30
            while line["stop_job"] is None and time.monotonic() < deadline:
                time.sleep(1)  # slurmdbd's record can still be provisional for a moment
                line = convert(tb, adapter_config, job_id)
            stop = line["stop_job"]
            assert stop is not None, line["warnings"]
            assert stop["jobState"] == expected_state[name]
            assert stop["startTime"] == starts[name]["startTime"]
            assert stop["stopTime"] >= stop["startTime"]
            answer = client.post("/api/jobs/stop_job/", json=stop)
            assert answer.status_code == 200, (name, answer.text, stop)

    report = standin.check([{"jobId": j, "cluster": tb.cluster} for j in jobs.values()])
    assert report.ok, report.to_json()
