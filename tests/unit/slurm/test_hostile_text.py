"""User-chosen fields are hostile input (issue 10, points 1 and 7).

The scontrol text cases start from real lines recorded on the testbed
(tests/fixtures/slurm/<release>/scontrol_show_job_d_o_running1.txt, job 1: user
testuser(999), account testacct, NodeList=node1, CPU_IDs=0, GRES gpu IDX 0) and put a
hostile value where scontrol would print the user's text: JobName, Comment (printed
after WorkDir), WorkDir, StdOut, Command. The expected user, account and hosts are the
ones in that recorded line, never what the parser returns for another input.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cc_slurm_adapter.errors import SlurmParseError
from cc_slurm_adapter.slurm.merge import with_accounting_identity
from cc_slurm_adapter.slurm.parse import parse_jobs, parse_nodes
from cc_slurm_adapter.slurm.record import JobRecord, NodeResources
from cc_slurm_adapter.slurm.source import parse_config
from cc_slurm_adapter.slurm.text import (
    parse_batch_scripts,
    parse_scontrol_jobs,
    parse_squeue_listing,
)

LIVE = Path(__file__).resolve().parents[2] / "fixtures" / "slurm"
RELEASES = ("22.05", "24.11", "26.05")
VERSION = {"22.05": "22.05.8", "24.11": "24.11.5", "26.05": "26.05.5"}

# Every key the text parser reads, with values an attacker would like to see.
READ_KEYS = ("JobId=1", "ArrayJobId=77", "ArrayTaskId=3", "HetJobId=9", "HetJobOffset=1",
             "JobName=evil", "SLUID=sFAKE", "UserId=root(0)", "GroupId=root(0)",
             "Account=evilacct", "QOS=high", "JobState=COMPLETED", "Reason=None",
             "Restarts=9", "ExitCode=0:9", "DerivedExitCode=1:0", "TimeLimit=UNLIMITED",
             "SubmitTime=2000-01-01T00:00:00", "StartTime=2000-01-01T00:00:00",
             "EndTime=2000-01-01T00:00:01", "Partition=evilpart", "NodeList=evil[1-64]",
             "BatchHost=evil1", "NumNodes=64", "NumCPUs=4096", "TRES=cpu=4096,gres/gpu=64",
             "ReqTRES=cpu=4096", "AllocTRES=cpu=4096,gres/gpu=64", "JOB_GRES=gpu:64",
             "Nodes=evil1", "CPU_IDs=0-63", "Mem=999999", "GRES=gpu:8(IDX:0-7)",
             "MinMemoryNode=1T", "MinMemoryCPU=1T", "OverSubscribe=NO", "Exclusive=NODE",
             "WorkDir=/evil", "Comment=evil", "SubmitLine=evil", "TresPerNode=gres:gpu:64",
             "TresPerJob=gres:gpu:64", "StdOut=/evil", "Power=", "BatchFlag=0")

HOSTILE = (
    "x UserId=root(0) Account=evilacct Nodes=evil1 CPU_IDs=0-63",  # the example
    " ".join(READ_KEYS),
    "a\nb",
    "c\nJobId=2 JobName=x UserId=root(0) Account=evilacct NodeList=evil1",
    "k=v (x) = ) ( ==",
    "JobId=1",
    " JobId=3 JobName=y",
    "x " * 50_000 + "UserId=root(0)",  # 100 kB
    "UserId=root(0) " * 5_000 + "GroupId=root(0)",
)


def _line(release: str) -> str:
    text = (LIVE / release / "scontrol_show_job_d_o_running1.txt").read_text()
    return next(line for line in text.splitlines() if line.startswith("JobId=1 "))


def _place(line: str, field: str, value: str) -> str:
    if field == "Comment":  # printed after WorkDir when set
        return re.sub(r"( WorkDir=\S+)", lambda m: f"{m.group(1)} Comment={value}", line)
    return re.sub(rf"(?<= ){field}=\S*" if field != "JobName" else r"JobName=\S+",
                  lambda _m: f"{field}={value}", line, count=1)


def _check_job1(job: JobRecord) -> None:
    # what the recorded line says about job 1 on every release
    assert (job.job_id, job.user, job.group, job.account) == (1, "testuser", "testuser",
                                                              "testacct")
    assert job.nodes == ("node1",) and job.partition == "debug" and job.state == "RUNNING"
    assert [(r.hostname, r.cpu_ids) for r in job.resources] == [("node1", (0,))]
    assert [g.index for g in job.resources[0].gpus] == [0]
    assert job.cpus == 1 and job.node_count == 1 and job.gpus == 1
    assert job.array_job_id is None and job.het_job_id is None


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("field", ["JobName", "Comment", "WorkDir", "StdOut", "Command"])
@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v[:24]))
def test_hostile_value_never_becomes_a_key(release: str, field: str, value: str) -> None:
    line = _place(_line(release), field, value)
    assert value in line
    (job,) = parse_scontrol_jobs(line, version=VERSION[release])
    _check_job1(job)
    if field == "JobName":
        assert job.name == value.strip(" ")
    # Tail fields (Comment, StdOut …) come after every mandatory key: a fake tail key in
    # them may take a tail value of the job's own (not user, account nor hosts).


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v[:24]))
def test_hostile_job_costs_no_other_job(release: str, value: str) -> None:
    """The whole recorded output with one job's comment made hostile (newlines too)."""
    path = LIVE / release / "scontrol_show_job_d_o_running1.txt"
    clean = parse_scontrol_jobs(path.read_bytes(), version=VERSION[release])
    lines = path.read_text().split("\n")
    lines[0] = _place(lines[0], "Comment", value)
    jobs = parse_scontrol_jobs("\n".join(lines), version=VERSION[release])
    assert [j.job_id for j in jobs] == [j.job_id for j in clean]
    _check_job1(jobs[0])
    for mine, ref in zip(jobs[1:], clean[1:], strict=True):
        assert mine == ref


