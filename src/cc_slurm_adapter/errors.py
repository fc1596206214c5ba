"""The exception tree of cc-slurm-adapter.

Every error the adapter raises on purpose derives from :class:`AdapterError`.
Third-party errors (httpx, msgspec, OSError from subprocesses, sqlite3) are
converted at the edge where they happen, with ``raise ... from exc``::

    AdapterError
    ├── ConfigError                 bad config file, key or value (one-line message)
    ├── SlurmError
    │   ├── SlurmCommandError       a Slurm command could not run or failed
    │   │   ├── SlurmCommandMissing     the executable is not on PATH
    │   │   ├── SlurmCommandTimeout     it ran longer than its timeout
    │   │   └── SlurmCommandFailed      non-zero exit (keeps the exit code and stderr)
    │   └── SlurmParseError         output that is not the JSON we can read
    ├── CCBackendError
    │   ├── CCBackendUnavailable    connection refused, timeout, dropped connection
    │   └── CCBackendStatusError    an HTTP status the caller must act on (keeps status and body)
    ├── StoreError                  the local SQLite state store failed
    └── TopologyError               (topology.py) not a cluster.json / GET /api/clusters/ answer

Messages never contain the JWT or any password.

The exit codes of every command are defined here, once: :data:`EXIT_OK`,
:data:`EXIT_ERROR` (a config problem, a failed Slurm query, an unwritable output) and
:data:`EXIT_USAGE` (bad usage or input that is not what the command reads).
The Prolog/Epilog hook always exits 0.
"""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
"""Ctrl-C, as a shell reports SIGINT (128 + 2)."""


class AdapterError(Exception):
    """Root of every error raised by cc-slurm-adapter on purpose."""


class ConfigError(AdapterError):
    """A config file that cannot be used. ``str(err)`` is one line for the admin."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        self.path = path
        self.key = key
        prefix = f"{path}: " if path else ""
        where = f"key '{key}': " if key else ""
        super().__init__(f"{prefix}{where}{message}")


class SlurmError(AdapterError):
    """Anything that went wrong while talking to Slurm."""


class SlurmCommandError(SlurmError):
    """A Slurm command could not be run or did not succeed."""

    def __init__(self, message: str, *, argv: list[str] | tuple[str, ...] = ()) -> None:
        self.argv = tuple(argv)
        super().__init__(message)


class SlurmCommandMissing(SlurmCommandError):
    """The Slurm executable was not found."""


class SlurmCommandTimeout(SlurmCommandError):
    """The Slurm command ran longer than allowed and was killed."""

    def __init__(self, message: str, *, argv: list[str] | tuple[str, ...] = (),
                 timeout: float = 0.0) -> None:
        self.timeout = timeout
        super().__init__(message, argv=argv)


class SlurmCommandFailed(SlurmCommandError):
    """The Slurm command exited non-zero."""

    def __init__(self, message: str, *, argv: list[str] | tuple[str, ...] = (),
                 returncode: int = 1, stderr: str = "") -> None:
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(message, argv=argv)


class SlurmParseError(SlurmError):
    """Slurm printed something that is not JSON we can read."""


class CCBackendError(AdapterError):
    """Anything that went wrong while talking to cc-backend."""


class CCBackendUnavailable(CCBackendError):
    """cc-backend could not be reached, or the connection broke: retry later."""


class CCBackendStatusError(CCBackendError):
    """cc-backend answered with a status code the caller has to act on."""

    def __init__(self, message: str, *, status: int, body: str = "") -> None:
        self.status = status
        self.body = body
        super().__init__(message)


class StoreError(AdapterError):
    """The local state store (SQLite) failed."""
