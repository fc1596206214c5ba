"""The async HTTP client of cc-backend's job API (contract §2–§7, checklist §12.1).

One connection pool per :class:`CCBackendClient`: ``max_in_flight`` keep-alive
connections, held by :class:`httpx.AsyncClient` shards of four (see ``__init__`` for why).
``start_job`` and ``stop_job`` never raise for anything the server or the network does:
they return an :class:`~.outcome.Outcome` (see :mod:`.outcome` for the table). The
queries (``get_clusters``, ``running_jobs``, ``get_job``) raise
:class:`~cc_slurm_adapter.errors.CCBackendUnavailable` (no answer) or
:class:`~cc_slurm_adapter.errors.CCBackendStatusError` (an answer we cannot use);
:func:`outcome_of_error` turns those into an OutcomeKind, so the caller backs off the
same way.

Concurrency: the client is safe for many concurrent calls. At most ``max_in_flight``
requests are on the wire at once (an :class:`asyncio.Semaphore`, and the pool has as
many connections); further calls wait their turn, so the caller may hand it a whole
outbox with ``asyncio.gather``/a TaskGroup.

Secrets: the JWT goes only into the ``Authorization`` header. It is not in ``repr``,
in an exception, in an Outcome or in a log line; answer bodies and error texts are
scrubbed of it as well, in case a proxy echoes the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import ssl
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, Final, Literal, NamedTuple, Self
from urllib.parse import urlsplit, urlunsplit

import httpx
import msgspec

from cc_slurm_adapter import __version__
from cc_slurm_adapter.errors import (
    CCBackendError,
    CCBackendStatusError,
    CCBackendUnavailable,
    ConfigError,
)
from cc_slurm_adapter.log import TRACE
from cc_slurm_adapter.profiles import DEFAULT_PROFILE, Profile, get_profile

from .outcome import BODY_LIMIT, Check, Outcome, OutcomeKind, classify, describe

__all__ = ["DEFAULT_PAGE_SIZE", "JSON_LIMIT", "USER_AGENT", "CCBackendClient", "outcome_of_error"]

log = logging.getLogger("cc_slurm_adapter.ccbackend")

# httpcore 1.0.x runs ``import sniffio`` for every lock it sets up (several per request)
# and falls back to asyncio when that fails; anyio 4.x no longer installs sniffio, so each
# request paid for ~5 failed imports, each a scan of sys.path (0.2 ms apiece, about half
# of the client's CPU time per request, measured with bench/bench_ccbackend_client.py).
# Where sniffio is missing, record that once, so the failing import is a dict lookup.
# With sniffio installed this does nothing.
if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
    sys.modules["sniffio"] = None  # type: ignore[assignment]

USER_AGENT: Final[str] = f"cc-slurm-adapter/{__version__} python-httpx/{httpx.__version__}"
JSON_LIMIT: Final[int] = 64 * 1024 * 1024
"""Largest query answer read (a page of jobs, the cluster list)."""
DEFAULT_PAGE_SIZE: Final[int] = 100
"""Jobs per page of ``GET /api/jobs/``: small, because cc-backend 1.5's newest code
computes each running job's footprint on that route, so one huge page gets slow."""

_START: Final = "/api/jobs/start_job/"
_STOP: Final = "/api/jobs/stop_job/"
_JOBS: Final = "/api/jobs/"
_CLUSTERS: Final = "/api/clusters/"
_MAX_AUTH_SEEN: Final = 64
_SHARD_CONNECTIONS: Final = 4


class _Answer(NamedTuple):
    status: int
    body: bytes
    truncated: bool


