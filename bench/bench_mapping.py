"""Benchmark the mapping: 100,000 job records → start_job/stop_job payloads.

Two synthetic documents are built from real records in ``tests/fixtures/slurm-json/``
(cycled, with new job ids): a slurmctld one (``squeue --json`` shape, 23.11–25.11
samples with per-node cores and GPU indices) and an accounting one (``sacct --json``
shape, 25.11 slurmdb samples, hostnames only). Each is parsed with ``parse_jobs`` and
every record is mapped with ``map_job`` for cc-backend v1.5, with the test clusters'
topology and a gpuPciAddrs map, as the daemon does in a poll cycle.

Reports, measured in this run: records/s of parsing and of mapping, and the share of
the parse+map time spent in mapping. The mapping must not be the bottleneck of a poll
cycle, i.e. it should cost less than parsing the same records.

Run: ``.venv/bin/python bench/bench_mapping.py [--jobs N] [--profile v1.5]``
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import time
from pathlib import Path

from cc_slurm_adapter.mapping import Site, map_job
from cc_slurm_adapter.profiles import get_profile
from cc_slurm_adapter.slurm import parse_jobs
from cc_slurm_adapter.topology import Topology
from synthetic import build_document  # bench/synthetic.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
CLUSTERS = FIXTURES / "mapping" / "clusters"
CTLD_SEEDS = (
    "25.11/slurmrestd_v0.0.44/slurm-job-gpus-multi-nodes.json",
    "24.11/slurmrestd_v0.0.42/slurm-job-gpus-multi-types.json",
    "23.11/slurmrestd_v0.0.40/slurm-job-timeout.json",
    "23.11/slurmrestd_v0.0.40/slurm-job-failed.json",
    "23.11/slurmrestd_v0.0.40/slurm-job-gpus-per-node.json",
)
DB_SEEDS = ("25.11/slurmrestd_v0.0.44/slurmdb-job-timeout.json",
            "25.11/slurmrestd_v0.0.44/slurmdb-job-completed.json")
GPU_PCI = {r"^gpu\d+$": tuple(f"0000:{i:02x}:00.0" for i in range(4)),
           r"^ia\d+$": tuple(f"0000:{i:02x}:00.0" for i in range(6))}


def make_site(profile: str) -> Site:
    compiled = [(re.compile(p), a) for p, a in GPU_PCI.items()]

    def gpus(host: str) -> tuple[str, ...] | None:
        return next((a for p, a in compiled if p.search(host)), None)

    topology = Topology.from_json([json.loads(p.read_text())
                                   for p in sorted(CLUSTERS.glob("*.cluster.json"))])
    return Site(profile=get_profile(profile), gpu_pci_addresses=gpus,
                is_ignored_host=lambda h: h == "cn004", topology=topology)


def measure(name: str, data: bytes, site: Site) -> tuple[float, float, int]:
    gc.collect()
    t0 = time.perf_counter()
    records = parse_jobs(data).jobs
    t1 = time.perf_counter()
    results = [map_job(r, site) for r in records]
    t2 = time.perf_counter()
    parse_s, map_s = t1 - t0, t2 - t1
    starts = sum(1 for m in results if m.start is not None)
    stops = sum(1 for m in results if m.stop is not None)
    skips = sum(1 for m in results if m.skip_reason)
    n = len(records)
    print(f"{name}: {n:,} records ({len(data) / 1e6:.1f} MB JSON); "
          f"{starts:,} start, {stops:,} stop, {skips:,} skipped")
    print(f"  parse : {parse_s:7.3f} s  {n / parse_s:10,.0f} records/s")
    print(f"  map   : {map_s:7.3f} s  {n / map_s:10,.0f} records/s")
    print(f"  share of parse+map spent in mapping: {100 * map_s / (parse_s + map_s):.1f} %")
    return parse_s, map_s, n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--profile", default="v1.5")
    args = parser.parse_args()
    site = make_site(args.profile)
    ctld = build_document(CTLD_SEEDS, args.jobs, 1_000_000)
    db = build_document(DB_SEEDS, args.jobs, 3_000_000)
    p1, m1, n1 = measure("squeue-shaped (per-node cores, GPUs)", ctld, site)
    p2, m2, n2 = measure("sacct-shaped (hostnames only)", db, site)
    parse_s, map_s, n = p1 + p2, m1 + m2, n1 + n2
    print(f"total: {n:,} records; mapping {n / map_s:,.0f} records/s, "
          f"parsing {n / parse_s:,.0f} records/s; mapping is "
          f"{100 * map_s / (parse_s + map_s):.1f} % of parse+map")
    verdict = "OK: mapping is not the bottleneck" if map_s <= parse_s else (
        "WARNING: mapping is slower than parsing")
    print(verdict)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
