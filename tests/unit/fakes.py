"""Test doubles shared by the unit tests."""

from __future__ import annotations


class Clock:
    """A clock the test sets by hand, for ``clock=`` of the store, the engine and the
    daemon (the store stamps entries with it; backoff and pruning read it)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
