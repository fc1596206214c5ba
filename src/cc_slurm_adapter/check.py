"""``cc-slurm-adapter check``: the admin's doctor.

This version validates the config file the way the daemon would and prints every
warning, then looks closer at what the daemon cannot notice before it is too late:

* the hostname regexes (``ignoreHosts``, ``gpuPciAddrs``): one that matches every
  host, or one that is not anchored and so matches more hosts than meant;
* the token (``ccRestJwt``): decoded, not verified (the server's key is not here),
  to warn about an expired or never-expiring token, a signing algorithm
  cc-backend refuses, missing ``sub`` or ``api`` role (cc-backend-contract §3).
  The token itself is never printed; an opaque token (for a proxy) is only noted.

Later versions add Slurm and cc-backend reachability checks.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import math
import time
from typing import TYPE_CHECKING, Any

from cc_slurm_adapter.config import load_config, regex_warnings
from cc_slurm_adapter.log import add_secrets, redact, redact_url

if TYPE_CHECKING:
    from cc_slurm_adapter.cli import CliContext

EXPIRY_WARNING_DAYS = 14
_LAST_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z, the last time a date can show


def _show(text: str) -> str:
    """One printable line: escapes for control characters and lone surrogates."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _b64url_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def _utc(timestamp: float) -> str:
    if not -_LAST_TIMESTAMP <= timestamp <= _LAST_TIMESTAMP:
        return f"{timestamp:g} (not a date)"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def token_report(token: str, *, profile: str, now: float) -> tuple[list[str], list[str]]:
    """(warnings, notes) about ``ccRestJwt``, from its decoded header and payload.

    Never verifies the signature and never returns the token or any part of it.
    """
    if not token:
        return [], []
    parts = token.split(".")
    if len(parts) != 3:
        return [], ["ccRestJwt is not a JWT (not header.payload.signature): it is sent as it "
                    "is, and only cc-backend or a proxy in front of it can tell if it is valid"]
    try:
        header, payload = _b64url_json(parts[0]), _b64url_json(parts[1])
    except (ValueError, UnicodeError, binascii.Error, RecursionError):
        header = payload = None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        return ["ccRestJwt looks like a JWT, but its header or payload is not base64url "
                "JSON: cc-backend will answer 401 (token is malformed)"], []
    warnings: list[str] = []
    notes: list[str] = []
    alg = header.get("alg")
    if alg != "EdDSA":
        warnings.append(f"ccRestJwt is signed with alg {_show(repr(alg))}: cc-backend accepts "
                        f"only EdDSA (Ed25519) and will answer 401")
    sub = payload.get("sub")
    if not isinstance(sub, str) or not sub:
        if profile == "v1.5":
            warnings.append("ccRestJwt has no 'sub' claim: cc-backend 1.5 answers 401 "
                            "\"missing 'sub' claim in JWT\"")
        sub = None
    roles = payload.get("roles")
    role_list = ([r for r in roles if isinstance(r, str)] if isinstance(roles, list) else [])
    if not role_list:
        warnings.append("ccRestJwt carries no roles: cc-backend needs the api role and "
                        "answers 401")
    elif role_list != ["api"] and not {"admin", "api"} <= set(role_list):
        warnings.append(f"ccRestJwt has the roles {_show(json.dumps(role_list))}: cc-backend "
                        f"takes job requests only from a token whose one role is api, or "
                        f"whose roles include both admin and api (401 otherwise)")
    exp = payload.get("exp")
    expiry = _number(exp)
    if exp is None:
        warnings.append("ccRestJwt never expires (no 'exp' claim): if it leaks, it works "
                        "until cc-backend's key pair changes")
    elif expiry is None:
        warnings.append("ccRestJwt has an 'exp' claim that is not a number: cc-backend "
                        "will answer 401")
    elif expiry <= now:
        warnings.append(f"ccRestJwt expired at {_utc(expiry)}: cc-backend answers 401 "
                        f"(token is expired); make a new one")
    elif expiry - now < EXPIRY_WARNING_DAYS * 86400:
        days = (expiry - now) / 86400
        warnings.append(f"ccRestJwt expires at {_utc(expiry)}, in {days:.1f} days")
    nbf = _number(payload.get("nbf"))
    if nbf is not None and nbf > now:
        warnings.append(f"ccRestJwt is not valid before {_utc(nbf)} ('nbf'): cc-backend "
                        f"answers 401 until then")
    who = f"user {_show(repr(sub))}" if sub else "no user"
    until = f"expires {_utc(expiry)}" if expiry is not None and exp is not None else (
        "never expires" if exp is None else "expiry unreadable")
    notes.append(f"ccRestJwt is a JWT for {who}, roles {_show(json.dumps(role_list))}, "
                 f"{until} (decoded, not verified: the signature needs cc-backend's key)")
    return warnings, notes


def run(args: list[str], ctx: CliContext) -> int:
    parser = argparse.ArgumentParser(
        prog="cc-slurm-adapter check",
        description="Validate the config file as the daemon would read it, and decode "
                    "the JWT (without verifying it) to warn about its expiry and roles.")
    parser.parse_args(args)
    loaded = load_config(ctx.config_path, purpose="daemon")
    config = loaded.config
    add_secrets(config.secrets)
    warnings = list(loaded.warnings)
    if config.ignore_hosts is not None:
        warnings += regex_warnings("ignoreHosts", config.ignore_hosts.pattern)
    for pattern, _addresses in config.gpu_pci_addrs:
        warnings += regex_warnings("gpuPciAddrs", pattern.pattern)
    if config.prep_sock_listen_path.kind == "tcp" and not config.prep_sock_token:
        warnings.append(f"prepSockListenPath is {config.prep_sock_listen_path} and "
                        f"prepSockToken is empty: anyone who can reach that port can send "
                        f"Prolog/Epilog events (set the same prepSockToken for the daemon "
                        f"and the hook)")
    token_warnings, notes = token_report(config.cc_rest_jwt, profile=config.cc_rest_profile,
                                         now=time.time())
    if config.nats_enabled:
        from cc_slurm_adapter.nats.checks import nats_report  # imports nats-py: only then

        nats_warnings, nats_notes = nats_report(config)
        token_warnings, notes = token_warnings + nats_warnings, notes + nats_notes
    for line in [f"warning: {w}" for w in warnings + token_warnings] + [
            f"note: {n}" for n in notes]:
        print(_show(redact(line)))
    print(_show(redact(
        f"ok: {config.source} is valid "
        f"(cc-backend {redact_url(config.cc_rest_url)}, profile {config.cc_rest_profile}, "
        f"poll every {config.slurm_poll_interval} s, "
        f"NATS {'on' if config.nats_enabled else 'off'})")))
    return 0
