"""Black-box harness for ``cc-slurm-adapter -daemon -config FILE`` on the live testbed.

The daemon is only ever touched through its documented interface: the config file
(upstream's keys plus statePath, ccRestProfile, ccRestTimeout), the process (exit codes,
signals), its log on stderr, and what arrives at cc-backend (the stand-in's store and
audit, or the real server's ``GET /api/jobs/``). Every expected value is taken from
what was submitted to Slurm and from sacct's records, never from the product's code.

Waits poll a settled condition with a bounded timeout; a daemon that dies while a test
waits fails the test at once with the tail of its stderr.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx

from cc_slurm_adapter.testing.ccbackend.audit import AuditEntry
from cc_slurm_adapter.testing.ccbackend.standin import StandIn
from cc_slurm_adapter.testing.ccbackend.store import JobRow
from cc_slurm_adapter.testing.slurm_testbed import (
    FINAL_STATES,
    SlurmTestbed,
    sacct_state,
)

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
CLUSTER_JSON = REPO / "src" / "cc_slurm_adapter" / "testing" / "data" / "testcluster.cluster.json"
#: GPU PCI addresses in NVML order, as configured (upstream's gpuPciAddrs); the same ids
#: as the accelerators of testcluster.cluster.json's topology.
PCI = ["00000000:01:00.0", "00000000:02:00.0"]
POLL = 2  # slurmPollInterval of every test daemon (seconds)
CC_POLL = 10  # ccPollInterval


def adapter_binary() -> Path:
    return Path(sys.executable).with_name("cc-slurm-adapter")


# --------------------------------------------------------------------------- config
def write_config(directory: Path, url: str, token: str, *, name: str = "config.json",
                 last_run_age: float | None = 30.0, **overrides: Any) -> Path:
    """A daemon config with every path inside ``directory``.

    ``last_run_age``: pre-seed upstream's lastRunPath file with an mtime that many seconds
    ago, so a fresh store starts its window there (the contract: on first start the
    lastRunPath mtime is the cursor) instead of importing 7 days of the shared testbed's
    history. None leaves the file absent.
    """
    directory.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "ccRestUrl": url,
        "ccRestJwt": token,
        "statePath": str(directory / "state.db"),
        "pidFilePath": str(directory / "daemon.pid"),
        "prepSockListenPath": str(directory / "daemon.sock"),
        "prepSockConnectPath": str(directory / "daemon.sock"),
        "lastRunPath": str(directory / "lastrun"),
        "slurmPollInterval": POLL,
        "ccPollInterval": CC_POLL,
        "slurmQueryMaxSpan": 3600,
        "ccRestTimeout": 5,
        "gpuPciAddrs": {"^node[0-9]+$": PCI},
    }
    doc.update(overrides)
    last_run = Path(doc["lastRunPath"])
    if last_run_age is not None and not last_run.exists():
        last_run.touch()
        stamp = time.time() - last_run_age
        os.utime(last_run, (stamp, stamp))
    path = directory / name
    path.write_text(json.dumps(doc, indent=1))
    path.chmod(0o600)
    return path


# --------------------------------------------------------------------------- process
class DaemonDied(AssertionError):
    """The daemon exited while a test expected it to run."""


class Daemon:
    """One ``cc-slurm-adapter -daemon -config FILE`` process; stderr goes to a file."""

    def __init__(self, config: Path, env: Mapping[str, str], *, secret: str = "",
                 debug: int = 4, label: str = "daemon") -> None:
        self.config = config
        self.env = dict(env)
        self.secret = secret
        self.debug = debug
        self.label = label
        self.runs = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.log_path = config.parent / f"{label}.stderr"
        self.conf = json.loads(config.read_text())

    # ---- lifecycle
    def start(self, *, wait_ready: bool = True, timeout: float = 30) -> Daemon:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._close_log()
        self.runs += 1
        self._log = self.log_path.open("ab")
        self._log.write(f"===== {self.label} run {self.runs} =====\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            [str(adapter_binary()), "-daemon", "-debug", str(self.debug),
             "-config", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, env=self.env,
            cwd=str(self.config.parent))
        if wait_ready:
            self.wait_ready(timeout)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def socket_path(self) -> Path:
        return Path(str(self.conf["prepSockListenPath"]).removeprefix("unix:"))

    @property
    def pid_file(self) -> Path:
        return Path(self.conf["pidFilePath"])

    @property
    def state_path(self) -> Path:
        return Path(self.conf["statePath"])

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 30) -> None:
        """Up = alive and its pid file names it (the socket is checked where it matters)."""
        def ready() -> bool:
            self.assert_alive()
            try:
                return int(self.pid_file.read_text().split()[0]) == self.pid
            except (OSError, ValueError, IndexError):
                return False
        wait_for(ready, timeout, f"{self.label} to write its pid file", daemon=self)

    def assert_alive(self) -> None:
        if self.proc is None:
            raise DaemonDied(f"{self.label} was never started")
        code = self.proc.poll()
        if code is not None:
            raise DaemonDied(f"{self.label} exited with code {code}; its stderr ends with:\n"
                             f"{self.tail()}")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM; the contract says: finish in-flight writes, exit 0."""
        assert self.proc is not None
        self.assert_alive()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.label} ignored SIGTERM for {timeout}s; stderr:\n"
                                 f"{self.tail()}") from None
        self._close_log()
        return code

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)
        self._close_log()

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.label} still runs after {timeout}s; stderr:\n"
                                 f"{self.tail()}") from None
        self._close_log()
        return code

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    # ---- log
    def stderr(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def run_stderr(self) -> str:
        """stderr of the current (or last) run only."""
        text = self.stderr()
        marker = f"===== {self.label} run {self.runs} =====\n"
        return text.split(marker, 1)[-1] if marker in text else text

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.stderr().splitlines()[-lines:]) or "(empty)"

    def assert_no_secret(self) -> None:
        if self.secret:
            assert self.secret not in self.stderr(), f"{self.label} logged the JWT"


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str, *,
             daemon: Daemon | None = None, interval: float = 0.3,
             describe: Callable[[], object] | None = None) -> T:
    """Poll until ``predicate()`` is truthy; returns its value. Fails with context."""
    deadline = time.monotonic() + timeout
    while True:
        if daemon is not None:
            daemon.assert_alive()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\nlast seen: {describe()}" if describe is not None else ""
            log = f"\n{daemon.label} stderr tail:\n{daemon.tail()}" if daemon else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{extra}{log}")
        time.sleep(interval)


