"""Fixtures shared by every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests: no per-example deadline (a loaded 2-core CI machine is slow at times),
# and in CI the same examples every run, so a red run is reproducible and never a dice roll.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI", "") in ("true", "1") else "dev")

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "tests" / "fixtures"


def _find_shared() -> Path | None:
    """The read-only ``shared/`` folder beside the clone, or $CCSA_SHARED_DIR."""
    env = os.environ.get("CCSA_SHARED_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared")
    for candidate in candidates:
        if (candidate / "reference").is_dir():
            return candidate
    return None


SHARED_DIR = _find_shared()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """Path of ``../shared``; skips the test with a clear reason when it is missing."""
    if SHARED_DIR is None:
        pytest.skip("../shared (reference material) is not next to this clone; "
                    "set CCSA_SHARED_DIR to its path to run this test")
    return SHARED_DIR


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES
