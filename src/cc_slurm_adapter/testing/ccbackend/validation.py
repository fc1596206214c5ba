"""Strict request decoding and the start_job sanity checks (contract §2.3, §4.2).

cc-backend decodes every job body with Go's ``encoding/json`` and
``DisallowUnknownFields``. This module copies what follows from that:

* unknown keys → ``json: unknown field "<key>"``;
* keys match case-insensitively (an exact match wins), the last duplicate wins;
* ``null`` leaves a field at its default;
* a wrong JSON kind, a fraction or an out-of-range number for an integer field →
  ``json: cannot unmarshal <kind> into Go struct field <Type>.<path> of type <go type>``;
* the first error in document order is the one reported;
* an empty body → ``EOF``; only the first JSON value is read.

The texts returned here lack the ``parsing request body failed: `` prefix that the
handler adds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from .clusters import ClusterRegistry
from .contract import RESOURCE_KEYS, STOP_KEYS, ServerRelease
from .gojson import BigNumber, GoJSONError, loads

__all__ = [
    "DecodeError",
    "Panic",
    "Rejection",
    "StructSpec",
    "check_start",
    "decode_json",
    "decode_start",
    "decode_stop",
    "start_spec",
    "stop_spec",
]

_INT_RANGES = {"int64": (-(2**63), 2**63 - 1), "int32": (-(2**31), 2**31 - 1),
               "int": (-(2**63), 2**63 - 1)}


class DecodeError(Exception):
    """The body cannot be decoded into the Go struct; ``str()`` is Go's text."""


class Panic(Exception):
    """A request that makes the real server's handler panic (500, empty body)."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A request the server refuses: HTTP status and the ``error`` text."""

    status: int
    message: str


# --- type specs ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Scalar:
    go: str  # int64 | int32 | int | float64 | string | bool


@dataclass(frozen=True, slots=True)
class _Slice:
    elem: Any
    go: str


@dataclass(frozen=True, slots=True)
class _Map:
    elem: Any
    go: str


@dataclass(frozen=True, slots=True)
class _Opaque:
    """A struct or map whose inside we do not check (statistics, concurrentJobs)."""

    go: str
    kind: str  # "object"


@dataclass(frozen=True)
class StructSpec:
    """A Go struct: its type name and JSON field names → types."""

    go_name: str
    go_qualified: str
    fields: dict[str, Any]

    def __post_init__(self) -> None:
        folded: dict[str, str] = {}
        for name in self.fields:
            folded.setdefault(name.casefold(), name)
        object.__setattr__(self, "_folded", folded)

    def field_for(self, key: str) -> str | None:
        if key in self.fields:
            return key
        folded: dict[str, str] = self.__dict__["_folded"]
        return folded.get(key.casefold())


I64, I32, F64, STR = _Scalar("int64"), _Scalar("int32"), _Scalar("float64"), _Scalar("string")

_RESOURCE = StructSpec("Resource", "schema.Resource", {
    "hostname": STR, "hwthreads": _Slice(_Scalar("int"), "[]int"),
    "accelerators": _Slice(STR, "[]string"), "configuration": STR,
})
assert set(_RESOURCE.fields) == RESOURCE_KEYS


def _tag_spec(profile: ServerRelease) -> StructSpec:
    fields: dict[str, Any] = {"id": I64, "type": STR, "name": STR, "scope": STR}
    return StructSpec("Tag", "schema.Tag", {k: fields[k] for k in sorted(profile.tag_keys)})