_FRAGMENTS = st.one_of(st.sampled_from(READ_KEYS), st.sampled_from(["\n", "=", "(", ")", " "]),
                       st.text(alphabet="abcXYZ09_-/:,[]", max_size=8))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(_FRAGMENTS, max_size=25),
       field=st.sampled_from(["JobName", "Comment", "StdOut", "WorkDir", "Command"]),
       release=st.sampled_from(RELEASES))
def test_hostile_value_property(parts: list[str], field: str, release: str) -> None:
    value = " ".join(parts)
    (job,) = parse_scontrol_jobs(_place(_line(release), field, value),
                                 version=VERSION[release])
    _check_job1(job)


def test_fake_record_behind_a_newline_is_not_a_job() -> None:
    """22.05.8 live: ``--comment $'c\\nJobId=99 UserId=root(0)'`` gave a physical line
    ``JobId=99 UserId=root(0)  StdErr=…`` of its own."""
    path = LIVE / "22.05" / "scontrol_show_job_d_o_running1.txt"
    lines = path.read_text().split("\n")
    fake = _line("22.05").replace("JobId=1 ", "JobId=2 ").replace("testuser", "root")
    lines[0] = _place(lines[0], "Comment", "c\n" + fake)
    jobs = parse_scontrol_jobs("\n".join(lines), version="22.05.8", only={1, 2})
    assert [j.job_id for j in jobs] == [1, 2]
    assert "text: a user-chosen field holds a newline" in jobs[0].warnings
    # A comment that repeats every key of the line in order is the one case the text
    # cannot tell apart (scontrol_text docstring): job 1's user, account and hosts then
    # come from sacct's JSON (22.05.8 recorded in the same run), which the job cannot
    # shape.
    acct = {j.job_id: j for j in parse_jobs(
        (LIVE / "22.05" / "sacct_running1.json").read_bytes(), source="sacct").jobs}
    merged = with_accounting_identity(jobs[0], acct[1])
    assert (merged.user, merged.account, merged.nodes) == ("testuser", "testacct", ("node1",))
    assert [r.hostname for r in merged.resources] == ["node1"]
    # job 2 as recorded: JobName=cancelled UserId=testuser(999) Account=testacct
    assert (jobs[1].name, jobs[1].user, jobs[1].account) == ("cancelled", "testuser",
                                                             "testacct")


