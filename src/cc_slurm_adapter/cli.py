"""Command line: upstream's flags, plus subcommands for admins.

Upstream's binary takes ``-config PATH``, ``-daemon``, ``-debug N`` and ``-help``
(Go's flag package: one or two dashes, ``-flag value`` or ``-flag=value``).
Without ``-daemon`` it runs as the Prolog/Epilog hook. We keep all of that and
add subcommands (``check``, ``convert``, ...); the global flags may stand before
or after a subcommand.

In hook mode nothing may fail the Slurm job: unknown arguments are ignored, and
the exit code is always 0. Subcommand modules are imported only when used, so
the hook path stays fast.
"""

from __future__ import annotations

import os
import sys

from cc_slurm_adapter import __version__

# The hook runs at every job start and end: until main() knows it is not the hook, this
# module imports nothing that Python has not loaded at start (no logging, dataclasses,
# typing, importlib, config, errors: it imports typing); the other modes import what they
# need when they run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import ModuleType

PROG = "cc-slurm-adapter"
DAEMON_MODULE = "cc_slurm_adapter.daemon"

# name -> (module, one-line help). Each module has ``run(args: list[str], ctx: CliContext) -> int``.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "check": ("cc_slurm_adapter.check", "validate the config file and report problems"),
    "convert": ("cc_slurm_adapter.convert",
                "turn saved Slurm JSON (or a live job) into cc-backend payloads"),
}

VALUE_FLAGS = ("config", "debug")
BOOL_FLAGS = ("daemon", "help", "h", "version")

HELP = f"""\
Usage: {PROG} [-config PATH] [-daemon] [-debug N] [SUBCOMMAND [ARGS...]]

Feeds Slurm job data into ClusterCockpit's cc-backend.

Flags (one or two dashes; before or after a subcommand):
  -config string
        Specify the path to the config file (default "/etc/cc-slurm-adapter/config.json")
  -daemon
        Run in daemon mode (if omitted, runs in Prolog/Epilog mode)
  -debug int
        Set the log level: 0 fatal, 1 error, 2 warning, 3 info, 4 debug, 5 trace (default 2)
  -help
        Show this help
  -version
        Print the version

Without -daemon and without a subcommand, {PROG} runs as the Prolog/Epilog hook
(PrologSlurmctld/EpilogSlurmctld): it tells the daemon about the job and always
exits 0.

Subcommands:
{{subcommands}}
Run '{PROG} SUBCOMMAND -help' for a subcommand's own options.
"""


class CliContext:
    """What the global flags said, handed to the mode or subcommand that runs.

    A plain class, not a dataclass: ``dataclasses`` imports ``inspect`` (~6 ms), and the
    hook path builds one of these.
    """

    def __init__(self) -> None:
        self.config_path: str | None = None
        self.daemon = False
        self.debug = 2
        self.help = False
        self.version = False
        self.subcommand: str | None = None
        self.rest: list[str] = []
        self.problems: list[str] = []

    def __repr__(self) -> str:
        return f"CliContext({vars(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CliContext) and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it was


def _parse_bool(value: str) -> bool | None:
    lowered = value.lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    return None


def parse_args(argv: Sequence[str]) -> CliContext:
    """Split argv into the global flags, a subcommand, and the subcommand's arguments.

    Problems (a bad -debug value, a flag without its value, an unknown flag) are
    collected, not raised: hook mode ignores them, the other modes report them.
    """
    ctx = CliContext()
    args = list(argv)
    index = 0
    while index < len(args):
        token = args[index]
        index += 1
        if token == "--" and ctx.subcommand:
            ctx.rest.extend(args[index:])
            break
        if token.startswith("-") and token not in ("-", "--"):
            name, has_value, value = token.lstrip("-").partition("=")
            if name in VALUE_FLAGS:
                if not has_value:
                    if index >= len(args):
                        ctx.problems.append(f"flag needs an argument: -{name}")
                        continue
                    value = args[index]
                    index += 1
                if name == "config":
                    ctx.config_path = value
                elif not value.lstrip("-").isdigit() or not 0 <= int(value) <= 5:
                    ctx.problems.append(f"invalid value {value!r} for flag -debug: "
                                        f"expected a number from 0 to 5")
                else:
                    ctx.debug = int(value)
                continue
            if name in BOOL_FLAGS:
                flag_value = _parse_bool(value) if has_value else True
                if flag_value is None:
                    ctx.problems.append(f"invalid boolean value {value!r} for flag -{name}")
                    continue
                if name in ("help", "h") and ctx.subcommand:
                    ctx.rest.append("--help")
                    continue
                setattr(ctx, "help" if name == "h" else name, flag_value)
                continue
            if ctx.subcommand:
                ctx.rest.append(token)
            else:
                ctx.problems.append(f"flag provided but not defined: {token}")
            continue
        if ctx.subcommand is None and token in SUBCOMMANDS:
            ctx.subcommand = token
        elif ctx.subcommand:
            ctx.rest.append(token)
        else:
            ctx.problems.append(f"unexpected argument: {token!r}")
    return ctx