_START_TYPES: dict[str, Any] = {
    "jobId": I64, "arrayJobId": I64, "walltime": I64, "requestedMemory": I64,
    "submitTime": I64, "startTime": I64, "id": I64,
    "duration": I32, "smt": I32, "monitoringStatus": I32, "numAcc": I32,
    "numHwthreads": I32, "numNodes": I32, "exclusive": I32,
    "energy": F64,
    "cluster": STR, "subCluster": STR, "partition": STR, "project": STR, "user": STR,
    "shared": STR, "jobState": STR,
    "resources": _Slice(_RESOURCE, "[]*schema.Resource"),
    "metaData": _Map(STR, "map[string]string"),
    "footprint": _Map(F64, "map[string]float64"),
    "energyFootprint": _Map(F64, "map[string]float64"),
    # Swagger ``schema.JobStatistics``/``schema.Unit`` and ``schema.JobLinkResultList``/
    # ``schema.JobLink``; measured on v1.5.4: an unknown key inside either is a 400.
    "statistics": _Map(StructSpec("JobStatistics", "schema.JobStatistics", {
        "unit": StructSpec("Unit", "schema.Unit", {"base": STR, "prefix": STR}),
        "avg": F64, "min": F64, "max": F64,
    }), "map[string]schema.JobStatistics"),
    "concurrentJobs": StructSpec("JobLinkResultList", "schema.JobLinkResultList", {
        "items": _Slice(StructSpec("JobLink", "schema.JobLink", {"id": I64, "jobId": I64}),
                        "[]*schema.JobLink"),
        "count": _Scalar("int"),
    }),
}


@functools.cache
def start_spec(profile: ServerRelease) -> StructSpec:
    """The Go struct a start_job body is decoded into, for ``profile``."""
    fields = {k: _START_TYPES[k] for k in sorted(profile.start_keys) if k != "tags"}
    fields["tags"] = _Slice(_tag_spec(profile), "[]*schema.Tag")
    return StructSpec(profile.go_job_type, f"schema.{profile.go_job_type}", fields)


@functools.cache
def stop_spec(profile: ServerRelease) -> StructSpec:
    types = {"jobId": I64, "cluster": STR, "startTime": I64, "jobState": STR, "stopTime": I64}
    return StructSpec(profile.go_stop_type, f"api.{profile.go_stop_type}",
                      {k: types[k] for k in sorted(STOP_KEYS)})


# --- decoding -------------------------------------------------------------------------

def decode_json(body: bytes) -> Any:
    """The first JSON value of ``body``, or :class:`DecodeError` with Go's text."""
    try:
        return loads(body)
    except GoJSONError as exc:
        raise DecodeError(str(exc)) from None


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float | BigNumber):
        return "number"
    if isinstance(value, list):
        return "array"
    return "object"


