"""Python driver for the project's real-Slurm testbed (``testbed/*.sh``).

One :class:`SlurmTestbed` per Slurm release:

* ``22.05`` runs on the host (Debian 12 packages),
* ``24.11`` runs in a Debian trixie chroot,
* ``26.05`` runs in a Debian sid chroot.

Every release has its own state directory and its own ports, so all three can run at the
same time. Client commands are reached through a per-release directory of wrapper scripts
(``bin_dir``: ``sacct``, ``squeue``, ``scontrol``, ``sbatch``, ...) that set ``SLURM_CONF``
and, for the chroot releases, run the chroot's own client. Putting ``bin_dir`` first in
``PATH`` (see :attr:`SlurmTestbed.env`) makes every release look the same to the adapter.

The shell scripts do the work; this module only runs them and talks to the cluster through
the wrappers. Used by tests, benchmarks and the demo; product code never imports it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "FINAL_STATES",
    "RELEASES",
    "SessionLock",
    "SlurmTestbed",
    "TestbedError",
    "find_sacct_job",
    "sacct_state",
    "selected_releases",
    "testbed_dir",
]

RELEASES: tuple[str, ...] = ("22.05", "24.11", "26.05")

#: Job states after which a job does not change any more.
FINAL_STATES: frozenset[str] = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "TIMEOUT",
    }
)

_VERSION_RE = re.compile(r"(\d+\.\d+\.\d+\S*)")


class TestbedError(RuntimeError):
    """A testbed script or Slurm command failed; ``log_tail`` holds the relevant logs."""

    __test__ = False  # not a pytest test class

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n{self.log_tail}" if self.log_tail else base


def testbed_dir() -> Path:
    """The ``testbed/`` directory of this checkout ($CCSA_TESTBED_DIR overrides it)."""
    env = os.environ.get("CCSA_TESTBED_DIR")
    if env:
        return Path(env)
    # src/cc_slurm_adapter/testing/slurm_testbed.py -> repository root
    return Path(__file__).resolve().parents[3] / "testbed"


def selected_releases(value: str | None = None) -> list[str]:
    """Releases named in ``value`` or $CCSA_SLURM_RELEASES (default: all three)."""
    if value is None:
        value = os.environ.get("CCSA_SLURM_RELEASES", ",".join(RELEASES))
    releases: list[str] = []
    for item in re.split(r"[,\s]+", value.strip()):
        if not item:
            continue
        if item not in RELEASES:
            raise ValueError(f"unknown Slurm release {item!r} (known: {', '.join(RELEASES)})")
        if item not in releases:
            releases.append(item)
    return releases


def sacct_state(job: Mapping[str, Any]) -> str:
    """The base state of one ``sacct --json`` job record.

    ``state.current`` is a string in 22.05 and a list of strings from 23.11 on; a
    cancelled job may read ``"CANCELLED by 0"`` in text form.
    """
    current = job.get("state", {}).get("current")
    if isinstance(current, list):
        current = current[0] if current else ""
    return str(current or "").split(" ")[0]


def find_sacct_job(doc: Mapping[str, Any], job_id: int) -> dict[str, Any] | None:
    """The record of ``job_id`` in a parsed ``sacct --json`` document, if any."""
    for job in doc.get("jobs", []):
        if int(job.get("job_id", -1)) == job_id:
            return dict(job)
    return None


def _proc_alive(pid_file: Path, comm: str) -> bool:
    """The pid file names a live (non-zombie) process whose comm starts with ``comm``."""
    try:
        # first line only: 24.11's slurmctld rewrites the file on reconfigure without
        # truncating it
        pid = int(pid_file.read_text().splitlines()[0].strip())
        stat = Path(f"/proc/{pid}/stat").read_text()
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and name.startswith(comm)


def _has_option(args: Sequence[str], short: str, long: str) -> bool:
    """``args`` (sbatch options, up to --wrap or the script) contain -X / --long."""
    for arg in args:
        if arg == "--wrap" or arg.startswith("--wrap=") or not arg.startswith("-"):
            return False
        if arg == long or arg.startswith((long + "=", short)):
            return True
    return False


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


class SessionLock:
    """``flock`` on ``<base>/<release>.lock``, shared between concurrent users of a cluster.

    Test sessions hold it shared for as long as they use the cluster; whoever wants to
    wipe or stop it (fixture recording, the last test session) needs it exclusively.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, *, exclusive: bool = False, timeout: float = 900) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._fd, mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TestbedError(
                        f"{self.path} is locked by another user of this cluster "
                        f"for more than {timeout:.0f}s"
                    ) from None
                time.sleep(0.5)

    def try_exclusive(self) -> bool:
        """Upgrade to an exclusive lock if nobody else holds the lock (never blocks)."""
        if self._fd is None:
            return False
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class SlurmTestbed:
    """One release's testbed cluster: install, bring up, query, take down."""

    __test__ = False  # not a pytest test class

    def __init__(self, release: str, *, scripts: Path | None = None) -> None:
        if release not in RELEASES:
            raise ValueError(f"unknown Slurm release {release!r} (known: {', '.join(RELEASES)})")
        self.release = release
        self.scripts = scripts or testbed_dir()
        self._info: dict[str, str] | None = None
        self._version: str | None = None

    def __repr__(self) -> str:
        return f"SlurmTestbed({self.release!r})"

    # ------------------------------------------------------------------ layout
    @property
    def info(self) -> dict[str, str]:
        """The layout printed by ``testbed/info.sh RELEASE`` (paths, ports, names)."""
        if self._info is None:
            out = subprocess.run(
                ["bash", str(self.scripts / "info.sh"), self.release],
                check=True, capture_output=True, text=True, timeout=30,
            ).stdout
            self._info = dict(
                line.split("=", 1) for line in out.splitlines() if "=" in line
            )
        return self._info

    @property
    def dir(self) -> Path:
        return Path(self.info["dir"])

    @property
    def bin_dir(self) -> Path:
        """Directory of the client wrappers (sacct, squeue, scontrol, sbatch, ...)."""
        return Path(self.info["bin"])

    @property
    def state_dir(self) -> Path:
        """The state directory as seen from the host."""
        return Path(self.info["state"])

    @property
    def chroot(self) -> Path | None:
        return Path(self.info["chroot"]) if self.info["chroot"] else None

    @property
    def slurm_conf(self) -> Path:
        """slurm.conf as seen from the host."""
        return Path(self.info["slurm_conf"])

    @property
    def log_dir(self) -> Path:
        return Path(self.info["log_dir"])

    @property
    def job_dir_in_root(self) -> str:
        """Job working/output directory (mode 1777) as seen by Slurm (inside the chroot)."""
        return self.info["job_dir_in_root"]

    @property
    def job_dir(self) -> Path:
        """The same directory as seen from the host."""
        return Path(self.info["job_dir"])

    @property
    def repo_in_root(self) -> str:
        """Where this checkout is visible to slurmctld (read-only bind mount in chroots)."""
        return self.info["repo_in_root"]

    @property
    def user(self) -> str:
        return self.info["user"]

    @property
    def cluster(self) -> str:
        return self.info["cluster"]

    @property
    def account(self) -> str:
        return self.info["account"]

    @property
    def ports(self) -> dict[str, int]:
        i = self.info
        slurmd = [int(p) for p in i["slurmd_ports"].split(",")]
        return {
            "slurmctld": int(i["ctld_port"]),
            "slurmdbd": int(i["dbd_port"]),
            "slurmd_node1": slurmd[0],
            "slurmd_node2": slurmd[1],
            "mysql": int(i["mysql_port"]),
        }

    @property
    def env(self) -> dict[str, str]:
        """os.environ with the wrapper bin dir first in PATH and SLURM_CONF set."""
        env = dict(os.environ)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        env["SLURM_CONF"] = str(self.slurm_conf)
        env["SLURM_TESTBED_RELEASE"] = self.release
        env.pop("SLURM_TESTBED_AS_USER", None)
        return env

    @property
    def base_dir(self) -> Path:
        """Where all releases keep their files ($CCSA_TESTBED_BASE)."""
        return self.dir.parent

    def session_lock(self) -> SessionLock:
        """The lock that coordinates concurrent users of this release's cluster."""
        return SessionLock(self.base_dir / f"{self.release}.lock")

    # ------------------------------------------------------------------ lifecycle
    def unavailable_reason(self) -> str | None:
        """Why this testbed cannot be started here, or None if it can."""
        if not (self.scripts / "up.sh").is_file():
            return f"testbed scripts not found in {self.scripts} (set CCSA_TESTBED_DIR)"
        if os.geteuid() != 0:
            return "the Slurm testbed needs root (slurmd runs jobs as other users)"
        if self.info.get("installed") != "1":
            return f"Slurm {self.release} is not installed: run testbed/install.sh {self.release}"
        return None

    def is_up(self) -> bool:
        """All daemons of this release are running (checked through their pid files)."""
        run = self.state_dir / "run"
        checks = [
            (run / "slurmctld.pid", "slurmctld"),
            (run / "slurmdbd.pid", "slurmdbd"),
            (run / "slurmd.node1.pid", "slurmd"),
            (run / "slurmd.node2.pid", "slurmd"),
            (self.state_dir / "mysql" / "mariadbd.pid", "mariadbd"),
            (self.state_dir / "munge" / "munged.pid", "munged"),
        ]
        return all(_proc_alive(f, comm) for f, comm in checks) and (self.bin_dir / "sacct").exists()

    def _script(self, name: str, *args: str, timeout: float, env: Mapping[str, str] | None) -> None:
        log_dir = self.dir if os.access(self.dir.parent, os.W_OK) else Path("/tmp")
        log_dir.mkdir(parents=True, exist_ok=True)
        log = log_dir / f"{name.removesuffix('.sh')}.log"
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        with log.open("w") as out:
            try:
                proc = subprocess.run(
                    ["bash", str(self.scripts / name), *args],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    env=full_env, timeout=timeout, check=False,
                )
            except subprocess.TimeoutExpired:
                raise TestbedError(
                    f"testbed/{name} {' '.join(args)} timed out after {timeout:.0f}s",
                    self.log_tail(extra=[log]),
                ) from None
        if proc.returncode != 0:
            raise TestbedError(
                f"testbed/{name} {' '.join(args)} failed with exit code {proc.returncode}",
                self.log_tail(extra=[log]),
            )

    def install(self, timeout: float = 900) -> None:
        """testbed/install.sh RELEASE (quick when already installed)."""
        self._script("install.sh", self.release, timeout=timeout, env=None)
        self._info = None

    def up(
        self,
        *,
        fresh: bool = False,
        prep_script: str | os.PathLike[str] | None = None,
        min_job_age: int | None = None,
        timeout: float = 300,
    ) -> None:
        """testbed/up.sh RELEASE [--fresh]; idempotent.

        ``prep_script`` becomes PrologSlurmctld/EpilogSlurmctld (a host path; files in this
        checkout are reached through the read-only bind mount in the chroots).
        """
        env: dict[str, str] = {}
        if prep_script is not None:
            env["SLURM_TESTBED_PREP_SCRIPT"] = str(prep_script)
        if min_job_age is not None:
            env["SLURM_TESTBED_MIN_JOB_AGE"] = str(min_job_age)
        args = [self.release, *(["--fresh"] if fresh else [])]
        self._script("up.sh", *args, timeout=timeout, env=env)

    def down(self, *, purge: bool = False, timeout: float = 120) -> None:
        """testbed/down.sh RELEASE [--purge]; keeps the chroot."""
        args = [self.release, *(["--purge"] if purge else [])]
        self._script("down.sh", *args, timeout=timeout, env=None)

    def log_tail(self, lines: int = 25, extra: Iterable[Path] = ()) -> str:
        """The last lines of the script logs and the daemon logs, for error messages."""
        parts: list[str] = []
        files = [*extra, *(self.log_dir / n for n in ("slurmctld.log", "slurmdbd.log",
                                                       "slurmd.node1.log", "mariadbd.log"))]
        for path in files:
            text = _tail(path, lines)
            if text:
                parts.append(f"--- {path} (last {lines} lines)\n{text}")
        return "\n".join(parts)

    # ------------------------------------------------------------------ commands
    def run(
        self,
        *cmd: str,
        user: str | None = None,
        check: bool = True,
        timeout: float = 60,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command with :attr:`env` (Slurm clients resolve to the wrappers).

        ``user`` runs a Slurm client as that user (SLURM_TESTBED_AS_USER).
        """
        env = self.env
        if user is not None:
            env["SLURM_TESTBED_AS_USER"] = user
        argv = list(cmd)
        wrapper = self.bin_dir / argv[0]
        if "/" not in argv[0] and wrapper.exists():
            argv[0] = str(wrapper)
        proc = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=timeout, input=input,
            check=False,
        )
        if check and proc.returncode != 0:
            raise TestbedError(
                f"{' '.join(cmd)} failed with exit code {proc.returncode}: {proc.stderr.strip()}"
            )
        return proc

    @property
    def version(self) -> str:
        """The Slurm version of this release as reported by its clients, e.g. ``24.11.5``."""
        if self._version is None:
            out = self.run("sinfo", "--version").stdout
            match = _VERSION_RE.search(out)
            if not match:
                raise TestbedError(f"cannot parse the Slurm version from {out!r}")
            self._version = match.group(1)
        return self._version

    def submit(
        self,
        args: Sequence[str],
        user: str | None = "testuser",
        *,
        timeout: float = 60,
    ) -> int:
        """``sbatch --parsable ARGS`` (as ``user``); returns the job id.

        Unless ``args`` say otherwise the job runs in :attr:`job_dir_in_root` and writes
        its output there as ``<name>-<id>.out``.
        """
        argv = ["sbatch", "--parsable"]
        if not _has_option(args, "-D", "--chdir"):
            argv.append(f"--chdir={self.job_dir_in_root}")
        if not _has_option(args, "-o", "--output"):
            argv.append(f"--output={self.job_dir_in_root}/%x-%j.out")
        argv.extend(args)
        out = self.run(*argv, user=user if user != "root" else None, timeout=timeout).stdout
        return int(out.strip().splitlines()[-1].split(";")[0])

    def cancel(self, job_id: int, user: str | None = None) -> None:
        self.run("scancel", str(job_id), user=user)

    def job_state(self, job_id: int) -> str | None:
        """Current state from squeue, or from sacct once squeue has forgotten the job."""
        out = self.run("squeue", "-h", "-j", str(job_id), "-o", "%T", check=False).stdout.strip()
        if out:
            return out.splitlines()[0].strip()
        out = self.run(
            "sacct", "-n", "-X", "-P", "-j", str(job_id), "-o", "JobID,State", check=False
        ).stdout
        for line in out.splitlines():
            jid, _, state = line.partition("|")
            if jid == str(job_id):
                return state.split(" ")[0]
        return None

    def wait_state(
        self, job_id: int, states: str | Iterable[str], timeout: float = 60
    ) -> str:
        """Wait until the job is in one of ``states``; returns the state reached.

        Raises TestbedError when the job ends in another final state or on timeout.
        """
        wanted = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        state: str | None = None
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state in wanted:
                return state
            if state in FINAL_STATES:
                raise TestbedError(f"job {job_id} ended as {state}, expected {sorted(wanted)}")
            time.sleep(0.25)
        raise TestbedError(
            f"job {job_id} not in {sorted(wanted)} after {timeout:.0f}s (last: {state})",
            self.log_tail(10),
        )

    def sacct_json(self, job_id: int) -> dict[str, Any]:
        """Parsed ``sacct --json -j ID``."""
        doc: dict[str, Any] = json.loads(self.run("sacct", "--json", "-j", str(job_id)).stdout)
        return doc

    def wait_sacct(
        self,
        job_id: int,
        timeout: float = 60,
        *,
        final: bool = True,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Wait until ``sacct --json -j ID`` has the job (in a final state, by default).

        For an array job every task must be final. With ``name``, also wait until the
        record carries that job name: slurmdbd can create a placeholder record (name
        ``allocation``, incomplete node list) when a job's end reaches it before its
        start, and fixes it a moment later (seen on 22.05 right after a fresh start).
        Returns the whole parsed document.
        """
        deadline = time.monotonic() + timeout
        last = "no record"
        while time.monotonic() < deadline:
            doc = self.sacct_json(job_id)
            job = find_sacct_job(doc, job_id)
            if job is not None:
                states = [sacct_state(j) for j in doc.get("jobs", [])]
                last = f"{','.join(states)} name={job.get('name')!r}"
                if (not final or all(s in FINAL_STATES for s in states)) and (
                    name is None or job.get("name") == name
                ):
                    return doc
            time.sleep(0.25)
        raise TestbedError(
            f"sacct has no final record of job {job_id} after {timeout:.0f}s (last: {last})",
            self.log_tail(10),
        )
