"""``cc-slurm-adapter convert``: saved Slurm JSON (or a live job) → cc-backend payloads.

For admins who debug a Slurm upgrade or a job that cc-backend refused::

    cc-slurm-adapter convert [-config FILE] [--cluster NAME] [--profile v1.5|v1.4|v1.3]
                             [--cluster-config cluster.json] FILE...
    cc-slurm-adapter convert [...] --job 1234

Each FILE is the JSON of ``sacct``, ``squeue``, ``scontrol show job(s)`` or slurmrestd
(any release we read; the kind is detected from the content; ``-`` is stdin). The
output is NDJSON, one line per job in input order::

    {"jobId": N, "cluster": "...", "start_job": {...}|null, "stop_job": {...}|null,
     "warnings": [...]}

``start_job`` is null while the job has not started, ``stop_job`` while it has not
ended; a skipped job has both null and the reason in ``warnings``. The payloads are
exactly what the daemon would send, for the chosen profile (default: the config's
``ccRestProfile``). ``-config`` supplies gpuPciAddrs, ignoreHosts and ccRestSendTags;
``--cluster-config`` gives cc-backend's cluster.json (or a saved ``GET /api/clusters/``
answer) so hwthreads follow its topology.

Exit codes: 0 on success (also for files without jobs), 1 for a config problem, a
failed Slurm query or an output that cannot be written (a full disk, a closed
stdout), 2 for bad usage or a file that is not Slurm JSON, truncated JSON included
(one line that names the file; never a traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from typing import IO, TYPE_CHECKING, Any, NoReturn

from cc_slurm_adapter.config import load_config
from cc_slurm_adapter.errors import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    ConfigError,
    SlurmError,
    SlurmParseError,
)
from cc_slurm_adapter.log import add_secrets, redact
from cc_slurm_adapter.mapping import MappedJob, Site, map_job
from cc_slurm_adapter.profiles import PROFILES, get_profile
from cc_slurm_adapter.slurm.parse import decode_document, parse_jobs
from cc_slurm_adapter.slurm.record import JobRecord
from cc_slurm_adapter.topology import Topology, TopologyError

if TYPE_CHECKING:
    from cc_slurm_adapter.cli import CliContext
    from cc_slurm_adapter.slurm.runner import Runner

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_USAGE", "convert_records", "output_line", "run"]

PROG = "cc-slurm-adapter convert"

log = logging.getLogger("cc_slurm_adapter.convert")


class _Usage(Exception):
    """A one-line problem that ends the command with exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _Usage(message)


def _parser() -> _Parser:
    parser = _Parser(
        prog=PROG, add_help=True,
        description="Turn saved Slurm JSON (sacct, squeue, scontrol, slurmrestd) or a live "
                    "job into the cc-backend start_job/stop_job payloads, one NDJSON line "
                    "per job. -config supplies gpuPciAddrs and ignoreHosts.")
    parser.add_argument("files", nargs="*", metavar="FILE",
                        help="Slurm JSON file ('-' for stdin)")
    parser.add_argument("--cluster", help="cluster name for the payloads "
                                          "(default: the name in the JSON)")
    parser.add_argument("--profile", choices=tuple(PROFILES),
                        help="cc-backend release to shape the payloads for "
                             "(default: ccRestProfile of the config, else v1.5)")
    parser.add_argument("--cluster-config", action="append", default=[], metavar="FILE",
                        help="cc-backend cluster.json (or a saved GET /api/clusters/ answer) "
                             "for the hwthread topology; may be repeated")
    parser.add_argument("--job", type=int, action="append", default=[], metavar="ID",
                        help="query the live Slurm for this job id instead of files; "
                             "may be repeated")
    return parser


def output_line(mapped: MappedJob, extra_warnings: Iterable[str] = ()) -> dict[str, Any]:
    """The NDJSON object of one job."""
    return {"jobId": mapped.job_id, "cluster": mapped.cluster, "start_job": mapped.start,
            "stop_job": mapped.stop, "warnings": [*mapped.warnings, *extra_warnings]}


