"""The daemon pins glibc's malloc thresholds, so a large freed block leaves RSS at once.

Each case runs in its own interpreter: mallopt changes the whole process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[3] / "src"

SCRIPT = r"""
import sys
sys.path.insert(0, sys.argv[2])
from cc_slurm_adapter.daemon import loop

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

if sys.argv[1] == "pinned":
    assert loop.fix_malloc_thresholds()
for _ in range(2):  # large blocks freed: glibc (unpinned) raises its thresholds
    data = bytes(9 << 20)
    copy = bytearray(data)
    del data, copy
base = rss()
block = bytearray(8 << 20)
for i in range(0, len(block), 4096):
    block[i] = 1
small = [bytes(100) for _ in range(1000)]  # allocated on top, as a cycle's objects are
del block
print(rss() - base)
"""


def _left_after_free(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode, str(SRC)], check=True,
                         capture_output=True, text=True).stdout
    return float(out)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_a_freed_large_block_leaves_rss_when_pinned() -> None:
    pinned = _left_after_free("pinned")
    unpinned = _left_after_free("unpinned")
    assert pinned < 2.0, pinned  # MB still resident of the 8 MB block
    # glibc's own behaviour, and what the pin is for: the 8 MB stay
    assert unpinned > pinned + 4.0, (unpinned, pinned)


def test_the_daemon_process_pins_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import cc_slurm_adapter.daemon as daemon
    from cc_slurm_adapter.daemon import loop

    called: list[bool] = []

    def pin() -> bool:
        called.append(True)
        return True

    monkeypatch.setattr(loop, "fix_malloc_thresholds", pin)

    async def serve(_config: object) -> int:
        return 0

    monkeypatch.setattr(daemon, "serve", serve)
    assert daemon.run(object()) == 0  # type: ignore[arg-type]
    assert called == [True]
