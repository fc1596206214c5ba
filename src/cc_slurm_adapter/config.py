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
names the file and the key. Secret values (the JWT, the NATS password, the
credentials of a URL) never appear in a message or a repr: a value is only quoted
for keys that are not secret, and a URL only with its credentials masked.

The file is hostile input like any other: only a regular file of at most
:data:`MAX_CONFIG_BYTES` is read (a FIFO would block, ``/dev/zero`` would never
end), JSON nested too deeply, numbers of hundreds of digits, ``NaN``, lone
surrogates and NUL characters are one-line errors, and every integer key has a
maximum. ``ignoreHosts`` and ``gpuPciAddrs`` are compiled with RE2 (google-re2),
the engine family of upstream's Go ``regexp``: matching takes linear time, whatever
the pattern, and a pattern Go could not compile (backreferences, lookaround) is an
error here too.
"""

from __future__ import annotations

import dataclasses
import difflib
import errno
import functools
import ipaddress
import json
import os
import re
import stat
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from cc_slurm_adapter.errors import ConfigError
from cc_slurm_adapter.hook import SocketAddress, parse_socket_address
from cc_slurm_adapter.log import redact_url
from cc_slurm_adapter.profiles import DEFAULT_PROFILE
from cc_slurm_adapter.profiles import PROFILES as _PROFILE_TABLE

DEFAULT_CONFIG_PATH = "/etc/cc-slurm-adapter/config.json"
MAX_CONFIG_BYTES = 1024 * 1024
"""A config file is a few kB; anything above 1 MiB is refused unread."""
MAX_NUMBER_DIGITS = 30
"""Longer numbers in the config are errors (Python would refuse 4,300 digits with a traceback)."""

Purpose = Literal["daemon", "hook", "tool"]
"""What the config is loaded for: the daemon needs everything, the hook only its
socket address, and the admin tools (``check``, ``convert``, ``status``) take
what is there."""

PROFILES: tuple[str, ...] = tuple(_PROFILE_TABLE)
"""The profile names, from :mod:`cc_slurm_adapter.profiles` (the one place they are defined)."""


def _one_of(names: tuple[str, ...]) -> str:
    return f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]


DAY = 86400


@dataclass(frozen=True)
class Key:
    """One config key: its JSON name, type, default and meaning."""

    name: str
    kind: Literal["str", "int", "bool", "regex", "gpumap", "socket", "url", "profile", "token"]
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
        "Seconds between two full syncs with Slurm (values below 1 become 1).",
        minimum=0, maximum=DAY),
    Key("slurmQueryDelay", "int", 1,
        "Seconds to wait after a Prolog/Epilog event before querying Slurm (below 1 becomes 1).",
        minimum=0, maximum=3600),
    Key("slurmQueryMaxSpan", "int", 604800,
        "How far back (seconds) a catch-up after downtime may reach.",
        minimum=1, maximum=3660 * DAY),
    Key("slurmMaxRetries", "int", 10,
        "Slurm query attempts for a Prolog/Epilog event. Upstream's docs call it "
        "slurmQueryMaxRetries; both spellings work.", minimum=0, maximum=1000),
    Key("ccPollInterval", "int", 21600,
        "Seconds between two full comparisons with cc-backend's list of running jobs.",
        minimum=1, maximum=30 * DAY),
    Key("ccRestSubmitJobs", "bool", True,
        "Send start_job/stop_job to cc-backend's REST API (false: NATS only)."),
    Key("ccRestUrl", "url", None,
        "Base URL of cc-backend, without a trailing slash. Required for the daemon."),
    Key("ccRestJwt", "token", None,
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
    Key("ccRestProfile", "profile", DEFAULT_PROFILE.name,
        f"cc-backend release the payloads are shaped for: {_one_of(PROFILES)}.", upstream=False),
    Key("ccRestTimeout", "int", 30, "Seconds before an HTTP request to cc-backend gives up.",
        upstream=False, minimum=1, maximum=3600),
    Key("ccRestCaFile", "str", "",
        "PEM file of the CA(s) that cc-backend's TLS certificate is checked against; empty: "
        "the system's CA store. Certificates are always verified.", upstream=False),
    Key("ccRestSendTags", "bool", False,
        "Send job tags with start_job (off: with tags cc-backend 1.5 bypasses its job cache).",
        upstream=False),
    Key("slurmCommandTimeout", "int", 120, "Seconds before a Slurm command is killed.",
        upstream=False, minimum=1, maximum=DAY),
    Key("prepSockMode", "str", "0660",
        "Octal mode of the daemon's UNIX socket (prepSockListenPath).", upstream=False),
    Key("prepSockGroup", "str", "",
        "Group of the daemon's UNIX socket; empty: the group of Slurm's SlurmUser, if "
        "that group exists, else the daemon's own.", upstream=False),
    Key("prepSockToken", "str", "",
        "Shared secret the hook sends with each event; when set, the daemon drops events "
        "without it (advised for a tcp: socket, which anyone who can reach it may use).",
        upstream=False, secret=True),
    Key("natsTls", "bool", False,
        "Connect to NATS with TLS, checked against the system's CA store or natsTlsCaFile.",
        upstream=False),
    Key("natsTlsCaFile", "str", "",
        "PEM file of the CA(s) the NATS server's certificate is checked against (implies "
        "TLS).", upstream=False),
    Key("natsTlsCertFile", "str", "",
        "Client certificate (PEM) for NATS TLS; needs natsTlsKeyFile.", upstream=False),
    Key("natsTlsKeyFile", "str", "", "Private key (PEM) of natsTlsCertFile.",
        upstream=False),
    Key("natsJetStream", "bool", False,
        "Publish to a JetStream stream and wait for its ack (exactly once per event, by "
        "Nats-Msg-Id); off: core NATS, fire-and-forget.", upstream=False),
    Key("natsStreamName", "str", "CC_SLURM_ADAPTER",
        "JetStream stream the events go to; created if missing.", upstream=False),
    Key("natsStreamSubjects", "str", "",
        "Comma-separated subjects of a stream the adapter creates; empty: natsSubject.",
        upstream=False),
    Key("metricsListen", "str", "",
        "Where the daemon serves Prometheus metrics at /metrics: HOST:PORT, [IPv6]:PORT or "
        ":PORT (every interface); empty: no metrics.", upstream=False),
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


class HostPattern(Protocol):
    """A compiled RE2 pattern (google-re2's ``re2._Regexp``, which ships no type hints)."""

    @property
    def pattern(self) -> str: ...

    def search(self, text: str) -> object | None: ...


@functools.cache
def _re2() -> tuple[Any, Any]:
    """google-re2 and its options, imported at the first regex: it weighs 2.6 MB of RSS,
    which a config without ignoreHosts or gpuPciAddrs never needs."""
    import re2  # type: ignore[import-untyped]  # google-re2 ships no type hints

    options = re2.Options()
    options.log_errors = False  # RE2 would print its own line on stderr; we report it once
    return re2, options


def compile_host_regex(pattern: str) -> HostPattern:
    """Compile a hostname regex with RE2 (linear-time matching, Go's syntax).

    Raises ValueError with RE2's reason for a pattern it cannot compile, such as a
    backreference or a lookaround, which upstream's Go ``regexp`` refuses too.
    """
    re2, options = _re2()
    try:
        compiled: HostPattern = re2.compile(pattern, options=options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(str(reason)) from None
    return compiled


def regex_warnings(key: str, pattern: str) -> list[str]:
    """What looks wrong with a valid hostname regex (for ``check``)."""
    try:
        compiled = compile_host_regex(pattern)
    except ValueError:
        return []
    shown = _show(pattern)
    if compiled.search("") is not None:
        what = ("every host is left out and no job is sent" if key == "ignoreHosts"
                else "it matches every host, so later entries are never used")
        return [f"key '{key}': {shown!r} matches every host name (even an empty one): {what}"]
    if not (pattern.startswith(("^", r"\A")) and pattern.endswith(("$", r"\z"))):
        return [f"key '{key}': {shown!r} is not anchored with ^...$, so it matches every host "
                f"name that contains a match (node1 would also match node10 and xnode1)"]
    return []


def _show(text: str, limit: int = 80) -> str:
    """``text`` safe to print on one line: non-printable characters (newlines, lone
    surrogates) as escapes, and at most ``limit`` characters."""
    shown = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text[:limit])
    return shown + ("..." if len(text) > limit else "")


def url_credentials(url: str) -> tuple[str, ...]:
    """The credentials written into a URL (as written and decoded), for redaction.

    That is the whole userinfo and the password. A user name alone (``user:`` or no
    colon at all) counts too, since it may be a token; a user name next to a password
    does not, because masking a common word such as ``slurm`` in every log line would
    wreck the log (in URLs the whole userinfo is masked anyway)."""
    _scheme, sep, rest = url.partition("://")
    if not sep:
        return ()
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    userinfo, at, _host = authority.rpartition("@")
    if not at or not userinfo:
        return ()
    _user, _, password = userinfo.partition(":")
    found = {userinfo, password}
    found |= {urllib.parse.unquote(s) for s in found}
    return tuple(sorted(s for s in found if s))


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


def _text_problem(value: str) -> str | None:
    """Why a string from the config cannot be used, or None."""
    if "\x00" in value:
        return "contains a NUL character"
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        return "contains a lone surrogate (an invalid \\uD800-\\uDFFF escape)"
    return None


def _compile(pattern: str, path: str, key: str) -> HostPattern:
    problem = _text_problem(pattern)
    if problem:
        raise ConfigError(f"regular expression {problem}", path=path, key=key)
    try:
        return compile_host_regex(pattern)
    except ValueError as exc:
        raise ConfigError(f"invalid regular expression {_show(pattern)!r}: {exc} (RE2 syntax, "
                          f"as upstream's Go regexp: no backreferences or lookaround)",
                          path=path, key=key) from None


_HOST_LABEL = r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")


def _url_problem(value: str) -> str | None:
    """Why ``value`` is not a usable base URL of cc-backend, or None (httpx parses it)."""
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        return "must not contain spaces, line breaks or control characters"
    if not re.match(r"(?i)https?://", value):
        return "expected an http:// or https:// URL"
    authority = re.split(r"[/?#]", value.split("://", 1)[1], maxsplit=1)[0]
    hostport = authority.rpartition("@")[2]
    if hostport.startswith("[") and "]" not in hostport:
        return "the IPv6 address has no closing ']'"
    import httpx  # here, so that the hook-free tools that never see a URL stay fast

    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, ValueError) as exc:
        return f"not a valid URL ({_show(str(exc))})"
    host = url.raw_host.decode("ascii", "replace")
    if not host:
        return "has no host name"
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return "the IPv6 address is not valid"
    elif not _HOSTNAME.fullmatch(host):
        return "the host name is not valid"
    if url.port is not None and not 1 <= url.port <= 65535:
        return f"the port must be a number from 1 to 65535, got {url.port}"
    if url.query or url.fragment or "?" in value or "#" in value:
        return "must not have a query (?...) or a fragment (#...)"
    return None


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
        shown = value
        if isinstance(value, float):
            if not value.is_integer():
                raise fail(f"expected a whole number, got {value}")
            value = int(value)
        if key.minimum is not None and value < key.minimum:
            what = "negative" if value < 0 else "too small"
            raise fail(f"must be at least {key.minimum}, got {shown} ({what})")
        if key.maximum is not None and value > key.maximum:
            raise fail(f"must be at most {key.maximum}, got {shown}")
        return value
    # Every other kind is a string or built from strings.
    if key.kind == "gpumap":
        if not isinstance(value, dict):
            raise fail(f"expected an object of hostname regex to PCI address list, "
                       f"got {_type_name(value)}")
        entries = []
        for regex, addresses in value.items():
            if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
                raise fail(f"entry {_show(regex)!r}: expected a list of PCI address strings, "
                           f"got {_type_name(addresses)}")
            for address in addresses:
                problem = _text_problem(address)
                if problem:
                    raise fail(f"entry {_show(regex)!r}: a PCI address {problem}")
            entries.append((_compile(regex, path, key.name), tuple(addresses)))
        return tuple(entries)
    if not isinstance(value, str):
        raise fail(f"expected a string, got {_type_name(value)}")  # never quotes the value
    problem = _text_problem(value)
    if problem:
        raise fail(problem)  # never quotes the value: it may be a secret
    if key.kind == "token":
        if value and not value.strip():
            raise fail("is blank (only whitespace)")
        if any(ch.isspace() or not ch.isprintable() for ch in value):
            raise fail("must not contain spaces, line breaks or control characters "
                       "(a token is one word; check the copy and paste)")
        return value
    if key.kind == "regex":
        return _compile(value, path, key.name) if value else None
    if key.kind == "socket":
        try:
            return parse_socket_address(value)
        except ValueError as exc:
            raise fail(_show(str(exc), 200)) from None
    if key.kind == "url":
        problem = _url_problem(value)
        url = _show(redact_url(value), 200)
        if problem:
            raise fail(f"{problem}, got {url!r}" if "got" not in problem
                       else f"{problem} (in {url!r})")
        if value.endswith("/"):
            raise fail(f"must not end with a slash (got {url!r}); use {url.rstrip('/')!r}")
        return value
    if key.kind == "profile":
        if value not in PROFILES:
            raise fail(f"expected one of {', '.join(PROFILES)}, got {_show(value)!r}")
        return value
    if key.name == "prepSockMode" and not re.fullmatch(r"0?[0-7]{3}", value):
        # setuid/setgid/sticky bits mean nothing on a socket: 3 octal digits, or 4 with a 0
        raise fail(f"expected an octal file mode such as \"0660\" (three digits 0-7, "
                   f"optionally after a 0), got {_show(value)!r}")
    if key.name == "metricsListen" and value:
        try:
            listen_address(value)
        except ValueError as exc:
            raise fail(str(exc)) from None
    return value


