"""A fake Slurm (``FakeRunner``) answering from the recorded outputs in tests/fixtures/slurm.

``phase`` picks the snapshot: ``running1``, ``running2`` or ``after`` (every job ended,
still within MinJobAge), ``purged`` (after, and slurmctld has forgotten every job).
Windows (-S/-E) are ignored: the recorded sacct output is the whole truth of the phase.
``fail`` makes the named commands fail (``{"sacct"}``: slurmdbd down).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cc_slurm_adapter.errors import SlurmCommandFailed
from cc_slurm_adapter.slurm.runner import CommandResult, FakeRunner

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "slurm"


class FakeSlurm:
    def __init__(self, release: str = "24.11", phase: str = "running1") -> None:
        self.dir = FIXTURES / release
        self.phase = phase
        self.fail: set[str] = set()
        self.fail_after: dict[str, int] = {}
        """command → how many more calls succeed before it fails (a failed chunk)."""
        self.runner = FakeRunner(self.handle)
        self.extra_sacct: list[dict[str, Any]] = []

    def _read(self, name: str) -> bytes:
        return (self.dir / name).read_bytes()

    def _snap(self) -> str:
        return "after" if self.phase == "purged" else self.phase

    def sacct_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self._read(f"sacct_{self._snap()}.json"))
        doc["jobs"] = [*doc["jobs"], *self.extra_sacct]
        return doc

    def live_text(self) -> bytes:
        if self.phase == "purged":
            return b""
        name = ("squeue_states_all_after.json" if self.phase == "after"
                else f"squeue_{self.phase}.json")
        doc = json.loads(self._read(name))
        return "".join(f"{j['job_id']} {j['job_state'][0]}\n" for j in doc["jobs"]).encode()

    def handle(self, argv: tuple[str, ...]) -> bytes | CommandResult:
        exe = argv[0]
        if exe in self.fail:
            raise SlurmCommandFailed(f"{exe} exited 1: slurm_persist_conn_open_without_init:"
                                     " failed to open persistent connection", argv=argv,
                                     stderr="connection refused")
        if exe in self.fail_after:
            if self.fail_after[exe] <= 0:
                raise SlurmCommandFailed(f"{exe} exited 1: timeout", argv=argv)
            self.fail_after[exe] -= 1
        if exe == "sacctmgr":
            return b"testcluster\n"
        if exe == "sacct" and "--json=list" in argv:
            return b"data_parser/v0.0.40\ndata_parser/v0.0.41\ndata_parser/v0.0.42\n"
        if exe == "sacct" and "1970-01-02T00:00:00" in argv:
            doc = json.loads(self._read("sacct_after.json"))
            doc["jobs"] = []
            return json.dumps(doc).encode()
        if exe == "sacct" and "-j" in argv:
            wanted = {int(x) for x in argv[argv.index("-j") + 1].split(",")}
            doc = self.sacct_doc()
            doc["jobs"] = [j for j in doc["jobs"] if j["job_id"] in wanted]
            return json.dumps(doc).encode()
        if exe == "sacct":
            return json.dumps(self.sacct_doc()).encode()
        if exe == "squeue" and "%A %T" in argv:
            return self.live_text()
        if exe == "squeue":
            if self.phase == "purged":
                return self._read("squeue_after.json")
            name = "after" if self.phase == "after" else self.phase
            return self._read(f"squeue_{name}.json" if name != "after"
                              else "squeue_states_all_after.json")
        if exe == "scontrol" and argv[1:3] == ("show", "config"):
            return b"ClusterName = testcluster\nAccountingStoreFlags = (null)\n"
        if exe == "scontrol" and argv[1:3] == ("show", "node"):
            return self._read(f"scontrol_show_node_{self._snap()}.json")
        raise AssertionError(f"unexpected Slurm call {argv}")


def expected_jobs(release: str = "24.11") -> list[dict[str, Any]]:
    """Jobs that ran, read straight from the recorded sacct JSON (not our parser):
    a node list other than ``None assigned``."""
    doc = json.loads((FIXTURES / release / "sacct_after.json").read_bytes())
    return [{"jobId": j["job_id"], "cluster": j["cluster"], "startTime": j["time"]["start"],
             "stopped": True} for j in doc["jobs"] if j["nodes"] != "None assigned"]