# --------------------------------------------------------------------------- Slurm side
def expand_hostlist(expr: str) -> list[str]:
    """Slurm's compact host list (``node[1-2],gpu3``) as names; "None assigned" → []."""
    expr = expr.strip()
    if not expr or expr.startswith("None"):
        return []
    hosts: list[str] = []
    for term in re.findall(r"[^,\[]+(?:\[[^\]]*\])?", expr):
        term = term.strip(",")
        match = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", term)
        if not match:
            hosts.append(term)
            continue
        prefix, ranges, suffix = match.groups()
        for part in ranges.split(","):
            low, _, high = part.partition("-")
            width = len(low)
            for n in range(int(low), int(high or low) + 1):
                hosts.append(f"{prefix}{n:0{width}d}{suffix}")
    return hosts


@dataclass(frozen=True, slots=True)
class SlurmJob:
    """One job as sacct recorded it (the expected values)."""

    job_id: int
    name: str
    user: str
    account: str
    cluster: str
    start: int
    end: int
    state: str  # Slurm's base state, e.g. COMPLETED
    hosts: tuple[str, ...]
    array_job_id: int | None = None

    @property
    def cc_state(self) -> str:
        """cc-backend's jobState for it (contract §8.2: lower-cased Slurm state; node_fail
        is accepted as such by v1.5)."""
        return self.state.lower()


def _int(value: Any) -> int | None:
    if isinstance(value, dict):
        return int(value["number"]) if value.get("set", True) and not value.get("infinite") \
            else None
    return None if value is None else int(value)


