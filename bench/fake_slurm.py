"""A simulated Slurm 24.11 cluster as fake commands (``sacct``, ``squeue``, ``scontrol``,
``sacctmgr``) for benchmarks that run the real daemon process.

Every answer is built from records recorded on the 24.11.5 testbed
(tests/fixtures/slurm/24.11: job 4 "single" running and completed, node2), copied with a
new job id, node name and times; the ``meta`` blocks are the recorded ones. The cluster
is a pure function of the clock, so the commands keep no state:

* job ``k`` (id ``FAKE_FIRST_ID + k``) starts at ``FAKE_T0 + k / FAKE_RATE`` on node
  ``node{k % FAKE_NODES + 1:04d}`` and runs ``FAKE_RUNNING / FAKE_RATE`` seconds, so
  ``FAKE_RUNNING`` jobs run at any time; the next ``FAKE_PENDING`` jobs are pending;
* slurmctld holds running and pending jobs and those that ended within 300 s
  (MinJobAge); ``sacct`` answers windows (``-S``/``-E``, jobs that ran only, as
  ``--nnodes=1-`` asks) and ``-j`` lists from the same model.

Each call appends ``{"t": time, "argv": [...]}`` to ``$FAKE_SLURM_LOG``.

``python bench/fake_slurm.py install DIR`` writes the four commands into DIR.
"""

from __future__ import annotations

import calendar
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "slurm" / "24.11"
COMMANDS = ("sacct", "squeue", "scontrol", "sacctmgr")
MIN_JOB_AGE = 300
_START, _SUBMIT, _END, _LIMIT = "1795629611", "1795629609", "1795629626", "1827165611"
_JOB_SENTINEL = 987654321


class Model:
    def __init__(self, env: dict[str, str]) -> None:
        self.t0 = float(env["FAKE_T0"])
        self.rate = float(env["FAKE_RATE"])
        self.running = int(env["FAKE_RUNNING"])
        self.pending = int(env["FAKE_PENDING"])
        self.nodes = int(env.get("FAKE_NODES", "1000"))
        self.first = int(env.get("FAKE_FIRST_ID", "10000000"))
        self.duration = self.running / self.rate

    def start(self, k: int) -> int:
        return int(self.t0 + k / self.rate)

    def end(self, k: int) -> int:
        return int(self.t0 + k / self.rate + self.duration)

    def started(self, now: float) -> int:
        """How many jobs have started by ``now`` (k < this)."""
        return max(0, math.floor((now - self.t0) * self.rate) + 1)

    def node(self, k: int) -> str:
        return f"node{k % self.nodes + 1:04d}"

    def state(self, k: int, now: float) -> str:
        if self.start(k) > now:
            return "PENDING"
        return "RUNNING" if self.end(k) > now else "COMPLETED"


def _template(doc_name: str, job_id: int = 4) -> tuple[str, dict[str, Any]]:
    doc = json.loads((FIXTURES / doc_name).read_bytes())
    job = next(j for j in doc["jobs"] if j["job_id"] == job_id)
    job["job_id"] = _JOB_SENTINEL
    text = json.dumps(job).replace('"node2"', '"@N@"').replace(str(_JOB_SENTINEL), "@J@")
    for number, mark in ((_START, "@S@"), (_SUBMIT, "@Q@"), (_END, "@E@"), (_LIMIT, "@L@")):
        text = text.replace(number, mark)
    return text, doc["meta"]


def _fill(text: str, model: Model, k: int, state: str | None = None) -> str:
    start = model.start(k)
    out = (text.replace("@J@", str(model.first + k)).replace("@N@", model.node(k))
           .replace("@S@", str(start)).replace("@Q@", str(start - 2))
           .replace("@E@", str(model.end(k))).replace("@L@", str(start + 31536000)))
    if state is not None:
        out = out.replace('"RUNNING"', f'"{state}"')
    return out


