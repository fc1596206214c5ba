"""``cc-slurm-adapter convert``: files and live jobs → one NDJSON line per job."""

from __future__ import annotations

import json
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
    assert node_fail["stop_job"]["jobState"] == "failed"
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