@pytest.mark.parametrize("release", ["24.11", "26.05"])
def test_fake_whole_record_in_the_last_field_drops_that_id(release: str) -> None:
    """24.11+ end a batch job's line with StdOut=: a newline there followed by a whole
    fake record of a real job id cannot be told from a real line; the id then shows up
    twice, and both copies are left out (the job keeps its accounting record)."""
    path = LIVE / release / "scontrol_show_job_d_o_running1.txt"
    lines = path.read_text().split("\n")
    fake = lines[1].replace("testuser", "root")
    lines[0] = _place(lines[0], "StdOut", "/x\n" + fake)
    jobs = parse_scontrol_jobs("\n".join(lines), version=VERSION[release], only={1, 2, 3})
    assert [j.job_id for j in jobs] == [1, 3]
    _check_job1(jobs[0])


def test_non_utf8_name_in_scontrol_text() -> None:
    raw = _line("22.05").encode().replace(b"JobName=gpu", b"JobName=gpu\xe9x")
    (job,) = parse_scontrol_jobs(raw + b"\n", version="22.05.8")
    _check_job1(job)
    assert job.name == "gpu\ufffdx" and "text: non-UTF-8 bytes replaced" in job.warnings


def test_squeue_listing_takes_only_id_state_lines() -> None:
    text = b"12 RUNNING\nCLUSTER: x\n13 PENDING extra\n 14 COMPLETING \n12 PENDING\nab 1\n"
    assert parse_squeue_listing(text) == {12: "RUNNING", 14: "COMPLETING"}


def test_batch_script_printing_a_fake_header() -> None:
    dash = "-" * 80
    fake = f"echo hi\nBatch Script for 6\n{dash}\nrm -rf /\n"
    text = (f"Batch Script for 5\n{dash}\n#!/bin/sh\n{fake}"
            f"Batch Script for 6\n{dash}\n#!/bin/sh\nsleep 1\n"
            f"Batch Script for 7\n{dash}\n#!/bin/sh\ntrue\n")
    out = parse_batch_scripts(text, {5, 6, 7})
    assert out == {7: "#!/bin/sh\ntrue\n"}  # 5 holds the fake, 6 is doubtful
    # a fake header of a job not asked for does not split
    out = parse_batch_scripts(text, {5, 7})
    assert "rm -rf /" in out[5] and out[7] == "#!/bin/sh\ntrue\n"


def test_config_first_value_wins() -> None:
    text = ("Configuration data as of 2026-01-01T00:00:00\nClusterName             = real\n"
            "AccountingStoreFlags    = job_script\n\nCgroup Support Configuration:\n"
            "ClusterName = fake\n")
    conf = parse_config(text)
    assert conf["ClusterName"] == "real" and conf["AccountingStoreFlags"] == "job_script"


# ------------------------------------------------------------------------- JSON


def _sacct_fixtures() -> list[Path]:
    return sorted(LIVE.glob("*/sacct_*.json"))


