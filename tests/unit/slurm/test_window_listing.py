"""22.05's window pre-check: ``sacct -n -P -o JobIDRaw,State,Start,End`` before the JSON.

On 22.05.8 ``sacct --json`` costs 0.37 s as soon as its window holds one job (delayed-ACK
stalls, not CPU), the short text listing 0.09 s. When every job of the window is a run
the caller already holds, still RUNNING since that start, the JSON would change nothing
and is not asked for. Anything else, including a listing that does not parse, reads the
JSON as before. The sample lines are as the 22.05.8 testbed printed them (2026-12-03).
"""

from __future__ import annotations

import calendar
import json

import pytest

from cc_slurm_adapter.errors import SlurmCommandFailed
from cc_slurm_adapter.slurm.record import SlurmMeta
from cc_slurm_adapter.slurm.runner import FakeRunner
from cc_slurm_adapter.slurm.source import SlurmInfo, SlurmSource
from cc_slurm_adapter.slurm.text import WindowRow, parse_window_listing

# printed by sacct 22.05.8 with TZ=UTC (testbed, 2026-12-03)
LIVE_2205 = (b"8780|FAILED|2026-12-03T07:11:57|2026-12-03T07:11:57\n"
             b"8781|RUNNING|2026-12-03T07:12:10|Unknown\n"
             b"8782|RUNNING|2026-12-03T07:12:10|Unknown\n")
T_8781 = calendar.timegm((2026, 12, 3, 7, 12, 10, 0, 0, 0))
T_8780 = calendar.timegm((2026, 12, 3, 7, 11, 57, 0, 0, 0))


def test_rows_of_a_live_listing() -> None:
    assert parse_window_listing(LIVE_2205) == [
        WindowRow(8780, "FAILED", T_8780, T_8780),
        WindowRow(8781, "RUNNING", T_8781, None),
        WindowRow(8782, "RUNNING", T_8781, None),
    ]


def test_empty_window_is_no_rows() -> None:
    assert parse_window_listing(b"") == []


@pytest.mark.parametrize(("line", "row"), [
    (b"12|CANCELLED by 1000|2026-12-03T07:11:57|2026-12-03T07:12:00\n",
     WindowRow(12, "CANCELLED by 1000", T_8780, T_8780 + 3)),
    (b"13|PENDING|Unknown|Unknown\n", WindowRow(13, "PENDING", None, None)),
    (b"14|NODE_FAIL|2026-12-03T07:11:57|None\n", WindowRow(14, "NODE_FAIL", T_8780, None)),
    (b"15|RUNNING||\n", WindowRow(15, "RUNNING", None, None)),
    (b"16|RUNNING|not-a-time|Unknown\n", WindowRow(16, "RUNNING", None, None)),
])
def test_other_states_and_times(line: bytes, row: WindowRow) -> None:
    assert parse_window_listing(line) == [row]


@pytest.mark.parametrize("text", [
    pytest.param(LIVE_2205[:-1], id="no-final-newline"),          # cut off
    pytest.param(LIVE_2205[:60], id="cut-mid-line"),
    pytest.param(b'{"meta": {}, "jobs": []}\n', id="json"),
    pytest.param(b"JobIDRaw|State|Start|End\n" + LIVE_2205, id="a-header"),
    pytest.param(b"8781|RUNNING|2026-12-03T07:12:10|Unknown|node1\n", id="five-fields"),
    pytest.param(b"8781|RUNNING|2026-12-03T07:12:10\n", id="three-fields"),
    pytest.param(b"8781_3|RUNNING|2026-12-03T07:12:10|Unknown\n", id="not-a-raw-id"),
    pytest.param(b"8781|running|2026-12-03T07:12:10|Unknown\n", id="lowercase-state"),
    pytest.param(b"8781|RUNNING|2026-12-03T07:12:10|Unknown\r\n", id="crlf"),
    pytest.param(b"8781|RUNNING|2026-12-03T07:12:10|Unknown\n\n", id="blank-line"),
    pytest.param(b"8781|RUNNING|2026-12-03T07:12:10|Unknown\x0b8|RUNNING||\n",
                 id="vertical-tab-is-not-a-line-break"),
    pytest.param("8781|RUNNING|2026-12-03T07:12:10|Unknown\n".replace("1", "\u0661")
                 .encode(), id="non-ascii-digits"),
    pytest.param(b"sacct: error: Problem talking to the database\n", id="an-error"),
])
def test_anything_else_is_no_answer(text: bytes) -> None:
    assert parse_window_listing(text) is None


# ------------------------------------------------------------ the source's choice

META_2205 = {"plugin": {"type": "openapi/dbv0.0.38"},
             "Slurm": {"version": {"major": 22, "minor": 5, "micro": 8},
                       "release": "22.05.8"}}


def _json_job(job_id: int, start: int, state: str = "RUNNING", end: int = 0) -> dict[str, object]:
    return {"job_id": job_id, "name": "x", "user": "testuser", "account": "testacct",
            "cluster": "testcluster", "partition": "debug", "nodes": "node1",
            "state": {"current": state, "reason": "None"},
            "time": {"start": start, "end": end, "submission": start - 1,
                     "elapsed": 0, "limit": 5}}


