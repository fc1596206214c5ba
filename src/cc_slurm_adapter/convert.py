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

Exit codes: 0 on success (also for files without jobs), 1 for a config problem or a
failed Slurm query, 2 for bad usage or a file that is not Slurm JSON (one line that
names the file; never a traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Iterable, Sequence
from typing import IO, TYPE_CHECKING, Any, NoReturn

from cc_slurm_adapter.config import load_config
from cc_slurm_adapter.errors import ConfigError, SlurmError, SlurmParseError
from cc_slurm_adapter.mapping import MappedJob, Site, map_job
from cc_slurm_adapter.profiles import get_profile
from cc_slurm_adapter.slurm.parse import decode_document, parse_jobs
from cc_slurm_adapter.slurm.record import JobRecord
from cc_slurm_adapter.topology import Topology, TopologyError

if TYPE_CHECKING:
    from cc_slurm_adapter.cli import CliContext
    from cc_slurm_adapter.slurm.runner import Runner

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_USAGE", "convert_records", "output_line", "run"]

PROG = "cc-slurm-adapter convert"
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

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
    parser.add_argument("--profile", choices=("v1.5", "v1.4", "v1.3"),
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
        return sys.stdin.buffer.read()
    with open(path, "rb") as handle:
        return handle.read()


def _records_from_file(path: str) -> list[JobRecord]:
    """The jobs of one file; :class:`_Usage` when it is not Slurm JSON."""
    name = "<stdin>" if path == "-" else path
    try:
        data = _read(path)
    except OSError as exc:
        raise _Usage(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        doc = decode_document(data)
    except SlurmParseError:
        raise _Usage(f"{name}: not Slurm JSON (not JSON at all)") from None
    if doc.jobs is None and doc.meta is None:
        raise _Usage(f"{name}: not Slurm JSON (no 'jobs' or 'meta' key)")
    try:
        return parse_jobs(data).jobs
    except SlurmParseError as exc:
        raise _Usage(f"{name}: not Slurm JSON ({exc})") from None


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
            raise _Usage(f"{path}: not a cluster.json (invalid JSON: {exc})") from None
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
    """Each job as slurmctld knows it (with resources), else as sacct knows it."""
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
    if missing:
        argv = ["sacct", info.json_flag, "--allusers", "-X", "-j",
                ",".join(str(i) for i in missing)]
        result = await runner.run(argv, timeout=timeout)
        for rec in parse_jobs(result.stdout, source="sacct", topology=source.topology).jobs:
            accounted.setdefault(rec.job_id, rec)
    out: list[JobRecord] = []
    for job_id in job_ids:
        found = live.get(job_id) or accounted.get(job_id)
        if found is None:
            raise SlurmError(f"job {job_id}: neither squeue nor sacct knows it")
        out.append(found)
    return out


def _emit(objects: Iterable[dict[str, Any]], out: IO[str]) -> None:
    for obj in objects:
        out.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
    out.flush()


def run(args: list[str], ctx: CliContext) -> int:
    """Entry point used by :mod:`cc_slurm_adapter.cli`."""
    try:
        return _run(args, ctx)
    except _Usage as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except SlurmError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # `convert ... | head`
        return EXIT_OK


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
