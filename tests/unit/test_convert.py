"""``cc-slurm-adapter convert``: files and live jobs → one NDJSON line per job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cc_slurm_adapter import convert
from cc_slurm_adapter.cli import main
from cc_slurm_adapter.errors import SlurmCommandFailed
from cc_slurm_adapter.slurm.runner import FakeRunner

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SJ = FIXTURES / "slurm-json"
CLUSTERS = FIXTURES / "mapping" / "clusters"
MULTI_NODE = SJ / "25.11/slurmrestd_v0.0.44/slurm-job-gpus-multi-nodes.json"
MULTI_TYPES = SJ / "24.11/slurmrestd_v0.0.42/slurm-job-gpus-multi-types.json"
PENDING = SJ / "25.11/slurmrestd_v0.0.44/slurm-job-pending.json"
TIMEOUT = SJ / "23.11/slurmrestd_v0.0.40/slurm-job-timeout.json"
SACCT_ARRAY = SJ / "21.08/sacct_21.08.8-2_clockwork_sacct_1.json"


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    code = main(["convert", *args])
    captured = capsys.readouterr()
    return code, (lines(captured.out) if code == 0 else []), captured.err


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({
        "gpuPciAddrs": {"^gpu[0-9]+$": ["0000:01:00.0", "0000:41:00.0", "0000:81:00.0",
                                        "0000:c1:00.0"]},
        "ignoreHosts": "^cdr2$",
    }))
    return path


def test_one_line_per_job_in_input_order(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(TIMEOUT), str(PENDING), str(SACCT_ARRAY))
    assert code == 0, err
    assert [o["jobId"] for o in out] == [776, 5750, 10, 20]
    assert all(set(o) == {"jobId", "cluster", "start_job", "stop_job", "warnings"} for o in out)
    timeout, pending, node_fail, requeued = out
    assert timeout["stop_job"]["jobState"] == "timeout"
    assert timeout["start_job"]["startTime"] == timeout["stop_job"]["startTime"]
    assert pending["start_job"] is None and pending["stop_job"] is None
    # 21.08's sacct says NODE_FAIL with "end": 0: Slurm gives no end time yet, so no stop
    # is built (issue 10 §2: a stop only with Slurm's real end time)
    assert node_fail["start_job"] is not None and node_fail["stop_job"] is None
    assert any("end time not known" in w for w in node_fail["warnings"])
    assert requeued["stop_job"]["jobState"] == "preempted"
    assert any("requeued" in w for w in requeued["warnings"])


def test_config_gives_pci_addresses_and_ignore_hosts(capsys: pytest.CaptureFixture[str],
                                                     config: Path) -> None:
    code, out, err = run(capsys, "-config", str(config), str(MULTI_NODE), str(SACCT_ARRAY))
    assert code == 0, err
    gpu, _, skipped = out
    assert gpu["start_job"]["resources"][0]["accelerators"] == [
        "0000:01:00.0", "0000:41:00.0", "0000:81:00.0", "0000:c1:00.0"]
    assert skipped["jobId"] == 20
    assert skipped["start_job"] is None and skipped["stop_job"] is None
    assert "ignoreHosts" in skipped["warnings"][0]


def test_cluster_profile_and_topology(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--cluster", "hpc", "--profile", "v1.4",
                         "--cluster-config", str(CLUSTERS / "hpc.cluster.json"),
                         str(MULTI_TYPES))
    assert code == 0, err
    (job,) = out
    start = job["start_job"]
    assert job["cluster"] == start["cluster"] == "hpc"
    assert start["exclusive"] == 0 and "shared" not in start and "submitTime" not in start
    assert start["resources"][0]["hwthreads"] == [0, 32]  # ia1: 2 threads per core


def test_cluster_override(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--cluster", "renamed", str(TIMEOUT))
    assert code == 0
    assert out[0]["cluster"] == out[0]["start_job"]["cluster"] == "renamed"
    assert out[0]["stop_job"]["cluster"] == "renamed"


def test_file_without_jobs_is_success(capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text('{"meta": {"slurm": {"release": "24.11.5"}}, "jobs": [], "errors": []}')
    assert run(capsys, str(empty)) == (0, [], "")


@pytest.mark.parametrize("content", ["", "not json at all", '{"nodes": []}', "[1, 2]"])
def test_not_slurm_json_exits_2_naming_the_file(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path, content: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code = main(["convert", str(TIMEOUT), str(bad)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""  # nothing is printed before every file has been read
    assert captured.err.count("\n") == 1 and str(bad) in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("args", [[], ["--profile", "v2"], ["--job", "x"],
                                  ["--job", "1", "file.json"], ["--bogus"]])
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    assert main(["convert", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_file_and_bad_cluster_config(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    assert main(["convert", str(tmp_path / "nope.json")]) == 2
    assert "nope.json" in capsys.readouterr().err
    bad = tmp_path / "cluster.json"
    bad.write_text('{"name": 3}')
    assert main(["convert", "--cluster-config", str(bad), str(TIMEOUT)]) == 2
    assert "cluster.json" in capsys.readouterr().err


def test_bad_config_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text('{"ignoreHosts": "["}')
    assert main(["convert", "-config", str(cfg), str(TIMEOUT)]) == 1
    assert "ignoreHosts" in capsys.readouterr().err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", "--help"]) == 0
    assert "--cluster-config" in capsys.readouterr().out


def _fake_slurm(squeue: bytes | None) -> FakeRunner:
    sacct_meta = (SJ / "25.11/slurmrestd_v0.0.44/slurmdb-job-completed.json").read_bytes()

    def handler(argv: tuple[str, ...]) -> bytes:
        if argv[0] == "sacct" and "--json=list" in argv:
            return b"v0.0.42\nv0.0.43\nv0.0.44\n"
        if argv[0] == "sacct":
            return sacct_meta
        if argv[0] == "scontrol":
            raise SlurmCommandFailed("scontrol exited 1", argv=argv, returncode=1,
                                     stderr="no nodes")
        if argv[0] == "squeue" and squeue is not None:
            return squeue
        return b'{"jobs": []}'

    return FakeRunner(handler)


def test_live_job_from_squeue(capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    runner = _fake_slurm(MULTI_TYPES.read_bytes())
    monkeypatch.setattr(convert, "_make_runner", lambda _timeout: runner)
    code, out, err = run(capsys, "--job", "6356")
    assert code == 0, err
    assert [o["jobId"] for o in out] == [6356]
    assert out[0]["start_job"]["resources"][0]["hostname"] == "ia1"
    assert any(a[0] == "squeue" and "6356" in a for a in runner.argvs)


def test_live_job_falls_back_to_sacct(capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    runner = _fake_slurm(None)
    monkeypatch.setattr(convert, "_make_runner", lambda _timeout: runner)
    code, out, err = run(capsys, "--job", "5749")
    assert code == 0, err
    assert out[0]["stop_job"]["jobState"] == "completed"
    assert any(a[0] == "sacct" and "-j" in a for a in runner.argvs)


def test_live_job_unknown_exits_1(capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(convert, "_make_runner", lambda _timeout: _fake_slurm(None))
    assert main(["convert", "--job", "999"]) == 1
    err = capsys.readouterr().err
    assert "999" in err and err.count("\n") == 1


# ------------------------------------------------------------ output errors, bad input


def run_shell(command: str) -> subprocess.CompletedProcess[str]:
    """``cc-slurm-adapter`` (this interpreter) inside a shell command line."""
    prog = f"'{sys.executable}' -m cc_slurm_adapter"
    return subprocess.run(["/bin/sh", "-c", command.replace("CCSA", prog)],
                          capture_output=True, text=True, timeout=60)


def assert_one_line(err: str) -> None:
    assert err.count("\n") == 1, err
    assert "Traceback" not in err and "Exception ignored" not in err


def test_full_disk_is_one_line_and_exit_1() -> None:
    result = run_shell(f"CCSA convert '{TIMEOUT}' >/dev/full")
    assert result.returncode == 1
    assert result.stderr == ("cc-slurm-adapter convert: error: cannot write the output: "
                             "No space left on device\n")


def test_closed_stdout_is_one_line_and_exit_1() -> None:
    result = run_shell(f"CCSA convert '{TIMEOUT}' >&-")
    assert result.returncode == 1
    assert_one_line(result.stderr)
    assert "cannot write the output" in result.stderr


def test_closed_stdin_is_one_line_and_exit_2() -> None:
    result = run_shell("CCSA convert - <&-")
    assert result.returncode == 2
    assert result.stderr == ("cc-slurm-adapter convert: error: <stdin>: cannot read: "
                             "standard input is closed\n")


def test_reader_that_leaves_early_is_not_an_error() -> None:
    files = " ".join([f"'{TIMEOUT}'"] * 200)
    result = run_shell(f"CCSA convert {files} | head -c 10 >/dev/null; echo rc=$?")
    assert result.stderr == ""  # no BrokenPipeError, no 'Exception ignored'


def test_parse_error_becomes_exit_2_with_one_line(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    """Whatever the parser says about a document cut short reaches the admin in one line."""
    from cc_slurm_adapter.errors import SlurmParseError

    def truncated(_data: bytes | str) -> object:
        raise SlurmParseError("Slurm output is truncated JSON\n(ends inside 'jobs' at byte 3000)")

    monkeypatch.setattr(convert, "decode_document", truncated)
    cut = tmp_path / "cut.json"
    cut.write_bytes(TIMEOUT.read_bytes()[:3000])
    assert main(["convert", str(cut)]) == 2
    err = capsys.readouterr().err
    assert err == (f"cc-slurm-adapter convert: error: {cut}: not Slurm JSON (Slurm output is "
                   f"truncated JSON (ends inside 'jobs' at byte 3000))\n")


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.999])
def test_truncated_slurm_json_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                      fraction: float) -> None:
    data = SACCT_ARRAY.read_bytes()
    cut = tmp_path / "cut.json"
    cut.write_bytes(data[:int(len(data) * fraction)])
    assert main(["convert", str(cut)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_line(captured.err)
    assert str(cut) in captured.err


def test_deeply_nested_cluster_config_is_one_line(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    deep = tmp_path / "cluster.json"
    deep.write_text("[" * 10_000 + "]" * 10_000)
    assert main(["convert", "--cluster-config", str(deep), str(TIMEOUT)]) == 2
    err = capsys.readouterr().err
    assert_one_line(err)
    assert "nested too deeply" in err


def test_profile_choices_come_from_the_profiles_table() -> None:
    from cc_slurm_adapter.profiles import PROFILES

    action = next(a for a in convert._parser()._actions if a.dest == "profile")
    assert tuple(action.choices or ()) == tuple(PROFILES)
