"""The stand-in's own tables of what each cc-backend release accepts and answers.

Written from ``shared/reference/cc-backend-contract.md`` (section numbers next to each
table), the swagger files in ``shared/cc-backend-api/`` (``swagger.json`` = v1.5,
``v1.4.4/``, ``v1.3.1/``) and measurements against the real cc-backend v1.5.4 in
``shared/cc-backend/``. They are deliberately **not** imported from the product's
``cc_slurm_adapter.profiles``: the stand-in is the oracle the product is tested
against, so a wrong key set or state table in ``profiles.py`` must make a test fail
instead of being copied into the oracle. ``tests/unit/testing/test_ccbackend_tables.py``
compares the two sets of tables (and these with the swagger files).

The release is chosen by the product profile's *name* only (``v1.5``/``v1.4``/``v1.3``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "EXCLUSIVE_TO_SHARED",
    "RELEASES",
    "RESOURCE_KEYS",
    "SHARED_VALUES",
    "STOP_KEYS",
    "ServerRelease",
    "ServerStopRules",
    "release_for",
]

# §8.2 job states; swagger v1.5 ``schema.JobState`` enum (12 values, no ``stopped``).
STATES_V15: Final = frozenset({
    "boot_fail", "cancelled", "completed", "deadline", "failed", "node_fail",
    "out_of_memory", "pending", "preempted", "running", "suspended", "timeout",
})
# §8.2 / §1 "Valid job states"; swagger v1.3.1 and v1.4.4 ``schema.JobState`` enum.
STATES_V13: Final = frozenset({
    "running", "completed", "failed", "cancelled", "stopped", "timeout", "preempted",
    "out_of_memory",
})

# §8.1 ``shared`` values (v1.5 database CHECK) and the v1.3/v1.4 ``exclusive`` integer:
# "Mapping: 1↔none, 2↔single_user, 0↔multi_user".
SHARED_VALUES: Final = frozenset({"none", "single_user", "multi_user"})
EXCLUSIVE_TO_SHARED: Final[dict[int, str]] = {1: "none", 2: "single_user", 0: "multi_user"}

# §5.1 the stop body, all versions; swagger ``api.StopJobAPIRequest`` /
# ``api.StopJobApiRequest`` properties.
STOP_KEYS: Final = frozenset({"jobId", "cluster", "startTime", "jobState", "stopTime"})

# §8.1 resource object; swagger ``schema.Resource`` (same in all three releases).
RESOURCE_KEYS: Final = frozenset({"hostname", "hwthreads", "accelerators", "configuration"})

# §4.5 v1.3 ``JobMeta`` field list, written out; swagger v1.3.1 ``schema.JobMeta``.
START_KEYS_V13: Final = frozenset({
    "jobId", "user", "project", "cluster", "subCluster", "partition", "arrayJobId",
    "numNodes", "numHwthreads", "numAcc", "exclusive", "monitoringStatus", "smt",
    "jobState", "duration", "walltime", "tags", "resources", "metaData",
    "concurrentJobs", "id", "startTime", "statistics",
})
# §4.5 "v1.4: like v1.3 plus energy, footprint, energyFootprint"; swagger v1.4.4
# ``schema.JobMeta``.
START_KEYS_V14: Final = frozenset({
    "jobId", "user", "project", "cluster", "subCluster", "partition", "arrayJobId",
    "numNodes", "numHwthreads", "numAcc", "exclusive", "monitoringStatus", "smt",
    "jobState", "duration", "walltime", "tags", "resources", "metaData",
    "concurrentJobs", "id", "startTime", "statistics",
    "energy", "footprint", "energyFootprint",
})
# §4.1 table / §8.1 (cc-lib ``schema.Job``); swagger v1.5 ``schema.Job``: no
# ``exclusive``; ``shared``, ``submitTime``, ``requestedMemory`` new.
START_KEYS_V15: Final = frozenset({
    "jobId", "user", "project", "cluster", "subCluster", "partition", "arrayJobId",
    "numNodes", "numHwthreads", "numAcc", "shared", "monitoringStatus", "smt",
    "jobState", "duration", "walltime", "tags", "resources", "metaData",
    "concurrentJobs", "id", "startTime", "statistics",
    "energy", "footprint", "energyFootprint", "submitTime", "requestedMemory",
})

# §8.1 "Tag object: {type, name, scope, id}"; §1 "tag scope" new in v1.4; swagger
# ``schema.Tag`` per release.
TAG_KEYS_V13: Final = frozenset({"id", "type", "name"})
TAG_KEYS_V14: Final = frozenset({"id", "type", "name", "scope"})

# §6 query keys of ``GET /api/jobs/`` ("+ project" in v1.5, §1).
QUERY_KEYS_V13: Final = frozenset(
    {"state", "cluster", "start-time", "page", "items-per-page", "with-metadata"})
QUERY_KEYS_V15: Final = frozenset(
    {"state", "cluster", "start-time", "page", "items-per-page", "with-metadata", "project"})


@dataclass(frozen=True, slots=True)
class ServerStopRules:
    """How ``stop_job`` judges a request (§5.2, §5.3, §1 rows "stop: …")."""

    not_found_status: int
    not_running_status: int
    allow_equal_times: bool
    combined_check: bool
    default_state: str = "completed"  # §5.1 "jobState empty/absent → completed"


@dataclass(frozen=True, slots=True)
class ServerRelease:
    """Everything the stand-in does differently per cc-backend release."""

    name: Literal["v1.5", "v1.4", "v1.3"]
    release: str
    start_keys: frozenset[str]
    tag_keys: frozenset[str]
    sharing_key: Literal["shared", "exclusive"]
    job_states: frozenset[str]
    start_forces_running: bool
    stop: ServerStopRules
    query_keys: frozenset[str]
    page_must_be_positive: bool
    start_returns_db_id: bool
    stop_start_time_as_string: bool
    trailing_slash_redirect: bool
    job_cache: bool
    role_failure_status: int
    requires_sub: bool
    nats_job_api: bool
    used_nodes: bool
    """``GET /api/jobs/used_nodes?ts=`` exists (§7 "(v1.5)")."""
    go_job_type: str
    go_stop_type: str

    @property
    def stop_states(self) -> frozenset[str]:
        """§5.1: a stop's ``jobState`` must be a valid state for that version."""
        return self.job_states


