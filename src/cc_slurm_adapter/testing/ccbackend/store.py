"""SQLite storage of the stand-in: the ``job`` table and v1.5's ``job_cache``.

The tables carry the CHECK and UNIQUE constraints of cc-backend's schema, so a
bad ``shared``, ``smt`` or ``monitoringStatus`` fails at insert time with a 500,
and an identical start still in ``job_cache`` hits the UNIQUE constraint
(contract §4.1, §4.3). Everything is committed at once, so a restarted stand-in
(same ``--db``) keeps its jobs and its key pair.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["JobRow", "Store", "StoreFailure"]

_COLUMNS = (
    "job_id", "cluster", "subcluster", "partition", "project", "hpc_user", "shared",
    "exclusive", "job_state", "start_time", "duration", "walltime", "smt",
    "monitoring_status", "num_nodes", "num_hwthreads", "num_acc", "array_job_id",
    "resources", "meta_data", "energy", "footprint", "energy_footprint", "tags",
)

_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id BIGINT NOT NULL,
    cluster TEXT NOT NULL,
    subcluster TEXT NOT NULL,
    partition TEXT,
    project TEXT NOT NULL,
    hpc_user TEXT NOT NULL,
    shared TEXT NOT NULL DEFAULT 'none'
        CHECK (shared IN ('none', 'single_user', 'multi_user')),
    exclusive INTEGER CHECK (exclusive IN (0, 1, 2)),
    job_state TEXT NOT NULL,
    start_time BIGINT NOT NULL,
    duration INT NOT NULL DEFAULT 0,
    walltime INT NOT NULL DEFAULT 0,
    smt TINYINT NOT NULL DEFAULT 1 CHECK (smt IN (0, 1)),
    monitoring_status TINYINT NOT NULL DEFAULT 1
        CHECK (monitoring_status IN (0, 1, 2, 3)),
    num_nodes INT NOT NULL,
    num_hwthreads INT,
    num_acc INT,
    array_job_id BIGINT,
    resources TEXT NOT NULL,
    meta_data TEXT,
    energy REAL NOT NULL DEFAULT 0.0,
    footprint TEXT,
    energy_footprint TEXT,
    tags TEXT,
    stop_time BIGINT,
    UNIQUE (job_id, cluster, start_time)
);
CREATE INDEX IF NOT EXISTS {name}_by_jobid ON {name} (job_id, cluster);
"""


class StoreFailure(Exception):
    """A database error the server answers with 500 (``str()`` is SQLite's text)."""


@dataclass(slots=True)
class JobRow:
    """One stored job; ``table`` is ``job`` or ``job_cache``."""

    table: str
    id: int
    job_id: int
    cluster: str
    subcluster: str
    partition: str | None
    project: str
    user: str
    shared: str
    exclusive: int | None
    job_state: str
    start_time: int
    duration: int
    walltime: int
    smt: int
    monitoring_status: int
    num_nodes: int
    num_hwthreads: int | None
    num_acc: int | None
    array_job_id: int | None
    resources: list[dict[str, Any]]
    meta_data: dict[str, str] | None
    energy: float
    footprint: dict[str, float] | None
    energy_footprint: dict[str, float] | None
    tags: list[dict[str, Any]] | None
    stop_time: int | None

    @classmethod
    def from_sql(cls, table: str, row: sqlite3.Row) -> JobRow:
        def js(text: str | None) -> Any:
            return None if text is None else json.loads(text)

        return cls(
            table=table, id=row["id"], job_id=row["job_id"], cluster=row["cluster"],
            subcluster=row["subcluster"], partition=row["partition"], project=row["project"],
            user=row["hpc_user"], shared=row["shared"], exclusive=row["exclusive"],
            job_state=row["job_state"], start_time=row["start_time"],
            duration=row["duration"], walltime=row["walltime"], smt=row["smt"],
            monitoring_status=row["monitoring_status"], num_nodes=row["num_nodes"],
            num_hwthreads=row["num_hwthreads"], num_acc=row["num_acc"],
            array_job_id=row["array_job_id"], resources=js(row["resources"]),
            meta_data=js(row["meta_data"]), energy=row["energy"],
            footprint=js(row["footprint"]), energy_footprint=js(row["energy_footprint"]),
            tags=js(row["tags"]), stop_time=row["stop_time"],
        )


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


