"""The config file: upstream's keys and defaults, plus a few of our own, validated.

The file is the same JSON object that the Go cc-slurm-adapter reads, so a site
can swap binaries and keep its config. Every key is described once, in
:data:`KEYS`; parsing, the README's reference table, unknown-key suggestions and
``cc-slurm-adapter check`` all read that table.

Where upstream's documentation and its code disagree (see the behaviour notes
§2.2, §7.2 and §8.4), both spellings are accepted; when both are given, the
spelling upstream's *code* reads wins and a warning says so. Where the docs'
example and the docs' table disagree on a default, the table wins
(``slurmQueryMaxRetries`` is 10, ``lastRunPath`` is ``.../lastrun``).

Errors are :class:`~cc_slurm_adapter.errors.ConfigError` with one line that
names the file and the key. Secret values (the JWT, the NATS password) never
appear in a message: a value is only quoted for keys that are not secret.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cc_slurm_adapter.errors import ConfigError
from cc_slurm_adapter.hook import SocketAddress, parse_socket_address

DEFAULT_CONFIG_PATH = "/etc/cc-slurm-adapter/config.json"

Purpose = Literal["daemon", "hook", "tool"]
"""What the config is loaded for: the daemon needs everything, the hook only its
socket address, and the admin tools (``check``, ``convert``, ``status``) take
what is there."""

PROFILES = ("v1.5", "v1.4", "v1.3")


@dataclass(frozen=True)
class Key:
    """One config key: its JSON name, type, default and meaning."""

    name: str
    kind: Literal["str", "int", "bool", "regex", "gpumap", "socket", "url", "profile"]
    default: Any
    doc: str
    upstream: bool = True
    secret: bool = False
    minimum: int | None = None
    maximum: int | None = None
    attr: str = ""


KEYS: tuple[Key, ...] = (
    Key("pidFilePath", "str", "/run/cc-slurm-adapter/daemon.pid",
        "PID file of the daemon; a second daemon refuses to start while it names a live process."),
    Key("prepSockListenPath", "socket", "/run/cc-slurm-adapter/daemon.sock",
        "Where the daemon listens for Prolog/Epilog events: PATH, unix:PATH or tcp:HOST:PORT."),
    Key("prepSockConnectPath", "socket", "/run/cc-slurm-adapter/daemon.sock",
        "Where the Prolog/Epilog hook connects to the daemon (same syntax)."),
    Key("lastRunPath", "str", "/var/lib/cc-slurm-adapter/lastrun",
        "Upstream's sync cursor (file mtime). Read once to carry on where upstream stopped; "
        "our cursor lives in statePath."),
    Key("slurmPollInterval", "int", 60,
        "Seconds between two full syncs with Slurm (values below 1 become 1).", minimum=0),
    Key("slurmQueryDelay", "int", 1,
        "Seconds to wait after a Prolog/Epilog event before querying Slurm (below 1 becomes 1).",
        minimum=0),
    Key("slurmQueryMaxSpan", "int", 604800,
        "How far back (seconds) a catch-up after downtime may reach.", minimum=1),
    Key("slurmMaxRetries", "int", 10,
        "Slurm query attempts for a Prolog/Epilog event. Upstream's docs call it "
        "slurmQueryMaxRetries; both spellings work.", minimum=0),
    Key("ccPollInterval", "int", 21600,
        "Seconds between two full comparisons with cc-backend's list of running jobs.", minimum=1),
    Key("ccRestSubmitJobs", "bool", True,
        "Send start_job/stop_job to cc-backend's REST API (false: NATS only)."),
    Key("ccRestUrl", "url", None,
        "Base URL of cc-backend, without a trailing slash. Required for the daemon."),
    Key("ccRestJwt", "str", None,
        "API token of cc-backend (a JWT with the api role). Required for the daemon.",
        secret=True),
    Key("gpuPciAddrs", "gpumap", {},
        "Hostname regex to the list of GPU PCI addresses in NVML order; the first match wins."),
    Key("ignoreHosts", "regex", "",
        "Regex of hostnames left out of jobs; a job with no host left is not sent."),
    Key("natsServer", "str", "", "NATS server host name; empty disables NATS."),
    Key("natsPort", "int", 4222, "NATS server port.", minimum=1, maximum=65535),
    Key("natsSubject", "str", "jobs", "NATS subject for job events."),
    Key("natsUser", "str", "", "NATS user name."),
    Key("natsPassword", "str", "", "NATS password.", secret=True),
    Key("natsCredsFile", "str", "", "NATS credentials file."),
    Key("natsNKeySeedFile", "str", "", "NATS NKey seed file."),
    # Our own keys: each has a default that works without being set.
    Key("statePath", "str", "/var/lib/cc-slurm-adapter/state.db",
        "SQLite state store: job states, the outbox, resource snapshots, the sync cursor.",
        upstream=False),
    Key("ccRestProfile", "profile", "v1.5",
        "cc-backend release the payloads are shaped for: v1.5, v1.4 or v1.3.", upstream=False),
    Key("ccRestTimeout", "int", 30, "Seconds before an HTTP request to cc-backend gives up.",
        upstream=False, minimum=1),
    Key("ccRestSendTags", "bool", False,
        "Send job tags with start_job (off: with tags cc-backend 1.5 bypasses its job cache).",
        upstream=False),
    Key("slurmCommandTimeout", "int", 120, "Seconds before a Slurm command is killed.",
        upstream=False, minimum=1),
)

KEYS_BY_NAME: dict[str, Key] = {k.name: k for k in KEYS}

ALIASES: dict[str, str] = {
    # upstream's docs spell it slurmQueryMaxRetries (default 5 in the example, 10 in the
    # table); upstream's code reads slurmMaxRetries (default 10). The code's spelling wins.
    "slurmQueryMaxRetries": "slurmMaxRetries",
}

IGNORED_KEYS: dict[str, str] = {
    "ipcSockPath": "was removed upstream; use prepSockListenPath and prepSockConnectPath",
    "slurmMaxConcurrent": "appears in upstream's docs but was never read by any release; ignored",
}


def _attr(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower().replace("n_key", "nkey")


@dataclass(frozen=True)
class Config:
    """The validated configuration. Secrets are hidden from ``repr``."""

    pid_file_path: str = "/run/cc-slurm-adapter/daemon.pid"
    prep_sock_listen_path: SocketAddress = field(
        default_factory=lambda: parse_socket_address("/run/cc-slurm-adapter/daemon.sock"))
    prep_sock_connect_path: SocketAddress = field(
        default_factory=lambda: parse_socket_address("/run/cc-slurm-adapter/daemon.sock"))
    last_run_path: str = "/var/lib/cc-slurm-adapter/lastrun"
    slurm_poll_interval: int = 60
    slurm_query_delay: int = 1
    slurm_query_max_span: int = 604800
    slurm_max_retries: int = 10
    cc_poll_interval: int = 21600
    cc_rest_submit_jobs: bool = True
    cc_rest_url: str = ""
    cc_rest_jwt: str = field(default="", repr=False)
    gpu_pci_addrs: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = ()
    ignore_hosts: re.Pattern[str] | None = None
    nats_server: str = ""
    nats_port: int = 4222
    nats_subject: str = "jobs"
    nats_user: str = ""
    nats_password: str = field(default="", repr=False)
    nats_creds_file: str = ""
    nats_nkey_seed_file: str = ""
    state_path: str = "/var/lib/cc-slurm-adapter/state.db"
    cc_rest_profile: str = "v1.5"
    cc_rest_timeout: int = 30
    cc_rest_send_tags: bool = False
    slurm_command_timeout: int = 120
    source: str = "<defaults>"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never be logged (for the log redaction filter)."""
        return tuple(s for s in (self.cc_rest_jwt, self.nats_password) if s)

    @property
    def nats_enabled(self) -> bool:
        return bool(self.nats_server)

    def gpu_pci_addresses(self, hostname: str) -> tuple[str, ...] | None:
        """The PCI addresses of the first gpuPciAddrs regex that matches, or None."""
        for pattern, addresses in self.gpu_pci_addrs:
            if pattern.search(hostname):
                return addresses
        return None

    def is_ignored_host(self, hostname: str) -> bool:
        return bool(self.ignore_hosts and self.ignore_hosts.search(hostname))


