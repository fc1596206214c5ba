"""Publishing job events to NATS: core NATS or JetStream, reconnecting forever.

:class:`NatsPublisher` owns one connection. :meth:`~NatsPublisher.start` starts a
supervisor task that connects, waits until the connection is gone, and connects
again, with exponential backoff and jitter between failed attempts, for ever; each
state change (connected, lost, a new kind of failure) is logged once. nats-py's own
reconnect logic is off: it gives up after an authorization error, and its buffer
would hold events that the outbox must keep instead.

:meth:`~NatsPublisher.publish` never raises and takes bounded time. Its
:class:`PublishResult` tells the outbox what to do with the event:

* ``ok``: core NATS: the server has read the message (a flush round trip after it,
  so an event is not "sent" while only in a socket buffer); JetStream: the stream
  acked it (or already held that ``Nats-Msg-Id``, inside its duplicate window);
* ``retry``: not connected, timed out, no stream yet: keep it and try later;
* neither: a refusal that repeating cannot fix (larger than the server's
  max_payload, a bad subject), so the outbox can set it aside.

With JetStream the stream ``natsStreamName`` is looked up and, if missing, created
with the subjects ``natsStreamSubjects`` (default: ``natsSubject``) and a 24 h
duplicate window (JetStream's default of 2 min would let a re-send after a longer
outage be stored twice). An existing stream is used as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from cc_slurm_adapter.config import Config
from cc_slurm_adapter.log import redact_url

from .message import KINDS, Kind, event_message
from .options import ConnectPlan, connect_plan, server_url

__all__ = ["DUPLICATE_WINDOW", "NatsPublisher", "PublishResult", "subject_matches"]

log = logging.getLogger("cc_slurm_adapter.nats")

STABLE_AFTER = 10.0
"""A connection that lasted less (seconds) does not reset the reconnect backoff."""

DUPLICATE_WINDOW = 24 * 3600.0
"""Seconds JetStream remembers a Nats-Msg-Id in a stream the adapter creates."""

# JetStream API error codes (nats-server errors.json) that a re-send cannot fix.
_JS_PERMANENT = {
    10054,  # JSStreamMessageExceedsMaximumErr: message size exceeds maximum allowed
}


@dataclass(frozen=True)
class PublishResult:
    ok: bool
    retry: bool
    detail: str


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    want = pattern.split(".")
    have = subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


_LOST = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError,
         nats.errors.UnexpectedEOF, nats.errors.StaleConnectionError)
_CLIENT_CERT_ALERTS = ("BAD_CERTIFICATE", "CERTIFICATE_REQUIRED", "UNKNOWN_CA",
                       "CERTIFICATE_UNKNOWN")


def _is_lost(exc: BaseException) -> bool:
    return isinstance(exc, _LOST) or str(exc).strip().lower() == "connection lost"


def error_kind(exc: BaseException, *, tls: bool = False) -> str:
    """The kind of a connect failure, for logging each kind once: while a refused
    client certificate shows as an alert, a broken pipe or a lost connection
    (whichever the TLS 1.3 race delivers first), it is one kind."""
    text = str(exc)
    if isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in \
            text.lower():
        return "auth"
    if isinstance(exc, ssl.SSLError) or (tls and _is_lost(exc)):
        return "tls"
    if _is_lost(exc):
        return "lost"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timeout"
    return f"other: {describe_error(exc)}"


def describe_error(exc: BaseException, auth: str = "", *, tls: bool = False) -> str:
    """One line for a connect or publish failure, without a traceback."""
    text = str(exc)
    if isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in \
            text.lower():
        return f"authorization violation: the server refused {auth or 'the credentials'}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: server certificate not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or text
        if any(alert in reason for alert in _CLIENT_CERT_ALERTS):
            return f"TLS: the server refused the client certificate ({reason}; see " \
                   "natsTlsCertFile/natsTlsKeyFile)"
        return f"TLS: {reason}"
    if tls and _is_lost(exc):
        return "TLS: the server closed the connection during the handshake (does it " \
               "want a client certificate? see natsTlsCertFile/natsTlsKeyFile)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):  # before OSError: a subclass
        return "timed out"
    if isinstance(exc, OSError):
        reason = exc.strerror or text or type(exc).__name__
        return f"{reason}: {exc.filename}" if exc.filename else reason
    if isinstance(exc, nats.errors.Error):
        return text.removeprefix("nats: ").strip("'") or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _close_quietly(nc: Client) -> None:
    """Close a connection, bounded: a TLS transport the server has given up on may
    never finish closing."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2):
            await nc.close()


def _most_telling(failures: list[Exception]) -> Exception:
    """Of one attempt's errors, the one that says why: a refused login or TLS error
    rather than the "connection lost" that follows it."""
    for exc in reversed(failures):
        if isinstance(exc, nats.errors.AuthorizationError | ssl.SSLError) or \
                "authorization violation" in str(exc).lower():
            return exc
    return failures[-1]


