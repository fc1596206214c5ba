"""Command line of the cc-backend stand-in.

``python -m cc_slurm_adapter.testing.ccbackend [--host 127.0.0.1] [--port 0]
[--profile v1.5|v1.4|v1.3] [--cluster-config FILE]... [--db FILE] [--nats-mode]
[--nats-url URL [--nats-subject S]]``

When ready it prints one JSON line ``{"url": ..., "token": ...}`` to stdout and
serves until SIGTERM (or SIGINT). ``--print-token`` prints a token for the key
pair kept in ``--db`` and exits (for the demo).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from cc_slurm_adapter.errors import ConfigError
from cc_slurm_adapter.profiles import PROFILES, get_profile

from .clusters import ClusterConfigError, ClusterRegistry, default_cluster_files
from .contract import release_for
from .server import StandInApp, StandInConfig


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cc_slurm_adapter.testing.ccbackend",
                                description="A faithful stand-in for cc-backend's job API.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--profile", default="v1.5", choices=sorted(PROFILES))
    p.add_argument("--cluster-config", action="append", default=[], metavar="FILE",
                   help="a cc-backend cluster.json (repeatable; default: testcluster)")
    p.add_argument("--db", default=":memory:", help="SQLite file (default: in memory)")
    p.add_argument("--nats-mode", action="store_true",
                   help="REST start/stop not mounted (cc-backend with api-subjects)")
    p.add_argument("--nats-url", default="", metavar="URL",
                   help="take job events from this NATS server (implies --nats-mode)")
    p.add_argument("--nats-subject", default="jobs", help="job-event subject (default: jobs)")
    p.add_argument("--commit-interval", type=float, default=120.0,
                   help="v1.5 job_cache commit period in seconds (0: no cache)")
    p.add_argument("--print-token", action="store_true",
                   help="print a token with the api role and exit")
    return p


async def _serve(app: StandInApp, host: str, port: int) -> None:
    await app.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"url": app.url, "token": app.default_token()}), flush=True)
    try:
        await stop.wait()
    finally:
        await app.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        profile = get_profile(args.profile)
        args.nats_mode = args.nats_mode or bool(args.nats_url)
        if args.nats_mode and not release_for(profile.name).nats_job_api:
            raise ConfigError(f"--nats-mode needs a profile with NATS job API "
                              f"(v1.5), not {profile.name}")
        clusters = ClusterRegistry.from_files(args.cluster_config or default_cluster_files())
    except (ConfigError, ClusterConfigError) as exc:
        print(f"ccbackend stand-in: {exc}", file=sys.stderr)
        return 2
    config = StandInConfig(profile=profile, nats_mode=args.nats_mode,
                           commit_interval=args.commit_interval, db_path=args.db,
                           nats_url=args.nats_url, nats_subject=args.nats_subject)
    if args.print_token:
        app = StandInApp(config, clusters)
        print(app.default_token())
        app.store.close()
        return 0
    app = StandInApp(config, clusters)
    asyncio.run(_serve(app, args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
