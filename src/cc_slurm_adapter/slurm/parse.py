"""Every Slurm release's job JSON (21.08 → 26.05) → :class:`JobRecord`.

Two document families exist (``shared/reference/slurm-json-versions.md`` §1):

* the **slurmctld** family: ``squeue --json``, ``scontrol show job --json`` (23.02+),
  slurmrestd ``/slurm/vX/job(s)`` – live jobs, with ``job_resources`` and
  ``gres_detail``;
* the **slurmdbd** family: ``sacct --json``, slurmrestd ``/slurmdb/vX/job(s)`` –
  accounting records, no per-node resources.

The raw JSON is typed at the edge, in two steps: the document is decoded with its
``jobs[]`` left as undecoded ``msgspec.Raw`` slices of the input (no copy), then each
job is decoded into :class:`_RawJob` just before it is normalised – a loose struct
holding only the keys we read (everything else, e.g. sacct ``steps``, is skipped
without being built), so only one decoded job is ever in memory. Each key is ``Any``
so no release's encoding can fail the decode; ``values`` reads the encodings. Which family a job
belongs to is decided per job from its keys (``job_state`` vs ``state``), so a
mislabelled or mixed document still parses.

Release quirks handled here are marked with the release that introduced them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import msgspec

from cc_slurm_adapter.errors import SlurmParseError
from cc_slurm_adapter.slurm import resources as _res
from cc_slurm_adapter.slurm.phase import Phase, is_finishing, is_requeue, job_phase
from cc_slurm_adapter.slurm.record import ExitCode, JobRecord, NodeTopology, SlurmMeta
from cc_slurm_adapter.slurm.tres import (
    ctld_memory,
    db_memory,
    db_tres,
    gpus_from_tres,
    gpus_requested,
    parse_tres_string,
)
from cc_slurm_adapter.slurm.values import (
    FieldLog,
    as_epoch,
    as_int,
    as_str,
    as_str_tuple,
    expand_hostlist,
    get,
    is_infinite,
    split_state,
)

__all__ = [
    "ParseResult",
    "decode_document",
    "detect_meta",
    "parse_exit_code",
    "parse_jobs",
    "parse_nodes",
    "parse_tres_string",
]

# Whether a start or end time is a fact or the scheduler's guess follows from the
# job's phase (slurm.phase): only a job that ended (or is completing) has a real end.
_ALWAYS_END = frozenset({"COMPLETED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "CANCELLED"})


class _RawJob(msgspec.Struct, kw_only=True):
    """The keys read from one ``jobs[]`` element of either family (all ``Any``)."""

    job_id: Any = None
    account: Any = None
    cluster: Any = None
    partition: Any = None
    name: Any = None
    qos: Any = None
    nodes: Any = None
    flags: Any = None
    exit_code: Any = None
    derived_exit_code: Any = None
    comment: Any = None
    submit_line: Any = None
    # slurmdbd family (sacct)
    state: Any = None
    time: Any = None
    array: Any = None
    het: Any = None
    user: Any = None
    group: Any = None
    required: Any = None
    tres: Any = None
    working_directory: Any = None
    allocation_nodes: Any = None
    script: Any = None
    sluid: Any = None
    exclusive: Any = None
    oversubscribe: Any = None
    # slurmctld family (squeue / scontrol / slurmrestd /slurm)
    job_state: Any = None
    state_reason: Any = None
    submit_time: Any = None
    start_time: Any = None
    end_time: Any = None
    array_job_id: Any = None
    array_task_id: Any = None
    array_task_string: Any = None
    het_job_id: Any = None
    het_job_offset: Any = None
    user_name: Any = None
    user_id: Any = None
    group_name: Any = None
    time_limit: Any = None
    node_count: Any = None
    cpus: Any = None
    memory_per_node: Any = None
    memory_per_cpu: Any = None
    tres_alloc_str: Any = None
    tres_req_str: Any = None
    tres_per_job: Any = None
    tres_per_node: Any = None
    gres_detail: Any = None
    job_resources: Any = msgspec.field(default=None)
    shared: Any = None
    current_working_directory: Any = None
    batch_host: Any = None
    step_id: Any = None
    restart_cnt: Any = None  # both families (sacct from 24.11, v0.0.42)


class _RawDoc(msgspec.Struct, kw_only=True):
    """The document with its jobs left undecoded: each ``msgspec.Raw`` is a view into
    the input bytes (no copy), decoded one at a time by :func:`parse_jobs`, so the
    decoded form of all jobs is never in memory at once (peak RSS on large windows)."""

    meta: Any = None
    jobs: list[msgspec.Raw] | None = None
    errors: Any = None
    warnings: Any = None


log = logging.getLogger(__name__)
_DOC_DECODER = msgspec.json.Decoder(_RawDoc)
_JOB_DECODER = msgspec.json.Decoder(_RawJob)


def _decode_job(raw: msgspec.Raw) -> _RawJob | None:
    """One ``jobs[]`` element, or None when it is not a JSON object.

    Every field is ``Any``, so no value of any release can fail this decode. (Typed
    structs for sacct's nested objects were measured here: with one job decoded at a
    time they change neither time nor peak RSS, so the loose form stays.)
    """
    try:
        return _JOB_DECODER.decode(raw)
    except msgspec.ValidationError:
        return None


class _DbRunning(msgspec.Struct):
    """The few keys of a sacct job that tell "still running since ``time.start``"."""

    job_id: Any = None
    state: Any = None
    time: Any = None


_DB_RUNNING_DECODER = msgspec.json.Decoder(_DbRunning)


def _still_running_since(item: msgspec.Raw) -> tuple[int, int] | None:
    """(job id, start) when this sacct job reads RUNNING, with no flags and no end; else
    None (then the job is read in full). Decodes three keys and skips the rest."""
    try:
        head = _DB_RUNNING_DECODER.decode(item)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    current = get(head.state, "current")
    # 23.02+: a list of the base state and its flags; 21.08-22.05: one string
    if current != ["RUNNING"] and current != "RUNNING":
        return None
    times = head.time if isinstance(head.time, Mapping) else {}
    job_id, start = as_int(head.job_id), as_epoch(get(times, "start"))
    if job_id is None or start is None or as_epoch(get(times, "end")) is not None:
        return None
    return job_id, start


class ParseResult(msgspec.Struct, kw_only=True):
    """What one document gave: its ``meta``, the jobs, and Slurm's own messages."""

    meta: SlurmMeta
    jobs: list[JobRecord]
    unchanged: tuple[int, ...] = ()
    """Job ids left unread because ``unchanged`` (see :func:`parse_jobs`) named them."""
    errors: tuple[str, ...] = ()
    """``errors[].description`` (Slurm can exit 0 and still report errors)."""
    warnings: tuple[str, ...] = ()
    skipped: int = 0
    """Jobs left out because they had no usable job id."""


