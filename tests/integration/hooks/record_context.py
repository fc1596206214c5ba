#!/usr/bin/env python3
"""PrologSlurmctld/EpilogSlurmctld test hook (stdlib only).

Runs inside the release root (the chroot for 24.11/26.05, with the chroot's python3; the
checkout is bind-mounted read-only there). Writes what it saw to
$SLURM_JOB_WORK_DIR/hook-<job id>-<context>.json.
"""

import json
import os
import sys

context = os.environ.get("SLURM_SCRIPT_CONTEXT", "unknown")
job_id = os.environ.get("SLURM_JOB_ID", "unknown")
work_dir = os.environ.get("SLURM_JOB_WORK_DIR", "/tmp")
record = {
    "python": sys.version.split()[0],
    "executable": sys.executable,
    "script": os.path.abspath(__file__),
    "env": {k: v for k, v in os.environ.items() if k.startswith("SLURM_")},
}
with open(os.path.join(work_dir, f"hook-{job_id}-{context}.json"), "w") as out:
    json.dump(record, out, indent=1, sort_keys=True)