class Store:
    """The stand-in's database. Thread-safe (one lock); all calls are short."""

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF" if path == ":memory:"
                         else "PRAGMA synchronous=NORMAL")
        self._db.executescript(_TABLE.format(name="job") + _TABLE.format(name="job_cache")
                               + "CREATE TABLE IF NOT EXISTS standin_meta "
                                 "(key TEXT PRIMARY KEY, value TEXT NOT NULL);")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- meta -------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM standin_meta WHERE key = ?",
                                   (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO standin_meta (key, value) VALUES (?, ?)",
                       (key, value))

    # --- start ------------------------------------------------------------------------

    def find_duplicate(self, job_id: int, cluster: str, start_time: int) -> JobRow | None:
        """The §4.2 step-5 rule: a row in ``job`` (not the cache) with the same jobId
        and cluster whose startTime is less than a day before the request's (no abs)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM job WHERE job_id = ? AND cluster = ?", (job_id, cluster)
            ).fetchall()
        for row in rows:
            if start_time - row["start_time"] < 86400:
                return JobRow.from_sql("job", row)
        return None

    def insert(self, job: dict[str, Any], *, table: str) -> int:
        """Insert a decoded start body; :class:`StoreFailure` on a constraint error."""
        values = (
            job["jobId"], job["cluster"], job["subCluster"], job.get("partition") or None,
            job["project"], job["user"], job.get("shared", "none"), job.get("exclusive"),
            job["jobState"], job["startTime"], job.get("duration", 0),
            job.get("walltime", 0), job.get("smt", 0),
            job["monitoringStatus"], job["numNodes"], job.get("numHwthreads") or None,
            job.get("numAcc") or None, job.get("arrayJobId") or None,
            _dump(job["resources"]), _dump(job.get("metaData")), job.get("energy", 0.0),
            _dump(job.get("footprint")), _dump(job.get("energyFootprint")),
            _dump(job.get("tags") or None),
        )
        sql = (f"INSERT INTO {table} ({', '.join(_COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(_COLUMNS))})")
        try:
            with self._tx() as db:
                cur = db.execute(sql, values)
                return int(cur.lastrowid or 0)
        except sqlite3.Error as exc:
            raise StoreFailure(str(exc)) from exc

    # --- stop -------------------------------------------------------------------------

    def find_for_stop(self, job_id: int, cluster: str | None, start_time: int | None,
                      tables: Sequence[str]) -> JobRow | None:
        """The newest row (highest id) matching jobId [+cluster] [+startTime], searching
        ``tables`` in order (v1.5: job_cache, then job)."""
        where: list[str] = ["job_id = ?"]
        args: list[Any] = [job_id]
        if cluster:
            where.append("cluster = ?")
            args.append(cluster)
        if start_time:
            where.append("start_time = ?")
            args.append(start_time)
        with self._lock:
            for table in tables:
                row = self._db.execute(
                    f"SELECT * FROM {table} WHERE {' AND '.join(where)} "
                    "ORDER BY id DESC LIMIT 1", args).fetchone()
                if row is not None:
                    return JobRow.from_sql(table, row)
        return None

    def stop(self, row: JobRow, *, state: str, stop_time: int) -> JobRow:
        """Move the row out of the cache if needed, then write state and duration."""
        duration = stop_time - row.start_time
        try:
            with self._tx() as db:
                if row.table == "job_cache":
                    row.id = self._move(db, row.id)
                    row.table = "job"
                db.execute("UPDATE job SET job_state = ?, duration = ?, stop_time = ? "
                           "WHERE id = ?", (state, duration, stop_time, row.id))
        except sqlite3.Error as exc:
            raise StoreFailure(str(exc)) from exc
        row.job_state, row.duration, row.stop_time = state, duration, stop_time
        return row

    @staticmethod
    def _move(db: sqlite3.Connection, cache_id: int) -> int:
        cols = ", ".join((*_COLUMNS, "stop_time"))
        cur = db.execute(f"INSERT INTO job ({cols}) SELECT {cols} FROM job_cache WHERE id = ?",
                         (cache_id,))
        db.execute("DELETE FROM job_cache WHERE id = ?", (cache_id,))
        return int(cur.lastrowid or 0)

    def commit_cache(self) -> int:
        """The v1.5 commit worker: move every cached row into ``job``. Returns the
        number of rows moved. Rows that collide with ``job`` stay in the cache."""
        moved = 0
        with self._tx() as db:
            for (cache_id,) in db.execute("SELECT id FROM job_cache ORDER BY id").fetchall():
                try:
                    db.execute("SAVEPOINT mv")
                    self._move(db, cache_id)
                    db.execute("RELEASE mv")
                    moved += 1
                except sqlite3.IntegrityError:
                    db.execute("ROLLBACK TO mv")
                    db.execute("RELEASE mv")
        return moved

    # --- queries ----------------------------------------------------------------------

    def query(self, *, states: Sequence[str] = (), cluster: str | None = None,
              project: str | None = None, start_range: tuple[int, int] | None = None,
              limit: int = 25, offset: int = 0, table: str = "job") -> list[JobRow]:
        where: list[str] = []
        args: list[Any] = []
        if states:
            where.append(f"job_state IN ({', '.join('?' * len(states))})")
            args.extend(states)
        if cluster is not None:
            where.append("cluster = ?")
            args.append(cluster)
        if project is not None:
            where.append("project = ?")
            args.append(project)
        if start_range is not None:
            where.append("start_time BETWEEN ? AND ?")
            args.extend(start_range)
        sql = f"SELECT * FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start_time DESC, id DESC LIMIT ? OFFSET ?"
        with self._lock:
            rows = self._db.execute(sql, [*args, limit, offset]).fetchall()
        return [JobRow.from_sql(table, r) for r in rows]

    def by_id(self, db_id: int, table: str = "job") -> JobRow | None:
        with self._lock:
            row = self._db.execute(f"SELECT * FROM {table} WHERE id = ?", (db_id,)).fetchone()
        return None if row is None else JobRow.from_sql(table, row)

    def all_jobs(self) -> list[JobRow]:
        """Every row of both tables (for the audit checker)."""
        with self._lock:
            out = [JobRow.from_sql("job", r)
                   for r in self._db.execute("SELECT * FROM job ORDER BY id")]
            out += [JobRow.from_sql("job_cache", r)
                    for r in self._db.execute("SELECT * FROM job_cache ORDER BY id")]
        return out

    def clear(self) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM job")
            db.execute("DELETE FROM job_cache")