def listen_address(value: str) -> tuple[str | None, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` → (host, port); host None for
    ``:PORT`` (every interface). ValueError says what is wrong."""
    host, sep, port_text = value.rpartition(":")
    shown = _show(value)
    if not sep:
        raise ValueError(f"expected HOST:PORT or :PORT, got {shown!r} (no port)")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"the port must be a number from 1 to 65535, got {shown!r}")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"the IPv6 address is not valid in {shown!r}") from None
        return host[1:-1], int(port_text)
    if ":" in host:
        raise ValueError(f"an IPv6 address needs brackets ([::1]:PORT), got {shown!r}")
    if host and not _HOSTNAME.fullmatch(host):
        raise ValueError(f"the host name is not valid in {shown!r}")
    return host or None, int(port_text)


def _default(name: str) -> Any:
    """The default of key ``name`` from :data:`KEYS`, in the form Config stores."""
    key = KEYS_BY_NAME[name]
    return "" if key.default is None else _convert(key, key.default, "<defaults>")


@dataclass(frozen=True, repr=False)
class Config:
    """The validated configuration; one field per entry of :data:`KEYS`, whose defaults
    it takes. Secrets are hidden from ``repr``, and so are a URL's credentials."""

    pid_file_path: str = _default("pidFilePath")
    # The defaults are immutable (frozen dataclass, tuple, None): one shared object is fine.
    prep_sock_listen_path: SocketAddress = _default("prepSockListenPath")  # noqa: RUF009
    prep_sock_connect_path: SocketAddress = _default("prepSockConnectPath")  # noqa: RUF009
    last_run_path: str = _default("lastRunPath")
    slurm_poll_interval: int = _default("slurmPollInterval")
    slurm_query_delay: int = _default("slurmQueryDelay")
    slurm_query_max_span: int = _default("slurmQueryMaxSpan")
    slurm_max_retries: int = _default("slurmMaxRetries")
    cc_poll_interval: int = _default("ccPollInterval")
    cc_rest_submit_jobs: bool = _default("ccRestSubmitJobs")
    cc_rest_url: str = _default("ccRestUrl")
    cc_rest_jwt: str = field(default=_default("ccRestJwt"), repr=False)
    gpu_pci_addrs: tuple[tuple[HostPattern, tuple[str, ...]], ...] = _default("gpuPciAddrs")
    ignore_hosts: HostPattern | None = _default("ignoreHosts")  # noqa: RUF009
    nats_server: str = _default("natsServer")
    nats_port: int = _default("natsPort")
    nats_subject: str = _default("natsSubject")
    nats_user: str = _default("natsUser")
    nats_password: str = field(default=_default("natsPassword"), repr=False)
    nats_creds_file: str = _default("natsCredsFile")
    nats_nkey_seed_file: str = _default("natsNKeySeedFile")
    state_path: str = _default("statePath")
    cc_rest_profile: str = _default("ccRestProfile")
    cc_rest_timeout: int = _default("ccRestTimeout")
    cc_rest_ca_file: str = _default("ccRestCaFile")
    cc_rest_send_tags: bool = _default("ccRestSendTags")
    slurm_command_timeout: int = _default("slurmCommandTimeout")
    prep_sock_mode: str = _default("prepSockMode")
    prep_sock_group: str = _default("prepSockGroup")
    prep_sock_token: str = field(default=_default("prepSockToken"), repr=False)
    nats_tls: bool = _default("natsTls")
    nats_tls_ca_file: str = _default("natsTlsCaFile")
    nats_tls_cert_file: str = _default("natsTlsCertFile")
    nats_tls_key_file: str = _default("natsTlsKeyFile")
    nats_jet_stream: bool = _default("natsJetStream")
    nats_stream_name: str = _default("natsStreamName")
    nats_stream_subjects: str = _default("natsStreamSubjects")
    metrics_listen: str = _default("metricsListen")
    source: str = "<defaults>"

    def __repr__(self) -> str:
        parts = []
        for item in dataclasses.fields(self):
            if not item.repr:
                continue
            value = getattr(self, item.name)
            if item.name in ("cc_rest_url", "nats_server"):
                value = redact_url(value)
            elif item.name == "ignore_hosts" and value is not None:
                value = f"re2({value.pattern!r})"
            elif item.name == "gpu_pci_addrs":
                value = {pattern.pattern: list(addresses) for pattern, addresses in value}
            parts.append(f"{item.name}={value!r}")
        return f"Config({', '.join(parts)})"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never be logged (for the log redaction)."""
        found = [self.cc_rest_jwt, self.nats_password, self.prep_sock_token]
        segments = self.cc_rest_jwt.split(".")
        if len(segments) == 3:
            found.append(segments[2])  # a JWT's signature is the secret part of it
        for url in (self.cc_rest_url, self.nats_server):
            found.extend(url_credentials(url))
        return tuple(dict.fromkeys(s for s in found if s))

    @property
    def nats_enabled(self) -> bool:
        return bool(self.nats_server)

    def gpu_pci_addresses(self, hostname: str) -> tuple[str, ...] | None:
        """The PCI addresses of the first gpuPciAddrs regex that matches, or None."""
        for pattern, addresses in self.gpu_pci_addrs:
            if pattern.search(hostname) is not None:
                return addresses
        return None

    def is_ignored_host(self, hostname: str) -> bool:
        return self.ignore_hosts is not None and self.ignore_hosts.search(hostname) is not None


_KEY_ATTRS = {_attr(key.name) for key in KEYS}
_FIELDS = {item.name for item in dataclasses.fields(Config)} - {"source"}
if _KEY_ATTRS != _FIELDS:  # pragma: no cover - a programming error
    raise RuntimeError(f"Config and KEYS disagree: {sorted(_KEY_ATTRS ^ _FIELDS)}")


def _suggest(name: str) -> str:
    known = list(KEYS_BY_NAME) + list(ALIASES)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if not close:
        lowered = {k.lower(): k for k in known}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
    return f"; did you mean '{close[0]}'?" if close else ""


class _BadNumber(ValueError):
    """A JSON number the config cannot hold (too many digits, NaN, Infinity)."""


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_NUMBER_DIGITS:
        raise _BadNumber(f"a number with {digits} digits (at most {MAX_NUMBER_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if len(text) > 4 * MAX_NUMBER_DIGITS or value in (float("inf"), float("-inf")):
        raise _BadNumber(f"the number {_show(text, 40)} is out of range")
    return value


def _parse_constant(name: str) -> Any:
    raise _BadNumber(f"{name} is not a JSON number")


def parse_config(text: str, path: str, *, purpose: Purpose = "daemon") -> LoadedConfig:
    """Validate the JSON text of a config file. Raises ConfigError on the first problem."""
    try:
        raw = json.loads(text, parse_int=_parse_int, parse_float=_parse_float,
                         parse_constant=_parse_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                          path=path) from None
    except _BadNumber as exc:
        raise ConfigError(f"invalid JSON: {exc}", path=path) from None
    except RecursionError:
        raise ConfigError("invalid JSON: nested too deeply", path=path) from None
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
            warnings.append(f"{path}: unknown key '{_show(name)}' is ignored{_suggest(name)}")
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
    if config.nats_enabled:
        _check_nats(config, path)
    return LoadedConfig(config, warnings)


def _nats_subject_error(subject: str, *, wildcards: bool) -> str | None:
    """Why ``subject`` is not a NATS subject (tokens split by ".", none empty, no white
    space; ``*`` and a final ``>`` only where a stream's subjects allow them)."""
    if not subject:
        return "is empty"
    if any(c.isspace() for c in subject):
        return f"'{_show(subject)}' contains white space"
    tokens = subject.split(".")
    if "" in tokens:
        return f"'{_show(subject)}' has an empty token (two dots, or a dot at an end)"
    for i, token in enumerate(tokens):
        if token in ("*", ">") and not wildcards:
            return f"'{_show(subject)}' has a wildcard; events need a plain subject"
        if token == ">" and i != len(tokens) - 1:
            return f"'{_show(subject)}': '>' must be the last token"
        if token not in ("*", ">") and ("*" in token or ">" in token):
            return f"'{_show(subject)}': a wildcard must be a whole token"
    return None


def _nats_matches(pattern: str, subject: str) -> bool:
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or token not in ("*", have[i]):
            return False
    return len(want) == len(have)


def _check_nats(config: Config, path: str) -> None:
    """The NATS keys that the server would refuse, or that would lose events."""
    problem = _nats_subject_error(config.nats_subject, wildcards=False)
    if problem:
        raise ConfigError(problem, path=path, key="natsSubject")
    if bool(config.nats_tls_cert_file) != bool(config.nats_tls_key_file):
        given, missing = (("natsTlsCertFile", "natsTlsKeyFile") if config.nats_tls_cert_file
                          else ("natsTlsKeyFile", "natsTlsCertFile"))
        raise ConfigError(f"is set but {missing} is empty: the client certificate needs both",
                          path=path, key=given)
    if not config.nats_jet_stream:
        return
    name = config.nats_stream_name
    # JetStream stream names: no white space, ".", "*", ">" or path separators
    if not name or any(c.isspace() or c in ".*>/\\" for c in name):
        raise ConfigError(f"'{_show(name)}' is not a JetStream stream name (it must be "
                          "non-empty, without white space, '.', '*', '>', '/' or '\\')",
                          path=path, key="natsStreamName")
    subjects = [s.strip() for s in config.nats_stream_subjects.split(",") if s.strip()]
    for subject in subjects:
        problem = _nats_subject_error(subject, wildcards=True)
        if problem:
            raise ConfigError(problem, path=path, key="natsStreamSubjects")
    if subjects and not any(_nats_matches(p, config.nats_subject) for p in subjects):
        raise ConfigError(f"none of them takes natsSubject '{_show(config.nats_subject)}': "
                          "a stream created with them would not hold the events",
                          path=path, key="natsStreamSubjects")


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


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def read_regular_file(path: str, limit: int = MAX_CONFIG_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes.

    Anything else raises OSError with a readable ``strerror``. The file is opened
    non-blocking, so a FIFO cannot stall the open, and checked with fstat on the
    open descriptor, so a swap between check and read cannot fool it.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a plain file")
            raise OSError(errno.EINVAL, f"not a regular file ({kind})")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit // 1024} KiB")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _read(path: str) -> str:
    return read_regular_file(path).decode("utf-8")


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
