"""The README's config reference is the one the code enforces."""

from __future__ import annotations

from cc_slurm_adapter.config import reference_table
from tests.conftest import REPO_ROOT


def test_readme_config_table_matches_the_code() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert reference_table() in readme, (
        "README.md's config table is out of date: paste the output of "
        "python -c 'from cc_slurm_adapter.config import reference_table; "
        "print(reference_table())'")


def test_readme_starts_with_the_two_commands() -> None:
    head = (REPO_ROOT / "README.md").read_text()[:1200]
    assert "scripts/demo" in head and "scripts/test" in head