def _document(jobs: list[str], meta: dict[str, Any]) -> str:
    return ('{"jobs": [' + ", ".join(jobs) + '], "meta": ' + json.dumps(meta)
            + ', "errors": [], "warnings": []}')


def _epoch(text: str) -> float:
    # the daemon's runner pins TZ=UTC: -S/-E are UTC
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%S")))


def _ids(argv: list[str], model: Model) -> list[int]:
    raw = argv[argv.index("-j") + 1]
    return [int(x) - model.first for x in raw.split(",") if x.isdigit()
            and int(x) >= model.first]


def sacct(argv: list[str], model: Model, now: float) -> str:
    if "--json=list" in argv:
        return "data_parser/v0.0.40\ndata_parser/v0.0.41\ndata_parser/v0.0.42\n"
    running, meta = _template("sacct_running1.json")
    done, _ = _template("sacct_after.json")
    if "-j" in argv:
        ks = [k for k in _ids(argv, model) if model.start(k) <= now]
    else:
        s, e = _epoch(argv[argv.index("-S") + 1]), _epoch(argv[argv.index("-E") + 1])
        # jobs that ran in [s, e]: started by e (and by now), ended at or after s
        last = min(model.started(min(e, now)), model.started(now))
        first = max(0, math.floor((s - model.t0 - model.duration) * model.rate))
        ks = [k for k in range(first, last) if model.end(k) >= s and model.start(k) <= e]
    jobs = [_fill(running if model.end(k) > now else done, model, k) for k in ks]
    return _document(jobs, meta)


def squeue(argv: list[str], model: Model, now: float) -> str:
    n = model.started(now)
    if "%A %T" in argv:
        lines = [f"{model.first + k} {model.state(k, now)}"
                 for k in range(max(0, n - model.running), n + model.pending)
                 if model.end(k) > now]
        return "\n".join(lines) + "\n"
    text, meta = _template("squeue_running1.json")
    wanted = _ids(argv, model) if "-j" in argv else list(range(max(0, n - model.running), n))
    jobs = []
    for k in wanted:
        if model.start(k) > now or model.end(k) + MIN_JOB_AGE < now:
            continue
        jobs.append(_fill(text, model, k, None if model.end(k) > now else "COMPLETED"))
    return _document(jobs, meta)


def scontrol(argv: list[str], model: Model) -> str:
    if argv[:2] == ["show", "config"]:
        return "ClusterName = testcluster\nAccountingStoreFlags = (null)\n"
    if argv[:2] == ["show", "node"]:
        doc = json.loads((FIXTURES / "scontrol_show_node_running1.json").read_bytes())
        node = json.dumps(next(n for n in doc["nodes"] if n["name"] == "node2"))
        nodes = [node.replace('"node2"', f'"node{i:04d}"') for i in range(1, model.nodes + 1)]
        return ('{"nodes": [' + ", ".join(nodes) + '], "last_update": '
                + json.dumps(doc["last_update"]) + ', "meta": ' + json.dumps(doc["meta"])
                + ', "errors": [], "warnings": []}')
    raise SystemExit(f"fake scontrol: unsupported {argv}")


def main(name: str, argv: list[str]) -> int:
    now = time.time()
    log = os.environ.get("FAKE_SLURM_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"t": now, "argv": [name, *argv]}) + "\n")
    model = Model(dict(os.environ))
    if name == "sacct":
        out = sacct(argv, model, now)
    elif name == "squeue":
        out = squeue(argv, model, now)
    elif name == "scontrol":
        out = scontrol(argv, model)
    elif name == "sacctmgr":
        out = "testcluster\n"
    else:
        raise SystemExit(f"fake slurm: unknown command {name}")
    sys.stdout.write(out)
    return 0


def install(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        path = directory / name
        path.write_text(f"#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} "
                        f"{name} \"$@\"\n")
        path.chmod(0o755)


if __name__ == "__main__":
    if sys.argv[1] == "install":
        install(Path(sys.argv[2]))
        raise SystemExit(0)
    raise SystemExit(main(sys.argv[1], sys.argv[2:]))