class _Decoder:
    def __init__(self) -> None:
        self.error: str | None = None

    def fail(self, message: str) -> None:
        if self.error is None:  # Go keeps the first error
            self.error = message

    def type_error(self, kind: str, struct: str, path: list[str], go: str) -> None:
        where = f"Go struct field {struct}.{'.'.join(path)}" if path else "Go value"
        self.fail(f"json: cannot unmarshal {kind} into {where} of type {go}")

    def value(self, spec: Any, value: Any, struct: str, path: list[str]) -> Any:
        if isinstance(spec, _Scalar):
            return self.scalar(spec, value, struct, path)
        if isinstance(spec, StructSpec):
            if not isinstance(value, dict):
                self.type_error(_kind(value), struct, path, spec.go_qualified)
                return None
            return self.struct(spec, value, path)
        if isinstance(spec, _Slice):
            if not isinstance(value, list):
                self.type_error(_kind(value), struct, path, spec.go)
                return None
            return [self.value(spec.elem, v, struct, path) if v is not None else None
                    for v in value]
        if isinstance(spec, _Map):
            if not isinstance(value, dict):
                self.type_error(_kind(value), struct, path, spec.go)
                return None
            return {k: self.value(spec.elem, v, struct, path) for k, v in value.items()}
        assert isinstance(spec, _Opaque)
        if not isinstance(value, dict):
            self.type_error(_kind(value), struct, path, spec.go)
            return None
        return value

    def scalar(self, spec: _Scalar, value: Any, struct: str, path: list[str]) -> Any:
        go = spec.go
        if go == "string":
            if isinstance(value, str):
                return value
            self.type_error(_kind(value), struct, path, go)
            return ""
        if isinstance(value, BigNumber):
            self.type_error(f"number {value.text}", struct, path, go)
            return 0
        if go == "float64":
            if isinstance(value, int | float) and not isinstance(value, bool):
                try:
                    return float(value)
                except OverflowError:  # an integer beyond float64
                    self.type_error(f"number {value}", struct, path, go)
                    return 0.0
            self.type_error(_kind(value), struct, path, go)
            return 0.0
        # integers
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.type_error(_kind(value), struct, path, go)
            return 0
        low, high = _INT_RANGES[go]
        if isinstance(value, float) or not low <= value <= high:
            self.type_error(f"number {_go_number(value)}", struct, path, go)
            return 0
        return value

    def struct(self, spec: StructSpec, obj: dict[str, Any], path: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in obj.items():
            name = spec.field_for(key)
            if name is None:
                self.fail(f"json: unknown field {key!r}".replace("'", '"'))
                continue
            if value is None:  # null leaves the default
                continue
            out[name] = self.value(spec.fields[name], value, spec.go_name, [*path, name])
        return out


def _go_number(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return repr(value)
    return repr(value)


def decode_struct(body: bytes, spec: StructSpec) -> dict[str, Any]:
    """Decode ``body`` into ``spec``; :class:`DecodeError` with Go's text if it fails."""
    raw = decode_json(body)
    decoder = _Decoder()
    if not isinstance(raw, dict):
        raise DecodeError(f"json: cannot unmarshal {_kind(raw)} into Go value of type "
                          f"{spec.go_qualified}")
    result = decoder.struct(spec, raw, [])
    if decoder.error is not None:
        raise DecodeError(decoder.error)
    return result


def decode_start(body: bytes, profile: ServerRelease) -> dict[str, Any]:
    """A start body as the server sees it after decoding, with defaults filled in."""
    job = decode_struct(body, start_spec(profile))
    if profile.sharing_key == "shared":
        job.setdefault("shared", "none")
    else:
        job.setdefault("exclusive", 1)
    job.setdefault("monitoringStatus", 1)
    for key in ("cluster", "subCluster", "partition", "project", "user", "jobState"):
        job.setdefault(key, "")
    for key in ("jobId", "startTime", "numNodes", "numHwthreads", "numAcc", "walltime",
                "arrayJobId", "smt", "duration"):
        job.setdefault(key, 0)
    job.setdefault("resources", None)
    job.setdefault("metaData", None)
    return job


def decode_stop(body: bytes, profile: ServerRelease) -> dict[str, Any]:
    return decode_struct(body, stop_spec(profile))


# --- start sanity checks (§4.2 step 4) --------------------------------------------------

def check_start(job: dict[str, Any], profile: ServerRelease,
                clusters: ClusterRegistry) -> Rejection | None:
    """The 400 the server gives for a decoded start body, or None if it passes.

    Order as in cc-backend: cluster, sub-cluster, state, user/resources, counts,
    resources vs numNodes. May set ``job["subCluster"]``.
    """
    name = job["cluster"]
    cluster = clusters.get(name)
    if cluster is None:
        return Rejection(400, f"no such cluster: {name}")
    resources = job["resources"] or []
    if job["subCluster"]:
        if cluster.subcluster(job["subCluster"]) is None:
            return Rejection(400, "ARCHIVE/CLUSTERCONFIG > already assigned subcluster "
                                  f"{job['subCluster']} unkown (cluster: {name})")
    elif not resources:
        return Rejection(400, "ARCHIVE/CLUSTERCONFIG > job without any resources/hosts")
    else:
        first = resources[0]
        if first is None:  # v1.5.4 dereferences resources[0]: a panic, 500 (measured)
            raise Panic("resources[0] is null")
        host = first.get("hostname", "")
        sub = cluster.assign(host)
        if sub is None:
            return Rejection(400, "ARCHIVE/CLUSTERCONFIG > no subcluster found for cluster "
                                  f"{name} and host {host}")
        job["subCluster"] = sub.name
    if profile.start_forces_running or not job["jobState"]:
        job["jobState"] = "running"
    elif job["jobState"] not in profile.job_states:
        return Rejection(400, f"invalid job state: '{job['jobState']}'")
    if not resources or not job["user"]:
        return Rejection(400, "'resources' and 'user' should not be empty")
    if job["numNodes"] <= 0 or job["numAcc"] < 0 or job["numHwthreads"] < 0:
        return Rejection(400, "'numNodes', 'numAcc' or 'numHWThreads' invalid")
    if len(resources) != job["numNodes"]:
        return Rejection(400, f"len(resources) does not equal numNodes "
                              f"({len(resources)} vs {job['numNodes']})")
    return None