# --------------------------------------------------------------------------- meta


def _parser_name(value: Any) -> str | None:
    text = as_str(value)
    if not text:
        return None
    # "data_parser/v0.0.44" (CLI, 23.02+), "v0.0.39" (slurmrestd 23.02)
    return text.rsplit("/", 1)[-1] or None


def detect_meta(meta: Any, *, source: str | None = None) -> SlurmMeta:
    """Read ``meta`` of any release (``Slurm`` ≤ 23.02, ``slurm`` 23.11+)."""
    if not isinstance(meta, Mapping):
        return SlurmMeta(kind=source)
    slurm = meta.get("slurm") or meta.get("Slurm") or {}
    version = get(slurm, "version") or {}
    plugin = meta.get("plugin") if isinstance(meta.get("plugin"), Mapping) else {}
    plugins = meta.get("plugins") if isinstance(meta.get("plugins"), Mapping) else {}
    # 23.02 CLI: meta.plugins.data_parser; 23.02 slurmrestd and 23.11+: meta.plugin.data_parser
    data_parser = _parser_name(get(plugin, "data_parser")) or _parser_name(
        get(plugins, "data_parser"))
    plugin_type = as_str(get(plugin, "type"))
    command = as_str_tuple(meta.get("command"))
    kind = source or _kind_from(command, plugin_type)
    return SlurmMeta(
        release=as_str(get(slurm, "release")),
        major=as_int(get(version, "major")),
        minor=as_int(get(version, "minor")),  # 23.11+: strings, zero-padded ("05")
        micro=as_int(get(version, "micro")),
        data_parser=data_parser,
        plugin=plugin_type,
        cluster=as_str(get(slurm, "cluster")),  # 23.11.1+
        kind=kind,
        command=command,
    )


