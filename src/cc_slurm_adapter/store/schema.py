"""The store's schema and its migrations (``PRAGMA user_version``).

``MIGRATIONS[i]`` brings a database from version ``i`` to ``i + 1``; a new schema
change is one more entry at the end, never an edit of an old one. Each migration
runs in its own transaction together with the version bump, so a crash during an
upgrade leaves the old version intact and the next start runs it again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

__all__ = ["LATEST", "MIGRATIONS", "Migration", "migrate"]

Migration = Callable[[sqlite3.Connection], None]


def _statements(script: str) -> Migration:
    """A migration made of SQL statements, run one by one inside the migration's
    transaction (``executescript`` would commit first, breaking the atomicity)."""
    statements = [s.strip() for s in script.split(";") if s.strip()]

    def run(conn: sqlite3.Connection) -> None:
        for statement in statements:
            conn.execute(statement)

    return run


# Blobs go last in each row: SQLite then reads their overflow pages only when a query
# asks for them, so scans by state or cluster stay cheap.
_v1_tables = _statements("""
        CREATE TABLE runs (
            id             INTEGER PRIMARY KEY,
            cluster        TEXT    NOT NULL,
            job_id         INTEGER NOT NULL,
            start_time     INTEGER NOT NULL,   -- the startTime sent, never updated
            sluid          TEXT,
            restart_count  INTEGER,
            state          TEXT    NOT NULL,
            reason         TEXT,
            phase          TEXT,               -- Slurm's last view: pending/running/ended/unknown
            first_seen     REAL    NOT NULL,
            last_seen      REAL    NOT NULL,
            updated        REAL    NOT NULL,
            start_acked    REAL,
            stop_time      INTEGER,
            snapshot_rank0 INTEGER,
            snapshot_rank1 INTEGER,
            snapshot_at    REAL,
            start_payload  BLOB,
            snapshot       BLOB,
            UNIQUE (cluster, job_id, start_time)
        );
        CREATE TABLE outbox (
            id           INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the age order
            run_id       INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            kind         TEXT    NOT NULL CHECK (kind IN ('start', 'stop')),
            attempts     INTEGER NOT NULL DEFAULT 0,
            next_attempt REAL    NOT NULL,
            claimed_at   REAL,
            created      REAL    NOT NULL,
            last_error   TEXT,
            payload      BLOB    NOT NULL,
            UNIQUE (run_id, kind)
        );
        CREATE TABLE cursors (
            cluster TEXT PRIMARY KEY,   -- '*' = every cluster without its own row
            cursor  INTEGER NOT NULL,
            updated REAL    NOT NULL
        );
        CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )
""")

# The daemon's queries: the drain (due entries, oldest first), counts and pages by state,
# the runs a cluster has open in cc-backend (reconciliation), runs by sluid.
# (cluster, job_id, start_time) and (run_id, kind) are indexed by their UNIQUE.
_v2_indexes = _statements("""
        CREATE INDEX outbox_due ON outbox (next_attempt);
        CREATE INDEX runs_state ON runs (state);
        CREATE INDEX runs_cluster_state ON runs (cluster, state);
        CREATE INDEX runs_sluid ON runs (sluid) WHERE sluid IS NOT NULL
""")



def _v3_targets(conn: sqlite3.Connection) -> None:
    """Outbox entries per **target** (``rest``: cc-backend's REST API, ``nats``: the NATS
    subject), so each is tracked on its own; ``runs.start_targets`` lists the targets a
    run's start was queued for (a target gets a stop only after its start).

    SQLite cannot change a UNIQUE constraint in place: the outbox is rebuilt (new table,
    copy, drop, rename), all inside the migration's one transaction. Every v2 entry was
    for REST. The AUTOINCREMENT counter is carried over, so no id is ever reused.
    """
    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    for statement in (
        """CREATE TABLE outbox_v3 (
            id           INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the age order
            run_id       INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            kind         TEXT    NOT NULL CHECK (kind IN ('start', 'stop')),
            target       TEXT    NOT NULL DEFAULT 'rest' CHECK (target IN ('rest', 'nats')),
            attempts     INTEGER NOT NULL DEFAULT 0,
            next_attempt REAL    NOT NULL,
            claimed_at   REAL,
            created      REAL    NOT NULL,
            last_error   TEXT,
            payload      BLOB    NOT NULL,
            UNIQUE (run_id, kind, target)
        )""",
        "INSERT INTO outbox_v3 (id, run_id, kind, target, attempts, next_attempt, claimed_at,"
        " created, last_error, payload) SELECT id, run_id, kind, 'rest', attempts,"
        " next_attempt, claimed_at, created, last_error, payload FROM outbox",
        "DROP TABLE outbox",
        "ALTER TABLE outbox_v3 RENAME TO outbox",
        # the REST drain: due entries of one target; the NATS drain: one target by id
        "CREATE INDEX outbox_due ON outbox (target, next_attempt)",
        "CREATE INDEX outbox_target ON outbox (target)",
        "ALTER TABLE runs ADD COLUMN start_targets TEXT",
        "UPDATE runs SET start_targets = 'rest' WHERE start_payload IS NOT NULL",
    ):
        conn.execute(statement)
    if seq is not None:
        conn.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'outbox'",
                     (int(seq[0]),))
        conn.execute("INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox', ? WHERE NOT "
                     "EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox')",
                     (int(seq[0]),))


MIGRATIONS: tuple[Migration, ...] = (_v1_tables, _v2_indexes, _v3_targets)
LATEST = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS,
            target: int | None = None) -> tuple[int, int]:
    """Run the missing migrations up to ``target`` (default: all); ``(before, after)``.

    The connection must be in autocommit mode (``isolation_level=None``). The caller
    checks first that the database is not newer than ``len(migrations)``.
    """
    target = len(migrations) if target is None else target
    before = version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    while version < target:
        conn.execute("BEGIN IMMEDIATE")
        try:
            migrations[version](conn)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        version += 1
    return before, version
