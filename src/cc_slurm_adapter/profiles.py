"""cc-backend version profiles: what each server release accepts and answers.

Pure data, no I/O. The product mapping (record → payload) and the cc-backend
stand-in (``testing/ccbackend``) both read these tables, so the two cannot drift
apart. Facts come from ``shared/reference/cc-backend-contract.md`` (section numbers
in the comments); each quirk is kept next to the release that has it.

Three profiles exist:

``v1.5``  (default) cc-backend 1.5.0–1.5.4 / main: chi router, ``shared`` string,
          12 job states, stop of an unknown job → 404, job_cache table.
``v1.4``  cc-backend 1.4.4 (1.4.3 for the stop rules): ``exclusive`` int,
          8 job states, unknown job on stop → 422, no ``submitTime``/``requestedMemory``.
``v1.3``  cc-backend 1.3.x: like 1.4 without ``energy``/``footprint``/tag scope,
          start answers ``{"id": N}``, one combined 400 for "not running or too early".

Use :func:`get_profile` to look one up by name; unknown names raise
:class:`~cc_slurm_adapter.errors.ConfigError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

from cc_slurm_adapter.errors import ConfigError

__all__ = [
    "DEFAULT_PROFILE",
    "EXCLUSIVE_TO_SHARED",
    "JOB_STATES_V13",
    "JOB_STATES_V15",
    "PROFILES",
    "RESOURCE_KEYS",
    "SHARED_TO_EXCLUSIVE",
    "SHARED_VALUES",
    "STOP_JOB_KEYS",
    "V13",
    "V14",
    "V15",
    "Profile",
    "SharingKey",
    "StopRules",
    "get_profile",
]


class SharingKey(StrEnum):
    """Which key a start payload uses to say whether the nodes are shared."""

    SHARED = "shared"  # v1.5: "none" | "single_user" | "multi_user"
    EXCLUSIVE = "exclusive"  # v1.3/v1.4: 1 exclusive, 2 one user, 0 several users


# §8.2 job states.
JOB_STATES_V15: Final[frozenset[str]] = frozenset({
    "boot_fail", "cancelled", "completed", "deadline", "failed", "node_fail",
    "out_of_memory", "pending", "preempted", "running", "suspended", "timeout",
})
JOB_STATES_V13: Final[frozenset[str]] = frozenset({
    "running", "completed", "failed", "cancelled", "stopped", "timeout", "preempted",
    "out_of_memory",
})

# §8.1 ``shared`` values (v1.5) and the mapping to the older ``exclusive`` integer
# (the one the v1.5 database migration uses: 1↔none, 2↔single_user, 0↔multi_user).
SHARED_VALUES: Final[frozenset[str]] = frozenset({"none", "single_user", "multi_user"})
SHARED_TO_EXCLUSIVE: Final[dict[str, int]] = {"none": 1, "single_user": 2, "multi_user": 0}
EXCLUSIVE_TO_SHARED: Final[dict[int, str]] = {v: k for k, v in SHARED_TO_EXCLUSIVE.items()}

# §5.1 the stop body (all versions). Only ``jobId`` is required by the server.
STOP_JOB_KEYS: Final[frozenset[str]] = frozenset(
    {"jobId", "cluster", "startTime", "jobState", "stopTime"})

# §4.5 v1.3 JobMeta: every key a v1.3 start_job body may carry.
_START_KEYS_V13: Final[frozenset[str]] = frozenset({
    "jobId", "user", "project", "cluster", "subCluster", "partition", "arrayJobId",
    "numNodes", "numHwthreads", "numAcc", "exclusive", "monitoringStatus", "smt",
    "jobState", "duration", "walltime", "tags", "resources", "metaData",
    "concurrentJobs", "id", "startTime", "statistics",
})
# §1 v1.4 adds energy, footprint, energyFootprint (and tag ``scope``).
_START_KEYS_V14: Final[frozenset[str]] = _START_KEYS_V13 | {
    "energy", "footprint", "energyFootprint"}
# §4.1 / §8.1 v1.5 = cc-lib schema.Job: ``exclusive`` gone, ``shared``,
# ``submitTime`` and ``requestedMemory`` new.
_START_KEYS_V15: Final[frozenset[str]] = (_START_KEYS_V14 - {"exclusive"}) | {
    "shared", "submitTime", "requestedMemory"}

_TAG_KEYS_V13: Final[frozenset[str]] = frozenset({"id", "type", "name"})
_TAG_KEYS_V14: Final[frozenset[str]] = _TAG_KEYS_V13 | {"scope"}
RESOURCE_KEYS: Final[frozenset[str]] = frozenset(
    {"hostname", "hwthreads", "accelerators", "configuration"})

# §6 query keys of GET /api/jobs/.
_QUERY_KEYS_V13: Final[frozenset[str]] = frozenset(
    {"state", "cluster", "start-time", "page", "items-per-page", "with-metadata"})
_QUERY_KEYS_V15: Final[frozenset[str]] = _QUERY_KEYS_V13 | {"project"}


@dataclass(frozen=True, slots=True)
class StopRules:
    """How ``POST /api/jobs/stop_job/`` judges a request (§5.2, §5.3)."""

    not_found_status: int
    """Status when no job matches: 404 on v1.5, 422 before."""
    not_running_status: int
    """Status when the job is no longer running: 422 from 1.4.3, 400 before."""
    allow_equal_times: bool
    """``stopTime == startTime`` is accepted (1.4.3+); older releases need ``>``."""
    combined_check: bool
    """v1.3–1.4.2: "not running" and the time check share one 400 message."""
    default_state: str = "completed"
    """State used when ``jobState`` is empty or absent."""


@dataclass(frozen=True, slots=True)
class Profile:
    """Everything that differs between the cc-backend releases we talk to."""

    name: Literal["v1.5", "v1.4", "v1.3"]
    release: str
    """The exact release the profile copies (e.g. ``"1.5.4"``)."""
    start_keys: frozenset[str]
    """Keys a start_job body may carry; any other key is a 400 (strict decoding)."""
    tag_keys: frozenset[str]
    """Keys a tag object in ``tags`` may carry."""
    sharing_key: SharingKey
    job_states: frozenset[str]
    """Valid job states (for GET ``state=`` and for the stop ``jobState``)."""
    start_forces_running: bool
    """The start ``jobState`` is ignored and forced to ``running`` (1.4.3+)."""
    stop: StopRules
    query_keys: frozenset[str]
    """Query parameters of ``GET /api/jobs/``; others → 400."""
    page_must_be_positive: bool
    """``page``/``items-per-page`` < 1 → 400 (1.5.4+)."""
    start_returns_db_id: bool
    """Start answers ``{"id": N}`` (v1.3) instead of ``{"msg": "success"}``."""
    stop_start_time_as_string: bool
    """The stop answer shows ``startTime`` as an RFC 3339 string (≤1.4)."""
    trailing_slash_redirect: bool
    """gorilla StrictSlash: a missing trailing slash gets a 301 (≤1.4)."""
    job_cache: bool
    """New jobs go into ``job_cache`` first and are committed periodically (v1.5)."""
    role_failure_status: int
    """Status for a valid token without the ``api`` role: 401 (1.4+) or 403 (1.3)."""
    requires_sub: bool
    """A token without a non-empty ``sub`` claim is refused (v1.5)."""
    nats_job_api: bool
    """cc-backend can take job events over NATS instead of REST (v1.5)."""
    go_job_type: str
    """Go type name in decode errors of start bodies (``Job`` / ``JobMeta``)."""
    go_stop_type: str
    """Go type name in decode errors of stop bodies."""

    @property
    def stop_states(self) -> frozenset[str]:
        """States a stop request may set (the server checks only membership)."""
        return self.job_states

    def rejects_key(self, key: str) -> bool:
        """True if a start body with ``key`` gets ``json: unknown field`` (400).

        Matching is case-insensitive, as Go's decoder does it.
        """
        folded = key.casefold()
        return all(k.casefold() != folded for k in self.start_keys)


V15: Final[Profile] = Profile(
    name="v1.5", release="1.5.4", start_keys=_START_KEYS_V15, tag_keys=_TAG_KEYS_V14,
    sharing_key=SharingKey.SHARED, job_states=JOB_STATES_V15, start_forces_running=True,
    stop=StopRules(not_found_status=404, not_running_status=422, allow_equal_times=True,
                   combined_check=False),
    query_keys=_QUERY_KEYS_V15, page_must_be_positive=True, start_returns_db_id=False,
    stop_start_time_as_string=False, trailing_slash_redirect=False, job_cache=True,
    role_failure_status=401, requires_sub=True, nats_job_api=True,
    go_job_type="Job", go_stop_type="StopJobAPIRequest",
)
V14: Final[Profile] = Profile(
    name="v1.4", release="1.4.4", start_keys=_START_KEYS_V14, tag_keys=_TAG_KEYS_V14,
    sharing_key=SharingKey.EXCLUSIVE, job_states=JOB_STATES_V13, start_forces_running=True,
    stop=StopRules(not_found_status=422, not_running_status=422, allow_equal_times=True,
                   combined_check=False),
    query_keys=_QUERY_KEYS_V13, page_must_be_positive=False, start_returns_db_id=False,
    stop_start_time_as_string=True, trailing_slash_redirect=True, job_cache=False,
    role_failure_status=401, requires_sub=False, nats_job_api=False,
    go_job_type="JobMeta", go_stop_type="StopJobApiRequest",
)
V13: Final[Profile] = Profile(
    name="v1.3", release="1.3.1", start_keys=_START_KEYS_V13, tag_keys=_TAG_KEYS_V13,
    sharing_key=SharingKey.EXCLUSIVE, job_states=JOB_STATES_V13, start_forces_running=False,
    stop=StopRules(not_found_status=422, not_running_status=400, allow_equal_times=False,
                   combined_check=True),
    query_keys=_QUERY_KEYS_V13, page_must_be_positive=False, start_returns_db_id=True,
    stop_start_time_as_string=True, trailing_slash_redirect=True, job_cache=False,
    role_failure_status=403, requires_sub=False, nats_job_api=False,
    go_job_type="JobMeta", go_stop_type="StopJobApiRequest",
)

PROFILES: Final[dict[str, Profile]] = {p.name: p for p in (V15, V14, V13)}
DEFAULT_PROFILE: Final[Profile] = V15


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (``"v1.5"``, ``"v1.4"``, ``"v1.3"``; a missing
    leading ``v`` is tolerated). Raises :class:`ConfigError` for anything else."""
    key = name.strip()
    if key and not key.startswith("v"):
        key = "v" + key
    try:
        return PROFILES[key]
    except KeyError:
        known = ", ".join(PROFILES)
        raise ConfigError(f"unknown cc-backend profile {name!r} (known: {known})") from None
