"""CLI: upstream's flags in both spellings, subcommands, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cc_slurm_adapter import __version__
from cc_slurm_adapter.cli import main, parse_args


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cc_slurm_adapter", *args],
                          capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("argv", [
    ["-config", "/x.json", "-daemon", "-debug", "4"],
    ["--config", "/x.json", "--daemon", "--debug", "4"],
    ["-config=/x.json", "-daemon=true", "-debug=4"],
    ["--config=/x.json", "--daemon", "--debug=4"],
])
def test_upstream_flags_both_spellings(argv: list[str]) -> None:
    ctx = parse_args(argv)
    assert (ctx.config_path, ctx.daemon, ctx.debug, ctx.problems) == ("/x.json", True, 4, [])


def test_flags_before_or_after_a_subcommand() -> None:
    before = parse_args(["-config", "/c.json", "-debug", "3", "check"])
    after = parse_args(["check", "-config", "/c.json", "--debug", "3"])
    for ctx in (before, after):
        assert (ctx.subcommand, ctx.config_path, ctx.debug, ctx.rest) == (
            "check", "/c.json", 3, [])


def test_subcommand_keeps_its_own_options() -> None:
    ctx = parse_args(["convert", "--cluster", "x", "-config", "/c", "a.json", "-help"])
    assert ctx.subcommand == "convert"
    assert ctx.rest == ["--cluster", "x", "a.json", "--help"]
    assert ctx.config_path == "/c" and not ctx.help


@pytest.mark.parametrize(("argv", "problem"), [
    (["-debug", "9"], "invalid value '9' for flag -debug: expected a number from 0 to 5"),
    (["-debug", "x"], "invalid value 'x' for flag -debug: expected a number from 0 to 5"),
    (["-config"], "flag needs an argument: -config"),
    (["-bogus"], "flag provided but not defined: -bogus"),
    (["-daemon=maybe"], "invalid boolean value 'maybe' for flag -daemon"),
])
def test_problems_are_collected(argv: list[str], problem: str) -> None:
    assert parse_args(argv).problems == [problem]


def test_help_lists_upstream_flags(capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("-help", "--help", "-h"):
        assert main([flag]) == 0
        out = capsys.readouterr().out
        for name in ("-config string", "-daemon", "-debug int", "-help",
                     "/etc/cc-slurm-adapter/config.json", "check", "convert"):
            assert name in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"cc-slurm-adapter {__version__}\n"


def test_daemon_with_missing_config_is_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    result = run_cli("-daemon", "-config", str(missing))
    assert result.returncode == 1
    assert result.stderr == (f"cc-slurm-adapter: error: {missing}: cannot read config file: "
                             f"No such file or directory\n")
    assert "Traceback" not in result.stderr


def test_daemon_with_bad_config_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"ccRestUrl": "http://cc/", "ccRestJwt": "tok-secret"}))
    result = run_cli("-daemon", "-config", str(path))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert f"{path}: key 'ccRestUrl': must not end with a slash" in result.stderr
    assert "tok-secret" not in result.stderr


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-daemon", "-debug", "7"]) == 2
    assert "invalid value '7' for flag -debug" in capsys.readouterr().err


def test_check_subcommand(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"ccRestUrl": "http://cc:8080", "ccRestJwt": "tok-secret",
                                "slurmPolInterval": 1}))
    path.chmod(0o600)
    result = run_cli("check", "-config", str(path))
    assert result.returncode == 0, result.stderr
    assert "did you mean 'slurmPollInterval'?" in result.stdout
    assert f"ok: {path} is valid" in result.stdout
    assert "tok-secret" not in result.stdout + result.stderr


def test_hook_mode_ignores_unknown_arguments_and_exits_0(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "SLURM_JOB_ID": "17",
           "SLURM_SCRIPT_CONTEXT": "prolog_slurmctld"}
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"prepSockConnectPath": str(tmp_path / "nobody.sock")}))
    result = run_cli("-config", str(config), "--weird", "-debug", "99", "extra", env=env)
    assert result.returncode == 0
    assert "job 17: cannot reach the daemon" in result.stderr
    assert "Traceback" not in result.stderr
