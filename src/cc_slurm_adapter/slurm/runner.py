"""Run Slurm commands: asyncio subprocesses, no shell, a timeout per call, typed errors.

Every command goes through :class:`CommandRunner.run`, which

* execs the argv directly (never a shell), with stdin from ``/dev/null``;
* pins the environment where it matters: ``TZ=UTC`` (``-S/-E`` and text times are
  read as UTC), ``LC_ALL=C``, and removes the ``SQUEUE_*``/``SACCT_*``/``SINFO_*``
  format variables a site or user profile may set;
* kills the process when it runs longer than its timeout;
* converts failures at the edge: :class:`SlurmCommandMissing`,
  :class:`SlurmCommandTimeout`, :class:`SlurmCommandFailed` (with the exit code and
  stderr);
* counts calls (``calls``), so tests and metrics can check the per-cycle budget.

:class:`FakeRunner` answers from a function instead of a process (tests, benchmark).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Protocol

import msgspec

from cc_slurm_adapter.errors import SlurmCommandFailed, SlurmCommandMissing, SlurmCommandTimeout

__all__ = ["CommandResult", "CommandRunner", "FakeRunner", "Runner", "slurm_env"]

log = logging.getLogger("cc_slurm_adapter.slurm")

# Variables that change what Slurm prints (text formats, sort order, time format).
_DROP_PREFIXES = ("SQUEUE_", "SACCT_", "SINFO_", "SCONTROL_")
_DROP = frozenset({"SLURM_TIME_FORMAT", "SQUEUE_FORMAT", "SQUEUE_FORMAT2", "SACCT_FORMAT",
                   "SINFO_FORMAT", "SLURM_CLUSTERS"})
_PINNED = {"TZ": "UTC", "LC_ALL": "C", "LANG": "C", "SLURM_TIME_FORMAT": "standard"}


def slurm_env(base: Mapping[str, str] | None = None,
              extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment Slurm commands run with (``base`` defaults to ``os.environ``)."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if k not in _DROP and not k.startswith(_DROP_PREFIXES)}
    env.update(_PINNED)
    if extra:
        env.update(extra)
    return env


class CommandResult(msgspec.Struct, frozen=True, kw_only=True):
    argv: tuple[str, ...]
    stdout: bytes
    stderr: str
    returncode: int
    seconds: float


class Runner(Protocol):
    """What the Slurm source needs from a runner."""

    calls: int

    async def run(self, argv: Sequence[str], *, timeout: float | None = None,
                  ok_codes: Sequence[int] = (0,)) -> CommandResult: ...


class CommandRunner:
    """Runs Slurm commands as asyncio subprocesses."""

    def __init__(self, *, timeout: float = 120.0, env: Mapping[str, str] | None = None,
                 bin_dir: str | None = None) -> None:
        self.timeout = timeout
        self.env = slurm_env(env)
        self.bin_dir = bin_dir
        self.calls = 0

    def _argv(self, argv: Sequence[str]) -> list[str]:
        args = list(argv)
        if self.bin_dir and "/" not in args[0]:
            args[0] = os.path.join(self.bin_dir, args[0])
        return args

    async def run(self, argv: Sequence[str], *, timeout: float | None = None,
                  ok_codes: Sequence[int] = (0,)) -> CommandResult:
        args = self._argv(argv)
        limit = self.timeout if timeout is None else timeout
        self.calls += 1
        started = time.monotonic()
        # stdout goes to an unlinked temporary file, read back in one piece once the
        # command is done: a pipe read through asyncio holds the output twice at its peak
        # (the chunks, then their join), and a cycle's sacct window is the daemon's
        # largest allocation (7 MB of JSON for 1,300 running jobs: bench_daemon_steady.py).
        try:
            spool: IO[bytes] | None = tempfile.TemporaryFile(  # noqa: SIM115 (closed below)
                prefix="ccsa-slurm-")
        except OSError:
            spool = None  # no usable temporary directory: the pipe
        try:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *args, stdin=asyncio.subprocess.DEVNULL,
                    stdout=spool if spool is not None else asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE, env=self.env)
            except FileNotFoundError as exc:
                raise SlurmCommandMissing(f"{args[0]}: command not found", argv=args) from exc
            except PermissionError as exc:
                raise SlurmCommandMissing(f"{args[0]}: not executable", argv=args) from exc
            try:
                piped, stderr_b = await asyncio.wait_for(proc.communicate(), limit)
            except TimeoutError as exc:
                proc.kill()
                await proc.wait()
                raise SlurmCommandTimeout(
                    f"{' '.join(args[:3])} …: no answer after {limit:g} s",
                    argv=args, timeout=limit) from exc
            except asyncio.CancelledError:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                raise
            if spool is not None:
                spool.seek(0)
                stdout = spool.read()  # one allocation of the file's size
            else:
                stdout = piped
        finally:
            if spool is not None:
                spool.close()
        seconds = time.monotonic() - started
        stderr = stderr_b.decode("utf-8", "replace").strip()
        code = proc.returncode if proc.returncode is not None else -1
        log.debug("ran %s: exit %s in %.3f s, %d bytes", args[0], code, seconds, len(stdout))
        if code not in ok_codes:
            first = stderr.splitlines()[0] if stderr else "(no stderr)"
            raise SlurmCommandFailed(f"{os.path.basename(args[0])} exited {code}: {first}",
                                     argv=args, returncode=code, stderr=stderr)
        return CommandResult(argv=tuple(args), stdout=stdout, stderr=stderr,
                             returncode=code, seconds=seconds)


class FakeRunner:
    """A runner that answers from ``handler(argv)`` – for tests and the benchmark.

    The handler returns stdout bytes (or a :class:`CommandResult`) or raises a
    ``SlurmCommandError``. Every call is recorded in ``argvs``.
    """

    def __init__(self, handler: Callable[[tuple[str, ...]], bytes | CommandResult]) -> None:
        self.handler = handler
        self.calls = 0
        self.argvs: list[tuple[str, ...]] = []

    async def run(self, argv: Sequence[str], *, timeout: float | None = None,
                  ok_codes: Sequence[int] = (0,)) -> CommandResult:
        args = tuple(argv)
        self.calls += 1
        self.argvs.append(args)
        out = self.handler(args)
        if isinstance(out, CommandResult):
            if out.returncode not in ok_codes:
                raise SlurmCommandFailed(f"{args[0]} exited {out.returncode}", argv=args,
                                         returncode=out.returncode, stderr=out.stderr)
            return out
        return CommandResult(argv=args, stdout=out, stderr="", returncode=0, seconds=0.0)
