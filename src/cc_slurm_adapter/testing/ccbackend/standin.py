"""Python API of the stand-in: run it in a thread, or as a subprocess.

In-process (tests)::

    with StandIn(profile="v1.5") as standin:
        httpx.post(f"{standin.url}/api/jobs/start_job/", json=payload,
                   headers={"X-Auth-Token": standin.token})
        standin.set_fault("error", status=503, rate=0.5)
        report = standin.check(expected_jobs)

As a subprocess (benchmarks, demo; same command line as the CLI)::

    with StandInProcess(["--profile", "v1.4"]) as proc:
        proc.url, proc.token
        proc.set_fault("down", seconds=2)   # over the /_standin/ control API
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from cc_slurm_adapter.profiles import Profile, get_profile

from .audit import AuditEntry, CheckReport, ExpectedJob, check
from .clusters import ClusterRegistry, default_cluster_files
from .contract import release_for
from .faults import FaultPlan
from .server import StandInApp, StandInConfig

__all__ = ["StandIn", "StandInProcess"]


def _plan(mode: str, kwargs: dict[str, Any]) -> FaultPlan:
    doc = {"mode": mode, **kwargs}
    if "paths" in doc and doc["paths"] is not None:
        doc["paths"] = list(doc["paths"])
    return FaultPlan.from_json(doc)


class StandIn:
    """A stand-in running on its own event loop in a background thread."""

    def __init__(self, *, profile: str | Profile = "v1.5",
                 cluster_files: Sequence[str | Path] | None = None,
                 db_path: str | Path = ":memory:", nats_mode: bool = False,
                 commit_interval: float | None = None, host: str = "127.0.0.1",
                 port: int = 0, read_timeout: float = 20.0,
                 max_connections: int = 1024, nats_url: str = "",
                 nats_subject: str = "jobs") -> None:
        prof = profile if isinstance(profile, Profile) else get_profile(profile)
        nats_mode = nats_mode or bool(nats_url)  # api-subjects set: NATS job API only
        if nats_mode and not release_for(prof.name).nats_job_api:
            raise ValueError(f"profile {prof.name} has no NATS job API")
        files = list(cluster_files) if cluster_files else default_cluster_files()
        self._clusters = ClusterRegistry.from_files(files)
        self._config = StandInConfig(
            profile=prof, nats_mode=nats_mode, db_path=str(db_path),
            commit_interval=120.0 if commit_interval is None else commit_interval,
            read_timeout=read_timeout, max_connections=max_connections,
            nats_url=nats_url, nats_subject=nats_subject)
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.app: StandInApp | None = None
        self.token = ""

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> Self:
        ready: Future[None] = Future()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                self.app = StandInApp(self._config, self._clusters)
                self._loop.run_until_complete(self.app.start(self._host, self._port))
            except BaseException as exc:  # report start-up failures to the caller
                ready.set_exception(exc)
                self._loop.close()
                return
            ready.set_result(None)
            self._loop.run_forever()
            self._loop.run_until_complete(self.app.close())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="cc-backend-standin", daemon=True)
        self._thread.start()
        ready.result(timeout=30)
        assert self.app is not None
        self.token = self.app.default_token()
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def _app(self) -> StandInApp:
        assert self.app is not None, "StandIn is not started"
        return self.app

    # --- properties -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._app().url

    @property
    def port(self) -> int:
        app = self._app()
        assert app.http is not None
        return app.http.port

    @property
    def profile(self) -> Profile:
        return self._config.profile

    @property
    def public_key_env(self) -> dict[str, str]:
        """``JWT_PUBLIC_KEY``/``JWT_PRIVATE_KEY`` in cc-backend's format."""
        return self._app().keys.env()

    def make_token(self, roles: Sequence[str] | None = ("api",), *, exp: float | None = None,
                   nbf: float | None = None, sub: str | None = "cc-slurm-adapter",
                   alg: str = "EdDSA") -> str:
        return self._app().keys.make_token(sub=sub, roles=roles, exp=exp, nbf=nbf, alg=alg)

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"X-Auth-Token": token or self.token}

    # --- faults, audit, checks ----------------------------------------------------------

    def set_fault(self, mode: str = "none", **kwargs: Any) -> None:
        """Switch faults: ``mode`` in none/down/delay/error/drop/expired; keyword
        arguments ``rate``, ``status``, ``seconds``, ``count``, ``paths``, ``seed``."""
        self._call(self._app().set_fault(_plan(mode, kwargs)))

    def clear_fault(self) -> None:
        self.set_fault("none")

    def audit(self, since: int = 0) -> list[AuditEntry]:
        return self._app().audit.entries(since)

    def check(self, expected: Iterable[ExpectedJob | dict[str, Any]] | None = None
              ) -> CheckReport:
        exp = None if expected is None else [
            e if isinstance(e, ExpectedJob) else ExpectedJob.from_json(e) for e in expected]
        app = self._app()
        return check(app.store.all_jobs(), app.audit.entries(), exp)

    def jobs(self) -> list[Any]:
        """Every stored row (both tables)."""
        return self._app().store.all_jobs()

    def commit_cache(self) -> int:
        """Run the v1.5 job_cache commit worker once now."""
        return int(self._app().store.commit_cache())

    def set_commit_interval(self, seconds: float) -> None:
        app = self._app()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(app.set_commit_interval, seconds)

    @property
    def node_states(self) -> dict[str, Any]:
        return self._app().node_states


class StandInProcess:
    """``python -m cc_slurm_adapter.testing.ccbackend ARGS`` as a child process.

    Reads the ready line (url, token) and drives faults/audit over the control API.
    Terminated with SIGTERM on exit.
    """

    def __init__(self, args: Sequence[str] = (), *, python: str | None = None,
                 env: dict[str, str] | None = None, timeout: float = 30.0) -> None:
        self.args = list(args)
        self._python = python or sys.executable
        self._env = env
        self._timeout = timeout
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.token = ""

    def start(self) -> Self:
        env = dict(os.environ if self._env is None else self._env)
        src = str(Path(__file__).resolve().parents[3])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [self._python, "-m", "cc_slurm_adapter.testing.ccbackend", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.stop()
            raise RuntimeError(f"stand-in did not start: {err.strip()}")
        ready = json.loads(line)
        self.url, self.token = ready["url"], ready["token"]
        return self

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=self._timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        code = self.proc.returncode
        self.proc = None
        return code

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def control(self, name: str, doc: Any = None, method: str = "POST") -> Any:
        with httpx.Client(base_url=self.url, timeout=self._timeout) as client:
            resp = client.request(method, f"/_standin/{name}/",
                                  json=doc if doc is not None else None)
            resp.raise_for_status()
            return resp.json()

    def set_fault(self, mode: str = "none", **kwargs: Any) -> Any:
        return self.control("faults", _plan(mode, kwargs).to_json())

    def audit(self, since: int = 0) -> list[dict[str, Any]]:
        with httpx.Client(base_url=self.url, timeout=self._timeout) as client:
            resp = client.get("/_standin/audit/", params={"since": since})
            resp.raise_for_status()
            entries: list[dict[str, Any]] = resp.json()["entries"]
            return entries

    def check(self, expected: Iterable[dict[str, Any]] | None = None) -> dict[str, Any]:
        doc = {"expected": None if expected is None else list(expected)}
        result: dict[str, Any] = self.control("check", doc)
        return result
