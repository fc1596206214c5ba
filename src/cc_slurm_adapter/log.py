"""Logging set-up: upstream's -debug levels, stderr only, secrets redacted.

Upstream's levels are 0 fatal, 1 error, 2 warning (the default), 3 info, 4 debug;
we add 5 for a trace of every Slurm command and HTTP request. Lines carry no
timestamp by default because journald adds one, as upstream assumes.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

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


class RedactingFilter(logging.Filter):
    """Replaces every known secret (the JWT, NATS password) in a record by '***'."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        redacted = message
        for secret in self.secrets:
            redacted = redacted.replace(secret, "***")
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_redactor = RedactingFilter()


def add_secrets(secrets: Iterable[str]) -> None:
    """Register values that must never reach a log line (short ones are ignored)."""
    _redactor.secrets.update(s for s in secrets if len(s) >= 4)


def setup_logging(debug_level: int = DEFAULT_DEBUG_LEVEL, *, timestamps: bool = False) -> None:
    """Send our log records to stderr at the level that -debug N selects."""
    level = LEVELS.get(max(0, min(5, debug_level)), logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    fmt = "%(levelname)s [%(name)s] %(message)s"
    if timestamps:
        fmt = "%(asctime)s " + fmt
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(_redactor)
    logger = logging.getLogger(ROOT)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