@pytest.mark.parametrize("path", _sacct_fixtures(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_truncated_document_is_an_error(path: Path) -> None:
    data = path.read_bytes()
    body = data.rstrip()
    cuts = {int(len(body) * f / 1000) for f in range(100, 1000, 37)} | {
        len(body) - 1, int(len(body) * 0.999)}
    for cut in sorted(cuts):
        with pytest.raises(SlurmParseError):
            parse_jobs(body[:cut], source="sacct")


@pytest.mark.parametrize("doc", ['{"jobs": {}}', '{"meta": {}, "jobs": {"7": {}}}',
                                 '{"jobs": "x"}', '[1, 2]', '{"jobs": [{"job_id": 1}'])
def test_not_a_jobs_document_is_an_error(doc: str) -> None:
    with pytest.raises(SlurmParseError):
        parse_jobs(doc)


def test_legit_slow_path_cases_still_read() -> None:
    job = '{"job_id": %d, "job_state": "RUNNING", "cpus": %s}'
    text = ("CLUSTER: a\n" + '{"jobs": [%s, 5]}' % (job % (1, "Infinity")) + "\n"
            "CLUSTER: b\n" + '{"jobs": [%s]}' % (job % (2, "NaN")))
    result = parse_jobs(text)
    assert [j.job_id for j in result.jobs] == [1, 2] and result.skipped == 1


def test_deep_nesting_is_a_clear_error() -> None:
    deep = "[" * 10_000 + "]" * 10_000
    with pytest.raises(SlurmParseError, match="nested too deeply"):
        parse_jobs('{"jobs": [{"job_id": 1, "comment": ' + deep + '}, {"job_id": 2}]}')
    with pytest.raises(SlurmParseError):
        parse_nodes('{"nodes": [' + deep + "]}")


def _string_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _string_paths(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _string_paths(v, (*path, i))]
    return []


def _json_fixtures() -> list[Path]:
    names = ("squeue_running1.json", "sacct_after.json", "scontrol_show_job_running1.json")
    return [p for r in RELEASES for n in names if (p := LIVE / r / n).exists()]


_MARK = "QQBADBYTEQQ"


@pytest.mark.parametrize("path", _json_fixtures(), ids=lambda p: f"{p.parent.name}/{p.name}")
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_non_utf8_byte_in_any_string_field(path: Path, data: st.DataObject) -> None:
    """22.05.8 squeue/scontrol JSON write a job name's bytes raw: any string of any job
    may carry them; that job keeps its place and every other job is unchanged."""
    doc = json.loads(path.read_bytes())
    clean = parse_jobs(path.read_bytes()).jobs
    k = data.draw(st.integers(0, len(doc["jobs"]) - 1))
    paths = _string_paths(doc["jobs"][k])
    if not paths:
        return
    where = data.draw(st.sampled_from(paths))
    target: Any = doc["jobs"][k]
    for step in where[:-1]:
        target = target[step]
    target[where[-1]] = target[where[-1]] + _MARK
    raw = json.dumps(doc).encode().replace(_MARK.encode(), b"\xe9\xff")
    result = parse_jobs(raw)
    assert [j.job_id for j in result.jobs] == [j.job_id for j in clean]
    for n, (mine, ref) in enumerate(zip(result.jobs, clean, strict=True)):
        if n != k:
            assert mine == ref


def test_non_utf8_live_squeue_sample() -> None:
    """The byte as 22.05.8's squeue --json wrote it for ``sbatch -J $'gpu\\xe9x'``."""
    clean = (LIVE / "22.05" / "squeue_running1.json").read_bytes()
    doc = json.loads(clean)
    doc["jobs"][0]["name"] = "gpu" + _MARK + "x"
    raw = json.dumps(doc).encode().replace(_MARK.encode(), b"\xe9")
    jobs = parse_jobs(raw).jobs
    assert len(jobs) == len(doc["jobs"]) and jobs[0].name == "gpu\ufffdx"
    assert "text: non-UTF-8 bytes replaced" in jobs[0].warnings


# ------------------------------------------------------------------------ merge


def test_accounting_identity_wins() -> None:
    spoofed = JobRecord(source="scontrol", job_id=6, user="root", user_id=0, group="root",
                        account="evilacct", nodes=("node1", "evil1"), cpus=65,
                        resources=(NodeResources(hostname="node1", cpu_ids=(0,), cpus=1),
                                   NodeResources(hostname="evil1", cpu_ids=tuple(range(64)),
                                                 cpus=64)))
    acct = JobRecord(source="sacct", job_id=6, user="testuser", group="testuser",
                     account="testacct", nodes=("node1",), cpus=1)
    merged = with_accounting_identity(spoofed, acct)
    assert (merged.user, merged.group, merged.account) == ("testuser", "testuser", "testacct")
    assert merged.user_id is None and merged.nodes == ("node1",)
    assert [r.hostname for r in merged.resources] == ["node1"]
    assert sum("identity:" in w for w in merged.warnings) >= 4
    # agreeing records come back unchanged
    same = msgspec.structs.replace(spoofed, user="testuser", group="testuser",
                                   account="testacct", nodes=("node1",),
                                   resources=spoofed.resources[:1])
    assert with_accounting_identity(same, acct) is same
    # more CPUs than accounting allocated: the per-node view is not trusted
    many = msgspec.structs.replace(same, resources=(NodeResources(
        hostname="node1", cpu_ids=tuple(range(8)), cpus=8),))
    assert with_accounting_identity(many, acct).resources == ()
    # a provisional sacct record (placeholder at start) does not set the hosts
    placeholder = msgspec.structs.replace(acct, nodes=("node9",), provisional=True)
    assert with_accounting_identity(same, placeholder).nodes == ("node1",)
    with pytest.raises(ValueError, match="job ids differ"):
        with_accounting_identity(same, msgspec.structs.replace(acct, job_id=7))
