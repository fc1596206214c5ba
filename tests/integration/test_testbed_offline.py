"""Checks of the testbed that need no live cluster: the recordings, the layout, the driver."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cc_slurm_adapter.testing import slurm_testbed
from cc_slurm_adapter.testing.slurm_testbed import (
    RELEASES,
    SlurmTestbed,
    _has_option,
    find_sacct_job,
    sacct_state,
    selected_releases,
)

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "slurm"

EXPECTED_FINAL = {
    "gpu": "COMPLETED",
    "cancelled": "CANCELLED",
    "timeout": "TIMEOUT",
    "single": "COMPLETED",
    "twonode": "COMPLETED",
    "array": "COMPLETED",
    "fail3": "FAILED",
    "gpu2node": "COMPLETED",
    "pending": "COMPLETED",
    "held": "CANCELLED",
}


def _load(release: str, name: str) -> Any:
    return json.loads((RECORDINGS / release / name).read_text())


def _squeue_state(job: dict[str, Any]) -> str:
    state = job["job_state"]
    return str(state[0] if isinstance(state, list) else state)


@pytest.mark.parametrize("release", RELEASES)
def test_recording_is_complete_and_consistent(release: str) -> None:
    meta = _load(release, "meta.json")
    assert meta["slurm_version"].startswith(release + ".")
    jobs = _load(release, "jobs.json")
    assert set(jobs) == {*EXPECTED_FINAL, "quick"}
    files = _load(release, "files.json")
    for name in files:
        assert (RECORDINGS / release / name).is_file(), name
    has_json = {n for n in files if n.startswith("scontrol_show_") and n.endswith(".json")}
    assert bool(has_json) == meta["scontrol_json"] == (release != "22.05")

    after = _load(release, "sacct_after.json")
    for name, expected in EXPECTED_FINAL.items():
        records = [j for j in after["jobs"] if j["name"] == name]
        assert records, name
        assert {sacct_state(j) for j in records} == {expected}, name
    assert len([j for j in after["jobs"] if j["name"] == "array"]) == 3
    gpu2 = find_sacct_job(after, jobs["gpu2node"]["job_id"])
    assert gpu2 is not None and gpu2["nodes"] == "node[1-2]"

    # GPU indexes only while running: gpu in running1, gpu2node (both nodes) in running2
    run1 = {j["name"]: j for j in _load(release, "squeue_running1.json")["jobs"]}
    assert _squeue_state(run1["gpu"]) == "RUNNING"
    assert run1["gpu"]["gres_detail"] == ["gpu:tesla:1(IDX:0)"]
    assert _squeue_state(run1["held"]) == "PENDING"
    run2 = {j["name"]: j for j in _load(release, "squeue_running2.json")["jobs"]}
    assert run2["gpu2node"]["gres_detail"] == ["gpu:tesla:2(IDX:0-1)"] * 2
    assert _squeue_state(run2["pending"]) == "PENDING"
    text = (RECORDINGS / release / "scontrol_show_job_d_o_running1.txt").read_text()
    assert "GRES=gpu:tesla:1(IDX:0)" in text

    # the `quick` job: its complete record, and slurmdbd's placeholder where one was seen
    quick_id = jobs["quick"]["job_id"]
    final = find_sacct_job(_load(release, "sacct_quick_final.json"), quick_id)
    assert final is not None and final["name"] == "quick" and sacct_state(final) == "COMPLETED"
    if meta["sacct_placeholder_seen"]:
        early = find_sacct_job(_load(release, "sacct_quick_placeholder.json"), quick_id)
        assert early is not None and early["name"] == "allocation"
        assert early["partition"] == "" and early["tres"]["requested"] == []


def test_recordings_readme_names_every_version() -> None:
    readme = (RECORDINGS / "README.md").read_text()
    for release in RELEASES:
        assert _load(release, "meta.json")["slurm_version"] in readme


def test_layout_and_ports_are_distinct() -> None:
    beds = [SlurmTestbed(r) for r in RELEASES]
    ports = [p for tb in beds for p in tb.ports.values()]
    assert len(ports) == len(set(ports))
    assert beds[0].chroot is None and beds[1].chroot is not None
    assert beds[0].ports["slurmctld"] == 6817
    assert beds[1].ports["slurmctld"] == 6917 and beds[2].ports["slurmctld"] == 7017
    assert len({tb.state_dir for tb in beds}) == 3
    assert len({tb.bin_dir for tb in beds}) == 3
    env = beds[1].env
    assert env["PATH"].split(":")[0] == str(beds[1].bin_dir)
    assert env["SLURM_CONF"] == str(beds[1].slurm_conf)


def test_selected_releases() -> None:
    assert selected_releases("22.05, 26.05,22.05") == ["22.05", "26.05"]
    assert selected_releases("") == []
    with pytest.raises(ValueError):
        selected_releases("23.02")


def test_sacct_state_and_find() -> None:
    assert sacct_state({"state": {"current": "COMPLETED"}}) == "COMPLETED"
    assert sacct_state({"state": {"current": ["CANCELLED"]}}) == "CANCELLED"
    assert sacct_state({"state": {"current": "CANCELLED by 0"}}) == "CANCELLED"
    doc = {"jobs": [{"job_id": 3}, {"job_id": 4, "name": "x"}]}
    assert find_sacct_job(doc, 4) == {"job_id": 4, "name": "x"}
    assert find_sacct_job(doc, 5) is None


def test_sbatch_option_detection() -> None:
    assert _has_option(["-D", "/x", "--wrap", "true"], "-D", "--chdir")
    assert _has_option(["--chdir=/x"], "-D", "--chdir")
    assert not _has_option(["--wrap", "cd -D"], "-D", "--chdir")
    assert _has_option(["-o/x"], "-o", "--output")
    assert not _has_option(["--open-mode=append"], "-o", "--output")


def test_scripts_are_shellcheck_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    here = slurm_testbed.testbed_dir()
    scripts = sorted(str(p) for p in [*here.glob("*.sh"), *here.glob("lib/*.sh")])
    proc = subprocess.run(
        ["shellcheck", "-x", *scripts], cwd=here, capture_output=True, text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout
