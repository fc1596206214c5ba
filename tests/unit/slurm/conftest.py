"""Helpers for the Slurm layer tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from cc_slurm_adapter.slurm.values import FieldLog

SLURM_JSON = Path(__file__).resolve().parents[2] / "fixtures" / "slurm-json"
LIVE_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "slurm"


@pytest.fixture(autouse=True)
def _fresh_field_log() -> None:
    FieldLog.reset_seen()


@pytest.fixture(scope="session")
def slurm_json() -> Path:
    return SLURM_JSON