def _kind_from(command: tuple[str, ...], plugin_type: str | None) -> str | None:
    if command:
        exe = command[0].rsplit("/", 1)[-1]
        if exe in ("sacct", "squeue", "scontrol"):
            return exe
    if plugin_type:
        if plugin_type in ("openapi/slurmdbd",) or plugin_type.startswith("openapi/dbv"):
            # ≤ 23.02: sacct and slurmrestd /slurmdb print the same plugin name
            return "sacct" if plugin_type.startswith("openapi/dbv0.0.3") else "slurmrestd-db"
        if plugin_type == "openapi/slurmctld":
            return "slurmrestd"
        if plugin_type.startswith("openapi/v0.0.3"):
            return "squeue"
    return None


# --------------------------------------------------------------------- decoding


def decode_document(data: bytes | str) -> _RawDoc:
    """Decode Slurm's JSON; raises :class:`SlurmParseError` if it is not whole JSON.

    The fast path is one msgspec decode. The slow path copes with what the fast path
    refuses: a non-JSON header line (``squeue -M`` without ``--noheader``), several
    documents back to back (``-M a,b``), ``Infinity``/``NaN`` tokens, or non-UTF-8
    bytes outside ``jobs`` (replaced). It is strict about the rest: a document cut off
    anywhere (a sacct killed mid-output), ``jobs`` that is not a list, or nesting too
    deep to decode is an error, never "no jobs" (the daemon would move its cursor past
    real jobs).
    """
    try:
        return _DOC_DECODER.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        pass
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    docs = _raw_documents(text)
    if not docs:
        raise SlurmParseError(f"Slurm output is not JSON (starts {text[:80]!r})")
    meta: Any = None
    jobs: list[msgspec.Raw] = []
    errors: list[Any] = []
    warnings: list[Any] = []
    for doc in docs:
        if not isinstance(doc, Mapping):
            raise SlurmParseError("Slurm output is not a JSON object")
        meta = meta if meta is not None else doc.get("meta")
        items = doc.get("jobs")
        if items is not None and not isinstance(items, list):
            raise SlurmParseError(f"'jobs' is a JSON {type(items).__name__}, not a list")
        for item in items or ():
            # non-objects are kept: parse_jobs counts them as skipped, as on the fast path
            jobs.append(msgspec.Raw(msgspec.json.encode(item)))
        for key, out in (("errors", errors), ("warnings", warnings)):
            value = doc.get(key)
            if isinstance(value, list):
                out.extend(value)
    return _RawDoc(meta=meta, jobs=jobs, errors=errors, warnings=warnings)


def _raw_documents(text: str) -> list[Any]:
    """The JSON documents in ``text``: each starts at a line that starts with ``{`` (or
    right after the previous one); other lines before a document are headers (``squeue
    -M``: ``CLUSTER: name``) and are skipped. A document that does not decode to its
    end raises :class:`SlurmParseError` with the offset."""
    decoder = json.JSONDecoder(parse_constant=lambda _c: None)
    docs: list[Any] = []
    pos, size = 0, len(text)
    while pos < size:
        while pos < size and text[pos] in " \t\r\n":
            pos += 1
        if pos >= size:
            break
        if text[pos] != "{":  # a header line: skip to the next line
            nl = text.find("\n", pos)
            if nl == -1:
                break
            pos = nl + 1
            continue
        try:
            doc, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise SlurmParseError(f"invalid or truncated JSON at offset {exc.pos} of "
                                  f"{size}: {exc.msg}") from None
        except RecursionError:
            raise SlurmParseError("JSON nested too deeply to read") from None
        docs.append(doc)
    return docs


_BAD_BYTES_LOGGED: set[int] = set()


def _decode_item(item: msgspec.Raw) -> tuple[_RawJob | None, bool]:
    """One ``jobs[]`` element → (job or None, whether bad bytes were replaced).

    22.05.8, 24.11.5 and 26.05.5 write a job name's non-UTF-8 bytes raw into squeue and
    scontrol JSON (sacct writes ``?``). Invalid UTF-8 can only sit inside a JSON string
    (everything else is ASCII), so replacing it with U+FFFD keeps the document valid;
    only such a job pays for the second decode.
    """
    try:
        return _decode_job(item), False
    except UnicodeDecodeError:
        fixed = bytes(item).decode("utf-8", "replace").encode("utf-8")
    except (msgspec.DecodeError, RecursionError):
        return None, False
    try:
        return _decode_job(msgspec.Raw(fixed)), True
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None, True


