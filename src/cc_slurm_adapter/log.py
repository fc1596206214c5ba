"""Logging set-up: upstream's -debug levels, stderr only, secrets redacted.

Upstream's levels are 0 fatal, 1 error, 2 warning (the default), 3 info, 4 debug;
we add 5 for a trace of every Slurm command and HTTP request. Lines carry no
timestamp by default because journald adds one, as upstream assumes.

Redaction happens in the one handler that writes log lines, on the *formatted*
line: the message, its arguments, the traceback (``exc_info``) and ``stack_info``
alike, for our loggers and for every other library's (httpx and nats-py log URLs;
they reach the handler through the root logger). :func:`redact` is also used for the
admin tools' own error lines. Two kinds of rules apply:

* **Context rules**, for any value, registered or not: the credentials of a URL
  (``https://user:pass@host`` → ``https://***@host``), the token after ``Bearer`` or
  ``Basic``, the value of an ``Authorization``/``X-Auth-Token`` header, and the value
  after a key that names a secret (``password=``, ``"ccRestJwt": "..."``,
  ``natsPassword='...'``, ``token=``...). A secret of any length, even one character,
  is hidden where it appears as such a value.
* **Registered secrets** (:func:`add_secrets`: the JWT, the NATS password, URL
  credentials), wherever they appear outside those contexts. Replacing a short
  string everywhere would destroy the log (a 1-character password ``a`` would turn
  every ``a`` into ``***``), so the rule depends on the length: 12 characters or more
  (tokens, real passwords) are replaced everywhere, even inside a longer word; 4 to
  11 characters only as a whole token (not glued to letters or digits, so a password
  ``node`` leaves ``node17`` alone); 1 to 3 characters are left to the context rules
  above. Each secret is also matched in its escaped forms (JSON, ``repr``, URL
  percent-encoding), which is how it shows inside a dict or a URL.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import urllib.parse
from collections.abc import Iterable
from typing import TextIO

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LEVELS = {
    0: logging.CRITICAL,
    1: logging.ERROR,
    2: logging.WARNING,
    3: logging.INFO,
    4: logging.DEBUG,
    5: TRACE,
}
DEFAULT_DEBUG_LEVEL = 2
ROOT = "cc_slurm_adapter"
MASK = "***"

ANYWHERE_MIN = 12
"""Registered secrets this long are replaced wherever they occur."""
TOKEN_MIN = 4
"""Registered secrets this long (and shorter than ANYWHERE_MIN) are replaced as whole tokens."""

# Every pattern is linear in the line's length: log lines may carry hostile text (job
# names), so no pattern has an unbounded part that can backtrack over another.
# A URL's userinfo: up to the last '@' before the path, query or fragment starts.
_URL_USERINFO = re.compile(
    r"(?i)\b([a-z][a-z0-9+.\-]{0,31}://)[^\s/?#'\"<>@]+(?:@[^\s/?#'\"<>@]*)*@")
# An auth scheme and its credentials: "Bearer X", "Basic X" (case-insensitive).
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)(\s+)(?!\*\*\*)[^\s'\",;]+")
# A header whose whole value is a credential ("X-Auth-Token: X", "Authorization: X").
_AUTH_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization|x-auth-token)(['\"]?\s*[:=]\s*)(['\"]?)"
    r"(?!bearer\b|basic\b|\*\*\*)[^\s'\",;]+")
# A key that names a secret, from its keyword on: natsPassword, ccRestJwt, api_key, token.
_SECRET_NAME = r"((?:password|passwd|passphrase|secret|token|jwt|api[_\-]?key)[\w.\-]{0,40})"
_QUOTED = r"(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
_VALUE = r"(?:" + _QUOTED + r"|(?!\*\*\*)[^\s'\",;&)}\]]+)"
# name=value, name = 'value', name="value" (repr, query strings, command lines)
_NAME_EQUALS = re.compile(r"(?i)" + _SECRET_NAME + r"(\s*=\s*)" + _VALUE)
# "name": "value" or 'name': 'value' (JSON, dict repr). The value must be quoted, so
# that our own "key 'ccRestJwt': is required" keeps its words.
_NAME_COLON = re.compile(r"(?i)" + _SECRET_NAME + r"(['\"])(\s*:\s*)" + _QUOTED)


def _mask_userinfo(match: re.Match[str]) -> str:
    return f"{match.group(1)}{MASK}@"


def _mask_equals(match: re.Match[str]) -> str:
    return f"{match.group(1)}{match.group(2)}{MASK}"


def _mask_colon(match: re.Match[str]) -> str:
    quote = match.group(2)
    return f"{match.group(1)}{quote}{match.group(3)}{quote}{MASK}{quote}"


def redact_contexts(text: str) -> str:
    """Apply the context rules only (see the module docstring)."""
    text = _URL_USERINFO.sub(_mask_userinfo, text)
    text = _AUTH_SCHEME.sub(rf"\1\2{MASK}", text)
    text = _AUTH_HEADER.sub(rf"\1\2\3{MASK}", text)
    text = _NAME_COLON.sub(_mask_colon, text)
    return _NAME_EQUALS.sub(_mask_equals, text)


def redact_url(url: str) -> str:
    """The URL with its credentials (user and password) replaced by ``***``."""
    return _URL_USERINFO.sub(_mask_userinfo, url)


class _Secrets:
    """The registered secrets, compiled into two patterns."""

    def __init__(self) -> None:
        self.values: set[str] = set()
        self.anywhere: re.Pattern[str] | None = None
        self.token: re.Pattern[str] | None = None

    def add(self, secrets: Iterable[str]) -> None:
        before = len(self.values)
        for secret in secrets:
            if not isinstance(secret, str) or not secret:
                continue
            self.values.add(secret)
            # The same secret as it shows in JSON, in a repr and in a URL.
            self.values.add(json.dumps(secret)[1:-1])
            self.values.add(repr(secret)[1:-1])
            self.values.add(urllib.parse.quote(secret, safe=""))
            self.values.add(urllib.parse.quote_plus(secret, safe=""))
        if len(self.values) != before:
            self._compile()

    def _compile(self) -> None:
        ordered = sorted(self.values, key=len, reverse=True)  # longest first
        long = [re.escape(s) for s in ordered if len(s) >= ANYWHERE_MIN]
        mid = [re.escape(s) for s in ordered if TOKEN_MIN <= len(s) < ANYWHERE_MIN]
        self.anywhere = re.compile("|".join(long)) if long else None
        self.token = (re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(mid) + r")(?![A-Za-z0-9])")
                      if mid else None)

    def clear(self) -> None:
        self.values.clear()
        self.anywhere = self.token = None


_secrets = _Secrets()


def add_secrets(secrets: Iterable[str]) -> None:
    """Register values that must never reach a log line (see the module docstring)."""
    _secrets.add(secrets)


def clear_secrets() -> None:
    """Forget the registered secrets (for tests)."""
    _secrets.clear()


def redact(text: str) -> str:
    """``text`` with every registered secret and every credential in context hidden."""
    if _secrets.anywhere is not None:
        text = _secrets.anywhere.sub(MASK, text)
    if _secrets.token is not None:
        text = _secrets.token.sub(MASK, text)
    return redact_contexts(text)


class RedactingHandler(logging.StreamHandler[TextIO]):
    """A stream handler that redacts the whole formatted line, traceback included.

    Without a stream it writes to whatever ``sys.stderr`` is when a record comes, not
    to the one of the moment it was made (tests swap sys.stderr; so may an embedder).
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(sys.stderr if stream is None else stream)
        self._follow_stderr = stream is None

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))

    def emit(self, record: logging.LogRecord) -> None:
        if self._follow_stderr and self.stream is not sys.stderr:
            self.stream = sys.stderr
        super().emit(record)


def setup_logging(debug_level: int = DEFAULT_DEBUG_LEVEL, *, timestamps: bool = False,
                  stream: TextIO | None = None) -> RedactingHandler:
    """Send every log record to stderr at the level that -debug N selects.

    Our loggers follow ``-debug``. Other libraries' loggers (httpx, httpcore, nats,
    asyncio) show warnings and errors, and everything at ``-debug 5`` (trace), where
    httpx's "HTTP Request: ..." lines belong. All of them go through the one
    :class:`RedactingHandler`, on the root logger.
    """
    level = LEVELS.get(max(0, min(5, debug_level)), logging.WARNING)
    handler = RedactingHandler(stream)
    fmt = "%(levelname)s [%(name)s] %(message)s"
    if timestamps:
        fmt = "%(asctime)s " + fmt
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    ours = logging.getLogger(ROOT)
    for logger in (root, ours):
        for old in list(logger.handlers):
            if isinstance(old, RedactingHandler):
                logger.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if level <= TRACE else max(level, logging.WARNING))
    ours.setLevel(level)
    ours.propagate = True
    return handler