class Slurm:
    """A fake 22.05 (or 24.11) cluster: the listing and the JSON of one window."""

    def __init__(self, listing: bytes, jobs: list[dict[str, object]],
                 version: tuple[int, int, int] = (22, 5, 8)) -> None:
        self.listing = listing
        self.jobs = jobs
        self.asked: list[str] = []
        self.meta = SlurmMeta(release="{}.{:02d}.{}".format(*version), major=version[0],
                              minor=version[1], micro=version[2])
        self.runner = FakeRunner(self.handle)

    def handle(self, argv: tuple[str, ...]) -> bytes:
        assert argv[0] == "sacct", argv
        # both ask the same window with the same filter
        assert "--nnodes=1-2147483647" in argv and "-S" in argv and "-E" in argv
        if "-P" in argv:
            assert argv[argv.index("-o") + 1] == "JobIDRaw,State,Start,End"
            self.asked.append("listing")
            return self.listing
        assert "--json" in argv
        self.asked.append("json")
        return json.dumps({"meta": META_2205, "jobs": self.jobs}).encode()

    def source(self) -> SlurmSource:
        return SlurmSource(self.runner, SlurmInfo(meta=self.meta))


async def test_nothing_changed_skips_the_json() -> None:
    slurm = Slurm(LIVE_2205[LIVE_2205.index(b"8781"):], [])
    result = await slurm.source().accounting_window(0, 60, {8781: T_8781, 8782: T_8781,
                                                            9: 5})
    assert slurm.asked == ["listing"]
    assert result.jobs == [] and result.unchanged == (8781, 8782)
    assert result.meta.release == "22.05.8"


async def test_empty_window_skips_the_json() -> None:
    slurm = Slurm(b"", [])
    result = await slurm.source().accounting_window(0, 60, {})
    assert slurm.asked == ["listing"] and result.jobs == [] and result.unchanged == ()


@pytest.mark.parametrize(("listing", "why"), [
    (LIVE_2205, "8780 has ended"),
    (b"8781|RUNNING|2026-12-03T07:12:10|Unknown\n8783|RUNNING|2026-12-03T07:12:10|Unknown\n",
     "8783 is new"),
    (b"8781|RUNNING|2026-12-03T07:12:11|Unknown\n", "another start: another run"),
    (b"8781|RUNNING|2026-12-03T07:12:10|2026-12-03T07:13:00\n", "an end while RUNNING"),
    (b"8781|SUSPENDED|2026-12-03T07:12:10|Unknown\n", "suspended"),
    (b"8781|REQUEUED|2026-12-03T07:12:10|Unknown\n", "requeued"),
    (b"8781|RUNNING|Unknown|Unknown\n", "no start"),
    (b"8781|RUNNING|2026-12-03T07:12:10|Unknown", "cut off"),
    (b"garbage\n", "not a listing"),
])
async def test_any_change_or_doubt_reads_the_json(listing: bytes, why: str) -> None:
    jobs = [_json_job(8781, T_8781), _json_job(8780, T_8780, "FAILED", T_8780)]
    slurm = Slurm(listing, jobs)
    result = await slurm.source().accounting_window(0, 60, {8781: T_8781})
    assert slurm.asked == ["listing", "json"], why
    # the JSON is read as without the pre-check: 8781 unchanged, 8780 in full
    assert result.unchanged == (8781,), why
    assert [r.job_id for r in result.jobs] == [8780], why


async def test_without_unchanged_only_the_json() -> None:
    """``accounting()`` (catch-up chunks, tests) holds no runs: the JSON alone."""
    slurm = Slurm(LIVE_2205, [_json_job(8781, T_8781)])
    assert [r.job_id for r in await slurm.source().accounting(0, 60)] == [8781]
    assert slurm.asked == ["json"]


async def test_releases_with_a_fast_json_skip_the_listing() -> None:
    slurm = Slurm(LIVE_2205[LIVE_2205.index(b"8781"):], [_json_job(8781, T_8781)],
                  version=(24, 11, 5))
    result = await slurm.source().accounting_window(0, 60, {8781: T_8781})
    assert slurm.asked == ["json"] and result.unchanged == (8781,)


async def test_a_failing_listing_fails_the_window() -> None:
    """slurmdbd down: the text sacct exits 1 too (22.05.8), and the cycle fails as with
    the JSON; an empty answer is never taken for an empty window."""
    def down(argv: tuple[str, ...]) -> bytes:
        raise SlurmCommandFailed("sacct exited 1: Problem talking to the database",
                                 argv=argv, stderr="Connection refused")

    source = SlurmSource(FakeRunner(down), SlurmInfo(meta=SlurmMeta(major=22, minor=5,
                                                                    micro=8)))
    with pytest.raises(SlurmCommandFailed):
        await source.accounting_window(0, 60, {8781: T_8781})


async def test_a_quiet_cycle_is_two_calls() -> None:
    """listing + live listing, where the JSON cycle was the same two calls but 0.37 s."""
    slurm = Slurm(LIVE_2205[LIVE_2205.index(b"8781"):], [])
    base = slurm.handle

    def handle(argv: tuple[str, ...]) -> bytes:
        if argv[0] == "squeue":
            return b"8781 RUNNING\n8782 RUNNING\n"
        return base(argv)

    source = SlurmSource(FakeRunner(handle), SlurmInfo(meta=slurm.meta))
    result = await source.cycle(0, 60, captured={8781, 8782},
                                unchanged={8781: T_8781, 8782: T_8781})
    assert result.calls == 2 and slurm.asked == ["listing"]
    assert result.accounting == [] and result.unchanged == (8781, 8782)
    assert result.live == {8781: "RUNNING", 8782: "RUNNING"} and result.details == []