def _messages(items: Any) -> tuple[str, ...]:
    out: list[str] = []
    for item in items if isinstance(items, list) else ():
        if isinstance(item, Mapping):
            text = as_str(item.get("description")) or as_str(item.get("error"))
            if text:
                out.append(text)
        elif isinstance(item, str) and item.strip():
            out.append(item.strip())
    return tuple(out)


def parse_jobs(data: bytes | str, *, source: str | None = None,
               topology: Mapping[str, NodeTopology] | None = None,
               unchanged: Mapping[int, int] | None = None) -> ParseResult:
    """Parse one ``sacct``/``squeue``/``scontrol``/slurmrestd JSON document.

    ``source`` names the command that produced it (the caller knows; otherwise it is
    guessed from ``meta``). ``topology`` (hostname → :class:`NodeTopology`) fills in
    sockets/cores/threads that ``job_resources`` does not carry. Raises
    :class:`SlurmParseError` when the output is not whole JSON (not JSON, truncated,
    ``jobs`` not a list, nested too deeply); odd jobs and fields are recorded in
    ``JobRecord.warnings`` and never raise, and a job with non-UTF-8 bytes keeps its
    place (the bytes replaced, its id logged once).

    ``unchanged`` (sacct only; job id → start time): runs the caller already holds in
    full and has started. A job of it that reads RUNNING since that very start, no end,
    is not read further; its id goes to ``ParseResult.unchanged``. The cycle's window
    returns every running job each time (4.5 MB of JSON for 1,000 on 24.11), and these
    records would change nothing: reading only three keys keeps the cycle's peak RSS
    and CPU from growing with the number of running jobs.
    """
    doc = decode_document(data)
    meta = detect_meta(doc.meta, source=source)
    flog = FieldLog(f"{meta.release or '?'}/{meta.data_parser or meta.plugin or '?'}")
    jobs: list[JobRecord] = []
    skipped = 0
    # Each job is decoded from its undecoded slice just before it is normalised, so
    # only one decoded job exists at a time (peak RSS on 100,000-job windows).
    kept: list[int] = []
    for item in doc.jobs or ():
        if unchanged:
            head = _still_running_since(item)
            if head is not None and unchanged.get(head[0]) == head[1]:
                kept.append(head[0])
                continue
        raw, replaced = _decode_item(item)
        record = _job(raw, meta, flog, topology) if raw is not None else None
        if record is None:
            skipped += 1
            continue
        if replaced:
            record = msgspec.structs.replace(record, warnings=(
                *record.warnings, "text: non-UTF-8 bytes replaced"))
            if record.job_id not in _BAD_BYTES_LOGGED:  # once per job id and process
                _BAD_BYTES_LOGGED.add(record.job_id)
                log.warning("Slurm JSON: job %s has non-UTF-8 bytes in a string field "
                            "(replaced with U+FFFD)", record.job_id)
        jobs.append(record)
    doc.jobs = None
    return ParseResult(meta=meta, jobs=jobs, unchanged=tuple(kept),
                       errors=_messages(doc.errors),
                       warnings=_messages(doc.warnings), skipped=skipped)


# ------------------------------------------------------------------------- jobs


def _job(raw: _RawJob, meta: SlurmMeta, flog: FieldLog,
         topology: Mapping[str, NodeTopology] | None) -> JobRecord | None:
    job_id = as_int(raw.job_id)
    flog.start(job_id)
    if job_id is None or job_id <= 0:
        flog.note("job_id", "missing or invalid; job skipped")
        return None
    if raw.job_state is not None or raw.submit_time is not None or (
            raw.state is None and raw.time is None):
        return _ctld_job(raw, job_id, meta, flog, topology)
    return _db_job(raw, job_id, meta, flog)


def _source(meta: SlurmMeta, family: str) -> str:
    kind = meta.kind
    if family == "db":
        return kind if kind in ("sacct", "slurmrestd-db") else "sacct"
    return kind if kind in ("squeue", "scontrol", "slurmrestd") else "squeue"


def _name(value: Any) -> str | None:
    """A string field; Slurm writes ``"None"``/``"(null)"`` for some empty ones."""
    text = as_str(value)
    return None if text in (None, "(null)") else text


