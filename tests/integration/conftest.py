"""Live Slurm for the integration tests: the ``slurm_cluster`` fixture.

``slurm_cluster`` is session-scoped and parametrised over the releases in
$CCSA_SLURM_RELEASES (default ``22.05,24.11,26.05``). At its first use it brings up *all*
selected releases in parallel (each has its own ports), waits for the one a test needs,
and takes down at session end the clusters that test sessions started (the chroots stay;
with concurrent sessions on one machine the last one to finish does it).

When a cluster cannot be started (not root, packages missing, a failed start) its tests
are skipped with the reason, unless CI=true/1 or CCSA_REQUIRE_SLURM=1: then they fail
loudly with the log tail. CCSA_SLURM_FRESH=1 wipes each cluster's state first;
CCSA_SLURM_KEEP=1 leaves the clusters running at the end.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from cc_slurm_adapter.testing.ccbackend import StandIn
from cc_slurm_adapter.testing.slurm_testbed import (
    SessionLock,
    SlurmTestbed,
    TestbedError,
    selected_releases,
)

from .daemon_harness import Daemons, cancel_all

RELEASES = selected_releases()


def _require_slurm() -> bool:
    return (
        os.environ.get("CI", "").lower() in ("true", "1")
        or os.environ.get("CCSA_REQUIRE_SLURM") == "1"
    )


def _flag(name: str) -> bool:
    return os.environ.get(name, "") in ("1", "true", "yes")


class _Clusters:
    """Starts every selected release once, in parallel, and stops what it started.

    Several pytest sessions (other engineers, CI jobs) may share a machine: each holds the
    release's SessionLock shared while it runs. A marker file says a test session started
    the cluster; whichever session ends last (gets the lock exclusively) takes it down.
    Clusters started by hand (testbed/up.sh) are left running.
    """

    def __init__(self, releases: list[str]) -> None:
        self.releases = releases
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict[str, Future[SlurmTestbed]] = {}
        self._held: list[tuple[SlurmTestbed, SessionLock]] = []
        self.versions: dict[str, str] = {}
        self.timings: dict[str, float] = {}
        self.problems: dict[str, str] = {}

    @staticmethod
    def _marker(tb: SlurmTestbed) -> Path:
        return tb.base_dir / f"{tb.release}.started-by-tests"

    def _start(self, tb: SlurmTestbed) -> SlurmTestbed:
        t0 = time.monotonic()
        reason = tb.unavailable_reason()
        if reason is not None:
            raise TestbedError(reason)
        lock = tb.session_lock()
        lock.acquire(exclusive=False)
        with self._lock:
            self._held.append((tb, lock))
        fresh = _flag("CCSA_SLURM_FRESH")
        if fresh and not lock.try_exclusive():
            fresh = False  # another session uses this cluster right now: keep its state
        was_up = tb.is_up()
        tb.up(fresh=fresh)
        if fresh or not was_up:
            self._marker(tb).touch()
        lock.acquire(exclusive=False)  # back to shared after a fresh start
        self.versions[tb.release] = tb.version
        self.timings[tb.release] = time.monotonic() - t0
        return tb

    def start_all(self) -> None:
        with self._lock:
            if self._pool is not None:
                return
            self._pool = ThreadPoolExecutor(
                max_workers=max(1, len(self.releases)), thread_name_prefix="slurm-up"
            )
            for release in self.releases:
                self._futures[release] = self._pool.submit(self._start, SlurmTestbed(release))

    def get(self, release: str) -> SlurmTestbed:
        self.start_all()
        try:
            return self._futures[release].result()
        except Exception as exc:  # a start failure skips (or fails) every test of it
            self.problems[release] = str(exc).splitlines()[0]
            message = f"Slurm {release} testbed could not be started: {exc}"
            if _require_slurm():
                pytest.fail(message, pytrace=False)
            pytest.skip(message.splitlines()[0])

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        errors: list[str] = []

        def down(tb: SlurmTestbed, lock: SessionLock) -> None:
            try:
                marker = self._marker(tb)
                if not _flag("CCSA_SLURM_KEEP") and lock.try_exclusive() and marker.exists():
                    tb.down()
                    marker.unlink(missing_ok=True)
            except TestbedError as exc:
                errors.append(str(exc))
            finally:
                lock.release()

        threads = [threading.Thread(target=down, args=held) for held in self._held]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise TestbedError("; ".join(errors))


_CLUSTERS = _Clusters(RELEASES)


@pytest.fixture(scope="session")
def _slurm_clusters() -> Iterator[_Clusters]:
    yield _CLUSTERS
    _CLUSTERS.stop()


@pytest.fixture(scope="session", params=RELEASES, ids=[f"slurm-{r}" for r in RELEASES])
def slurm_cluster(request: pytest.FixtureRequest, _slurm_clusters: _Clusters) -> SlurmTestbed:
    """A running testbed cluster of one Slurm release (see the module docstring)."""
    release: str = request.param
    return _slurm_clusters.get(release)


@pytest.fixture(autouse=True)
def _record_slurm_version(request: pytest.FixtureRequest) -> None:
    """Put the Slurm release and exact version into the test report (user_properties:
    junit ``<property>`` elements with junit_family=xunit1/legacy). Not record_property,
    which warns under the default xunit2 family (and warnings are errors here)."""
    if "slurm_cluster" not in request.fixturenames:
        return
    tb: SlurmTestbed = request.getfixturevalue("slurm_cluster")
    request.node.user_properties.append(("slurm_release", tb.release))
    request.node.user_properties.append(("slurm_version", tb.version))


@pytest.hookimpl(trylast=True)  # after pytest's own reordering by fixture parameter
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slurm)
    # A stable sort: the tests marked `last` go to the end of the session and keep their
    # order among themselves. They need jobs that ended minutes before; on a testbed that
    # was installed at the start of this session, only the end of the session has them.
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not (_CLUSTERS.versions or _CLUSTERS.problems):
        return
    terminalreporter.section("live Slurm testbeds")
    for release in _CLUSTERS.releases:
        if release in _CLUSTERS.versions:
            terminalreporter.write_line(
                f"Slurm {release}: ran against {_CLUSTERS.versions[release]} "
                f"(ready after {_CLUSTERS.timings[release]:.1f}s)"
            )
        elif release in _CLUSTERS.problems:
            terminalreporter.write_line(f"Slurm {release}: NOT RUN: {_CLUSTERS.problems[release]}")


# ------------------------------------------------------------------ the daemon's tests


@pytest.fixture()
def standin() -> Iterator[StandIn]:
    """The cc-backend stand-in with 1.5's job cache on a short commit interval, like the
    real server started with ``--commit-interval 2s`` (modules may define their own)."""
    with StandIn(commit_interval=2.0) as server:
        yield server


@pytest.fixture()
def daemons(tmp_path: Path, slurm_cluster: SlurmTestbed) -> Iterator[Daemons]:
    """Real ``-daemon`` processes on the live release; every one stopped at the end."""
    made = Daemons(tmp_path, slurm_cluster.env)
    yield made
    made.cleanup()


@pytest.fixture()
def jobs(slurm_cluster: SlurmTestbed) -> Iterator[list[int]]:
    """Job ids a test submitted; cancelled at the end whatever happened."""
    ids: list[int] = []
    yield ids
    cancel_all(slurm_cluster, ids)
