"""``cc-slurm-adapter -daemon`` on live Slurm 22.05, 24.11 and 26.05 → the stand-in.

Black box (see daemon_harness.py): jobs of every kind in the recorded job mix
(testbed/record_fixtures.py) are submitted to the real cluster while the daemon runs;
each must reach the stand-in exactly once, started and stopped, with the values sacct
recorded (user, project = account, cluster, startTime = sacct start, stopTime = sacct
end, jobState, hosts, hwthreads, the GPU's PCI address). The TIMEOUT job (-t 1 ends
60-90 s after its start) runs on the first selected release only.
"""

from __future__ import annotations

import pytest

from cc_slurm_adapter.testing.ccbackend.standin import StandIn
from cc_slurm_adapter.testing.slurm_testbed import SlurmTestbed, selected_releases

from .daemon_harness import (
    Daemons,
    Gate,
    SlurmJob,
    audit,
    cancel_all,
    check_payloads,
    gpu_indexes,
    running_array_tasks,
    sacct_jobs,
    wait_started,
    wait_stopped,
)

pytestmark = pytest.mark.slurm


# name -> (sbatch arguments, user, how the job ends). Every job except the timeout one is
# held by a gate file until the daemon's start for it has arrived (so the daemon provably
# saw it running: hwthreads are required), then ends the way the recorded mix does. Two
# waves, each submitted once the one before has ended: the testbed has 6 core slots
# (node1: 2 cores, node2: 4 cores with 2 threads each), and held jobs must never wait for
# slots that other held jobs keep.
WAVES: list[dict[str, tuple[list[str], str, str]]] = [
    {"single": ([], "testuser", ""),
     "twonode": (["-N2"], "root", "srun"),
     "gpu": (["--gres=gpu:1"], "testuser", ""),
     "cancelled": ([], "testuser", "cancel")},
    {"fail3": ([], "testuser", "exit 3"),
     "array": (["--array=1-3"], "testuser", "")},
]
EXPECTED_STATE = {"single": "COMPLETED", "twonode": "COMPLETED", "gpu": "COMPLETED",
                  "fail3": "FAILED", "cancelled": "CANCELLED", "array": "COMPLETED",
                  "timeout": "TIMEOUT"}


def test_job_mix_reaches_the_standin(slurm_cluster: SlurmTestbed, standin: StandIn,
                                     daemons: Daemons) -> None:
    tb = slurm_cluster
    daemon = daemons.new(standin.url, standin.token).start()
    gates = [Gate(tb, f"mix{i}") for i in range(len(WAVES))]
    ids: dict[str, int] = {}
    gpus: dict[str, list[int]] = {}
    try:
        if tb.release == selected_releases()[0]:
            ids["timeout"] = tb.submit(["-J", "dmix-timeout", "-t", "1", "--wrap",
                                        "sleep 300"], user="testuser")
        for wave, gate in zip(WAVES, gates, strict=True):
            for name, (args, user, how) in wave.items():
                if how == "srun":
                    wrap = f"srun sh -c '{gate.hold()}'"
                elif how == "cancel":
                    wrap = "sleep 300"
                else:
                    wrap = gate.hold(how)
                ids[name] = tb.submit(["-J", f"dmix-{name}", "-t", "5", *args,
                                       "--wrap", wrap], user=user)
            running: list[int] = []
            for name in wave:
                if name == "array":
                    running += running_array_tasks(tb, ids[name], 3)
                else:
                    tb.wait_state(ids[name], "RUNNING", timeout=120)
                    running.append(ids[name])
            if "gpu" in wave:
                gpus = gpu_indexes(tb, ids["gpu"])  # only visible while it runs
                assert sum(len(v) for v in gpus.values()) == 1, gpus
            # every held job (and array task) runs until its start reached the stand-in
            wait_started(standin, running, tb.cluster, daemon=daemon, timeout=90)
            if "cancelled" in wave:
                tb.cancel(ids["cancelled"], user="testuser")
            gate.open()
            for name in wave:
                tb.wait_sacct(ids[name], timeout=120)

        jobs: dict[str, list[SlurmJob]] = {}
        for name, job_id in ids.items():
            timeout = 200 if name == "timeout" else 120
            jobs[name] = sacct_jobs(tb, job_id, name=f"dmix-{name}", timeout=timeout)
            assert {j.state for j in jobs[name]} == {EXPECTED_STATE[name]}, jobs[name]
        assert len(jobs["array"]) == 3
        every = [j for group in jobs.values() for j in group]

        rows = wait_stopped(standin, [j.job_id for j in every], tb.cluster, daemon=daemon,
                            timeout=90)
        # the timeout job runs 60-90 s: the daemon saw it running for many cycles too
        check_payloads(rows, every, gpus={ids["gpu"]: gpus})
        audit(standin, every, tb.cluster,
              seen_running=[j.job_id for j in every]).assert_clean()
        assert rows[ids["gpu"]].num_acc == 1  # what it allocated

        assert daemon.stop() == 0, daemon.tail()
    finally:
        for gate in gates:
            gate.open()
        cancel_all(tb, ids.values())
        for gate in gates:
            gate.remove()