def _state(value: Any, flog: FieldLog) -> tuple[str, tuple[str, ...]]:
    base, flags = split_state(value)
    if base is None:
        flog.note("state", "missing")
        return "UNKNOWN", ()
    return base, flags


def _cluster(value: Any, meta: SlurmMeta, flog: FieldLog) -> str | None:
    cluster = _name(value) or meta.cluster
    if cluster is None:
        flog.note("cluster", "missing (not in the job nor in meta)")
    return cluster


def _nodes(value: Any, flog: FieldLog) -> tuple[str, ...]:
    hosts = expand_hostlist(value)
    if hosts is None:
        flog.note("nodes", f"not a valid hostlist: {str(value)[:60]!r}")
        return ()
    return hosts


def _ctld_job(raw: _RawJob, job_id: int, meta: SlurmMeta, flog: FieldLog,
              topology: Mapping[str, NodeTopology] | None) -> JobRecord:
    state, state_flags = _state(raw.job_state, flog)
    phase = job_phase(state, state_flags, family="ctld")
    start = as_epoch(raw.start_time)
    end = as_epoch(raw.end_time)
    if phase is Phase.PENDING:
        start = None  # the scheduler's expected start, not a fact (or a requeued run's)
    if phase is not Phase.ENDED and not is_finishing(state, state_flags):
        end = None  # start + time_limit: the expected end
    array_job = as_int(raw.array_job_id) or None  # 0 = not an array
    array_task = as_int(raw.array_task_id) if array_job is not None else None
    het_job = as_int(raw.het_job_id) or None
    nodes = _nodes(raw.nodes, flog)
    tres = parse_tres_string(raw.tres_alloc_str)
    cpus = as_int(raw.cpus)
    node_count = as_int(raw.node_count)
    gres_detail = raw.gres_detail if isinstance(raw.gres_detail, list) else []
    resources = _res.ctld_resources(raw.job_resources, gres_detail, nodes, flog, topology)
    gpus = gpus_from_tres(tres)
    if gpus is None:
        gpus = _res.gpu_total(gres_detail)
    if gpus is None and phase is not Phase.PENDING:
        # Requested GPUs once the job runs; 23.02 writes "gres:gpu:8", 23.11+ "gres/gpu:1".
        gpus = gpus_requested(raw.tres_per_job, 1) or gpus_requested(
            raw.tres_per_node, node_count or len(nodes) or 1)
    limit_raw = raw.time_limit
    time_limit = as_int(limit_raw)
    # ≤ 22.05: time_limit null = UNLIMITED; 23.02+: {"infinite": true}
    unlimited = is_infinite(limit_raw) or (
        limit_raw is None and (meta.plugin or "").startswith("openapi/v0.0.3"))
    # 26.05 (v0.0.45) leaves ``shared`` empty: an --exclusive job shows only as
    # job_resources.nodes.whole; exclusive/oversubscribe are read where a parser has them.
    shared = _res.shared_mode(raw.shared, raw.exclusive, get(raw.job_resources, "nodes", "whole"),
                              raw.oversubscribe)
    return JobRecord(
        source=_source(meta, "ctld"),
        job_id=job_id,
        slurm_version=meta.release,
        data_parser=meta.data_parser,
        cluster=_cluster(raw.cluster, meta, flog),
        array_job_id=array_job,
        array_task_id=array_task,
        array_task_string=_name(raw.array_task_string),
        het_job_id=het_job,
        het_job_offset=as_int(raw.het_job_offset) if het_job is not None else None,
        user=_name(raw.user_name),
        user_id=as_int(raw.user_id),
        group=_name(raw.group_name),
        account=_name(raw.account),
        partition=_name(raw.partition),
        qos=_name(raw.qos),
        name=_name(raw.name),
        submit_time=as_epoch(raw.submit_time),
        start_time=start,
        end_time=end,
        elapsed_s=(end - start) if start is not None and end is not None else None,
        state=state,
        state_flags=state_flags,
        phase=phase,
        requeued=is_requeue(state, state_flags),
        restart_count=as_int(raw.restart_cnt),
        state_reason=_reason(raw.state_reason),
        exit_code=parse_exit_code(raw.exit_code),
        derived_exit_code=parse_exit_code(raw.derived_exit_code),
        nodes=nodes,
        node_count=node_count,
        cpus=cpus,
        gpus=gpus,
        resources=resources,
        tres_alloc=tres,
        requested_memory_mb=ctld_memory(raw.tres_alloc_str, raw.tres_req_str,
                                        raw.memory_per_node, raw.memory_per_cpu,
                                        cpus, node_count, flog),
        time_limit_min=None if unlimited else time_limit,
        unlimited_time=unlimited,
        shared=shared,
        comment=_name(raw.comment),
        work_dir=_name(raw.current_working_directory),
        submit_line=_name(raw.submit_line),
        sluid=_name(get(raw.step_id, "sluid")),  # 25.11+ (v0.0.44)
        batch_host=_name(raw.batch_host),
        flags=as_str_tuple(raw.flags),
        warnings=flog.take(),
    )