@dataclass
class LoadedConfig:
    config: Config
    warnings: list[str] = field(default_factory=list)


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _compile(pattern: str, path: str, key: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"invalid regular expression {pattern!r}: {exc}",
                          path=path, key=key) from None


def _convert(key: Key, value: Any, path: str) -> Any:
    """Check one value's type and range; return it in the form Config stores."""

    def fail(message: str) -> ConfigError:
        return ConfigError(message, path=path, key=key.name)

    if key.kind == "bool":
        if not isinstance(value, bool):
            raise fail(f"expected true or false, got {_type_name(value)}")
        return value
    if key.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail(f"expected a whole number, got {_type_name(value)}")
        if isinstance(value, float):
            if not value.is_integer():
                raise fail(f"expected a whole number, got {value}")
            value = int(value)
        if key.minimum is not None and value < key.minimum:
            what = "negative" if value < 0 else "too small"
            raise fail(f"must be at least {key.minimum}, got {value} ({what})")
        if key.maximum is not None and value > key.maximum:
            raise fail(f"must be at most {key.maximum}, got {value}")
        return value
    # Every other kind is a string or built from strings.
    if key.kind == "gpumap":
        if not isinstance(value, dict):
            raise fail(f"expected an object of hostname regex to PCI address list, "
                       f"got {_type_name(value)}")
        entries = []
        for regex, addresses in value.items():
            if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
                raise fail(f"entry {regex!r}: expected a list of PCI address strings, "
                           f"got {_type_name(addresses)}")
            entries.append((_compile(regex, path, key.name), tuple(addresses)))
        return tuple(entries)
    if not isinstance(value, str):
        raise fail(f"expected a string, got {_type_name(value)}")  # never quotes the value
    if key.kind == "regex":
        return _compile(value, path, key.name) if value else None
    if key.kind == "socket":
        try:
            return parse_socket_address(value)
        except ValueError as exc:
            raise fail(str(exc)) from None
    if key.kind == "url":
        if not re.match(r"^https?://[^/\s]+", value):
            raise fail(f"expected an http:// or https:// URL, got {value!r}")
        if value.endswith("/"):
            raise fail(f"must not end with a slash (got {value!r}); "
                       f"use {value.rstrip('/')!r}")
        return value
    if key.kind == "profile":
        if value not in PROFILES:
            raise fail(f"expected one of {', '.join(PROFILES)}, got {value!r}")
        return value
    return value