def sacct_jobs(tb: SlurmTestbed, job_id: int, *, name: str | None = None,
               timeout: float = 120) -> list[SlurmJob]:
    """The settled, final sacct records of ``job_id`` (every task of an array)."""
    doc = tb.wait_sacct(job_id, timeout=timeout, name=name if tb.release == "22.05" else None)
    jobs: list[SlurmJob] = []
    for rec in doc.get("jobs", []):
        array = rec.get("array") or {}
        array_id = _int(array.get("job_id"))
        state = sacct_state(rec)
        assert state in FINAL_STATES, rec
        jobs.append(SlurmJob(
            job_id=int(rec["job_id"]), name=str(rec.get("name")), user=str(rec["user"]),
            account=str(rec["account"]), cluster=str(rec["cluster"]),
            start=int(rec["time"]["start"]), end=int(rec["time"]["end"]), state=state,
            hosts=tuple(expand_hostlist(str(rec.get("nodes") or ""))),
            array_job_id=array_id or None))
    return jobs


def settled_sacct(tb: SlurmTestbed, job_id: int, *, name: str | None = None,
                  timeout: float = 120) -> list[SlurmJob]:
    """Like :func:`sacct_jobs`, but waits until the record has an end time and its nodes
    (22.05 shows COMPLETED before the end arrives after a slurmdbd outage)."""
    def read() -> list[SlurmJob] | None:
        jobs = sacct_jobs(tb, job_id, name=name, timeout=timeout)
        ok = all(j.end > 0 and j.start > 0 and (j.hosts or j.state == "CANCELLED")
                 for j in jobs)
        return jobs if ok else None
    return wait_for(read, timeout, f"sacct's settled record of job {job_id}")


def gpu_indexes(tb: SlurmTestbed, job_id: int) -> dict[str, list[int]]:
    """Per host, the GPU indexes slurmctld allocated (``scontrol show job -d``; only shown
    while the job runs)."""
    text = tb.run("scontrol", "show", "job", "-d", str(job_id)).stdout
    out: dict[str, list[int]] = {}
    for nodes, idx in re.findall(r"Nodes=(\S+) .*?GRES=\S*?\(IDX:([0-9,\-]+)\)", text):
        indexes: list[int] = []
        for part in idx.split(","):
            low, _, high = part.partition("-")
            indexes.extend(range(int(low), int(high or low) + 1))
        for host in expand_hostlist(nodes):
            out[host] = indexes
    return out


def topology_threads() -> dict[str, set[int]]:
    """hwthread ids of each testbed host in the stand-in's cluster.json topology."""
    doc = json.loads(CLUSTER_JSON.read_text())
    out: dict[str, set[int]] = {}
    for sub in doc["subClusters"]:
        for host in expand_hostlist(sub["nodes"]):
            out.setdefault(host, set(sub["topology"]["node"]))
    return out


def running_array_tasks(tb: SlurmTestbed, array_id: int, count: int,
                        timeout: float = 120) -> list[int]:
    """The job ids of an array's tasks once all ``count`` of them run (squeue -r)."""
    def read() -> list[int] | None:
        out = tb.run("squeue", "-h", "-r", "-j", str(array_id), "-o", "%A %T",
                     check=False).stdout.split("\n")
        running = {int(line.split()[0]) for line in out
                   if line.strip().endswith("RUNNING")}
        return sorted(running) if len(running) == count else None
    return wait_for(read, timeout, f"the {count} tasks of array {array_id} to run")


def cancel_all(tb: SlurmTestbed, job_ids: Iterable[int]) -> None:
    ids = [str(j) for j in job_ids]
    if ids:
        tb.run("scancel", *ids, check=False)


# --------------------------------------------------------------------------- stand-in side
def rows_of(standin: StandIn, job_ids: Iterable[int], cluster: str) -> dict[int, list[JobRow]]:
    wanted = set(job_ids)
    out: dict[int, list[JobRow]] = {j: [] for j in wanted}
    for row in standin.jobs():
        if row.job_id in wanted and row.cluster == cluster:
            out[row.job_id].append(row)
    return out