def _db_job(raw: _RawJob, job_id: int, meta: SlurmMeta, flog: FieldLog) -> JobRecord:
    state, state_flags = _state(get(raw.state, "current"), flog)
    phase = job_phase(state, state_flags, family="db")
    t = raw.time if isinstance(raw.time, Mapping) else {}
    if not t:
        flog.note("time", "missing")
    # sacct time.* are plain ints in every release; 0 = not (yet) happened.
    start = as_epoch(get(t, "start"))
    end = as_epoch(get(t, "end"))
    if phase is Phase.PENDING:
        start = None
    array_job = as_int(get(raw.array, "job_id")) or None
    het_job = as_int(get(raw.het, "job_id")) or None
    tres_alloc = db_tres(get(raw.tres, "allocated"))
    tres_req = db_tres(get(raw.tres, "requested"))
    limit_raw = get(t, "limit")
    # 23.02+: {"infinite": true}; ≤ 22.05 raw 4294967295, or null as 22.05.8 writes for
    # an UNLIMITED limit (seen on the testbed; its NO_VAL/INFINITE dumper gives null).
    # 22.05's null is also "not set" for a job that never started (held, then cancelled:
    # 24.11/26.05 write {"set": false, "infinite": false} there), so only a job that ran
    # reads it as unlimited.
    unlimited = is_infinite(limit_raw) or (
        limit_raw is None and "limit" in t and start is not None
        and (meta.plugin or "").startswith("openapi/dbv0.0.3"))
    comment = raw.comment
    job_comment = get(comment, "job") if isinstance(comment, Mapping) else comment
    cpus = as_int(tres_alloc.get("cpu")) or as_int(get(raw.required, "CPUs"))
    node_count = as_int(raw.allocation_nodes)
    partition = _name(raw.partition)
    # Not settled yet (the real record follows within seconds, both seen on 22.05.8):
    # - slurmdbd's first record of a starting job is a placeholder: no partition and no
    #   requested TRES (name "allocation");
    # - after a slurmdbd outage, slurmctld's replay first gives the final state without
    #   the end time. Only for states that always carry an end: NODE_FAIL records of
    #   21.08 keep "no end" for good (two in the shared samples).
    provisional = (not partition and not tres_req) or (
        state in _ALWAYS_END and start is not None and end is None)
    return JobRecord(
        source=_source(meta, "db"),
        job_id=job_id,
        slurm_version=meta.release,
        data_parser=meta.data_parser,
        cluster=_cluster(raw.cluster, meta, flog),
        array_job_id=array_job,
        array_task_id=as_int(get(raw.array, "task_id")) if array_job is not None else None,
        array_task_string=_name(get(raw.array, "task")),
        het_job_id=het_job,
        het_job_offset=as_int(get(raw.het, "job_offset")) if het_job is not None else None,
        user=_name(raw.user),
        group=_name(raw.group),
        account=_name(raw.account),
        partition=partition,
        qos=_name(raw.qos),
        name=_name(raw.name),
        submit_time=as_epoch(get(t, "submission")),
        start_time=start,
        end_time=end,
        elapsed_s=as_int(get(t, "elapsed")),
        state=state,
        state_flags=state_flags,
        phase=phase,
        requeued=is_requeue(state, state_flags),
        restart_count=as_int(raw.restart_cnt),
        state_reason=_reason(get(raw.state, "reason")),
        # ≤ 23.02 sacct reports SUCCESS/0 for every normal exit: kept as reported.
        exit_code=parse_exit_code(raw.exit_code),
        derived_exit_code=parse_exit_code(raw.derived_exit_code),
        nodes=_nodes(raw.nodes, flog),
        node_count=node_count,
        cpus=cpus,
        gpus=gpus_from_tres(tres_alloc),
        tres_alloc=tres_alloc,
        requested_memory_mb=db_memory(raw.required, tres_alloc, tres_req, cpus, node_count),
        time_limit_min=None if unlimited else as_int(limit_raw),
        unlimited_time=unlimited,
        shared=_res.shared_mode(None, raw.exclusive, None, raw.oversubscribe),  # 26.05+
        comment=_name(job_comment),
        batch_script=_script(raw.script),  # 23.02+, only with -B and job_script stored
        work_dir=_name(raw.working_directory),
        submit_line=_name(raw.submit_line),
        sluid=_name(raw.sluid),  # 26.05+ (v0.0.45)
        flags=as_str_tuple(raw.flags),
        provisional=provisional,
        warnings=flog.take(),
    )


