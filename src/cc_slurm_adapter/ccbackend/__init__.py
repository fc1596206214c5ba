"""The cc-backend client: start/stop submissions, queries, and what each answer means.

``client``   :class:`CCBackendClient` (httpx, async, one pool, bounded in-flight requests)
``outcome``  :class:`Outcome` / :class:`OutcomeKind` and the status table per profile
``backoff``  :class:`Backoff`, capped exponential backoff with full jitter

Typical use by the daemon::

    async with CCBackendClient(cfg.cc_rest_url, cfg.cc_rest_jwt, profile=cfg.cc_rest_profile,
                               timeout=cfg.cc_rest_timeout) as cc:
        outcome = await cc.stop_job(stop)
        if outcome.kind is OutcomeKind.NEEDS_START:
            if (await cc.start_job(start)).done:
                outcome = await cc.stop_job(stop)
        if outcome.retry_later:
            await asyncio.sleep(backoff.delay(attempt))
"""

from .backoff import Backoff
from .client import DEFAULT_PAGE_SIZE, JSON_LIMIT, USER_AGENT, CCBackendClient, outcome_of_error
from .outcome import BODY_LIMIT, START_TABLE, STOP_TABLES, Check, Outcome, OutcomeKind, classify

__all__ = [
    "BODY_LIMIT",
    "DEFAULT_PAGE_SIZE",
    "JSON_LIMIT",
    "START_TABLE",
    "STOP_TABLES",
    "USER_AGENT",
    "Backoff",
    "CCBackendClient",
    "Check",
    "Outcome",
    "OutcomeKind",
    "classify",
    "outcome_of_error",
]