def wait_started(standin: StandIn, job_ids: Iterable[int], cluster: str, *,
                 daemon: Daemon | None, timeout: float = 60) -> dict[int, JobRow]:
    ids = set(job_ids)

    def have() -> dict[int, JobRow] | None:
        rows = rows_of(standin, ids, cluster)
        return {j: r[0] for j, r in rows.items()} if all(rows.values()) else None
    return wait_for(have, timeout, f"starts of jobs {sorted(ids)} in the stand-in",
                    daemon=daemon, describe=lambda: sorted(
                        j for j, r in rows_of(standin, ids, cluster).items() if not r))


def wait_stopped(standin: StandIn, job_ids: Iterable[int], cluster: str, *,
                 daemon: Daemon | None, timeout: float = 90) -> dict[int, JobRow]:
    ids = set(job_ids)

    def missing() -> list[int]:
        rows = rows_of(standin, ids, cluster)
        return sorted(j for j, r in rows.items()
                      if not r or all(x.job_state == "running" for x in r))

    def done() -> dict[int, JobRow] | None:
        if missing():
            return None
        return {j: r[-1] for j, r in rows_of(standin, ids, cluster).items()}
    return wait_for(done, timeout, f"stops of jobs {sorted(ids)} in the stand-in",
                    daemon=daemon, describe=lambda: f"not stopped: {missing()}")


def entry_job_id(entry: AuditEntry) -> int | None:
    if entry.job and entry.job.get("jobId") is not None:
        return int(entry.job["jobId"])
    if entry.body:
        try:
            doc = json.loads(entry.body)
        except ValueError:
            return None
        if isinstance(doc, dict) and isinstance(doc.get("jobId"), int):
            return int(doc["jobId"])
    return None


@dataclass
class Audit:
    """The stand-in's consistency report restricted to this test's jobs (the testbed is
    shared: other sessions' jobs reach the daemon too and are none of this test's business)."""

    lost: list[Any] = field(default_factory=list)
    duplicated: list[Any] = field(default_factory=list)
    never_stopped: list[Any] = field(default_factory=list)
    rejected: list[Any] = field(default_factory=list)
    without_hwthreads: list[Any] = field(default_factory=list)

    def assert_clean(self, *, allow_rejected: Iterable[int] = ()) -> None:
        allowed = set(allow_rejected)
        rejected = [r for r in self.rejected if r.get("jobId") not in allowed]
        bad = {k: v for k, v in {
            "lost": self.lost, "duplicated": self.duplicated,
            "never_stopped": self.never_stopped, "rejected": rejected,
            "without_hwthreads": self.without_hwthreads}.items() if v}
        assert not bad, f"audit: {bad}"


def audit(standin: StandIn, jobs: Sequence[SlurmJob] | Mapping[int, bool], cluster: str, *,
          seen_running: Iterable[int] = ()) -> Audit:
    """lost / duplicated / never stopped / rejected (4xx for a payload) among ``jobs``, and
    jobs in ``seen_running`` (the daemon saw them running) without hwthreads on a host.

    ``jobs``: SlurmJob records (all ended), or job id → ended."""
    expected: list[dict[str, Any]]
    if isinstance(jobs, Mapping):
        expected = [{"jobId": j, "cluster": cluster, "stopped": ended}
                    for j, ended in jobs.items()]
    else:
        expected = [{"jobId": j.job_id, "cluster": cluster, "startTime": j.start,
                     "stopped": True} for j in jobs]
    ids = {int(e["jobId"]) for e in expected}
    report = standin.check(expected)
    result = Audit(lost=report.lost, never_stopped=report.never_stopped)
    result.duplicated = [d for d in report.duplicates if d["jobId"] in ids]
    for entry in standin.audit():
        job_id = entry_job_id(entry)
        if job_id in ids and entry.status is not None and 400 <= entry.status < 500 \
                and entry.status not in (404, 422):
            result.rejected.append({"jobId": job_id, "path": entry.path,
                                    "status": entry.status, "error": entry.error})
    seen = set(seen_running)
    for job_id, rows in rows_of(standin, seen, cluster).items():
        for row in rows:
            if any(not r.get("hwthreads") for r in row.resources):
                result.without_hwthreads.append({"jobId": job_id,
                                                 "resources": row.resources})
    return result