def _suggest(name: str) -> str:
    known = list(KEYS_BY_NAME) + list(ALIASES)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if not close:
        lowered = {k.lower(): k for k in known}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
    return f"; did you mean '{close[0]}'?" if close else ""


def parse_config(text: str, path: str, *, purpose: Purpose = "daemon") -> LoadedConfig:
    """Validate the JSON text of a config file. Raises ConfigError on the first problem."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                          path=path) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a JSON object at the top level, got {_type_name(raw)}",
                          path=path)
    return build_config(raw, path, purpose=purpose)


def build_config(raw: Mapping[str, Any], path: str, *,
                 purpose: Purpose = "daemon") -> LoadedConfig:
    warnings: list[str] = []
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name in IGNORED_KEYS:
            warnings.append(f"{path}: key '{name}' {IGNORED_KEYS[name]}")
            continue
        target = ALIASES.get(name, name)
        if target not in KEYS_BY_NAME:
            warnings.append(f"{path}: unknown key '{name}' is ignored{_suggest(name)}")
            continue
        if target != name and target in raw:
            warnings.append(f"{path}: both '{name}' and '{target}' are set; '{target}' wins, "
                            f"as in upstream's code")
            continue
        values[target] = value

    kwargs: dict[str, Any] = {"source": path}
    for key in KEYS:
        if key.name not in values:
            continue
        value = values[key.name]
        if value is None and key.default is None:
            continue
        kwargs[_attr(key.name)] = _convert(key, value, path)

    if purpose == "daemon":
        for required in ("ccRestUrl", "ccRestJwt"):
            if not values.get(required):
                raise ConfigError("is required (the daemon cannot reach cc-backend without it)",
                                  path=path, key=required)
    for name in ("slurmPollInterval", "slurmQueryDelay"):
        attr = _attr(name)
        if attr in kwargs and kwargs[attr] < 1:
            warnings.append(f"{path}: key '{name}' is {kwargs[attr]}; using 1 second, "
                            f"as upstream does")
            kwargs[attr] = 1
    config = Config(**kwargs)
    if purpose == "daemon" and not config.cc_rest_submit_jobs and not config.nats_enabled:
        raise ConfigError("is false and natsServer is empty: jobs would go nowhere",
                          path=path, key="ccRestSubmitJobs")
    return LoadedConfig(config, warnings)


def load_config(path: str | None, *, purpose: Purpose = "daemon",
                reader: Callable[[str], str] | None = None) -> LoadedConfig:
    """Read and validate a config file.

    ``path=None`` means the default path was not named on the command line. Then,
    like upstream, a missing default file is not an error for the hook and the admin
    tools: they run on the built-in defaults (with a warning). The daemon always needs it.
    """
    explicit = path is not None
    real_path = path or DEFAULT_CONFIG_PATH
    try:
        text = reader(real_path) if reader else _read(real_path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if not explicit and purpose != "daemon" and isinstance(exc, FileNotFoundError):
            return LoadedConfig(Config(), [f"{real_path}: not found; using built-in defaults"])
        raise ConfigError(f"cannot read config file: {reason}", path=real_path) from None
    except UnicodeDecodeError:
        raise ConfigError("cannot read config file: not UTF-8 text", path=real_path) from None
    loaded = parse_config(text, real_path, purpose=purpose)
    if reader is None and loaded.config.cc_rest_jwt:
        warning = _permission_warning(real_path)
        if warning:
            loaded.warnings.append(warning)
    return loaded


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _permission_warning(path: str) -> str | None:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & stat.S_IROTH:
        return (f"{path}: the file holds ccRestJwt and can be read by every user "
                f"(mode {stat.S_IMODE(mode):04o}); chmod 640 or 600 it")
    return None


def reference_table() -> str:
    """The config reference as a Markdown table (key, default, meaning), for the README."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for key in KEYS:
        default = "required" if key.default is None else json.dumps(key.default)
        mark = "" if key.upstream else " (ours)"
        rows.append(f"| `{key.name}`{mark} | `{default}` | {key.doc} |")
    return "\n".join(rows)