def _script(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _reason(value: Any) -> str | None:
    text = _name(value)
    return None if text == "None" else text


# ------------------------------------------------------------------- exit codes


def parse_exit_code(value: Any) -> ExitCode | None:
    """Any of Slurm's four exit-code encodings → :class:`ExitCode` (or None).

    * raw wait status int (squeue ≤ 22.05, 23.02.0-3) or NO_VAL struct holding it
      (squeue 23.02.4+); 4294967295 while running → None;
    * ``{"status": "SUCCESS", "return_code": 0, "signal": {"signal_id", "name"}}``
      (sacct ≤ 23.02; note the SUCCESS/0 bug for normal exits);
    * ``{"status": ["ERROR"], "return_code": NV, "signal": {"id": NV, "name"}}`` (23.11+).
    """
    if isinstance(value, Mapping) and ("status" in value or "return_code" in value):
        signal = value.get("signal")
        sig = as_int(get(signal, "id"))
        if sig is None:
            sig = as_int(get(signal, "signal_id"))
        return ExitCode(
            status=as_str(value.get("status")),
            return_code=as_int(value.get("return_code")),
            signal=sig or None,
            signal_name=_name(get(signal, "name")),
        )
    raw = as_int(value)
    if raw is None or raw < 0:
        return None
    signal_no = raw & 0x7F
    if signal_no:
        status = "CORE_DUMPED" if raw & 0x80 else "SIGNALED"
        return ExitCode(status=status, return_code=None, signal=signal_no, raw=raw)
    code = (raw >> 8) & 0xFF
    return ExitCode(status="SUCCESS" if code == 0 else "ERROR", return_code=code, raw=raw)


# ------------------------------------------------------------------------ nodes


def parse_nodes(data: bytes | str) -> dict[str, NodeTopology]:
    """``scontrol show node --json`` (23.02+), ``sinfo --json`` (21.08/22.05: ``nodes[]``)
    or slurmrestd ``/nodes`` → hostname → :class:`NodeTopology`."""
    try:
        doc = msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        # same slow path as jobs: headers, Infinity/NaN, bad bytes replaced; a cut-off
        # or too deeply nested listing raises SlurmParseError
        docs = _raw_documents(data.decode("utf-8", "replace") if isinstance(data, bytes)
                              else data)
        doc = docs[0] if docs else None
    if not isinstance(doc, Mapping):
        raise SlurmParseError("node listing is not a JSON object")
    nodes = doc.get("nodes")
    if nodes is not None and not isinstance(nodes, list):
        raise SlurmParseError(f"'nodes' is a JSON {type(nodes).__name__}, not a list")
    out: dict[str, NodeTopology] = {}
    for node in nodes or ():
        if not isinstance(node, Mapping):
            continue
        name = as_str(node.get("name")) or as_str(node.get("hostname"))
        if not name:
            continue
        out[name] = NodeTopology(
            hostname=name,
            sockets=as_int(node.get("sockets")),
            cores_per_socket=as_int(node.get("cores")),
            threads_per_core=as_int(node.get("threads")),
            cpus=as_int(node.get("cpus")),
            memory_mb=as_int(node.get("real_memory")),
            gres=as_str(node.get("gres")),
            state=tuple(s.upper() for s in as_str_tuple(node.get("state"))),
        )
    return out
