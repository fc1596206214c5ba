"""``cc-slurm-adapter check``: the admin's doctor.

This first version validates the config file the way the daemon would and
prints every warning. Later versions add Slurm, cc-backend and token checks.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from cc_slurm_adapter.config import load_config

if TYPE_CHECKING:
    from cc_slurm_adapter.cli import CliContext


def run(args: list[str], ctx: CliContext) -> int:
    parser = argparse.ArgumentParser(
        prog="cc-slurm-adapter check",
        description="Validate the config file as the daemon would read it.")
    parser.parse_args(args)
    loaded = load_config(ctx.config_path, purpose="daemon")
    for warning in loaded.warnings:
        print(f"warning: {warning}")
    config = loaded.config
    print(f"ok: {config.source} is valid "
          f"(cc-backend {config.cc_rest_url}, profile {config.cc_rest_profile}, "
          f"poll every {config.slurm_poll_interval} s, "
          f"NATS {'on' if config.nats_enabled else 'off'})")
    return 0
