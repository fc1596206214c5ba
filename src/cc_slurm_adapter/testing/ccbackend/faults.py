"""Fault injection for the stand-in, switchable at run time.

Modes (one at a time; ``none`` switches faults off):

``down``      the listening socket is closed: connections are refused. With
              ``seconds`` set, the stand-in comes back by itself after that time
              (the only way to end ``down`` over HTTP, since the port is closed).
``delay``     every matching answer is held back ``seconds``.
``error``     a share (``rate``) of matching requests gets ``status`` (500, 502 or 503)
              without being processed.
``drop``      the request is processed (the job is stored), then the connection is
              closed without an answer: the client sees an error, the job exists.
``expired``   a matching request gets cc-backend's 401 for an expired token.

``paths`` limits a fault to request paths starting with one of its entries
(default: every ``/api/`` path). ``count`` limits how many requests it hits
(``None`` = no limit). ``rate`` is a share in [0, 1], drawn from a seeded RNG.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = ["FAULT_MODES", "FaultPlan", "FaultState"]

FaultMode = Literal["none", "down", "delay", "error", "drop", "expired"]
FAULT_MODES: tuple[str, ...] = ("none", "down", "delay", "error", "drop", "expired")


@dataclass(frozen=True, slots=True)
class FaultPlan:
    mode: FaultMode = "none"
    rate: float = 1.0
    status: int = 503
    seconds: float = 0.0
    count: int | None = None
    paths: tuple[str, ...] = ("/api/",)
    seed: int = 0

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> FaultPlan:
        """Build from the control endpoint's JSON; ValueError on bad input."""
        allowed = {"mode", "rate", "status", "seconds", "count", "paths", "seed"}
        unknown = set(doc) - allowed
        if unknown:
            raise ValueError(f"unknown fault keys: {sorted(unknown)}")
        mode = doc.get("mode", "none")
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r} (known: {', '.join(FAULT_MODES)})")
        plan = cls(
            mode=mode,
            rate=float(doc.get("rate", 1.0)),
            status=int(doc.get("status", 503)),
            seconds=float(doc.get("seconds", 0.0)),
            count=None if doc.get("count") is None else int(doc["count"]),
            paths=tuple(doc.get("paths") or ("/api/",)),
            seed=int(doc.get("seed", 0)),
        )
        plan.validate()
        return plan

    def validate(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        if self.mode == "error" and self.status not in (500, 502, 503):
            raise ValueError("status must be 500, 502 or 503")
        if self.seconds < 0:
            raise ValueError("seconds must be >= 0")

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "rate": self.rate, "status": self.status,
                "seconds": self.seconds, "count": self.count, "paths": list(self.paths),
                "seed": self.seed}


@dataclass
class FaultState:
    """The active plan plus its counters; ``pick`` decides per request."""

    plan: FaultPlan = field(default_factory=FaultPlan)
    hits: int = 0
    _rng: random.Random = field(default_factory=lambda: random.Random(0))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, plan: FaultPlan) -> None:
        plan.validate()
        with self._lock:
            self.plan = plan
            self.hits = 0
            self._rng = random.Random(plan.seed)

    def clear(self) -> None:
        self.set(FaultPlan())

    def pick(self, path: str) -> FaultPlan | None:
        """The plan if it applies to this request (and counts the hit), else None."""
        with self._lock:
            plan = self.plan
            if plan.mode in ("none", "down"):
                return None
            if not path.startswith(plan.paths):
                return None
            if plan.count is not None and self.hits >= plan.count:
                return None
            if plan.rate < 1.0 and self._rng.random() >= plan.rate:
                return None
            self.hits += 1
            if plan.count is not None and self.hits >= plan.count:
                # Used up: later requests see no fault.
                self.plan = replace(plan, count=0)
            return plan
