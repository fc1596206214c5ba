"""The wheel ships cc_slurm_adapter.testing; without the ``standin`` extra its import
must say which extra to install, and any other broken import must name itself."""

from __future__ import annotations

import subprocess
import sys


def _import_with_missing(module: str, target: str) -> subprocess.CompletedProcess[str]:
    code = (f"import sys; sys.modules[{module!r}] = None\n"  # the import now fails
            f"import {target}")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)


def test_missing_cryptography_names_the_extra() -> None:
    for target in ("cc_slurm_adapter.testing.ccbackend", "cc_slurm_adapter.testing.demo",
                   "cc_slurm_adapter.testing.ccbackend.auth"):
        done = _import_with_missing("cryptography", target)
        assert done.returncode == 1
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("ModuleNotFoundError: the cc-backend stand-in needs the "
                               "'standin' extra (missing module 'cryptography')"), last
        assert "pip install 'cc-slurm-adapter[standin]'" in last


def test_other_missing_module_is_not_blamed_on_the_extra() -> None:
    done = _import_with_missing("httpx", "cc_slurm_adapter.testing.ccbackend")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "httpx" in last and "standin" not in last, last


def test_product_imports_without_the_extra() -> None:
    done = _import_with_missing("cryptography", "cc_slurm_adapter.cli")
    assert done.returncode == 0, done.stderr
