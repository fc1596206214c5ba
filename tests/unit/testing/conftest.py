"""Fixtures for the cc-backend stand-in tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cc_slurm_adapter.testing.ccbackend import StandIn
from cc_slurm_adapter.testing.ccbackend.clusters import default_cluster_files

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ccbackend"
FRITZ = FIXTURES / "fritz.cluster.json"


def load_fixture(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return doc


def minimal_start(**over: Any) -> dict[str, Any]:
    """The smallest valid v1.5 start body for the default test cluster."""
    body: dict[str, Any] = {
        "jobId": 100, "cluster": "testcluster", "user": "alice", "project": "p1",
        "startTime": 1_700_000_000, "numNodes": 1, "resources": [{"hostname": "node1"}],
    }
    body.update(over)
    return body


def err(status_text: str, message: str) -> bytes:
    """cc-backend's error body: Go encoder output (HTML-escaped), one trailing newline."""
    text = json.dumps({"status": status_text, "error": message}, separators=(",", ":"))
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, esc)
    return (text + "\n").encode()


@pytest.fixture
def make_standin() -> Iterator[Any]:
    started: list[StandIn] = []

    def factory(profile: str = "v1.5", **kwargs: Any) -> StandIn:
        kwargs.setdefault("cluster_files", [*default_cluster_files(), FRITZ])
        kwargs.setdefault("commit_interval", 0)
        standin = StandIn(profile=profile, **kwargs).start()
        started.append(standin)
        return standin

    yield factory
    for standin in started:
        standin.stop()


@pytest.fixture
def standin(make_standin: Any) -> StandIn:
    standin: StandIn = make_standin("v1.5")
    return standin


@pytest.fixture
def client(standin: StandIn) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=standin.url, headers=standin.headers(), timeout=10) as c:
        yield c
