"""From the config to nats-py's connect options: server URL, TLS context, auth.

Upstream (cc-slurm-adapter-behaviour.md §5) connects to ``nats://<natsServer>:<natsPort>``
and applies user/password, the creds file and the NKey seed file, each if set, so they
can be combined (the server picks what its account needs). TLS is ours: natsTls, or a
CA/client certificate, switches to ``tls://`` and checks the server against the
system's CA store or natsTlsCaFile.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

from cc_slurm_adapter.config import Config
from cc_slurm_adapter.log import redact_url

__all__ = ["ConnectPlan", "connect_plan", "server_url", "tls_context", "uses_tls"]


def uses_tls(config: Config) -> bool:
    return bool(config.nats_tls or config.nats_tls_ca_file or config.nats_tls_cert_file)


def server_url(config: Config) -> str:
    """``nats://host:port`` (``tls://`` with TLS). A natsServer that already is a URL
    (``nats://``, ``tls://``, ``ws://``...) is used as given."""
    server = config.nats_server.strip()
    if "://" in server:
        return server
    host = f"[{server}]" if ":" in server and not server.startswith("[") else server
    scheme = "tls" if uses_tls(config) else "nats"
    return f"{scheme}://{host}:{config.nats_port}"


def tls_context(config: Config) -> ssl.SSLContext | None:
    """The client TLS context, or None without TLS. Raises OSError/ssl.SSLError for an
    unreadable or invalid CA, certificate or key file."""
    if not uses_tls(config):
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=config.nats_tls_ca_file or None)
    if config.nats_tls_cert_file:
        context.load_cert_chain(config.nats_tls_cert_file,
                                config.nats_tls_key_file or None)
    return context


@dataclass(frozen=True)
class ConnectPlan:
    url: str
    kwargs: dict[str, Any]

    @property
    def shown_url(self) -> str:
        """The URL for the log, with any credentials in it masked."""
        return redact_url(self.url)

    @property
    def auth(self) -> str:
        """Which credentials are configured, for the error line (never their values)."""
        names = [name for name, used in (
            ("natsUser/natsPassword", "user" in self.kwargs),
            ("natsCredsFile", "user_credentials" in self.kwargs),
            ("natsNKeySeedFile", "nkeys_seed" in self.kwargs)) if used]
        return ", ".join(names) or "no credentials"


def connect_plan(config: Config) -> ConnectPlan:
    """The URL and the auth/TLS keyword arguments of ``nats.connect``. May raise
    OSError/ssl.SSLError (TLS files), which the publisher reports and retries."""
    kwargs: dict[str, Any] = {}
    if config.nats_user or config.nats_password:
        kwargs["user"] = config.nats_user
        kwargs["password"] = config.nats_password
    if config.nats_creds_file:
        kwargs["user_credentials"] = config.nats_creds_file
    elif config.nats_nkey_seed_file:
        # nats-py signs the server's nonce with one key: with a creds file, the user
        # seed inside it (the user JWT names that key), so the seed file is not used.
        kwargs["nkeys_seed"] = config.nats_nkey_seed_file
    context = tls_context(config)
    if context is not None:
        kwargs["tls"] = context
    return ConnectPlan(server_url(config), kwargs)
