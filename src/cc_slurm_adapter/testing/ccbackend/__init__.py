"""A faithful stand-in for cc-backend's job REST API (tests, benchmarks, demo).

See :mod:`.standin` for the Python API (:class:`StandIn` in a thread,
:class:`StandInProcess` as a child process) and ``__main__`` for the command line.
Modules: ``http`` (the HTTP/1.1 server), ``server`` (routes and handlers), ``auth``
(EdDSA JWT), ``validation`` (strict decoding, start checks), ``gojson`` (JSON as Go
reads it), ``contract`` (the per-release tables, the stand-in's own, not the
product's), ``store`` (SQLite), ``clusters`` (cluster.json), ``faults``, ``audit``,
``render``. Differential test against the real cc-backend v1.5.4:
tests/integration/test_ccbackend_real.py.
"""

# The stand-in signs and checks EdDSA tokens with ``cryptography``, which only the
# ``standin`` extra installs; the production wheel ships this package without it.
_EXTRA_MODULES = frozenset({"cryptography"})

try:
    from .audit import AuditEntry, CheckReport, ExpectedJob
    from .faults import FAULT_MODES, FaultPlan
    from .standin import StandIn, StandInProcess
except ModuleNotFoundError as _exc:
    if (_exc.name or "").split(".")[0] not in _EXTRA_MODULES:
        raise
    raise ModuleNotFoundError(
        f"the cc-backend stand-in needs the 'standin' extra (missing module "
        f"{(_exc.name or '').split('.')[0]!r}): pip install 'cc-slurm-adapter[standin]'",
        name=_exc.name,
    ) from _exc

__all__ = [
    "FAULT_MODES",
    "AuditEntry",
    "CheckReport",
    "ExpectedJob",
    "FaultPlan",
    "StandIn",
    "StandInProcess",
]
