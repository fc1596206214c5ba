#!/usr/bin/env python3
"""Record the raw CLI output of a fixed job mix on real Slurm, per testbed release.

    testbed/record_fixtures.py [RELEASE ...]      (default: 22.05 24.11 26.05, in parallel)

Needs root and installed releases (testbed/install.sh). Each release's cluster is brought
up with --fresh (so job ids start at 1), the job mix runs, and the outputs are written to
tests/fixtures/slurm/<release>/ together with jobs.json (job name -> id, what was asked)
and meta.json (exact Slurm version, capture times). The cluster is taken down afterwards.
Stdlib only (plus the testbed driver), so any python3 >= 3.11 can run it. Takes ~2 minutes
because of the TIMEOUT job (-t 1 ends 60-90 s after its start).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from cc_slurm_adapter.testing.slurm_testbed import (  # noqa: E402
    FINAL_STATES,
    SlurmTestbed,
    TestbedError,
    find_sacct_job,
    sacct_state,
    selected_releases,
)

OUT = REPO / "tests" / "fixtures" / "slurm"

# name -> (sbatch arguments, submitting user). Submitted in this order.
JOB_MIX: list[tuple[str, list[str], str]] = [
    ("gpu", ["--gres=gpu:1", "--wrap", "sleep 20"], "testuser"),
    ("cancelled", ["--wrap", "sleep 300"], "testuser"),
    ("timeout", ["-t", "1", "--wrap", "sleep 300"], "testuser"),
    ("single", ["--wrap", "sleep 15"], "testuser"),
    ("twonode", ["-N2", "--wrap", "srun sleep 15"], "root"),
    ("array", ["--array=1-3", "--wrap", "sleep 3"], "testuser"),
    ("fail3", ["--wrap", "exit 3"], "testuser"),
    ("gpu2node", ["-N2", "--gres=gpu:2", "--wrap", "srun sleep 15"], "root"),
    ("pending", ["-N2", "--exclusive", "--wrap", "sleep 3"], "testuser"),
    ("held", ["--hold", "--wrap", "true"], "testuser"),
]
# submitted after the `after` snapshot, to catch slurmdbd's placeholder record
QUICK: tuple[str, list[str], str] = ("quick", ["--wrap", "true"], "testuser")

DESCRIPTIONS = {
    "gpu": "1 node, --gres=gpu:1, sleep 20 -> COMPLETED",
    "cancelled": "sleep 300, scancel by testuser while RUNNING -> CANCELLED",
    "timeout": "-t 1, sleep 300 -> TIMEOUT (60-90 s after start)",
    "single": "1 node, sleep 15 -> COMPLETED",
    "twonode": "-N2, srun sleep 15 (a step on both nodes), as root -> COMPLETED",
    "array": "--array=1-3, sleep 3 -> 3 COMPLETED tasks (job ids: see the sacct files)",
    "fail3": "exit 3 -> FAILED, exit code 3",
    "gpu2node": "-N2 --gres=gpu:2 (both GPUs of both nodes), srun sleep 15, as root -> COMPLETED",
    "pending": "-N2 --exclusive, sleep 3: PENDING (Resources) until the timeout job ends",
    "held": "--hold: PENDING (JobHeldUser), cancelled before ever starting -> CANCELLED",
    "quick": "true, submitted last; sacct polled every 50 ms for a placeholder record",
}


class Recorder:
    def __init__(self, tb: SlurmTestbed) -> None:
        self.tb = tb
        self.dir = OUT / tb.release
        self.files: dict[str, str] = {}
        self.start = time.time()
        self.jobs: dict[str, int] = {}
        self.json_scontrol = False
        self.placeholder_seen = False

    def log(self, msg: str) -> None:
        print(f"[record {self.tb.release} {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def save(self, name: str, what: str, *cmd: str) -> None:
        proc = self.tb.run(*cmd, check=False, timeout=120)
        if proc.returncode != 0:
            raise TestbedError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()}")
        (self.dir / name).write_text(proc.stdout)
        self.files[name] = f"`{' '.join(cmd)}` {what}"

    def snapshot(self, phase: str, what: str) -> None:
        self.log(f"snapshot {phase}")
        ids = ",".join(str(i) for i in self.jobs.values())
        self.save(f"squeue_{phase}.json", what, "squeue", "--json")
        if phase == "after":
            # from 23.02 plain `squeue --json` leaves out finished jobs ("Zero jobs to dump")
            self.save("squeue_states_all_after.json", what, "squeue", "--json", "--states=all")
        self.save(f"sacct_{phase}.json", what, "sacct", "--json", "-j", ids)
        self.save(f"sinfo_{phase}.json", what, "sinfo", "--json")
        for kind in ("job", "node"):
            self.save(f"scontrol_show_{kind}_d_o_{phase}.txt", what,
                      "scontrol", "show", kind, "-d", "-o")
            if self.json_scontrol:
                self.save(f"scontrol_show_{kind}_{phase}.json", what,
                          "scontrol", "show", kind, "--json")

    def wait(self, name: str, states: set[str], timeout: float = 180) -> None:
        self.tb.wait_state(self.jobs[name], states, timeout=timeout)

    def all_final(self) -> bool:
        out = self.tb.run("squeue", "-h", "-o", "%i %T").stdout
        return not any(line.split()[1] not in FINAL_STATES for line in out.splitlines())

    def placeholder(self) -> None:
        """Catch the placeholder sacct record of a short job, if this release makes one."""
        job_id = self.tb.submit(["-J", "quick", "--wrap", "true"], user="testuser")
        self.jobs["quick"] = job_id
        deadline = time.monotonic() + 20
        seen = False
        while time.monotonic() < deadline:
            proc = self.tb.run("sacct", "--json", "-j", str(job_id))
            job = find_sacct_job(json.loads(proc.stdout), job_id)
            if job is not None and job.get("name") != "quick" and not seen:
                (self.dir / "sacct_quick_placeholder.json").write_text(proc.stdout)
                self.files["sacct_quick_placeholder.json"] = (
                    f"`sacct --json -j {job_id}` of the `quick` job (`--wrap true`) while "
                    "slurmdbd still has only its placeholder record (name `allocation`)"
                )
                seen = True
            if job is not None and job.get("name") == "quick" and sacct_state(job) in FINAL_STATES:
                (self.dir / "sacct_quick_final.json").write_text(proc.stdout)
                self.files["sacct_quick_final.json"] = (
                    f"`sacct --json -j {job_id}`: the complete record of the `quick` job"
                )
                break
            time.sleep(0.05)
        self.placeholder_seen = seen
        self.log(f"placeholder sacct record seen: {seen}")

    def record(self) -> None:
        tb = self.tb
        self.log("fresh cluster")
        tb.up(fresh=True)
        version = tb.version
        major, minor = (int(x) for x in version.split(".")[:2])
        self.json_scontrol = (major, minor) >= (23, 2)
        if self.dir.exists():
            for old in self.dir.iterdir():
                old.unlink()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.start = time.time()

        for name, args, user in JOB_MIX:
            self.jobs[name] = tb.submit(["-J", name, *args], user=user)
        self.log(f"submitted {self.jobs}")

        self.wait("gpu", {"RUNNING"})
        self.wait("cancelled", {"RUNNING"})
        self.snapshot("running1", "while gpu, cancelled and timeout run (pending/held queued)")
        tb.cancel(self.jobs["cancelled"], user="testuser")

        self.wait("gpu2node", {"RUNNING"})
        self.snapshot("running2", "while gpu2node runs (pending/held queued)")

        tb.cancel(self.jobs["held"], user="testuser")
        deadline = time.monotonic() + 240
        while not self.all_final():
            if time.monotonic() > deadline:
                raise TestbedError("jobs did not finish within 240 s", tb.log_tail(10))
            time.sleep(1)
        for name in self.jobs:
            tb.wait_sacct(self.jobs[name], timeout=60, name=name)
        self.snapshot("after", "after every job has ended (still within MinJobAge)")

        self.placeholder()

        conf = tb.state_dir / "etc"
        (self.dir / "slurm.conf.txt").write_text((conf / "slurm.conf").read_text())
        (self.dir / "gres.conf.txt").write_text((conf / "gres.conf").read_text())
        self.files["slurm.conf.txt"] = "the slurm.conf used (generated by testbed/up.sh)"
        self.files["gres.conf.txt"] = "the gres.conf used"
        hook = (tb.log_dir / "prep-hook.log").read_text(errors="replace")
        kept = [
            line for line in hook.splitlines()
            if line.startswith(("===", "SLURM_", "CUDA_", "GPU_"))
        ]
        (self.dir / "prep_hook.log").write_text("\n".join(kept) + "\n")
        self.files["prep_hook.log"] = (
            "what PrologSlurmctld/EpilogSlurmctld got for each job: a header per call "
            "(context, job id) and the SLURM_* environment"
        )
        meta: dict[str, Any] = {
            "release": tb.release,
            "slurm_version": version,
            "scontrol_version": tb.run("scontrol", "--version").stdout.strip(),
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.start)),
            "cluster": tb.cluster,
            "nodes": {
                "node1": "Sockets=1 CoresPerSocket=2 ThreadsPerCore=1 CPUs=2 Gres=gpu:tesla:2",
                "node2": "Sockets=2 CoresPerSocket=2 ThreadsPerCore=2 CPUs=8 Gres=gpu:tesla:2",
            },
            "scontrol_json": self.json_scontrol,
            "sacct_placeholder_seen": self.placeholder_seen,
        }
        if self.json_scontrol:
            listing = tb.run("sacct", "--json=list", check=False)
            meta["data_parsers"] = sorted(
                re.findall(r"data_parser/(v[\d.]+)", listing.stdout + listing.stderr)
            )
        (self.dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        jobs = {
            name: {"job_id": self.jobs[name], "user": user, "sbatch": ["-J", name, *args],
                   "what": DESCRIPTIONS[name]}
            for name, args, user in [*JOB_MIX, QUICK]
        }
        (self.dir / "jobs.json").write_text(json.dumps(jobs, indent=2) + "\n")
        (self.dir / "files.json").write_text(json.dumps(self.files, indent=2) + "\n")
        self.log(f"done in {time.time() - self.start:.0f}s: Slurm {version}")


README_HEAD = """\
# Raw Slurm output recorded on the project's testbed (tests/fixtures/slurm)