def requests_for(standin: StandIn, job_id: int, path_part: str = "") -> list[AuditEntry]:
    return [e for e in standin.audit()
            if entry_job_id(e) == job_id and path_part in e.path]


def payload_problems(row: JobRow, job: SlurmJob, *, hwthreads: bool = True,
                     gpus: Mapping[str, list[int]] | None = None) -> list[str]:
    """How the stored job differs from sacct's record (start and stop payloads)."""
    where = f"job {job.job_id} ({job.name})"
    problems: list[str] = []

    def want(name: str, got: object, expected: object) -> None:
        if got != expected:
            problems.append(f"{where}: {name} is {got!r}, sacct says {expected!r}")
    want("cluster", row.cluster, job.cluster)
    want("user", row.user, job.user)
    want("project", row.project, job.account)
    want("startTime", row.start_time, job.start)
    want("stopTime", row.stop_time, job.end)
    want("jobState", row.job_state, job.cc_state)
    want("hostnames", sorted(r["hostname"] for r in row.resources), sorted(job.hosts))
    want("numNodes", row.num_nodes, len(job.hosts))
    if job.array_job_id is not None:
        want("arrayJobId", row.array_job_id, job.array_job_id)
    if hwthreads:
        topo = topology_threads()
        for res in row.resources:
            threads = res.get("hwthreads") or []
            if not threads:
                problems.append(f"{where}: no hwthreads on {res['hostname']} although the "
                                f"daemon saw it running")
            elif not set(threads) <= topo.get(res["hostname"], set()):
                problems.append(f"{where}: hwthreads {threads} not in {res['hostname']}'s "
                                f"topology")
    if gpus is not None:
        for res in row.resources:
            want(f"accelerators on {res['hostname']}", sorted(res.get("accelerators") or []),
                 sorted(PCI[i] for i in gpus.get(res["hostname"], [])))
    return problems


def check_payload(row: JobRow, job: SlurmJob, *, hwthreads: bool = True,
                  gpus: Mapping[str, list[int]] | None = None) -> None:
    problems = payload_problems(row, job, hwthreads=hwthreads, gpus=gpus)
    assert not problems, "\n".join(problems)


def check_payloads(rows: Mapping[int, JobRow], jobs: Iterable[SlurmJob], *,
                   no_hwthreads: Iterable[int] = (),
                   gpus: Mapping[int, Mapping[str, list[int]]] | None = None) -> None:
    """Every job's payload problems at once (one failure lists them all)."""
    skip = set(no_hwthreads)
    problems = [p for job in jobs for p in payload_problems(
        rows[job.job_id], job, hwthreads=job.job_id not in skip,
        gpus=(gpus or {}).get(job.job_id))]
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- real cc-backend
@dataclass
class RealServer:
    url: str
    token: str
    pid: int
    dir: Path

    def jobs(self, cluster: str = "testcluster", **params: str) -> list[dict[str, Any]]:
        """Every job of ``cluster`` through ``GET /api/jobs/`` (paged)."""
        out: list[dict[str, Any]] = []
        page = 1
        with httpx.Client(base_url=self.url, timeout=30,
                          headers={"Authorization": f"Bearer {self.token}"}) as client:
            while True:
                resp = self._get_jobs(client, {
                    "cluster": cluster, "page": str(page), "items-per-page": "200", **params})
                batch: list[dict[str, Any]] = resp.json().get("jobs") or []
                out.extend(batch)
                if len(batch) < 200:
                    return out
                page += 1

    @staticmethod
    def _get_jobs(client: httpx.Client, params: dict[str, str]) -> httpx.Response:
        """``GET /api/jobs/``, waiting out cc-backend's own race: 1.5.4 answers 500 while
        a job it just stopped is listed before its archiver wrote the job's meta.json
        ("loadJobMeta() > open file error", seen once in a fresh-clone run)."""
        for _ in range(40):
            resp = client.get("/api/jobs/", params=params)
            if resp.status_code != 500 or b"meta.json" not in resp.content:
                break
            time.sleep(0.25)
        resp.raise_for_status()
        return resp

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(self.pid, signal.SIGKILL)


