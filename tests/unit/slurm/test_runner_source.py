"""The command runner (real subprocesses, no Slurm needed) and the per-cycle call budget."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cc_slurm_adapter.errors import (
    SlurmCommandFailed,
    SlurmCommandMissing,
    SlurmCommandTimeout,
)
from cc_slurm_adapter.slurm.record import SlurmMeta
from cc_slurm_adapter.slurm.runner import CommandResult, CommandRunner, FakeRunner, slurm_env
from cc_slurm_adapter.slurm.source import SlurmInfo, SlurmSource, detect_slurm
from cc_slurm_adapter.slurm.text import parse_scontrol_jobs, parse_squeue_listing

PY = sys.executable


async def test_runner_captures_stdout_and_pins_tz() -> None:
    runner = CommandRunner(timeout=10, env={"PATH": "/usr/bin:/bin", "SQUEUE_FORMAT": "%i"})
    res = await runner.run([PY, "-c", "import os,sys; print(os.environ['TZ']);"
                            "print('SQUEUE_FORMAT' in os.environ)"])
    assert res.stdout.split() == [b"UTC", b"False"]
    assert runner.calls == 1


async def test_runner_missing_command() -> None:
    with pytest.raises(SlurmCommandMissing):
        await CommandRunner().run(["/nonexistent/sacct", "--json"])


async def test_runner_timeout_kills() -> None:
    with pytest.raises(SlurmCommandTimeout) as info:
        await CommandRunner().run([PY, "-c", "import time; time.sleep(30)"], timeout=0.3)
    assert info.value.timeout == 0.3


async def test_runner_nonzero_keeps_stderr() -> None:
    with pytest.raises(SlurmCommandFailed) as info:
        await CommandRunner().run([PY, "-c", "import sys; sys.stderr.write("
                                   "'slurm_load_jobs error: Invalid job id specified'); "
                                   "sys.exit(1)"])
    assert info.value.returncode == 1
    assert "Invalid job id" in info.value.stderr


def test_slurm_env_drops_format_variables() -> None:
    env = slurm_env({"SACCT_FORMAT": "x", "SLURM_CONF": "/etc/slurm.conf", "TZ": "Europe/Berlin"})
    assert env["TZ"] == "UTC" and "SACCT_FORMAT" not in env
    assert env["SLURM_CONF"] == "/etc/slurm.conf"


def _meta(major: int, minor: int, micro: int) -> dict[str, object]:
    if (major, minor) < (23, 2):
        return {"plugin": {"type": "openapi/dbv0.0.38"},
                "Slurm": {"version": {"major": major, "minor": minor, "micro": micro},
                          "release": f"{major}.{minor:02d}.{micro}"}}
    return {"plugin": {"type": "", "data_parser": "data_parser/v0.0.42"},
            "command": ["sacct"],
            "slurm": {"version": {"major": str(major), "minor": f"{minor:02d}",
                                  "micro": str(micro)},
                      "release": f"{major}.{minor:02d}.{micro}", "cluster": "c1"}}


def _fake_slurm(n_running: int, version: tuple[int, int, int], sample: dict[str, object]
                ) -> FakeRunner:
    """Fake sacct/squeue/scontrol/sinfo answering for a cluster with n running jobs."""
    meta = _meta(*version)

    def job(i: int) -> dict[str, object]:
        j = dict(sample)
        j["job_id"] = 1000 + i
        return j

    def handler(argv: tuple[str, ...]) -> bytes | CommandResult:
        exe = argv[0]
        if exe == "sacct" and "--json=list" in argv:
            return CommandResult(argv=argv, stdout=b"v0.0.41\nv0.0.42\nv0.0.43\n",
                                 stderr="", returncode=0, seconds=0)
        if exe == "sacct":
            return json.dumps({"meta": meta, "jobs": [], "errors": []}).encode()
        if exe == "squeue" and "%A %T" in argv:
            return "\n".join(f"{1000 + i} RUNNING" for i in range(n_running)).encode()
        if exe == "squeue":
            ids = [int(x) for x in argv[argv.index("-j") + 1].split(",")]
            return json.dumps({"meta": meta, "jobs": [job(i - 1000) for i in ids]}).encode()
        if exe == "scontrol" and "job" in argv:
            return "\n".join(
                f"JobId={1000 + i} JobName=x UserId=u(1) JobState=RUNNING NodeList=n1 "
                f"NumNodes=1 NumCPUs=2 Nodes=n1 CPU_IDs=0-1 Mem=100 GRES=gpu:1(IDX:0)"
                for i in range(n_running)).encode()
        if exe in ("scontrol", "sinfo"):
            return json.dumps({"nodes": [{"name": "n1", "sockets": 2, "cores": 4,
                                          "threads": 2, "cpus": 16}]}).encode()
        raise AssertionError(argv)

    return FakeRunner(handler)


@pytest.mark.parametrize("version", [(22, 5, 8), (23, 11, 5), (24, 11, 5), (25, 11, 0)])
async def test_calls_per_cycle_do_not_grow_with_jobs(version: tuple[int, int, int],
                                                     slurm_json: Path) -> None:
    sample = json.loads((slurm_json / "25.11/slurmrestd_v0.0.44/"
                         "slurm-job-gpus-multi-nodes.json").read_bytes())["jobs"][0]
    counts = []
    for n in (10, 10_000):
        runner = _fake_slurm(n, version, sample)
        info = await detect_slurm(runner)
        source = SlurmSource(runner, info, max_detail_jobs=20_000)
        result = await source.cycle(0, 3600)
        assert len(result.live) == n
        assert len(result.details) == n
        counts.append(result.calls)
        second = await source.cycle(3600, 7200, captured=result.live.keys())
        assert second.calls == 2  # sacct + listing, nothing new to detail
    assert counts[0] == counts[1] <= 4


async def test_detect_pins_newest_known_parser() -> None:
    runner = _fake_slurm(0, (24, 11, 5), {})
    info = await detect_slurm(runner)
    assert info.pin == "v0.0.43" and info.json_flag == "--json=v0.0.43"
    assert info.squeue_json_filters and info.has_scontrol_json
    old = await detect_slurm(_fake_slurm(0, (22, 5, 8), {}))
    assert old.pin is None and not old.has_scontrol_json and old.json_flag == "--json"


async def test_single_purged_id_is_not_an_error() -> None:
    def handler(argv: tuple[str, ...]) -> bytes | CommandResult:
        return CommandResult(argv=argv, stdout=b"", returncode=1, seconds=0,
                             stderr="slurm_load_jobs error: Invalid job id specified")

    info = SlurmInfo(meta=_meta_struct(24, 11, 5))
    assert await SlurmSource(FakeRunner(handler), info).details([5]) == []


def _meta_struct(major: int, minor: int, micro: int) -> SlurmMeta:
    return SlurmMeta(major=major, minor=minor, micro=micro)


def test_squeue_listing() -> None:
    assert parse_squeue_listing(b"12 RUNNING\n13 PENDING\nCLUSTER: x\n\n") == {
        12: "RUNNING", 13: "PENDING"}


def test_scontrol_text_detail() -> None:
    line = ("JobId=42 JobName=my job UserId=alice(1001) GroupId=users(100) Account=proj "
            "QOS=normal JobState=TIMEOUT Reason=TimeLimit ExitCode=0:15 "
            "SubmitTime=2024-01-01T00:00:00 StartTime=2024-01-01T00:00:10 "
            "EndTime=2024-01-01T01:00:10 Partition=gpu NodeList=n[1-2] NumNodes=2 "
            "NumCPUs=4 TimeLimit=01:00:00 OverSubscribe=NO "
            "TRES=cpu=4,mem=2G,node=2,gres/gpu=2 "
            "Nodes=n1 CPU_IDs=0-1 Mem=1024 GRES=gpu:a100:1(IDX:0) "
            "Nodes=n2 CPU_IDs=2,3 Mem=1024 GRES=gpu:a100:1(IDX:1) "
            "MinMemoryNode=1G WorkDir=/home/alice Comment=hello world")
    (job,) = parse_scontrol_jobs(line, cluster="c1")
    assert (job.job_id, job.state, job.user, job.user_id, job.name) == (
        42, "TIMEOUT", "alice", 1001, "my job")
    assert job.start_time == 1704067210 and job.end_time == 1704070810
    assert job.time_limit_min == 60 and job.shared == "exclusive"
    assert job.nodes == ("n1", "n2")
    assert [(r.hostname, r.cpu_ids, [g.index for g in r.gpus]) for r in job.resources] == [
        ("n1", (0, 1), [0]), ("n2", (2, 3), [1])]
    assert job.exit_code is not None and job.exit_code.signal == 15
    assert job.comment == "hello world" and job.work_dir == "/home/alice"
