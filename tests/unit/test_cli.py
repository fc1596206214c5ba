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


def test_missing_daemon_module_is_not_built_yet(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from cc_slurm_adapter import cli

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"ccRestUrl": "http://cc:8080", "ccRestJwt": "tok"}))
    path.chmod(0o600)
    monkeypatch.setattr(cli, "DAEMON_MODULE", "ccsa_test_daemon_that_does_not_exist")
    assert main(["-daemon", "-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err == (f"cc-slurm-adapter: error: daemon mode (the config {path} is valid) is not "
                   f"part of this build yet\n")


def test_broken_import_says_what_is_broken(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A daemon module that exists but imports a missing module is a broken install."""
    from cc_slurm_adapter import cli

    (tmp_path / "ccsa_test_broken_daemon.py").write_text("import ccsa_test_missing_dep\n")
    (tmp_path / "ccsa_test_bad_name.py").write_text("from json import no_such_name\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"ccRestUrl": "http://cc:8080", "ccRestJwt": "tok"}))
    path.chmod(0o600)
    monkeypatch.setattr(cli, "DAEMON_MODULE", "ccsa_test_broken_daemon")
    assert main(["-daemon", "-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not part of this build" not in err
    assert "daemon mode (the config" in err and "cannot start" in err
    assert "module 'ccsa_test_missing_dep' is missing" in err and "reinstall" in err
    monkeypatch.setattr(cli, "DAEMON_MODULE", "ccsa_test_bad_name")
    assert main(["-daemon", "-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "cannot import name 'no_such_name' from 'json'" in err and err.count("\n") == 1


def test_broken_import_names_our_file_that_wanted_it() -> None:
    from cc_slurm_adapter import cli

    daemon_file = str(Path(cli.__file__).parent / "daemon" / "sync.py")
    try:
        exec(compile("\nimport ccsa_test_missing_dep\n", daemon_file, "exec"), {})
    except ModuleNotFoundError as exc:
        message = cli.describe_import_error(exc)
    assert message == ("module 'ccsa_test_missing_dep' is missing (imported by "
                       "cc_slurm_adapter/daemon/sync.py, line 2); the installation is broken: "
                       "reinstall cc-slurm-adapter")


def test_exit_codes_are_defined_once() -> None:
    """Only errors.py assigns EXIT_* names; cli and convert use those very objects."""
    import ast

    from cc_slurm_adapter import convert, errors

    package = Path(errors.__file__).parent
    assigned = []
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            targets = (node.targets if isinstance(node, ast.Assign) else
                       [node.target] if isinstance(node, ast.AnnAssign) else [])
            for target in targets:
                names = target.elts if isinstance(target, ast.Tuple) else [target]
                assigned += [(source.name, n.id) for n in names
                             if isinstance(n, ast.Name) and n.id.startswith("EXIT_")]
    assert {file for file, _ in assigned} == {"errors.py"}
    assert (errors.EXIT_OK, errors.EXIT_ERROR, errors.EXIT_USAGE) == (0, 1, 2)
    assert convert.EXIT_USAGE is errors.EXIT_USAGE


def test_topology_error_is_an_adapter_error() -> None:
    from cc_slurm_adapter.errors import AdapterError
    from cc_slurm_adapter.topology import TopologyError

    assert issubclass(TopologyError, AdapterError) and issubclass(TopologyError, ValueError)
