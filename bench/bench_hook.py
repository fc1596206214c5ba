"""Benchmark the Prolog/Epilog hook's wall time against a bare interpreter start.

Every job start and end runs the hook once in slurmctld, so its cost is mostly
Python's start. Measured in this run, interleaved (one round runs each command once,
in turn, so load on the machine hits all of them alike), ``--runs`` rounds (200):

* ``python3 -c pass``            the baseline: the same interpreter, with its site
* ``python3 -I -S -c pass``      the floor: what ``-I -S`` can reach at all
* ``hook.sh``                    the shipped ``contrib/hook.sh`` (``python3 -I -S hook.py``)
* ``python3 -I -S hook.py``      the same without the shell
* ``cc-slurm-adapter``           the console script without ``-daemon`` (what
                                 upstream's docs tell sites to call); only when the
                                 interpreter is this venv's

The hook sends each event to a listener thread that reads it (a live daemon's
socket), in the documented install layout: ``hook.sh`` and ``hook.py`` side by side
with ``venv/bin/python3`` (a link to the interpreter under test) in a temporary
directory; the message count is checked at the end. The environment is the one
slurmctld gives a PrologSlurmctld (only ``SLURM_*`` variables, no ``PATH``).

Prints p50 and p99 in ms, and the ratios of p50 and p99 to the baseline. Aims
(issue 12): p50 <= 1.5x through hook.sh, <= 2.5x through the console script.

Run: ``.venv/bin/python bench/bench_hook.py [--runs N] [--python PATH] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOOK_PY = REPO / "src" / "cc_slurm_adapter" / "hook.py"
HOOK_SH = REPO / "contrib" / "hook.sh"
CONSOLE = Path(sys.prefix) / "bin" / "cc-slurm-adapter"

# What slurmctld 24.11 passes to a PrologSlurmctld (testbed/README.md: only SLURM_*).
ENV = {
    "SLURM_JOB_ID": "4242", "SLURM_SCRIPT_CONTEXT": "prolog_slurmctld",
    "SLURM_CLUSTER_NAME": "bench", "SLURM_JOB_ACCOUNT": "root", "SLURM_JOB_USER": "testuser",
    "SLURM_JOB_UID": "1000", "SLURM_JOB_GID": "1000", "SLURM_JOB_GROUP": "testuser",
    "SLURM_JOB_NAME": "bench-job", "SLURM_JOB_NODELIST": "node[1-2]",
    "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_PARTITION": "debug",
    "SLURM_JOB_CPUS_PER_NODE": "2(x2)", "SLURM_JOB_WORK_DIR": "/home/testuser",
    "SLURM_JOB_START_TIME": "1750000000", "SLURM_JOB_END_TIME": "1750003600",
    "SLURM_JOB_STDOUT": "/home/testuser/slurm-4242.out", "SLURM_JOB_OVERSUBSCRIBE": "NO",
    "SLURM_JOB_RESTART_COUNT": "0", "SLURM_JOB_EXIT_CODE": "0",
    "SLURM_JOB_EXIT_CODE2": "0:0", "SLURM_JOB_DERIVED_EC": "0",
}


class Listener:
    """A UNIX socket that reads every message to its end, like the daemon."""

    def __init__(self, path: Path) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(128)
        self.messages = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
            if data.startswith(b"{"):
                self.messages += 1

    def close(self) -> None:
        self.server.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run_once(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    took = time.perf_counter() - started
    if result.returncode != 0 or result.stderr:
        raise SystemExit(f"{argv[0]} failed ({result.returncode}): "
                         f"{result.stderr.decode(errors='replace')[:300]}")
    return took * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter under test (default: this one)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    python = os.path.abspath(args.python)

    with tempfile.TemporaryDirectory(prefix="ccsa-bench-hook-") as tmp:
        root = Path(tmp)
        (root / "venv" / "bin").mkdir(parents=True)
        os.symlink(python, root / "venv" / "bin" / "python3")
        shutil.copy(HOOK_SH, root / "hook.sh")
        shutil.copy(HOOK_PY, root / "hook.py")
        sock = root / "daemon.sock"
        config = root / "config.json"
        config.write_text(json.dumps({"prepSockConnectPath": f"unix:{sock}"}))
        listener = Listener(sock)

        commands: dict[str, list[str]] = {
            "python3 -c pass": [python, "-c", "pass"],
            "python3 -I -S -c pass": [python, "-I", "-S", "-c", "pass"],
            "hook.sh": ["/bin/sh", str(root / "hook.sh"), "-config", str(config)],
            "python3 -I -S hook.py": [python, "-I", "-S", str(root / "hook.py"),
                                      "-config", str(config)],
        }
        hooks = 2
        if os.path.realpath(python) == os.path.realpath(sys.executable) and CONSOLE.exists():
            commands["cc-slurm-adapter"] = [str(CONSOLE), "-config", str(config)]
            hooks += 1
        times: dict[str, list[float]] = {name: [] for name in commands}
        for argv in commands.values():  # warm the page cache and the .pyc files
            run_once(argv, ENV)
        for _ in range(args.runs):
            for name, argv in commands.items():
                times[name].append(run_once(argv, ENV))
        time.sleep(0.2)
        listener.close()
        expected = hooks * (args.runs + 1)
        if listener.messages != expected:
            raise SystemExit(f"the listener got {listener.messages} messages, "
                             f"expected {expected}")

    base = times["python3 -c pass"]
    base50, base99 = statistics.median(base), percentile(base, 0.99)
    rows = []
    for name, values in times.items():
        p50, p99 = statistics.median(values), percentile(values, 0.99)
        rows.append({"command": name, "p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
                     "p50_ratio": round(p50 / base50, 2), "p99_ratio": round(p99 / base99, 2)})
    if args.json:
        print(json.dumps({"python": python, "runs": args.runs, "results": rows}, indent=2))
        return 0
    version = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    print(f"hook wall time, {args.runs} interleaved runs each, Python {version} ({python})")
    print(f"{'command':<24} {'p50 ms':>8} {'p99 ms':>8} {'p50/base':>9} {'p99/base':>9}")
    for row in rows:
        print(f"{row['command']:<24} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
              f"{row['p50_ratio']:>8.2f}x {row['p99_ratio']:>8.2f}x")
    print("aims: hook.sh p50 <= 1.50x, cc-slurm-adapter p50 <= 2.50x (base: python3 -c pass)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
