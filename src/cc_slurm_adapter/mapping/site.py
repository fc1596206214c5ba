"""What the mapping needs to know about the site, and the "log once" helper.

:class:`Site` holds plain data and two lookup functions, so the mapping does not need
the whole :class:`~cc_slurm_adapter.config.Config` (and stays importable without it).
Build one with :meth:`Site.from_config`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cc_slurm_adapter.profiles import DEFAULT_PROFILE, Profile, get_profile
from cc_slurm_adapter.topology import Topology

__all__ = ["Site", "SiteConfig", "log_once", "reset_log_once"]

log = logging.getLogger("cc_slurm_adapter.mapping")

_SEEN: set[tuple[str, ...]] = set()
_SEEN_LIMIT = 100_000


def log_once(key: tuple[str, ...], level: int, message: str, *args: object) -> bool:
    """Log ``message`` the first time ``key`` is seen in this process. True if logged.

    The set is bounded: past 100,000 keys it is cleared, so a daemon that sees
    endless new hosts repeats a line now and then rather than growing forever.
    """
    if key in _SEEN:
        return False
    if len(_SEEN) >= _SEEN_LIMIT:
        _SEEN.clear()
    _SEEN.add(key)
    log.log(level, message, *args)
    return True


def reset_log_once() -> None:
    """Forget what was logged (for tests)."""
    _SEEN.clear()


class SiteConfig(Protocol):
    """The part of :class:`~cc_slurm_adapter.config.Config` the mapping reads."""

    @property
    def cc_rest_profile(self) -> str: ...

    @property
    def cc_rest_send_tags(self) -> bool: ...

    def gpu_pci_addresses(self, hostname: str) -> tuple[str, ...] | None: ...

    def is_ignored_host(self, hostname: str) -> bool: ...


def _no_gpus(_hostname: str) -> tuple[str, ...] | None:
    return None


def _keep_all(_hostname: str) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class Site:
    """Everything about the site that shapes a payload."""

    profile: Profile = DEFAULT_PROFILE
    gpu_pci_addresses: Callable[[str], tuple[str, ...] | None] = _no_gpus
    """gpuPciAddrs: hostname → PCI addresses in NVML order (first matching regex)."""
    is_ignored_host: Callable[[str], bool] = _keep_all
    """ignoreHosts: True for hosts left out of ``resources``."""
    topology: Topology | None = None
    """cc-backend's cluster topology (GET /api/clusters/ or cluster.json)."""
    cluster: str | None = None
    """Cluster name for the payloads; None = the name Slurm reports."""
    send_tags: bool = False
    """ccRestSendTags: add tags to start_job (cc-backend 1.5 then skips its job cache)."""
    check_hosts: bool = True
    """With a topology: skip jobs whose cluster or first host cc-backend does not know
    (it would answer 400, contract §10)."""

    @classmethod
    def from_config(cls, config: SiteConfig, *, topology: Topology | None = None,
                    cluster: str | None = None, profile: Profile | str | None = None,
                    ) -> Site:
        if profile is None:
            profile = config.cc_rest_profile
        if isinstance(profile, str):
            profile = get_profile(profile)
        return cls(profile=profile, gpu_pci_addresses=config.gpu_pci_addresses,
                   is_ignored_host=config.is_ignored_host, topology=topology,
                   cluster=cluster, send_tags=config.cc_rest_send_tags)
