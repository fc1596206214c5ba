"""``cc-slurm-adapter check`` for the NATS keys: files readable, TLS loadable, secrets
not world-readable, and the limits of what NATS delivery can promise."""

from __future__ import annotations

import os
import ssl
import stat

from cc_slurm_adapter.config import Config

from .options import tls_context

__all__ = ["nats_report"]


def _file_problem(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def nats_report(config: Config) -> tuple[list[str], list[str]]:
    """(warnings, notes) for a config with natsServer set; never the files' contents."""
    warnings: list[str] = []
    notes: list[str] = []
    files = (("natsCredsFile", config.nats_creds_file, True),
             ("natsNKeySeedFile", config.nats_nkey_seed_file, True),
             ("natsTlsCaFile", config.nats_tls_ca_file, False),
             ("natsTlsCertFile", config.nats_tls_cert_file, False),
             ("natsTlsKeyFile", config.nats_tls_key_file, True))
    readable = True
    for key, path, secret in files:
        if not path:
            continue
        problem = _file_problem(path)
        if problem:
            warnings.append(f"{key} {path}: cannot read it ({problem}); the daemon will "
                            "keep failing to connect to NATS")
            readable = False
            continue
        mode = os.stat(path).st_mode
        if secret and mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.append(f"{key} {path} holds a secret key but is readable by others "
                            f"(mode {stat.S_IMODE(mode):o}); chmod 600 it")
    if readable:
        try:
            tls_context(config)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
            warnings.append(f"NATS TLS files cannot be loaded: {reason}")
    if config.nats_creds_file and config.nats_nkey_seed_file:
        notes.append("natsCredsFile and natsNKeySeedFile are both set: the creds file's "
                     "own seed signs the login, natsNKeySeedFile is not used")
    if config.nats_password and not config.nats_user:
        warnings.append("natsPassword is set but natsUser is empty")
    if not config.cc_rest_submit_jobs:
        notes.append("ccRestSubmitJobs is false: cc-backend 1.5 reads job events with a "
                     "core NATS subscription, so events published while cc-backend is down "
                     "are lost on its side whatever the adapter does (JetStream keeps them "
                     "in the stream, not in cc-backend); keep REST on where you can")
    return warnings, notes