class NatsPublisher:
    """Publishes start_job/stop_job events to ``natsSubject`` (see module docstring)."""

    def __init__(self, config: Config, *, connect_timeout: float = 5.0,
                 publish_timeout: float = 5.0, backoff_min: float = 0.5,
                 backoff_max: float = 30.0) -> None:
        self._config = config
        self._subject = config.nats_subject
        self._jetstream = config.nats_jet_stream
        self._connect_timeout = connect_timeout
        self._publish_timeout = publish_timeout
        self._backoff_min = backoff_min
        self._backoff_max = max(backoff_min, backoff_max)
        self._url = server_url(config)
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._stream: str | None = None
        self._stream_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._last_error: str | None = None
        self._errors_seen: set[str] = set()
        self._stream_errors_seen: set[str] = set()
        """The failures logged at error level since the last connection: each kind once."""
        self._was_connected = False
        self.state = "idle"
        """idle, connecting, connected or closed (for the metrics)."""
        self.connects = 0
        """Successful connections so far (the first one and every reconnect)."""

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None and not self._closing:
            self.state = "connecting"
            self._task = asyncio.create_task(self._supervise(), name="nats-publisher")

    async def close(self) -> None:
        self._closing = True
        self.state = "closed"
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            await _close_quietly(nc)

    @property
    def connected(self) -> bool:
        nc = self._nc
        return nc is not None and nc.is_connected

    @property
    def url(self) -> str:
        return self._url

    @property
    def last_error(self) -> str | None:
        """The last connect failure (None once connected)."""
        return self._last_error

    # --- connection supervisor --------------------------------------------------------

    async def _supervise(self) -> None:
        delay = self._backoff_min
        while not self._closing:
            lost = asyncio.Event()
            plan: ConnectPlan | None = None
            try:
                plan = connect_plan(self._config)
                nc = await self._connect_once(plan, lost)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                tls = bool(plan and "tls" in plan.kwargs)
                self._connect_failed(describe_error(exc, plan.auth if plan else "", tls=tls),
                                     error_kind(exc, tls=tls))
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self._backoff_max)
                continue
            since = time.monotonic()
            self._nc, self._js, self._stream = nc, None, None
            self._connected()
            if self._jetstream:
                await self._ensure_stream(nc)
            await lost.wait()
            self._nc, self._js, self._stream = None, None, None
            if self._closing:
                return
            self.state = "connecting"
            reason = describe_error(nc.last_error) if nc.last_error else "closed by the server"
            log.warning("NATS %s: connection lost (%s); reconnecting", self._shown, reason)
            await _close_quietly(nc)
            if time.monotonic() - since < STABLE_AFTER:
                # a server that takes the connection and drops it again: back off too
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self._backoff_max)
            else:
                delay = self._backoff_min

    @property
    def _shown(self) -> str:
        return redact_url(self._url)

    async def _connect_once(self, plan: ConnectPlan, lost: asyncio.Event) -> Client:
        failures: list[Exception] = []

        async def on_error(exc: Exception) -> None:
            failures.append(exc)
            log.debug("NATS %s: %s", self._shown, describe_error(exc, plan.auth))

        async def on_gone() -> None:
            lost.set()

        # allow_reconnect off: one attempt (nats-py tries a server twice before it
        # raises NoServersError with max_reconnect_attempts=1), then our backoff.
        nc = Client()
        try:
            async with asyncio.timeout(self._connect_timeout * 3 + 1):
                await nc.connect(
                    plan.url, name="cc-slurm-adapter", allow_reconnect=False,
                    max_reconnect_attempts=1, reconnect_time_wait=0,
                    connect_timeout=max(1, round(self._connect_timeout)),
                    ping_interval=20, max_outstanding_pings=3,
                    error_cb=on_error, disconnected_cb=on_gone, closed_cb=on_gone,
                    **plan.kwargs)
            return nc
        except BaseException as exc:
            # nats-py leaves the socket of a refused attempt open: close it
            await _close_quietly(nc)
            if isinstance(exc, nats.errors.NoServersError) and failures:
                raise _most_telling(failures) from None
            raise

    def _connect_failed(self, text: str, kind: str) -> None:
        self.state = "connecting"
        self._last_error = text
        if kind not in self._errors_seen:
            log.error("NATS %s: cannot connect: %s; retrying with backoff (up to %gs)",
                      self._shown, text, self._backoff_max)
            self._errors_seen.add(kind)
        else:
            log.debug("NATS %s: cannot connect: %s", self._shown, text)

    def _connected(self) -> None:
        self.state = "connected"
        self.connects += 1
        mode = "JetStream" if self._jetstream else "core NATS"
        if self._was_connected or self._last_error is not None:
            log.warning("NATS %s: connected again (%s)", self._shown, mode)
        else:
            log.info("NATS %s: connected (%s, subject %s)", self._shown, mode, self._subject)
        self._was_connected = True
        self._last_error = None
        self._errors_seen.clear()

    # --- JetStream stream -------------------------------------------------------------

    def _stream_subjects(self) -> list[str]:
        subjects = [s.strip() for s in self._config.nats_stream_subjects.split(",")]
        return [s for s in subjects if s] or [self._subject]

    async def _ensure_stream(self, nc: Client) -> str | None:
        """The stream that takes natsSubject (created if missing), or None (logged)."""
        async with self._stream_lock:
            if self._stream is not None and self._nc is nc:
                return self._stream
            js = nc.jetstream(timeout=self._publish_timeout)
            name = self._config.nats_stream_name
            try:
                info = await js.stream_info(name)
            except nats.js.errors.NotFoundError:
                info = None
            except Exception as exc:
                self._stream_problem(f"JetStream unavailable: {describe_error(exc)}")
                return None
            if info is None:
                subjects = self._stream_subjects()
                try:
                    await js.add_stream(name=name, subjects=subjects,
                                        duplicate_window=DUPLICATE_WINDOW)
                    log.info("NATS %s: created JetStream stream %s (subjects %s)",
                             self._shown, name, ", ".join(subjects))
                except nats.js.errors.APIError as exc:
                    other = await self._stream_for_subject(js)
                    if other is None:
                        self._stream_problem(f"cannot create JetStream stream {name}: "
                                             f"{exc.description or exc}")
                        return None
                    log.warning("NATS %s: stream %s not created (%s); stream %s takes "
                                "subject %s and is used", self._shown, name,
                                exc.description or exc, other, self._subject)
                    name = other
                except Exception as exc:
                    self._stream_problem(f"cannot create JetStream stream {name}: "
                                         f"{describe_error(exc)}")
                    return None
            elif not any(subject_matches(p, self._subject)
                         for p in info.config.subjects or []):
                other = await self._stream_for_subject(js)
                if other is None:
                    self._stream_problem(f"JetStream stream {name} exists but does not take "
                                         f"subject {self._subject}, and no other stream does")
                    return None
                log.warning("NATS %s: stream %s does not take subject %s; stream %s does "
                            "and is used", self._shown, name, self._subject, other)
                name = other
            else:
                log.info("NATS %s: using JetStream stream %s", self._shown, name)
            if self._nc is nc:
                self._js, self._stream = js, name
            self._stream_errors_seen.clear()
            return name

    def _stream_problem(self, text: str) -> None:
        """Log a stream problem at error level once (until a stream is found), since
        every publish retries it."""
        if text not in self._stream_errors_seen:
            self._stream_errors_seen.add(text)
            log.error("NATS %s: %s; events wait in the outbox", self._shown, text)
        else:
            log.debug("NATS %s: %s", self._shown, text)

    async def _stream_for_subject(self, js: JetStreamContext) -> str | None:
        try:
            return await js.find_stream_name_by_subject(self._subject)
        except Exception:
            return None

    # --- publishing -------------------------------------------------------------------

    async def publish(self, kind: str, payload: bytes, msg_id: str) -> PublishResult:
        """Send one event; see the module docstring for the result."""
        if kind not in KINDS:
            return PublishResult(False, False, f"unknown event kind {kind!r}")
        event: Kind = "start_job" if kind == "start_job" else "stop_job"
        nc = self._nc
        if nc is None or not nc.is_connected:
            return PublishResult(False, True, "not connected to NATS")
        data = event_message(event, payload)
        if nc.max_payload and len(data) > nc.max_payload:
            return PublishResult(False, False, f"message of {len(data)} bytes exceeds the "
                                 f"server's max_payload of {nc.max_payload}")
        try:
            async with asyncio.timeout(self._publish_timeout * 2 + 1):
                if self._jetstream:
                    return await self._publish_js(nc, data, msg_id)
                await nc.publish(self._subject, data)
                await nc.flush(timeout=max(1, round(self._publish_timeout)))
                return PublishResult(True, False, "published")
        except asyncio.CancelledError:
            raise
        except (nats.errors.MaxPayloadError, nats.errors.BadSubjectError) as exc:
            return PublishResult(False, False, describe_error(exc))
        except nats.js.errors.APIError as exc:
            permanent = exc.err_code in _JS_PERMANENT
            return PublishResult(False, not permanent,
                                 f"JetStream: {exc.description or describe_error(exc)}")
        except nats.errors.NoRespondersError:
            self._stream = None
            return PublishResult(False, True, f"no JetStream stream takes {self._subject}")
        except Exception as exc:
            return PublishResult(False, True, describe_error(exc))

    async def _publish_js(self, nc: Client, data: bytes, msg_id: str) -> PublishResult:
        js = self._js
        if js is None or self._stream is None:
            if await self._ensure_stream(nc) is None:
                return PublishResult(False, True, "no JetStream stream for "
                                     f"{self._subject} yet")
            js = self._js
            if js is None:
                return PublishResult(False, True, "not connected to NATS")
        headers: dict[str, Any] = {"Nats-Msg-Id": msg_id}
        ack = await js.publish(self._subject, data, timeout=self._publish_timeout,
                               headers=headers)
        if ack.duplicate:
            return PublishResult(True, False, f"already in stream {ack.stream} "
                                 f"(Nats-Msg-Id {msg_id})")
        return PublishResult(True, False, f"stream {ack.stream} seq {ack.seq}")
