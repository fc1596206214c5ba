"""The command runner (real subprocesses, no Slurm needed) and the per-cycle call budget."""

from __future__ import annotations

import json
import os
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
from cc_slurm_adapter.slurm.source import SlurmInfo, SlurmSource, detect_slurm, parse_config
from cc_slurm_adapter.slurm.text import (
    parse_batch_scripts,
    parse_scontrol_jobs,
    parse_squeue_listing,
)

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


async def test_runner_output_whole_through_the_spool_file_or_the_pipe(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A large output arrives byte for byte, and the spool file is gone afterwards; with
    no usable temporary directory the pipe is used instead."""
    import tempfile

    code = "import sys; sys.stdout.buffer.write(bytes(range(256)) * 40000)"
    want = bytes(range(256)) * 40000
    before = set(os.listdir(tempfile.gettempdir()))
    assert (await CommandRunner().run([PY, "-c", code])).stdout == want
    assert set(os.listdir(tempfile.gettempdir())) - before == set()

    def no_tmp(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", no_tmp)
    assert (await CommandRunner().run([PY, "-c", code])).stdout == want


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
        if exe == "squeue":  # 22.05's squeue --json ignores -j: then every job
            ids = ([int(x) for x in argv[argv.index("-j") + 1].split(",")] if "-j" in argv
                   else [1000 + i for i in range(n_running)])
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


async def test_scontrol_text_asks_for_a_single_job_alone() -> None:
    """22.05: one wanted job is one single-job request (cheap whatever the queue);
    several are one dump of every job; a single purged job is no error."""
    text = (b"JobId=7 JobName=a UserId=u(1) JobState=RUNNING NodeList=n1 NumNodes=1 "
            b"NumCPUs=2\n")

    def handler(argv: tuple[str, ...]) -> bytes | CommandResult:
        if argv[-1] == "8":
            return CommandResult(argv=argv, stdout=b"", returncode=1, seconds=0,
                                 stderr="slurm_load_jobs error: Invalid job id specified")
        return text

    runner = FakeRunner(handler)
    source = SlurmSource(runner, SlurmInfo(meta=_meta_struct(22, 5, 8)))
    assert [j.job_id for j in await source.details([7])] == [7]
    assert list(runner.argvs[-1]) == ["scontrol", "show", "job", "-d", "-o", "7"]
    assert [j.job_id for j in await source.details([7, 9])] == [7]
    assert list(runner.argvs[-1]) == ["scontrol", "show", "job", "-d", "-o"]
    assert await source.details([8]) == []

    def down(argv: tuple[str, ...]) -> CommandResult:
        return CommandResult(argv=argv, stdout=b"", returncode=1, seconds=0,
                             stderr="slurm_load_jobs error: Unable to contact slurm controller")

    with pytest.raises(SlurmCommandFailed):  # any other failure is one
        await SlurmSource(FakeRunner(down), source.info).details([8])


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


def _config(*, script: bool) -> bytes:
    flags = "job_comment,job_script" if script else "(null)"
    return (f"Configuration data as of 2026-11-25T18:00:00\n"
            f"AccountingStoreFlags    = {flags}\nClusterName             = testcluster\n"
            f"MinJobAge               = 300 sec\nSlurmUser               = slurm(64030)\n"
            ).encode()


def _scripted(n_running: int, version: tuple[int, int, int], sample: dict[str, object],
              *, script: bool) -> FakeRunner:
    """_fake_slurm plus `scontrol show config` and `sacct -B` (JSON or text)."""
    base = _fake_slurm(n_running, version, sample)
    meta = _meta(*version)

    def handler(argv: tuple[str, ...]) -> bytes | CommandResult:
        if argv[:3] == ("scontrol", "show", "config"):
            return _config(script=script)
        if argv[0] == "sacct" and "-B" in argv:
            ids = [int(x) for x in argv[argv.index("-j") + 1].split(",")]
            if any(a.startswith("--json") for a in argv):
                return json.dumps({"meta": meta, "jobs": [
                    {"job_id": i, "state": {"current": ["RUNNING"]}, "time": {},
                     "script": f"#!/bin/sh\necho {i}\n"} for i in ids]}).encode()
            return "".join(f"Batch Script for {i}\n{'-' * 80}\n#!/bin/sh\necho {i}\n\n"
                           for i in ids).encode()
        return base.handler(argv)

    return FakeRunner(handler)


async def test_detect_reads_cluster_name_and_job_script_flag() -> None:
    info = await detect_slurm(_scripted(0, (24, 11, 5), {}, script=True))
    assert (info.cluster_name, info.job_script_stored) == ("testcluster", True)
    info = await detect_slurm(_scripted(0, (22, 5, 8), {}, script=False))
    assert (info.cluster_name, info.job_script_stored) == ("testcluster", False)
    # scontrol refuses (the convert tests' fake does): both unknown, detection goes on
    def refuse(argv: tuple[str, ...]) -> bytes | CommandResult:
        if argv[0] == "scontrol":
            raise SlurmCommandFailed("scontrol exited 1", argv=argv, returncode=1, stderr="")
        return json.dumps({"meta": _meta(22, 5, 8), "jobs": []}).encode()
    info = await detect_slurm(FakeRunner(refuse))
    assert (info.cluster_name, info.job_script_stored, info.meta.release) == (
        None, None, "22.05.8")


@pytest.mark.parametrize("version", [(22, 5, 8), (24, 11, 5)])
async def test_batch_scripts_one_call_per_cycle(version: tuple[int, int, int],
                                                slurm_json: Path) -> None:
    """With AccountingStoreFlags=job_script: one `sacct -B -j` per cycle, at any scale."""
    sample = json.loads((slurm_json / "25.11/slurmrestd_v0.0.44/"
                         "slurm-job-gpus-multi-nodes.json").read_bytes())["jobs"][0]
    counts = []
    for n in (10, 2_000):
        runner = _scripted(n, version, sample, script=True)
        info = await detect_slurm(runner)
        result = await SlurmSource(runner, info, max_detail_jobs=5_000).cycle(0, 60)
        assert len(result.details) == n
        assert all(j.batch_script == f"#!/bin/sh\necho {j.job_id}\n" for j in result.details)
        scripts = [a for a in runner.argvs if "-B" in a]
        assert len(scripts) == 1 and ("-X" in scripts[0]) and ("--allusers" in scripts[0])
        assert any(a.startswith("--json") for a in scripts[0]) == (version >= (23, 2, 0))
        counts.append(result.calls)
    assert counts[0] == counts[1] == 5
    # not stored: no script call; forced off: none either
    runner = _scripted(10, version, sample, script=False)
    result = await SlurmSource(runner, await detect_slurm(runner)).cycle(0, 60)
    assert result.calls == 4 and not any("-B" in a for a in runner.argvs)


async def test_detail_modes_and_states_all() -> None:
    runner = _fake_slurm(3, (24, 11, 5), {"job_state": ["RUNNING"]})
    info = await detect_slurm(runner)
    await SlurmSource(runner, info).details([1000, 1001])
    argv = runner.argvs[-1]
    assert argv[:2] == ("squeue", "--json=v0.0.43") and "--states=all" in argv
    assert argv[argv.index("-j") + 1] == "1000,1001"
    jobs = await SlurmSource(runner, info, detail_mode="scontrol-text").details([1001])
    assert runner.argvs[-1][:5] == ("scontrol", "show", "job", "-d", "-o")
    assert [j.job_id for j in jobs] == [1001]
    old = _fake_slurm(3, (22, 5, 8), {"job_id": 1000, "job_state": "RUNNING"})
    info = await detect_slurm(old)
    await SlurmSource(old, info, detail_mode="squeue-json").details([1000])
    assert "-j" not in old.argvs[-1]  # 22.05 squeue --json ignores -j: filtered here
    with pytest.raises(ValueError):
        SlurmSource(old, info, detail_mode="sinfo")


def test_batch_script_text_forms() -> None:
    dash = "-" * 80
    # 22.05.8: a blank line after each script; array tasks headed ARRAYID_TASKID
    text = (f"Batch Script for 58\n{dash}\n#!/bin/bash\nsrun hostname\n\n"
            f"Batch Script for 58_1\n{dash}\nNONE\n\n"
            f"Batch Script for 58_2\n{dash}\n#!/bin/sh\nsleep 6\n\n"
            f"Batch Script for 61\n{dash}\nNONE\n")
    assert parse_batch_scripts(text, {58, 59, 60, 61}, {"58_1": 59, "58_2": 60}) == {
        58: "#!/bin/bash\nsrun hostname\n", 60: "#!/bin/sh\nsleep 6\n"}
    # an unresolvable array header still ends the previous script
    assert parse_batch_scripts(text, {58}) == {58: "#!/bin/bash\nsrun hostname\n"}
    # a script that prints a header of a job not asked for stays whole
    inner = f"#!/bin/sh\ncat <<EOF\nBatch Script for 7\n{dash}\nEOF\n"
    assert parse_batch_scripts(f"Batch Script for 5\n{dash}\n{inner}", {5}) == {5: inner}


async def test_detect_reads_slurm_user() -> None:
    # the form 22.05.8-26.05.5 print: "SlurmUser = slurm(64030)"
    runner = _scripted(0, (22, 5, 8), {}, script=False)
    assert (await detect_slurm(runner)).slurm_user == "slurm"
    # scontrol show config failing or saying nothing: unknown
    inner = _fake_slurm(0, (22, 5, 8), {})

    def down(argv: tuple[str, ...]) -> bytes | CommandResult:
        if argv[:3] == ("scontrol", "show", "config"):
            return CommandResult(argv=argv, stdout=b"", returncode=1, seconds=0,
                                 stderr="slurm_load_ctl_conf error")
        return inner.handler(argv)

    def empty(argv: tuple[str, ...]) -> bytes | CommandResult:
        return b"" if argv[:3] == ("scontrol", "show", "config") else inner.handler(argv)

    assert (await detect_slurm(FakeRunner(down))).slurm_user is None
    assert (await detect_slurm(FakeRunner(empty))).slurm_user is None


def test_parse_config() -> None:
    conf = parse_config(_config(script=True))
    assert conf["ClusterName"] == "testcluster"
    assert conf["AccountingStoreFlags"] == "job_comment,job_script"


async def test_unknown_host_refreshes_topology_once_and_fills_resources() -> None:
    """A job on a host the cached topology lacks: one refresh in that cycle, and the
    records read before it get the node's sockets/cores/threads."""
    nodes = [{"name": "n1", "sockets": 2, "cores": 4, "threads": 2, "cpus": 16}]
    listing = {"jobs": "1000 RUNNING"}

    def handler(argv: tuple[str, ...]) -> bytes | CommandResult:
        if argv[0] == "sacct":
            return json.dumps({"meta": _meta(22, 5, 8), "jobs": []}).encode()
        if argv[0] == "squeue":
            return listing["jobs"].encode()
        if argv[:3] == ("scontrol", "show", "job"):
            return (b"JobId=1000 JobState=RUNNING NodeList=n1 NumNodes=1 NumCPUs=2 Nodes=n1 "
                    b"CPU_IDs=0-1 Mem=100 GRES=\nJobId=1001 JobState=RUNNING NodeList=n2 "
                    b"NumNodes=1 NumCPUs=2 Nodes=n2 CPU_IDs=2-3 Mem=100 GRES=\n")
        if argv[0] == "sinfo":
            return json.dumps({"nodes": nodes}).encode()
        return b""

    runner = FakeRunner(handler)
    source = SlurmSource(runner, await detect_slurm(runner))
    first = await source.cycle(0, 60)
    assert first.calls == 4 and first.details[0].resources[0].sockets == 2
    nodes.append({"name": "n2", "sockets": 1, "cores": 8, "threads": 1, "cpus": 8})
    listing["jobs"] = "1000 RUNNING\n1001 RUNNING"
    second = await source.cycle(60, 120, captured={1000})
    assert second.calls == 4  # sacct, listing, details, one topology refresh
    (job,) = second.details
    assert (job.resources[0].sockets, job.resources[0].cores_per_socket) == (1, 8)
    third = await source.cycle(120, 180, captured={1000, 1001})
    assert third.calls == 2


async def test_late_scripts_share_the_cycles_one_script_call(slurm_json: Path) -> None:
    """A script slurmdbd did not have yet is asked for again in a later cycle, in the
    same single `sacct -B` call as the newly detailed jobs."""
    sample = json.loads((slurm_json / "25.11/slurmrestd_v0.0.44/"
                         "slurm-job-gpus-multi-nodes.json").read_bytes())["jobs"][0]
    runner = _scripted(3, (24, 11, 5), sample, script=True)
    info = await detect_slurm(runner)
    source = SlurmSource(runner, info)
    first = await source.cycle(0, 60)
    captured = {job.job_id for job in first.details}
    late = sorted(captured)[:2]
    before = len([a for a in runner.argvs if "-B" in a])
    second = await source.cycle(0, 60, captured=captured, scripts_wanted=late)
    calls = [a for a in runner.argvs if "-B" in a][before:]
    assert second.details == [] and len(calls) == 1
    assert calls[0][calls[0].index("-j") + 1] == ",".join(map(str, late))
    assert second.scripts == {i: f"#!/bin/sh\necho {i}\n" for i in late}
    # nothing new and nothing wanted: no script call at all
    third = await source.cycle(0, 60, captured=captured)
    assert third.scripts == {} and len([a for a in runner.argvs if "-B" in a]) == before + 1


@pytest.mark.parametrize(("version", "json_flag"), [((22, 5, 8), "--json"),
                                                    ((24, 11, 5), "--json=v0.0.43")])
async def test_accounting_window_leaves_out_pending(version: tuple[int, int, int],
                                                    json_flag: str) -> None:
    """The cycle's sacct asks only for jobs that ran on one or more nodes, in one call
    (`--nnodes=1-2147483647`, the largest maximum sacct 22.05.8-26.05.5 accept), so a
    deep pending queue adds nothing to the answer. The window is UTC (the runner pins
    TZ=UTC); 24.11 pins the newest parser the fake's `--json=list` names (v0.0.43)."""
    runner = _fake_slurm(0, version, {})
    info = await detect_slurm(runner)
    source = SlurmSource(runner, info, cluster="c1")
    before = len(runner.argvs)
    assert await source.accounting(1_700_000_000, 1_700_003_600) == []
    (argv,) = runner.argvs[before:]
    assert argv == ("sacct", json_flag, "--allusers", "-X", "--nnodes=1-2147483647",
                    "-S", "2023-11-14T22:13:20", "-E", "2023-11-14T23:13:20", "-M", "c1")


@pytest.mark.parametrize(("version", "argv"), [
    ((22, 5, 8), ("squeue", "-h", "-a", "-o", "%A %T")),
    # 24.05+: the job-state RPC; 26.05.5 refuses it beside -a, so it goes without
    ((24, 11, 5), ("squeue", "-h", "--only-job-state", "-o", "%A %T")),
])
async def test_live_listing_uses_the_cheapest_call(version: tuple[int, int, int],
                                                   argv: tuple[str, ...]) -> None:
    runner = _fake_slurm(2, version, {})
    source = SlurmSource(runner, await detect_slurm(runner))
    before = len(runner.argvs)
    assert await source.live_listing() == {1000: "RUNNING", 1001: "RUNNING"}
    assert runner.argvs[before:] == [argv]


async def test_live_listing_falls_back_when_the_option_is_refused() -> None:
    inner = _fake_slurm(1, (24, 11, 5), {})

    def handler(argv: tuple[str, ...]) -> bytes | CommandResult:
        if "--only-job-state" in argv:
            return CommandResult(argv=argv, stdout=b"", returncode=1, seconds=0,
                                 stderr="squeue: unrecognized option '--only-job-state'")
        return inner.handler(argv)

    runner = FakeRunner(handler)
    source = SlurmSource(runner, await detect_slurm(runner))
    assert await source.live_listing() == {1000: "RUNNING"}
    assert await source.live_listing() == {1000: "RUNNING"}
    listings = [a for a in runner.argvs if a[0] == "squeue"]
    assert [("--only-job-state" in a) for a in listings] == [True, False, False]


def test_listing_shares_one_state_string_per_state() -> None:
    # 9,000 listed jobs hold a handful of state names, not 9,000 strings
    live = parse_squeue_listing(b"".join(b"%d PENDING\n" % i for i in range(1, 101))
                                + b"200 RUNNING\n201 RUNNING\n")
    assert len({id(state) for state in live.values()}) == 2