def convert_records(records: Iterable[JobRecord], site: Site) -> Iterable[dict[str, Any]]:
    """One output object per record, in order."""
    for record in records:
        mapped = map_job(record, site)
        yield output_line(mapped, (f"slurm: {w}" for w in record.warnings))


def _read(path: str) -> bytes:
    if path == "-":
        if sys.stdin is None:  # started with stdin closed (`<&-`)
            raise OSError("standard input is closed")
        return sys.stdin.buffer.read()
    with open(path, "rb") as handle:
        return handle.read()


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit] + "..."


def _records_from_file(path: str) -> list[JobRecord]:
    """The jobs of one file; :class:`_Usage` when it is not Slurm JSON."""
    name = "<stdin>" if path == "-" else path
    try:
        data = _read(path)
    except OSError as exc:
        raise _Usage(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        doc = decode_document(data)
    except SlurmParseError as exc:  # not JSON, or JSON cut short
        raise _Usage(f"{name}: not Slurm JSON ({_one_line(exc)})") from None
    except RecursionError:
        raise _Usage(f"{name}: not Slurm JSON (nested too deeply)") from None
    if doc.jobs is None and doc.meta is None:
        raise _Usage(f"{name}: not Slurm JSON (no 'jobs' or 'meta' key)")
    try:
        return parse_jobs(data).jobs
    except SlurmParseError as exc:
        raise _Usage(f"{name}: not Slurm JSON ({_one_line(exc)})") from None
    except RecursionError:
        raise _Usage(f"{name}: not Slurm JSON (nested too deeply)") from None


def _topology(paths: Sequence[str]) -> Topology | None:
    if not paths:
        return None
    docs: list[Any] = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                doc = json.load(handle)
        except OSError as exc:
            raise _Usage(f"{path}: cannot read: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise _Usage(f"{path}: not a cluster.json "
                         f"(invalid JSON: {_one_line(exc)})") from None
        except RecursionError:
            raise _Usage(f"{path}: not a cluster.json (nested too deeply)") from None
        if isinstance(doc, dict) and isinstance(doc.get("clusters"), list):
            docs.extend(doc["clusters"])
        else:
            docs.append(doc)
    try:
        topology = Topology.from_json(docs)
    except TopologyError as exc:
        raise _Usage(f"{', '.join(paths)}: not a cluster.json ({exc})") from None
    for warning in topology.warnings:
        log.warning("%s", warning)
    return topology


def _make_runner(timeout: float) -> Runner:
    """The runner for ``--job`` (tests replace this function)."""
    from cc_slurm_adapter.slurm.runner import CommandRunner

    return CommandRunner(timeout=timeout)


async def _live_records(job_ids: Sequence[int], runner: Runner, timeout: float,
                        ) -> list[JobRecord]:
    """Each job as slurmctld knows it (with resources), else as sacct knows it.

    User, group, account and hosts of a live job come from sacct's JSON (one call for
    all ids), which no job field can shape: the 22.05 detail view is text in which a job
    name can mimic them (issue 10; :func:`~cc_slurm_adapter.slurm.merge.
    with_accounting_identity`).
    """
    from cc_slurm_adapter.slurm.merge import with_accounting_identity
    from cc_slurm_adapter.slurm.source import SlurmSource, detect_slurm

    info = await detect_slurm(runner, timeout=timeout)
    source = SlurmSource(runner, info, timeout=timeout)
    try:
        await source.refresh_topology()
    except SlurmError as exc:
        log.info("node topology not available (%s); hwthreads may be incomplete", exc)
    live = {r.job_id: r for r in await source.details(job_ids)}
    missing = [i for i in job_ids if i not in live]
    accounted: dict[int, JobRecord] = {}
    argv = ["sacct", info.json_flag, "--allusers", "-X", "-j",
            ",".join(str(i) for i in job_ids)]
    try:
        result = await runner.run(argv, timeout=timeout)
    except SlurmError as exc:
        if missing:
            raise
        log.warning("sacct failed (%s); user, account and hosts of the live jobs are "
                    "slurmctld's, unchecked", exc)
    else:
        for rec in parse_jobs(result.stdout, source="sacct", topology=source.topology).jobs:
            accounted.setdefault(rec.job_id, rec)
    out: list[JobRecord] = []
    for job_id in job_ids:
        detail = live.get(job_id)
        found = (with_accounting_identity(detail, accounted.get(job_id))
                 if detail is not None else accounted.get(job_id))
        if found is None:
            raise SlurmError(f"job {job_id}: neither squeue nor sacct knows it")
        out.append(found)
    return out


class _OutputError(Exception):
    """stdout cannot be written (a full disk, a closed descriptor, a reader that left)."""

    def __init__(self, exc: OSError) -> None:
        self.broken_pipe = isinstance(exc, BrokenPipeError)
        super().__init__(exc.strerror or str(exc) or type(exc).__name__)


def _dumps(obj: dict[str, Any]) -> str:
    line = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \uD800 escape: keep it escaped
        line = json.dumps(obj, separators=(",", ":"))
    return line


def _emit(objects: Iterable[dict[str, Any]], out: IO[str] | None) -> None:
    if out is None:  # started with stdout closed (`>&-`)
        raise _OutputError(OSError("standard output is closed"))
    for obj in objects:
        line = _dumps(obj) + "\n"
        try:
            out.write(line)
        except OSError as exc:
            raise _OutputError(exc) from None
    try:
        out.flush()
    except OSError as exc:
        raise _OutputError(exc) from None


def _drop_pending_output() -> None:
    """Point fd 1 at /dev/null, so the interpreter's final flush of what is still
    buffered cannot fail again with a traceback-like 'Exception ignored' line."""
    stdout = sys.stdout
    if stdout is not sys.__stdout__ or stdout is None:
        return  # not the process's own stdout (a test's capture): leave it alone
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _fail(message: object, code: int) -> int:
    print(f"{PROG}: error: {redact(str(message))}", file=sys.stderr)
    return code


def run(args: list[str], ctx: CliContext) -> int:
    """Entry point used by :mod:`cc_slurm_adapter.cli`."""
    try:
        return _run(args, ctx)
    except _Usage as exc:
        return _fail(exc, EXIT_USAGE)
    except (ConfigError, SlurmError) as exc:
        return _fail(exc, EXIT_ERROR)
    except _OutputError as exc:
        _drop_pending_output()
        if exc.broken_pipe:  # `convert ... | head`: the reader has what it wanted
            return EXIT_OK
        return _fail(f"cannot write the output: {exc}", EXIT_ERROR)


def _run(args: list[str], ctx: CliContext) -> int:
    parser = _parser()
    try:
        opts = parser.parse_args(args)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    if opts.files and opts.job:
        raise _Usage("give either FILEs or --job, not both")
    if not opts.files and not opts.job:
        raise _Usage("no input: give one or more Slurm JSON FILEs, or --job ID")
    loaded = load_config(ctx.config_path, purpose="tool")
    add_secrets(loaded.config.secrets)
    for warning in loaded.warnings:
        log.info("%s", warning)
    config = loaded.config
    profile = get_profile(opts.profile or config.cc_rest_profile)
    topology = _topology(opts.cluster_config)
    site = Site.from_config(config, topology=topology, cluster=opts.cluster, profile=profile)
    if opts.job:
        timeout = float(config.slurm_command_timeout)
        records = asyncio.run(_live_records(opts.job, _make_runner(timeout), timeout))
        _emit(convert_records(records, site), sys.stdout)
        return EXIT_OK
    # Read every file first, so a bad file stops the run before any output.
    per_file = [_records_from_file(path) for path in opts.files]
    for records in per_file:
        _emit(convert_records(records, site), sys.stdout)
    return EXIT_OK
