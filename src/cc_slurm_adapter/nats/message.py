"""The job-event message cc-backend 1.5 reads from NATS, and its JetStream message id.

cc-backend-contract.md §9.2 and cc-slurm-adapter-behaviour.md §5: one InfluxDB
line-protocol line, measurement ``job``, tag ``function=start_job|stop_job``, and
the REST payload JSON as the string field ``event``. Upstream adds the tags
``hostname=<adapter host>``, ``type=node`` and ``type-id=0`` (sorted by key) and the
timestamp startTime (start) or stopTime (stop) in nanoseconds; cc-backend ignores
all of those, other consumers may not, so they are kept.

Escaping: inside a string field cc-backend's decoder (influxdata line-protocol v2 in
the 1.5.4 build; cc-line-protocol in later ones) turns ``\\\\`` into ``\\`` and ``\\"``
into ``"``, and leaves every other byte as it is (the cc-line-protocol fork also
reads ``\\n``, ``\\r``, ``\\t`` as control characters, which is why a lone backslash
must be doubled too: the JSON escape ``\\n`` would otherwise arrive as a newline).
So exactly backslash and double quote are escaped, and the JSON arrives byte for byte.
"""

from __future__ import annotations

import functools
import re
import socket
import urllib.parse
from typing import Literal

import msgspec

__all__ = ["KINDS", "Kind", "event_message", "message_id"]

Kind = Literal["start_job", "stop_job"]
KINDS: tuple[Kind, ...] = ("start_job", "stop_job")

_TIME_KEY: dict[str, str] = {"start_job": "startTime", "stop_job": "stopTime"}
_INT64_MAX = 2**63 - 1
# line protocol: a tag value may not hold control characters; ",", " " and "=" are escaped
_TAG_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


class _Times(msgspec.Struct):
    startTime: int | None = None
    stopTime: int | None = None


_times_decoder = msgspec.json.Decoder(_Times)


def _tag_value(value: str) -> str:
    value = _TAG_UNSAFE.sub("", value)
    return value.replace(",", "\\,").replace(" ", "\\ ").replace("=", "\\=")


@functools.cache
def _static_tags() -> bytes:
    host = _tag_value(socket.gethostname())
    # a tag with an empty value is a syntax error for the decoder: leave it out then
    hostname = f",hostname={host}" if host and not host.endswith("\\") else ""
    return f"{hostname},type=node,type-id=0".encode()


def _timestamp_ns(kind: str, payload: bytes) -> bytes:
    try:
        times = _times_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return b""
    seconds = times.startTime if kind == "start_job" else times.stopTime
    if seconds is None or seconds < 0 or seconds * 1_000_000_000 > _INT64_MAX:
        return b""
    return b" %d" % (seconds * 1_000_000_000)


def event_message(kind: Kind, payload: bytes) -> bytes:
    """The line-protocol message for ``payload``, the JSON body REST would POST.

    ``job,function=<kind>,hostname=<host>,type=node,type-id=0 event="<escaped JSON>"
    <time in ns>``; the timestamp is left out when the payload has no usable
    startTime/stopTime (the decoder then takes none, which cc-backend accepts).
    Raises ValueError for an unknown kind.
    """
    if kind not in _TIME_KEY:
        raise ValueError(f"unknown NATS job event {kind!r} (expected start_job or stop_job)")
    escaped = payload.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return b"".join((b"job,function=", kind.encode(), _static_tags(), b' event="', escaped,
                     b'"', _timestamp_ns(kind, payload)))


def message_id(cluster: str, job_id: int, start_time: int, kind: str) -> str:
    """The ``Nats-Msg-Id`` of one event: ``<cluster>:<jobId>:<startTime>:<kind>``.

    JetStream drops a second message with the same id inside the stream's duplicate
    window, so a re-send after a lost ack is stored once. The cluster name is
    percent-encoded, so no cluster name can forge another event's id (or put a line
    break into a header).
    """
    return f"{urllib.parse.quote(cluster, safe='')}:{job_id}:{start_time}:{kind}"
