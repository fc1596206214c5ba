"""Who ran a job, and where, from the source a user cannot shape.

The detail view of a running job (``scontrol show job -d -o`` text ≤ 24.05.0, squeue
JSON later) is the only one with per-node CPU ids and GPU indices, but on 22.05 it is
text in which a job's own name, comment or paths sit beside its user and hosts
(issue 10). sacct's JSON has user, group, account and the node list as separate JSON
fields, written by slurmdbd: no job field can reach them. So wherever both records are
at hand the identity and hosts come from accounting; the detail view keeps what only it
has (per-node resources), limited to the hosts accounting names.
"""

from __future__ import annotations

import logging

import msgspec

from cc_slurm_adapter.slurm.record import JobRecord

__all__ = ["with_accounting_identity"]

log = logging.getLogger(__name__)


def with_accounting_identity(detail: JobRecord, accounting: JobRecord | None) -> JobRecord:
    """``detail`` with user, group, account and hosts taken from ``accounting``.

    * user/group/account: accounting's value wherever it has one (group only from a
      settled record; the detail's user id is kept only when the user names agree);
    * hosts: accounting's node list, unless it has none yet or the record is
      provisional (slurmdbd's placeholder when a job starts can hold an incomplete node
      list: seen on 22.05.8); per-node resources on a host accounting does not name are
      dropped, and so are all of them when they claim more CPUs than accounting
      allocated.

    Every disagreement is logged (warning) and noted in the record's ``warnings``.
    ``accounting=None`` (slurmdbd has no record yet) returns ``detail`` unchanged, with
    a note that it was not checked.
    """
    if accounting is None:
        return msgspec.structs.replace(detail, warnings=(
            *detail.warnings, "identity: not checked against accounting (no sacct record)"))
    if accounting.job_id != detail.job_id:
        raise ValueError(f"job ids differ: {detail.job_id} vs {accounting.job_id}")
    notes: list[str] = []
    changes: dict[str, object] = {}
    # 22.05.8's placeholder record (provisional) of a starting job says group "root" for
    # testuser's job (tests/fixtures/slurm/22.05/sacct_running1.json): group only from a
    # settled record; user and account are right in it.
    names = ("user", "account") if accounting.provisional else ("user", "group", "account")
    for name in names:
        mine, theirs = getattr(detail, name), getattr(accounting, name)
        if theirs is not None and mine != theirs:
            notes.append(f"identity: {name} {theirs!r} from accounting (detail said {mine!r})")
            changes[name] = theirs
    if "user" in changes:
        changes["user_id"] = accounting.user_id
    nodes = detail.nodes
    if accounting.nodes and not accounting.provisional \
            and tuple(accounting.nodes) != tuple(detail.nodes):
        notes.append(f"identity: hosts {','.join(accounting.nodes)} from accounting "
                     f"(detail said {','.join(detail.nodes) or 'none'})")
        changes["nodes"] = nodes = accounting.nodes
    resources = detail.resources
    allowed = set(nodes)
    kept = tuple(r for r in resources if r.hostname in allowed)
    if len(kept) != len(resources):
        dropped = sorted({r.hostname for r in resources} - allowed)
        notes.append(f"identity: per-node resources on {','.join(dropped)} dropped "
                     "(not a host of this job in accounting)")
    cpus = sum(r.cpus or 0 for r in kept)
    if kept and accounting.cpus and cpus > accounting.cpus:
        notes.append(f"identity: per-node resources claim {cpus} CPUs, accounting "
                     f"{accounting.cpus}; dropped")
        kept = ()
    if kept != resources:
        changes["resources"] = kept
    if not notes:
        return detail
    for note in notes:
        log.warning("job %s: %s", detail.job_id, note)
    return msgspec.structs.replace(detail, **changes,
                                   warnings=(*detail.warnings, *notes))