def start_real(cc_dir: Path, work: Path, commit_interval: str = "2s") -> RealServer:
    done = subprocess.run(
        [str(cc_dir / "start.sh"), str(work), "--cluster-json", str(CLUSTER_JSON),
         "--commit-interval", commit_interval],
        capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise AssertionError(f"start.sh failed: {done.stderr.strip()[-2000:]}")
    info = json.loads(done.stdout.strip().splitlines()[-1])
    return RealServer(info["url"], info["token"], int(info["pid"]), work)


class Daemons:
    """Creates daemons for one test; kills leftovers and checks no log holds the JWT."""

    def __init__(self, directory: Path, env: Mapping[str, str]) -> None:
        self.directory = directory
        self.env = dict(env)
        self.all: list[Daemon] = []

    def new(self, url: str, token: str, *, name: str = "daemon", debug: int = 4,
            last_run_age: float | None = 30.0, **overrides: Any) -> Daemon:
        config = write_config(self.directory / name, url, token, last_run_age=last_run_age,
                              **overrides)
        daemon = Daemon(config, self.env, secret=token, debug=debug, label=name)
        self.all.append(daemon)
        return daemon

    def cleanup(self) -> None:
        for daemon in self.all:
            daemon.cleanup()
        for daemon in self.all:
            daemon.assert_no_secret()


class Gate:
    """A file the test creates to let held jobs end: ``--wrap gate.hold()`` runs until
    :meth:`open`, so a job provably runs for as long as the test needs (e.g. until the
    daemon has sent its start) and then ends COMPLETED (or with ``then``'s exit code)."""

    def __init__(self, tb: SlurmTestbed, name: str) -> None:
        leaf = f"gate-{name}-{os.getpid()}-{time.monotonic_ns()}"
        self.inside = f"{tb.job_dir_in_root}/{leaf}"  # the path as the job sees it
        self.host = tb.job_dir / leaf

    def hold(self, then: str = "") -> str:
        loop = f"while [ ! -e {self.inside} ]; do sleep 0.5; done"
        return f"{loop}; {then}" if then else loop

    def open(self) -> None:
        self.host.touch()

    def remove(self) -> None:
        self.host.unlink(missing_ok=True)


def pid_of(tb: SlurmTestbed, name: str) -> int:
    """The pid of a testbed daemon (slurmdbd, slurmctld) from its pid file."""
    return int((tb.state_dir / "run" / f"{name}.pid").read_text().splitlines()[0].strip())


def wait_dead(pid: int, timeout: float = 30) -> None:
    def dead() -> bool:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[-1].split()[0] in ("Z", "X")
        except FileNotFoundError:
            return True
    wait_for(dead, timeout, f"pid {pid} to exit")


def wait_ctld_completed(tb: SlurmTestbed, job_id: int, timeout: float = 60) -> None:
    """slurmctld's own view: with slurmdbd down, sacct cannot answer, and plain
    ``squeue -j`` drops a job once it has ended, so ask with ``--states=all``."""
    def completed() -> bool:
        out = tb.run("squeue", "-h", "--states=all", "-j", str(job_id), "-o", "%T",
                     check=False).stdout.strip()
        return out == "COMPLETED"
    wait_for(completed, timeout, f"job {job_id} COMPLETED in slurmctld")


def submit(tb: SlurmTestbed, ids: list[int], name: str, *args: str,
           user: str = "testuser") -> int:
    """sbatch a 5-minute-limit job named ``name``; its id goes into ``ids`` (the ``jobs``
    fixture cancels them all at the end)."""
    job_id = tb.submit(["-J", name, "-t", "5", *args], user=user)
    ids.append(job_id)
    return job_id