Recorded by `testbed/record_fixtures.py` (see `testbed/README.md`) on fresh testbed
clusters: `testcluster`, partition `debug`, `node1` (Sockets=1 CoresPerSocket=2
ThreadsPerCore=1, CPUs=2) and `node2` (Sockets=2 CoresPerSocket=2 ThreadsPerCore=2,
CPUs=8), each with `Gres=gpu:tesla:2` (fake devices), `AccountingStorageTRES=gres/gpu,
gres/gpu:tesla`, `select/cons_tres` + `CR_Core_Memory`, `MinJobAge=300`. Jobs were
submitted by `testuser` (account `testacct`) unless marked root. These are our own
outputs (MIT, like the rest of the repository). Re-record with
`sudo .venv/bin/python testbed/record_fixtures.py [RELEASE...]` (~2 minutes).

Every file is the unmodified stdout of the command named below, run with the release's
own client against its own cluster. The job ids are the same on every release (fresh
clusters, same submission order); array tasks get further ids (see the sacct files).
"""


def write_readme() -> None:
    lines = [README_HEAD, "## Releases\n", "| dir | Slurm | recorded (UTC) | scontrol --json | "
             "data_parser plugins |", "|---|---|---|---|---|"]
    files: dict[str, str] = {}
    jobs: dict[str, Any] = {}
    for meta_path in sorted(OUT.glob("*/meta.json")):
        meta = json.loads(meta_path.read_text())
        lines.append(
            f"| `{meta_path.parent.name}/` | {meta['slurm_version']} | {meta['recorded_at']} | "
            f"{'yes' if meta['scontrol_json'] else 'no (text only)'} | "
            f"{', '.join(meta.get('data_parsers', [])) or '-'} |"
        )
        files.update(json.loads((meta_path.parent / "files.json").read_text()))
        jobs = json.loads((meta_path.parent / "jobs.json").read_text())
    lines += ["", "## The job mix (`jobs.json`)", "", "| job id | name | user | sbatch | what |",
              "|---|---|---|---|---|"]
    for name, job in jobs.items():
        lines.append(f"| {job['job_id']} | `{name}` | {job['user']} | "
                     f"`{' '.join(job['sbatch'])}` | {job['what']} |")
    lines += [
        "",
        "Snapshots: `running1` = while `gpu` (GPU IDX 0 on node1), `cancelled`, `timeout` "
        "and `single` run and the rest queue; `running2` = while `gpu2node` runs (IDX 0-1 "
        "on both nodes) with `pending` and `held` queued; `after` = every job has ended "
        "(`held` was cancelled without starting). `gres_detail` with GPU indexes is only "
        "present in the running snapshots.",
        "",
        "## Files (in each release directory)",
        "",
        "| file | what |",
        "|---|---|",
        "| `meta.json` | release, exact Slurm version, recording time, node layout, data_parser "
        "plugins |",
        "| `jobs.json` | job name -> job id, submitting user, sbatch arguments, expected outcome |",
        "| `sacct_quick_*.json` | only where slurmdbd showed a placeholder record first "
        "(`sacct_placeholder_seen` in meta.json; 22.05) |",
        "| `files.json` | this table, for that release (scontrol --json files only from 23.02) |",
    ]
    for name in sorted(files):
        lines.append(f"| `{name}` | {files[name]} |")
    (OUT / "README.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1].strip())
    parser.add_argument("releases", nargs="*", help="default: $CCSA_SLURM_RELEASES or all")
    parser.add_argument("--keep-up", action="store_true", help="leave the clusters running")
    ns = parser.parse_args()
    releases = selected_releases(",".join(ns.releases) if ns.releases else None)
    failures: list[str] = []

    def one(release: str) -> None:
        tb = SlurmTestbed(release)
        lock = tb.session_lock()
        try:
            # exclusive: no test session may use (or stop) the cluster while we record
            lock.acquire(exclusive=True, timeout=1800)
            Recorder(tb).record()
        except Exception:
            failures.append(release)
            traceback.print_exc()
        finally:
            if not ns.keep_up:
                try:
                    tb.down()
                except TestbedError as exc:
                    print(exc, file=sys.stderr)
            lock.release()

    threads = [threading.Thread(target=one, args=(r,)) for r in releases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    write_readme()
    if failures:
        print(f"recording failed for: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