V15: Final = ServerRelease(
    name="v1.5", release="1.5.4", start_keys=START_KEYS_V15, tag_keys=TAG_KEYS_V14,
    sharing_key="shared", job_states=STATES_V15,
    start_forces_running=True,  # §4.2 step 3
    # §5.2: not found 404, not running 422; §1: stopTime == startTime allowed.
    stop=ServerStopRules(not_found_status=404, not_running_status=422,
                         allow_equal_times=True, combined_check=False),
    query_keys=QUERY_KEYS_V15,
    page_must_be_positive=True,  # §6 "v1.5.4+: < 1 → 400"
    start_returns_db_id=False,  # §4.2 step 8
    stop_start_time_as_string=False,  # §1 "stop response startTime": integer
    trailing_slash_redirect=False,  # §2.2 chi
    job_cache=True,  # §4.3
    role_failure_status=401, requires_sub=True,  # §1, §3.3
    nats_job_api=True,  # §9.1
    used_nodes=True,  # §7
    go_job_type="Job", go_stop_type="StopJobAPIRequest",  # swagger v1.5 definitions
)
V14: Final = ServerRelease(
    name="v1.4", release="1.4.4", start_keys=START_KEYS_V14, tag_keys=TAG_KEYS_V14,
    sharing_key="exclusive", job_states=STATES_V13, start_forces_running=True,  # 1.4.3+
    # §5.3 "v1.4.3–1.4.4: same order, but not found → 422".
    stop=ServerStopRules(not_found_status=422, not_running_status=422,
                         allow_equal_times=True, combined_check=False),
    query_keys=QUERY_KEYS_V13, page_must_be_positive=False, start_returns_db_id=False,
    stop_start_time_as_string=True, trailing_slash_redirect=True, job_cache=False,
    role_failure_status=401, requires_sub=False, nats_job_api=False, used_nodes=False,
    go_job_type="JobMeta", go_stop_type="StopJobApiRequest",  # swagger v1.4.4
)
V13: Final = ServerRelease(
    name="v1.3", release="1.3.1", start_keys=START_KEYS_V13, tag_keys=TAG_KEYS_V13,
    sharing_key="exclusive", job_states=STATES_V13,
    start_forces_running=False,  # §4.5 "A non-empty jobState is taken as given"
    # §5.3 "v1.3.x–v1.4.2: not found → 422; not running or stopTime <= startTime → one 400".
    stop=ServerStopRules(not_found_status=422, not_running_status=400,
                         allow_equal_times=False, combined_check=True),
    query_keys=QUERY_KEYS_V13, page_must_be_positive=False,
    start_returns_db_id=True,  # §1 201 {"id": <db id>}
    stop_start_time_as_string=True, trailing_slash_redirect=True, job_cache=False,
    role_failure_status=403, requires_sub=False, nats_job_api=False, used_nodes=False,
    go_job_type="JobMeta", go_stop_type="StopJobApiRequest",  # swagger v1.3.1
)

RELEASES: Final[dict[str, ServerRelease]] = {r.name: r for r in (V15, V14, V13)}


def release_for(name: str) -> ServerRelease:
    """The release table for a profile name (``v1.5``, ``v1.4``, ``v1.3``)."""
    try:
        return RELEASES[name]
    except KeyError:
        raise ValueError(f"the stand-in knows no cc-backend release {name!r} "
                         f"(known: {', '.join(RELEASES)})") from None