def _help_text() -> str:
    lines = "".join(f"  {name:<10} {desc}\n" for name, (_, desc) in SUBCOMMANDS.items())
    return HELP.format(subcommands=lines)


def _error(message: str) -> None:
    from cc_slurm_adapter.log import redact

    print(f"{PROG}: error: {redact(message)}", file=sys.stderr)


def describe_import_error(exc: ImportError) -> str:
    """What is broken, in one line: the missing module and which file of ours wanted it."""
    import traceback

    package_dir = os.path.dirname(os.path.abspath(__file__))
    where = ""
    this_file = os.path.abspath(__file__)  # our own import_module call says nothing
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        filename = os.path.abspath(frame.filename) if frame.filename else ""
        if filename.startswith(package_dir + os.sep) and filename != this_file:
            relative = os.path.relpath(frame.filename, os.path.dirname(package_dir))
            where = f" (imported by {relative}, line {frame.lineno})"
            break
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        what = f"module '{exc.name}' is missing"
    else:
        what = (str(exc).splitlines() or [type(exc).__name__])[0]
    return f"{what}{where}; the installation is broken: reinstall cc-slurm-adapter"


def _import(module_name: str, what: str) -> ModuleType | None:
    """Import a mode's module; None (after one error line) if it cannot be imported.

    Only a missing ``module_name`` itself means "not part of this build"; any other
    missing module, or a name that cannot be imported, is a broken installation and
    says what is broken.
    """
    import importlib

    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            _error(f"{what} is not part of this build yet")
            return None
        _error(f"{what} cannot start: {describe_import_error(exc)}")
        return None
    except ImportError as exc:
        _error(f"{what} cannot start: {describe_import_error(exc)}")
        return None


def _run_daemon(ctx: CliContext) -> int:
    import logging

    from cc_slurm_adapter.config import load_config
    from cc_slurm_adapter.errors import EXIT_ERROR
    from cc_slurm_adapter.log import add_secrets

    log = logging.getLogger("cc_slurm_adapter.cli")
    loaded = load_config(ctx.config_path, purpose="daemon")
    add_secrets(loaded.config.secrets)
    for warning in loaded.warnings:
        log.warning("%s", warning)
    daemon = _import(DAEMON_MODULE, f"daemon mode (the config {loaded.config.source} is valid)")
    if daemon is None:
        return EXIT_ERROR
    run: Callable[[object], int] = daemon.run
    return run(loaded.config)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cc-slurm-adapter`` console script."""
    ctx = parse_args(sys.argv[1:] if argv is None else argv)
    hook_mode = not ctx.daemon and ctx.subcommand is None and not ctx.help and not ctx.version

    if hook_mode:
        # Prolog/Epilog: never fail the job, whatever the arguments say.
        from cc_slurm_adapter import hook

        if argv is None:  # the console script's own process: exit 0 within hook.DEADLINE
            hook.run_as_process(sys.argv[1:])
        return hook.main(sys.argv[1:] if argv is None else argv)

    from cc_slurm_adapter.errors import (
        EXIT_ERROR,
        EXIT_INTERRUPTED,
        EXIT_OK,
        EXIT_USAGE,
        ConfigError,
    )

    if ctx.version:
        print(f"{PROG} {__version__}")
        return EXIT_OK
    if ctx.help and ctx.subcommand is None:
        print(_help_text(), end="")
        return EXIT_OK
    if ctx.problems:
        for problem in ctx.problems:
            _error(problem)
        print(f"Run '{PROG} -help' for usage.", file=sys.stderr)
        return EXIT_USAGE

    from cc_slurm_adapter.log import setup_logging

    setup_logging(ctx.debug)
    try:
        if ctx.subcommand is not None:
            module_name, _ = SUBCOMMANDS[ctx.subcommand]
            module = _import(module_name, f"subcommand '{ctx.subcommand}'")
            if module is None:
                return EXIT_ERROR
            result: int = module.run(ctx.rest, ctx)
            return result
        return _run_daemon(ctx)
    except ConfigError as exc:
        _error(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