def _display_url(url: str) -> str:
    """The URL without user:password (never shown)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def _is_cert_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError) or \
                "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def outcome_of_error(exc: CCBackendError) -> OutcomeKind:
    """How a query error should be handled: AUTH for 401/403, REJECTED for 400,
    RETRY otherwise (no answer, 5xx, an answer that is not what we expect)."""
    if isinstance(exc, CCBackendStatusError):
        if exc.status in (401, 403):
            return OutcomeKind.AUTH
        if exc.status == 400:
            return OutcomeKind.REJECTED
    return OutcomeKind.RETRY


class CCBackendClient:
    """cc-backend's REST job API for one server.

    ``url`` is ``ccRestUrl`` (``http(s)://host:port``, no ``/api``), ``jwt`` is
    ``ccRestJwt``, ``profile`` ``ccRestProfile``, ``timeout`` ``ccRestTimeout`` (seconds
    for a whole request, connect to last byte). TLS certificates are always verified:
    against the system's CA store, or only against ``ca_file`` when it is given.
    ``transport`` is for tests (:class:`httpx.MockTransport`).
    """

    def __init__(self, url: str, jwt: str, *, profile: Profile | str = DEFAULT_PROFILE,
                 timeout: float = 30.0, ca_file: str | None = None, max_in_flight: int = 16,
                 transport: httpx.AsyncBaseTransport | None = None,
                 user_agent: str = USER_AGENT) -> None:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"not an http(s) URL: {_display_url(url)!r}", key="ccRestUrl")
        if not jwt:
            raise ConfigError("is empty", key="ccRestJwt")
        if timeout <= 0:
            raise ConfigError("must be > 0", key="ccRestTimeout")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self._base = url.strip().rstrip("/")
        self._jwt = jwt
        self.profile: Profile = profile if isinstance(profile, Profile) else get_profile(profile)
        self.timeout = float(timeout)
        self.max_in_flight = max_in_flight
        try:
            context = tls_context(parts.scheme, ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load CA file {ca_file}: {exc.strerror or exc}",
                              key="ccRestCaFile") from None
        # One pool, in shards of at most _SHARD_CONNECTIONS connections: httpcore's pool
        # walks every connection it holds (an is-readable poll through anyio) twice per
        # request, so a request cost 1.3 ms of client CPU with 2 connections and 2.3 ms with
        # 16 (bench/bench_ccbackend_client.py). Shards of 4 keep that walk short; the
        # total stays max_in_flight connections, kept alive and reused.
        count = -(-max_in_flight // _SHARD_CONNECTIONS)
        self._sizes = [max_in_flight // count + (1 if i < max_in_flight % count else 0)
                       for i in range(count)]
        self._busy = [0] * count
        self._shards = [httpx.AsyncClient(
            base_url=self._base,
            headers={"Authorization": f"Bearer {jwt}", "User-Agent": user_agent,
                     "Accept": "application/json"},
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            verify=context, follow_redirects=False, transport=transport)
            for size in self._sizes]
        self._sem = asyncio.Semaphore(max_in_flight)
        self._auth_seen: set[tuple[int | None, str]] = set()
        self.auth_problem: Outcome | None = None
        """The last AUTH outcome, cleared by the next answer that is not an auth failure."""

    def __repr__(self) -> str:
        return (f"CCBackendClient(url={_display_url(self._base)!r}, "
                f"profile={self.profile.name!r}, timeout={self.timeout:g}, "
                f"max_in_flight={self.max_in_flight})")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()

    # --- the wire -----------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return text.replace(self._jwt, "***") if self._jwt in text else text

    def _reason(self, exc: BaseException) -> str:
        """One line for a request that got no answer. httpx messages carry no headers."""
        text = self._scrub(str(exc)) or type(exc).__name__
        if isinstance(exc, TimeoutError | httpx.TimeoutException):
            return f"no answer within {self.timeout:g} s ({type(exc).__name__})"
        if _is_cert_error(exc):
            return (f"TLS certificate verification failed ({text}); give cc-backend's CA "
                    "certificate in ccRestCaFile")
        if isinstance(exc, httpx.ConnectError):
            return f"cannot connect: {text}"
        if isinstance(exc, httpx.RemoteProtocolError):
            return f"connection dropped before the answer: {text}"
        if isinstance(exc, httpx.NetworkError):
            return f"network error: {text}"
        return f"{type(exc).__name__}: {text}"

    async def _send(self, method: str, path: str, *, content: bytes | None = None,
                    params: Mapping[str, str | int] | None = None, limit: int) -> _Answer:
        """One request; the body is read up to ``limit`` bytes. Raises httpx errors,
        TimeoutError or OSError (mapped by the callers)."""
        headers = {"Content-Type": "application/json"} if content is not None else None
        async with self._sem:
            # The shard with the most free connections; one always has one, since no more
            # than max_in_flight requests hold the semaphore.
            index = max(range(len(self._shards)),
                        key=lambda i: self._sizes[i] - self._busy[i])
            self._busy[index] += 1
            try:
                return await self._exchange(self._shards[index], method, path, content,
                                            params, headers, limit)
            finally:
                self._busy[index] -= 1

    async def _exchange(self, http: httpx.AsyncClient, method: str, path: str,
                        content: bytes | None, params: Mapping[str, str | int] | None,
                        headers: dict[str, str] | None, limit: int) -> _Answer:
        async with asyncio.timeout(self.timeout):
            t0 = time.monotonic()
            async with http.stream(method, path, content=content, params=params,
                                   headers=headers) as resp:
                chunks: list[bytes] = []
                size = 0
                truncated = False
                async for chunk in resp.aiter_bytes():
                    if size + len(chunk) > limit:
                        chunks.append(chunk[: limit - size])
                        truncated = True
                        break
                    chunks.append(chunk)
                    size += len(chunk)
            if log.isEnabledFor(TRACE):
                log.log(TRACE, "%s %s -> %d (%.1f ms)", method, path, resp.status_code,
                        (time.monotonic() - t0) * 1000)
            return _Answer(resp.status_code, b"".join(chunks), truncated)

    def _text(self, body: bytes) -> str:
        return self._scrub(body[:BODY_LIMIT].decode("utf-8", errors="replace"))

    def _note_auth(self, outcome: Outcome) -> None:
        """Log an auth failure loudly once per distinct failure; forget them on success."""
        if outcome.kind is not OutcomeKind.AUTH:
            if outcome.status is not None and self._auth_seen:
                self._auth_seen.clear()
                self.auth_problem = None
            return
        self.auth_problem = outcome
        key = (outcome.status, outcome.detail)
        if key in self._auth_seen:
            log.debug("cc-backend still refuses the API token (%s)", outcome)
            return
        if len(self._auth_seen) >= _MAX_AUTH_SEEN:
            self._auth_seen.clear()
        self._auth_seen.add(key)
        log.error("cc-backend refused the API token: %s %s; check ccRestJwt (a JWT with "
                  "only the 'api' role); every submission is kept and retried",
                  outcome.status, outcome.detail)

    # --- start / stop -----------------------------------------------------------------

    async def start_job(self, payload: Mapping[str, Any]) -> Outcome:
        """``POST /api/jobs/start_job/``. Never raises for server or network trouble."""
        return await self._submit("start", _START, payload)

    async def stop_job(self, payload: Mapping[str, Any]) -> Outcome:
        """``POST /api/jobs/stop_job/``. Send ``startTime`` (the one sent with the
        start): it picks the right run, and v1.3/v1.4 need it to read a 422."""
        return await self._submit("stop", _STOP, payload)

    async def _submit(self, op: Literal["start", "stop"], path: str,
                      payload: Mapping[str, Any]) -> Outcome:
        try:
            content = msgspec.json.encode(payload)
        except (TypeError, msgspec.EncodeError) as exc:
            return Outcome(OutcomeKind.REJECTED, None, f"payload is not JSON: {exc}")
        try:
            ans = await self._send("POST", path, content=content, limit=BODY_LIMIT)
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            outcome = Outcome(OutcomeKind.RETRY, None, self._reason(exc))
            log.debug("%s of %s: %s", op, _label(payload), outcome)
            return outcome
        body = self._text(ans.body)
        rule = classify(op, self.profile.name, ans.status, body)
        detail = describe(ans.status, body) if ans.status >= 300 else ""
        if isinstance(rule, Check):
            outcome = await self._check_stop(payload, rule, ans.status, detail, body)
        else:
            outcome = Outcome(rule, ans.status, detail, body)
        self._note_auth(outcome)
        log.debug("%s of %s: %s", op, _label(payload), outcome)
        return outcome

    async def _check_stop(self, payload: Mapping[str, Any], rule: Check, status: int,
                          detail: str, body: str) -> Outcome:
        """v1.3/v1.4: one status for "not found" and "not running" (§5.3); look it up."""
        job_id, cluster = payload.get("jobId"), payload.get("cluster")
        start_time = payload.get("startTime")
        if not (isinstance(job_id, int) and isinstance(cluster, str)
                and isinstance(start_time, int)):
            return Outcome(OutcomeKind.REJECTED, status,
                           f"{detail} (cc-backend {self.profile.name} uses {status} for "
                           "'not found' and 'not running'; a stop needs jobId, cluster and "
                           "startTime to tell them apart)", body)
        try:
            job = await self.get_job(job_id, cluster, start_time)
        except CCBackendError as exc:
            kind = outcome_of_error(exc)
            return Outcome(OutcomeKind.AUTH if kind is OutcomeKind.AUTH else OutcomeKind.RETRY,
                           status, f"{detail}; looking the job up failed: {exc}", body)
        if job is None:
            if rule is Check.CHECK_FOUND:
                return Outcome(OutcomeKind.NEEDS_START, status,
                               f"{detail} (no such job in cc-backend)", body)
            return Outcome(OutcomeKind.REJECTED, status, detail, body)
        state = job.get("jobState")
        if state != "running":
            return Outcome(OutcomeKind.DONE, status,
                           f"{detail} (already stopped, state {state})", body)
        if rule is Check.CHECK_FOUND:  # 422 for a running job: should not happen; try again
            return Outcome(OutcomeKind.RETRY, status,
                           f"{detail} (but the job is listed as running)", body)
        return Outcome(OutcomeKind.REJECTED, status, detail, body)

    # --- queries ------------------------------------------------------------------------

    async def _get_json(self, path: str, params: Mapping[str, str | int] | None = None
                        ) -> Any:
        try:
            ans = await self._send("GET", path, params=params, limit=JSON_LIMIT)
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            raise CCBackendUnavailable(f"GET {path}: {self._reason(exc)}") from None
        if ans.status != 200:
            body = self._text(ans.body)
            outcome = Outcome(OutcomeKind.AUTH if ans.status in (401, 403)
                              else OutcomeKind.RETRY, ans.status, describe(ans.status, body))
            self._note_auth(outcome)
            raise CCBackendStatusError(f"GET {path}: {ans.status} {outcome.detail}",
                                       status=ans.status, body=body)
        self._note_auth(Outcome(OutcomeKind.DONE, 200))
        if ans.truncated:
            raise CCBackendStatusError(f"GET {path}: answer larger than {JSON_LIMIT} bytes",
                                       status=200)
        try:
            return msgspec.json.decode(ans.body)
        except msgspec.DecodeError:
            text = self._text(ans.body)
            raise CCBackendStatusError(
                f"GET {path}: answer is not JSON: {describe(200, text)[:120]!r}",
                status=200, body=text) from None

    async def get_clusters(self) -> list[dict[str, Any]]:
        """``GET /api/clusters/``: every cluster.json object (for ``Topology.from_json``)."""
        doc = await self._get_json(_CLUSTERS)
        clusters = doc.get("clusters") if isinstance(doc, dict) else None
        if not isinstance(clusters, list) or not all(isinstance(c, dict) for c in clusters):
            raise CCBackendStatusError(f"GET {_CLUSTERS}: no 'clusters' list in the answer",
                                       status=200)
        return clusters

    async def _pages(self, params: dict[str, str | int], page_size: int
                     ) -> AsyncGenerator[dict[str, Any], None]:
        """Every job of ``GET /api/jobs/`` with ``params``, page by page.

        The last page is the first with fewer than ``page_size`` jobs (``items`` echoes
        the request, §6). Pages are read one after another while jobs start and stop,
        so a job may shift from one page to the next: duplicates within one walk are
        dropped, and a job missed this way is found on the next walk (for the caller,
        a job cc-backend seems to lack just gets a start, answered 422 = DONE).
        """
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        seen: set[tuple[Any, Any, Any]] = set()
        page = 1
        while True:
            doc = await self._get_json(_JOBS, {**params, "page": page,
                                               "items-per-page": page_size})
            jobs = doc.get("jobs") if isinstance(doc, dict) else None
            if not isinstance(jobs, list):
                raise CCBackendStatusError(f"GET {_JOBS}: no 'jobs' list in the answer",
                                           status=200)
            new = 0
            for job in jobs:
                if not isinstance(job, dict):
                    continue
                key = (job.get("jobId"), job.get("cluster"), job.get("startTime"))
                if key in seen:
                    continue
                seen.add(key)
                new += 1
                yield job
            if len(jobs) < page_size:
                return
            if new == 0:
                log.warning("GET %s page %d repeated earlier jobs only; stopped paging",
                            _JOBS, page)
                return
            page += 1

    async def running_jobs(self, cluster: str, page_size: int = DEFAULT_PAGE_SIZE
                           ) -> AsyncIterator[dict[str, Any]]:
        """The jobs cc-backend lists as running on ``cluster`` (``GET /api/jobs/
        ?state=running&cluster=…``), one small page at a time.

        cc-backend 1.5 lists a started job only after its job-cache commit worker has
        run (contract §6): a job started less than one commit interval ago is missing.
        """
        async for job in self._pages({"state": "running", "cluster": cluster}, page_size):
            yield job

    async def get_job(self, job_id: int, cluster: str, start_time: int,
                      page_size: int = DEFAULT_PAGE_SIZE) -> dict[str, Any] | None:
        """The job (jobId, cluster, startTime) in any state, or None.

        Used to read v1.3/v1.4's ambiguous stop answers. On v1.5 a job still in the
        job cache is not found this way (§6); v1.5 needs no such look-up.
        """
        params: dict[str, str | int] = {"cluster": cluster,
                                        "start-time": f"{start_time}-{start_time}"}
        async with contextlib.aclosing(self._pages(params, page_size)) as jobs:
            async for job in jobs:
                if job.get("jobId") == job_id:
                    return job
        return None


def tls_context(scheme: str, ca_file: str | None) -> ssl.SSLContext:
    """The context that checks cc-backend's certificate: the system store (as the Go
    adapter uses), or only the site's CA file. For an http URL without a CA file or a
    proxy, no TLS can happen (redirects are not followed): the system store is not
    loaded (~2.5 MB of RSS), and the context still verifies, against no CA at all, so
    it fails closed should TLS ever be tried."""
    if scheme == "http" and not ca_file and not _proxy_env():
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return ssl.create_default_context(cafile=ca_file or None)


def _proxy_env() -> bool:
    """A proxy variable httpx follows (``HTTP(S)_PROXY``, ``ALL_PROXY``, any case)."""
    return any(k.lower() in ("http_proxy", "https_proxy", "all_proxy") and v
               for k, v in os.environ.items())


def _label(payload: Mapping[str, Any]) -> str:
    text = f"job {payload.get('jobId')}"
    if payload.get("cluster"):
        text += f" on {payload.get('cluster')}"
    if payload.get("startTime") is not None:
        text += f" (startTime {payload.get('startTime')})"
    return text
