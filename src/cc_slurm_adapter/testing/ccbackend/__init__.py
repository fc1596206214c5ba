"""A faithful stand-in for cc-backend's job REST API (tests, benchmarks, demo).

See :mod:`.standin` for the Python API (:class:`StandIn` in a thread,
:class:`StandInProcess` as a child process) and ``__main__`` for the command line.
Modules: ``http`` (the HTTP/1.1 server), ``server`` (routes and handlers), ``auth``
(EdDSA JWT), ``validation`` (strict decoding, start checks), ``store`` (SQLite),
``clusters`` (cluster.json), ``faults``, ``audit``, ``render``.
"""

from .audit import AuditEntry, CheckReport, ExpectedJob
from .faults import FAULT_MODES, FaultPlan
from .standin import StandIn, StandInProcess

__all__ = [
    "FAULT_MODES",
    "AuditEntry",
    "CheckReport",
    "ExpectedJob",
    "FaultPlan",
    "StandIn",
    "StandInProcess",
]
