"""The daemon's loop on recorded Slurm outputs (FakeSlurm) against the stand-in, for the
loop, NATS-drain and metrics tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cc_slurm_adapter.ccbackend import Backoff, CCBackendClient
from cc_slurm_adapter.config import Config
from cc_slurm_adapter.daemon.loop import Daemon
from cc_slurm_adapter.mapping import reset_log_once
from cc_slurm_adapter.store import Store, open_store

from .fakeslurm import FakeSlurm

standin_mod = pytest.importorskip("cc_slurm_adapter.testing.ccbackend")
StandIn = standin_mod.StandIn


@pytest.fixture
def fresh() -> Iterator[Any]:
    """A fresh stand-in whose job cache commits every 0.2 s."""
    reset_log_once()
    with StandIn(commit_interval=0.2) as si:
        yield si


def make_config(tmp_path: Path, si: Any, **kw: Any) -> Config:
    return Config(cc_rest_url=si.url, cc_rest_jwt=si.token,
                  state_path=str(tmp_path / "state.db"),
                  pid_file_path=str(tmp_path / "daemon.pid"),
                  last_run_path=str(tmp_path / "lastrun"), **kw)


class Harness:
    """One Daemon on ``slurm``'s recorded outputs; ``config`` are Config overrides."""

    def __init__(self, tmp_path: Path, si: Any, slurm: FakeSlurm, clock: Any = None, *,
                 publisher: Any = None, backoff: Backoff | None = None,
                 **config: Any) -> None:
        self.tmp_path, self.si, self.slurm = tmp_path, si, slurm
        self.clock = clock
        self.publisher = publisher
        self.backoff = backoff or Backoff(0.01, 0.05)
        self.config = make_config(tmp_path, si, **config)
        self.store: Store | None = None
        self.client: CCBackendClient | None = None
        self.daemon: Daemon | None = None

    async def open(self) -> Daemon:
        self.store = open_store(self.config.state_path)
        self.client = CCBackendClient(self.si.url, self.si.token, timeout=5)
        self.daemon = Daemon(self.config, store=self.store, client=self.client,
                             runner=self.slurm.runner, backoff=self.backoff,
                             publisher=self.publisher,
                             **({"clock": self.clock} if self.clock else {}))
        await self.daemon.setup()
        return self.daemon

    async def close(self) -> None:
        if self.client:
            await self.client.aclose()
        if self.store:
            self.store.close()
        self.store = self.client = self.daemon = None

    async def cycle(self, phase: str | None = None) -> None:
        assert self.daemon is not None
        if phase:
            self.slurm.phase = phase
        for cs in self.daemon.clusters:
            await self.daemon.poll(cs)

    async def drain_until(self, target: str | None, seconds: float = 20.0) -> None:
        """Drain until the outbox (of ``target``, or all of it) is empty, retries
        included."""
        assert self.daemon is not None and self.store is not None
        deadline = asyncio.get_running_loop().time() + seconds
        while self.store.outbox_size(target) and asyncio.get_running_loop().time() < deadline:
            if not await self.daemon.drain_once():
                await asyncio.sleep(0.02)
        assert self.store.outbox_size(target) == 0, f"{target or 'outbox'} did not drain"

    async def drain_all(self, seconds: float = 20.0) -> None:
        await self.drain_until(None, seconds)
