"""README command 1: the demo runs end to end on the live testbed."""

from __future__ import annotations

import pytest

from cc_slurm_adapter.testing import demo
from cc_slurm_adapter.testing.slurm_testbed import SlurmTestbed

pytestmark = pytest.mark.slurm


def test_demo_jobs_arrive_once_and_are_stopped(slurm_cluster: SlurmTestbed,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    if slurm_cluster.release != "22.05":
        pytest.skip("the demo runs on the host release (22.05) by default; one run is enough")
    assert demo.main(["--release", slurm_cluster.release]) == 0
    out = capsys.readouterr().out
    for name in ("one node", "two nodes", "a GPU", "a failure"):
        assert f"({name})" in out
    assert "prolog_slurmctld" in out and "epilog_slurmctld" in out
    assert "201 Created" in out and "200 OK" in out
    assert "demo finished: every job arrived once and was stopped" in out
