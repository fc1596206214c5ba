"""The stand-in's request handling: routes, auth, start/stop/query, control API.

Behaviour follows ``shared/reference/cc-backend-contract.md`` for the release named
by the chosen :class:`~cc_slurm_adapter.profiles.Profile`; the per-release tables are
the stand-in's own (:mod:`.contract`), not the product's. The control API under ``/_standin/``
(no auth) switches faults, reads the audit log and runs the checker; it does not
exist on a real cc-backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from cc_slurm_adapter.profiles import DEFAULT_PROFILE, Profile

from .audit import AuditLog, ExpectedJob, check
from .auth import KeyPair, TokenError, TokenVerifier, extract_token
from .clusters import ClusterRegistry
from .contract import EXCLUSIVE_TO_SHARED, release_for
from .faults import FaultPlan, FaultState
from .http import HTTPServer, Request, Response
from .natsjobs import NatsJobConsumer
from .render import error_body, go_json, render_job
from .store import Store, StoreFailure
from .validation import DecodeError, Panic, check_start, decode_start, decode_stop

__all__ = ["StandInApp", "StandInConfig"]

_JOB_ID_PATH = re.compile(r"^/api/jobs/([^/]+)$")
_GO_INT = re.compile(r"[+-]?[0-9]+")  # what strconv.ParseInt/Atoi accept (base 10)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NOT_FOUND_API = (b'{"status":"Resource not found",'
                  b'"error":"the requested endpoint does not exist"}\n')


@dataclass
class StandInConfig:
    profile: Profile = DEFAULT_PROFILE
    nats_mode: bool = False
    """cc-backend with ``main.api-subjects`` set: REST start/stop are not mounted."""
    commit_interval: float = 120.0
    """v1.5 job_cache commit worker period in seconds (0 = commit at once)."""
    db_path: str = ":memory:"
    audit_bodies: bool = True
    read_timeout: float = 20.0
    """Seconds a connection may take to send one request, and may sit idle between
    requests (cc-backend's http.Server ReadTimeout; its IdleTimeout defaults to it)."""
    max_connections: int = 1024
    """Open connections beyond this are closed at once (Go has no cap; a test double
    must not be exhaustible by half-open connections)."""
    nats_url: str = ""
    """With nats_mode: the NATS server whose ``nats_subject`` the job events come from."""
    nats_subject: str = "jobs"


class _Reply(Exception):
    """Raised by a handler step to answer at once."""

    def __init__(self, response: Response, outcome: str = "rejected") -> None:
        self.response = response
        self.outcome = outcome


def _error(status: int, message: str) -> Response:
    return Response(status, error_body(HTTPStatus(status).phrase, message))


class StandInApp:
    """All state of one stand-in; :meth:`handle` answers one HTTP request."""

    def __init__(self, config: StandInConfig, clusters: ClusterRegistry) -> None:
        self.config = config
        self.profile = config.profile
        self.release = release_for(config.profile.name)
        self.clusters = clusters
        self.store = Store(config.db_path)
        seed_hex = self.store.get_meta("ed25519_seed")
        self.keys = KeyPair(bytes.fromhex(seed_hex) if seed_hex else None)
        if seed_hex is None:
            self.store.set_meta("ed25519_seed", self.keys.seed.hex())
        self.verifier = TokenVerifier(self.keys.public_key)
        self.faults = FaultState()
        self.audit = AuditLog(keep_bodies=config.audit_bodies)
        self.node_states: dict[str, Any] = {}
        self.http: HTTPServer | None = None
        self._commit_task: asyncio.Task[None] | None = None
        self._down_timer: asyncio.TimerHandle | None = None
        self._start_lock = asyncio.Lock()
        self._config_changed = asyncio.Event()
        self.nats: NatsJobConsumer | None = None

    # --- lifecycle --------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.http = HTTPServer(self.handle, host, port,
                               read_timeout=self.config.read_timeout,
                               max_connections=self.config.max_connections)
        await self.http.start()
        if self.release.job_cache:
            self._commit_task = asyncio.create_task(self._commit_worker())
        if self.config.nats_mode and self.config.nats_url:
            self.nats = NatsJobConsumer(self, self.config.nats_url, self.config.nats_subject)
            await self.nats.start()

    async def close(self) -> None:
        if self.nats is not None:
            await self.nats.close()
        if self._down_timer is not None:
            self._down_timer.cancel()
        if self._commit_task is not None:
            self._commit_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._commit_task
        if self.http is not None:
            await self.http.close()
        self.store.close()

    @property
    def url(self) -> str:
        assert self.http is not None
        return f"http://{self.http.host}:{self.http.port}"

    def default_token(self) -> str:
        return self.keys.make_token(sub="cc-slurm-adapter", roles=["api"])

    async def _commit_worker(self) -> None:
        while True:
            interval = self.config.commit_interval
            self._config_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._config_changed.wait(),
                                       interval if interval > 0 else None)
                continue  # the interval changed: start a new period
            self.store.commit_cache()

    def set_commit_interval(self, seconds: float) -> None:
        """Change the v1.5 job_cache commit period (0 = no cache: insert into job)."""
        self.config.commit_interval = seconds
        self._config_changed.set()

    async def set_fault(self, plan: FaultPlan) -> None:
        """Switch the fault plan; ``down`` closes the port (for ``seconds`` if > 0)."""
        assert self.http is not None
        if self._down_timer is not None:
            self._down_timer.cancel()
            self._down_timer = None
        self.faults.set(plan)
        if plan.mode == "down":
            await self.http.set_listening(False)
            if plan.seconds > 0:
                loop = asyncio.get_running_loop()
                self._down_timer = loop.call_later(
                    plan.seconds, lambda: loop.create_task(self.set_fault(FaultPlan())))
        else:
            await self.http.set_listening(True)

    # --- dispatch ---------------------------------------------------------------------

    async def handle(self, req: Request) -> Response:
        if req.path.startswith("/_standin/"):
            return await self._control(req)
        fault = self.faults.pick(req.path)
        if fault is not None and fault.mode == "error":
            self.audit.add(req.method, req.path, fault.status, "fault:error")
            if fault.status == 500:
                return _error(500, "injected fault")
            return Response(fault.status, f"{HTTPStatus(fault.status).phrase}\n".encode(),
                            content_type="text/plain; charset=utf-8")
        if fault is not None and fault.mode == "expired":
            self.audit.add(req.method, req.path, 401, "fault:expired")
            return _error(401, "token has invalid claims: token is expired")
        job_info: dict[str, Any] | None = None
        try:
            response, outcome, job_info = await self._dispatch(req)
        except _Reply as reply:
            response, outcome = reply.response, reply.outcome
        if fault is not None and fault.mode == "drop":
            response.drop = True
            outcome = f"fault:drop({response.status})"
        if fault is not None and fault.mode == "delay":
            response.delay = fault.seconds
        error = None
        if response.status >= 400 and response.body.startswith(b"{"):
            with contextlib.suppress(msgspec.DecodeError, AttributeError):
                error = msgspec.json.decode(response.body.split(b"\n")[0]).get("error")
        self.audit.add(req.method, req.path, None if response.drop else response.status,
                       outcome, error=error, body=req.body, job=job_info)
        return response

    async def _dispatch(self, req: Request) -> tuple[Response, str, dict[str, Any] | None]:
        path = req.path
        if not path.startswith("/api/"):
            return Response(404, b"404 page not found\n", "text/plain; charset=utf-8"), \
                "rejected", None
        self._authenticate(req)
        p = self.release
        routes: dict[str, tuple[str, ...]] = {
            "/api/jobs/": ("GET",),
            "/api/clusters/": ("GET",),
        }
        if not self.config.nats_mode:
            routes["/api/jobs/start_job/"] = ("POST", "PUT")
            routes["/api/jobs/stop_job/"] = ("POST", "PUT")
        if p.name == "v1.5":
            routes["/api/nodestate/"] = ("POST", "PUT")
        if p.used_nodes:
            routes["/api/jobs/used_nodes"] = ("GET",)
        if path == "/api/jobs/used_nodes" and req.method != "GET":
            # chi: another method falls through to "/api/jobs/{id}" (measured: POST → 400)
            routes.pop(path, None)
        if path in routes:
            if req.method not in routes[path]:
                return Response(405, b"", None), "rejected", None
            if path == "/api/jobs/start_job/":
                return await self._start_job(req)
            if path == "/api/jobs/stop_job/":
                return await self._stop_job(req)
            if path == "/api/jobs/":
                return self._get_jobs(req), "ok", None
            if path == "/api/clusters/":
                return self._get_clusters(req)
            if path == "/api/jobs/used_nodes":
                return self._used_nodes(req)
            return self._node_state(req)
        if p.trailing_slash_redirect and path + "/" in routes:
            location = path + "/" + (f"?{req.query}" if req.query else "")
            return Response(301, b"", None, {"Location": location}), "rejected", None
        m = _JOB_ID_PATH.match(path)
        if m:
            return self._job_by_id(req, m.group(1))
        if p.trailing_slash_redirect:
            return Response(404, b"404 page not found\n", "text/plain; charset=utf-8"), \
                "rejected", None
        return Response(404, _NOT_FOUND_API), "rejected", None

    # --- auth (§3) --------------------------------------------------------------------

    def _authenticate(self, req: Request) -> None:
        p = self.release
        token = extract_token(req.headers)
        if not token:
            if p.name == "v1.3":
                raise _Reply(Response(401, b"<html><body>Login required</body></html>\n",
                                      "text/html; charset=utf-8"))
            raise _Reply(_error(401, "no user for secured check"))
        try:
            claims = self.verifier.verify(token)
        except TokenError as exc:
            if p.name == "v1.3":
                raise _Reply(Response(401, f"{exc}\n".encode(),
                                      "text/plain; charset=utf-8")) from None
            raise _Reply(_error(401, str(exc))) from None
        if p.requires_sub and not claims.sub:
            raise _Reply(_error(401, "missing 'sub' claim in JWT"))
        roles = claims.roles or ()
        if p.name == "v1.3":
            if "api" not in roles:
                raise _Reply(_error(403, "missing role: api"))
            return
        if not roles:
            body = error_body("Unauthorized", "unauthorized")
            raise _Reply(Response(401, body + body))
        if roles == ("api",) or (len(roles) >= 2 and "api" in roles and "admin" in roles):
            return
        raise _Reply(_error(401, "unauthorized"))

    # --- start (§4) -------------------------------------------------------------------

    async def _start_job(self, req: Request) -> tuple[Response, str, dict[str, Any] | None]:
        p = self.release
        try:
            if req.body_error is not None:
                raise DecodeError(req.body_error)
            job = decode_start(req.body, p)
        except DecodeError as exc:
            raise _Reply(_error(400, f"parsing request body failed: {exc}")) from None
        info = {"jobId": job["jobId"], "cluster": job["cluster"],
                "startTime": job["startTime"]}
        try:
            rejection = check_start(job, p, self.clusters)
        except Panic:  # chi's Recoverer: 500 with an empty body
            return Response(500, b"", None), "error", info
        if rejection is not None:
            return _error(rejection.status, rejection.message), "rejected", info
        if p.sharing_key == "exclusive":
            job["shared"] = EXCLUSIVE_TO_SHARED.get(job["exclusive"], "none")
        for tag in job.get("tags") or []:
            if tag is not None and p.name != "v1.3" and not tag.get("scope"):
                tag["scope"] = "global"
        async with self._start_lock:
            dup = self.store.find_duplicate(job["jobId"], job["cluster"], job["startTime"])
            if dup is not None:
                return _error(422, "a job with that jobId, cluster and startTime already "
                                   f"exists: dbid: {dup.id}, jobid: {dup.job_id}"), \
                    "rejected", info
            cached = p.job_cache and not job.get("tags") and self.config.commit_interval > 0
            try:
                db_id = self.store.insert(job, table="job_cache" if cached else "job")
            except StoreFailure as exc:
                return _error(500, f"insert into database failed: {exc}"), "error", info
        info["dbId"] = db_id
        if p.start_returns_db_id:
            return Response(201, go_json({"id": db_id})), "ok", info
        return Response(201, go_json({"msg": "success"})), "ok", info

    # --- stop (§5) --------------------------------------------------------------------

    async def _stop_job(self, req: Request) -> tuple[Response, str, dict[str, Any] | None]:
        p = self.release
        try:
            if req.body_error is not None:
                raise DecodeError(req.body_error)
            body = decode_stop(req.body, p)
        except DecodeError as exc:
            raise _Reply(_error(400, f"parsing request body failed: {exc}")) from None
        if "jobId" not in body:
            raise _Reply(_error(400, "the field 'jobId' is required"))
        job_id = body["jobId"]
        info = {"jobId": job_id, "cluster": body.get("cluster"),
                "startTime": body.get("startTime")}
        tables = ("job_cache", "job") if p.job_cache else ("job",)
        row = self.store.find_for_stop(job_id, body.get("cluster"), body.get("startTime"),
                                       tables)
        if row is None:
            return _error(p.stop.not_found_status,
                          "finding job failed: sql: no rows in result set"), "rejected", info
        info["dbId"] = row.id
        stop_time = body.get("stopTime", 0)
        prefix = f"jobId {row.job_id} (id {row.id}) on {row.cluster} : "
        if p.stop.combined_check:
            if row.job_state != "running" or stop_time <= row.start_time:
                return _error(400, "stopTime must be larger than startTime and only running "
                                   "jobs can be stopped"), "rejected", info
        else:
            if row.job_state != "running":
                return _error(p.stop.not_running_status,
                              f"{prefix}job has already been stopped "
                              f"(state is: {row.job_state})"), "rejected", info
            if row.start_time > stop_time:
                return _error(400, f"{prefix}stopTime {stop_time} must be larger/equal than "
                                   f"startTime {row.start_time}"), "rejected", info
        state = body.get("jobState") or p.stop.default_state
        if state not in p.stop_states:
            # v1.3 has no "jobId … on …" prefix and a shorter text (Go's %#v quoting).
            text = (f'invalid job state: "{state}"' if p.stop.combined_check
                    else f'{prefix}invalid requested job state: "{state}"')
            return _error(400, text), "rejected", info
        try:
            row = self.store.stop(row, state=state, stop_time=stop_time)
        except StoreFailure as exc:
            return _error(500, f"{prefix}marking job as '{state}' failed: {exc}"), \
                "error", info
        job = render_job(row, p, with_metadata=False, with_tags=False,
                         start_time_as_string=p.stop_start_time_as_string)
        return Response(200, go_json(job)), "ok", info

    # --- queries (§6, §7) -------------------------------------------------------------

    def _get_jobs(self, req: Request) -> Response:
        p = self.release
        states: list[str] = []
        cluster = project = None
        start_range = None
        page, items = 1, 25
        with_metadata = False
        for key, value in parse_qsl(req.query, keep_blank_values=True):
            if key not in p.query_keys:
                raise _Reply(_error(400, f"invalid query parameter: {key}"))
            if key == "state":
                if value not in p.job_states:
                    raise _Reply(_error(400, "invalid query parameter value: state"))
                states.append(value)
            elif key == "cluster":
                cluster = value if cluster is None else cluster
            elif key == "project":
                project = value if project is None else project
            elif key == "start-time":
                parts = value.split("-")
                if len(parts) != 2:
                    raise _Reply(_error(400, "invalid query parameter value: startTime"))
                start_range = (_parse_int(parts[0], "ParseInt"),
                               _parse_int(parts[1], "ParseInt"))
            elif key in ("page", "items-per-page"):
                number = _parse_int(value, "Atoi")
                if p.page_must_be_positive and number < 1:
                    raise _Reply(_error(400, f"{key} must be >= 1"))
                if key == "page":
                    page = number
                else:
                    items = number
            else:  # with-metadata: present means true
                with_metadata = True
        # Go computes the offset as items * (page - 1) in int64 (it wraps) and hands it
        # to SQLite as uint64: from 2^63 on, SQLite fails (measured on v1.5.4: 500).
        offset = (max(items, 0) * max(page - 1, 0)) % 2**64
        if offset > _INT64_MAX:
            raise _Reply(_error(500, "error iterating job rows: datatype mismatch"))
        rows = self.store.query(states=states, cluster=cluster, project=project,
                                start_range=start_range, limit=max(items, 0), offset=offset)
        now = time.time()
        jobs = [render_job(r, p, with_metadata=with_metadata, now=now) for r in rows]
        return Response(200, go_json({"jobs": jobs, "items": items, "page": page}))

    def _get_clusters(self, req: Request) -> tuple[Response, str, None]:
        wanted = dict(parse_qsl(req.query)).get("cluster")
        if wanted is not None:
            cluster = self.clusters.get(wanted)
            if cluster is None:
                raise _Reply(_error(400, f"unknown cluster: {wanted}"))
            docs = [cluster.raw]
        else:
            docs = [c.raw for c in self.clusters]
        return Response(200, go_json({"clusters": docs})), "ok", None

    def _node_state(self, req: Request) -> tuple[Response, str, None]:
        try:
            doc = msgspec.json.decode(req.body) if req.body.strip() else None
        except msgspec.DecodeError as exc:
            raise _Reply(_error(400, f"parsing request body failed: {exc}")) from None
        if not isinstance(doc, dict) or set(doc) - {"cluster", "nodes"}:
            extra = sorted(set(doc) - {"cluster", "nodes"}) if isinstance(doc, dict) else []
            msg = (f'json: unknown field "{extra[0]}"' if extra
                   else "EOF" if doc is None else "json: cannot unmarshal into Go value")
            raise _Reply(_error(400, f"parsing request body failed: {msg}"))
        self.node_states[str(doc.get("cluster", ""))] = doc.get("nodes")
        return Response(200, b"", None), "ok", None

    def _used_nodes(self, req: Request) -> tuple[Response, str, None]:
        """§7 ``GET /api/jobs/used_nodes?ts=``: hosts of running jobs (``job`` table only,
        as cc-backend's query reads it) with ``start_time < ts``, sorted, per cluster."""
        raw = next((v for k, v in parse_qsl(req.query, keep_blank_values=True)
                    if k == "ts"), "")
        if raw == "":
            raise _Reply(_error(400, "missing required query parameter: ts"))
        try:
            ts = _go_parse_int(raw, "ParseInt")
        except ValueError as exc:
            raise _Reply(_error(400, f"invalid timestamp format: {exc}")) from None
        used: dict[str, set[str]] = {}
        for row in self.store.query(states=["running"], limit=-1):
            if row.start_time < ts:
                hosts = used.setdefault(row.cluster, set())
                hosts.update(str((r or {}).get("hostname", "")) for r in row.resources or [])
        doc = {"usedNodes": {c: sorted(h) for c, h in used.items()}}
        return Response(200, go_json(doc)), "ok", None

    def _job_by_id(self, req: Request, raw_id: str) -> tuple[Response, str, None]:
        try:
            db_id = _go_parse_int(raw_id, "ParseInt")
        except ValueError as exc:
            raise _Reply(_error(400, f"integer expected in path for id: {exc}")) from None
        if req.method not in ("GET", "POST"):
            return Response(405, b"", None), "rejected", None
        row = self.store.by_id(db_id)
        if row is None:
            raise _Reply(_error(422, f"finding job with db id {db_id} failed: "
                                     "sql: no rows in result set"))
        job = render_job(row, self.release)
        return Response(200, go_json({"Meta": job, "Data": None})), "ok", None

    # --- control API ------------------------------------------------------------------

    async def _control(self, req: Request) -> Response:
        name = req.path[len("/_standin/"):].strip("/")
        try:
            doc: Any = msgspec.json.decode(req.body) if req.body.strip() else {}
        except msgspec.DecodeError as exc:
            return Response(400, go_json({"error": str(exc)}))
        try:
            result = await self._control_action(name, req.method, doc,
                                                dict(parse_qsl(req.query)))
        except (ValueError, TypeError, KeyError) as exc:
            return Response(400, go_json({"error": str(exc)}))
        if result is None:
            return Response(404, go_json({"error": f"no control endpoint {name!r}"}))
        return Response(200, go_json(result))

    async def _control_action(self, name: str, method: str, doc: Any,
                              query: dict[str, str]) -> Any:
        if name == "health":
            return {"ok": True, "profile": self.profile.name, "natsMode": self.config.nats_mode}
        if name == "faults":
            if method in ("POST", "PUT"):
                await self.set_fault(FaultPlan.from_json(doc))
            return self.faults.plan.to_json() | {"hits": self.faults.hits}
        if name == "audit":
            since = int(query.get("since", "0"))
            if method == "DELETE":
                self.audit.clear()
            return {"entries": [e.to_json() for e in self.audit.entries(since)]}
        if name == "check":
            expected = None
            if isinstance(doc, dict) and doc.get("expected") is not None:
                expected = [ExpectedJob.from_json(e) for e in doc["expected"]]
            return check(self.store.all_jobs(), self.audit.entries(), expected).to_json()
        if name == "commit":
            return {"moved": self.store.commit_cache()}
        if name == "config" and method in ("POST", "PUT"):
            if "commitInterval" in doc:
                self.set_commit_interval(float(doc["commitInterval"]))
            return {"commitInterval": self.config.commit_interval}
        if name == "token" and method == "POST":
            token = self.keys.make_token(sub=doc.get("sub", "cc-slurm-adapter"),
                                         roles=doc.get("roles", ["api"]),
                                         exp=doc.get("exp"), nbf=doc.get("nbf"))
            return {"token": token}
        if name == "jobs":
            return {"jobs": [render_job(r, self.release) | {"_table": r.table}
                             for r in self.store.all_jobs()]}
        if name == "nodestate":
            return {"nodeStates": self.node_states}
        if name == "reset" and method == "POST":
            self.store.clear()
            self.audit.clear()
            self.node_states.clear()
            return {"ok": True}
        return None


def _go_parse_int(text: str, func: str) -> int:
    """Go's ``strconv.ParseInt(text, 10, 64)``/``Atoi``: ASCII digits with an optional
    sign, int64 range; ValueError with Go's text. (Python's ``int()`` also takes
    ``1_0``, `` 1`` and non-ASCII digits, and has no range.)"""
    quoted = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if _GO_INT.fullmatch(text) is None:
        raise ValueError(f"strconv.{func}: parsing {quoted}: invalid syntax")
    value = int(text)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"strconv.{func}: parsing {quoted}: value out of range")
    return value


def _parse_int(text: str, func: str) -> int:
    try:
        return _go_parse_int(text, func)
    except ValueError as exc:
        raise _Reply(_error(400, str(exc))) from None

