"""The DuckDB warehouse: short transactions, serialized writers, partition-exact rewrites. A DuckDB file by
default; with ``lake`` (:mod:`.lake`), a DuckLake whose writers on many processes and hosts commit without a lock.

DuckDB lets one process write a file at a time. Writers here take a file lock (``<db>.lock``) and
wait for it, saying who they wait for, instead of surfacing DuckDB's lock error; each write is one
short transaction. Inserts go BY NAME (never by column position).

A program outside ours (an analyst's ``duckdb`` session, even a read-only one) holds DuckDB's own
file lock, which blocks every writer. Our connections then wait too (up to ``lock_timeout_s``),
logging the holder's PID every 10 s, rather than failing a run; ``snapshot()`` gives analysts a
consistent copy they can keep open as long as they like. (A lake has neither lock: readers see the last
committed snapshot, and a partition write that conflicts with one committed meanwhile is retried.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator, Mapping

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
from filelock import FileLock, Timeout

from ..errors import StorageError, readable_database_hint, storage_cause
from . import queries
from .lake import ALIAS as LAKE_ALIAS
from .lake import Lake, is_conflict
from .schema import PARTITIONED, TABLES, VIEWS, columns, create_statements, migration_statements

log = logging.getLogger(__name__)

_LOCK_WAIT_LOG_S = 10.0
# (path, inode) of files whose schema this process already created or migrated: every stage builds its own
# Warehouse, and re-running the DDL on each would be one more write transaction per stage
_SCHEMA_READY: set[tuple] = set()
CONFLICT_RETRIES = 20  # a lake's partition write refused for a concurrent commit: tried again, up to this often


def arrow_table(result):
    """A DuckDB result as a pyarrow Table across duckdb 1.4 (fetch_arrow_table) and 1.5 (to_arrow_table)."""
    fn = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table
    return fn()


def owned(table: pa.Table) -> pa.Table:
    """A copy of a (small) DuckDB result in buffers of its own size: a result's Arrow buffers can stay allocated
    at the size of the query's intermediate vectors (measured: ~30 MB kept per latent_stats chunk of 270 rows),
    so results kept across chunks are copied out."""
    return table.take(pa.array(np.arange(table.num_rows)))


# DuckDB's memory limit while a stage scans the activation cache (whose size grows with the corpus)
SCAN_BUFFER_POOL = "32MB"


@contextmanager
def buffer_pool(con, limit: str = SCAN_BUFFER_POOL) -> Iterator[None]:
    """DuckDB's memory limit set to ``limit`` for a stretch, then set back: a scan of a DuckDB file keeps every
    block it read in the buffer pool up to the limit (80 % of RAM by default), memory that would grow with the
    table scanned. Not on a lake: its tables are Parquet files, and the limit is the process's one DuckDB's, shared
    by every cursor -- a write of another thread would need DuckLake's file lists under it."""
    if con.execute(queries.CURRENT_DATABASE).fetchone()[0] == LAKE_ALIAS:
        yield
        return
    before = con.execute(queries.MEMORY_LIMIT).fetchone()[0]
    con.execute(queries.SET_MEMORY_LIMIT.format(limit=limit))
    try:
        yield
    finally:  # DuckDB's default exactly (its shown value is rounded), else the shown value
        con.execute(queries.RESET_MEMORY_LIMIT)
        if con.execute(queries.MEMORY_LIMIT).fetchone()[0] != before:
            con.execute(queries.SET_MEMORY_LIMIT.format(limit=before))


# below one DuckDB row group, an insert on one thread: the parallel insert's per-thread row groups cost more than
# they save (measured, 70k example windows: 36 -> 19 ms, the commit and checkpoint unchanged; 5k rows: 4.6 -> 3.2 ms)
SMALL_INSERT_ROWS = 122_880


@contextmanager
def _one_thread(con) -> Iterator[None]:
    before = con.execute(queries.THREADS).fetchone()[0]
    con.execute(queries.SET_THREADS.format(n=1))
    try:
        yield
    finally:
        try:
            con.execute(queries.SET_THREADS.format(n=int(before)))
        except duckdb.Error:  # a failed insert aborted the transaction: its error is the one to see
            pass


def cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Another connection to ``con``'s database for a concurrent thread, with the same default catalog (a lake's
    cursor would otherwise start in the in-memory one)."""
    cur = con.cursor()
    db = con.execute(queries.CURRENT_DATABASE).fetchone()[0]
    if cur.execute(queries.CURRENT_DATABASE).fetchone()[0] != db:
        cur.execute(queries.USE_DATABASE.format(name=db.replace('"', '""')))
    return cur


def _holder(err: Exception) -> str:
    """'PID n' from DuckDB's lock error ('Conflicting lock is held in <exe> (PID n)'), else its first line."""
    import re

    m = re.search(r"\(PID (\d+)\)", str(err))
    return f"PID {m.group(1)}" if m else str(err).splitlines()[0][:120]


class _Attempt:
    """One write transaction of :meth:`Warehouse.attempts`: commits on success; a lake conflict is swallowed (the
    loop runs the block again) unless it is the last attempt; any other error propagates as from ``write()``."""

    def __init__(self, wh: Warehouse, last: bool):
        self.wh, self.last, self.committed, self._cm = wh, last, False, None

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        self._cm = self.wh.write()
        return self._cm.__enter__()

    def __exit__(self, et, ev, tb) -> bool:
        try:
            suppressed = self._cm.__exit__(et, ev, tb)
        except (duckdb.Error, StorageError) as e:
            cause = e.__cause__ if isinstance(e, StorageError) else e
            if not self.last and is_conflict(cause):
                return True
            raise
        if et is not None and not self.last and is_conflict(ev):
            return True
        self.committed = et is None
        return bool(suppressed)


class Warehouse:
    def __init__(self, path: str | os.PathLike, lock_timeout_s: float = 3600.0, lake: Lake | None = None):
        """``path``: the DuckDB file; ``lake``: keep the tables in that DuckLake instead (``path`` unused)."""
        self.path = Path(path)
        self.lake = lake
        self.lock_timeout_s = lock_timeout_s
        self._lock = FileLock(str(self.path) + ".lock")
        self._initialized = False

    @classmethod
    def of(cls, cfg) -> Warehouse:
        """The project's warehouse: its lake (``cfg.lake``) or its DuckDB file (``cfg.database``)."""
        return cls(cfg.resolve(cfg.database), lake=Lake.of(cfg))

    # --- connections ---------------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection inside one transaction; commits on success, rolls back on error."""
        with self._writer_lock():
            con = self._connect_rw()
            try:
                con.begin()
                yield con
                con.commit()
            except BaseException as e:
                try:  # a failed COMMIT has already ended the transaction: never let that hide the real cause
                    con.rollback()
                except Exception:
                    pass
                cause = storage_cause(e, self.path) if isinstance(e, (duckdb.Error, OSError)) else None
                if cause is not None:
                    raise StorageError(cause) from e
                raise
            finally:
                try:
                    con.close()
                except Exception:
                    pass

    def attempts(self) -> Iterator[_Attempt]:
        """Write transactions until one commits -- every write of a stage goes through it::

            for attempt in wh.attempts():
                with attempt as con:
                    ...  # reads and writes of the warehouse only: on a lake, it may run again

        In the DuckDB file (one writer at a time) the first attempt is the only one. In a lake, a transaction whose
        commit conflicts with one committed meanwhile (DuckLake refuses an insert into a table another transaction
        deleted from) is rolled back and the block runs again from a fresh snapshot, up to CONFLICT_RETRIES times
        (logged), so writers of several processes and hosts never see the conflict."""
        for n in range(CONFLICT_RETRIES + 1):
            attempt = _Attempt(self, last=self.lake is None or n == CONFLICT_RETRIES)
            yield attempt
            if attempt.committed:
                return
            log.info("a concurrent commit to the lake conflicted with this one: writing again (%d)", n + 1)
            time.sleep(min(2.0, 0.05 * 2 ** n))

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for queries. Taken under the writer lock so it never collides with a writer."""
        with self._writer_lock():
            con = self._connect_rw()
            try:
                yield con
            finally:
                con.close()

    @contextmanager
    def session(self) -> Iterator[None]:
        """A stretch of this thread's reads and writes on one open database: the writer lock is held throughout
        and a keeper connection keeps DuckDB's database open, so each ``read()`` / ``write()`` inside it
        connects in well under a millisecond instead of opening the file (~20 ms) and closing it (~15 ms).
        Each write is still its own transaction. Hold it around a short stretch only (every other writer and
        reader waits for it, another thread of this process too)."""
        with self._writer_lock():
            keeper = self._connect_rw()
            try:
                yield
            finally:
                keeper.close()

    def query(self, sql: str, params: list | tuple | None = None) -> pl.DataFrame:
        with self.read() as con:
            return con.execute(sql, params or []).pl()

    def scalar(self, sql: str, params: list | tuple | None = None):
        with self.read() as con:
            row = con.execute(sql, params or []).fetchone()
            return None if row is None else row[0]

    def _connect_rw(self) -> duckdb.DuckDBPyConnection:
        if self.lake is not None:
            return self._ensure_schema(self.lake.connect(), ("lake", self.lake))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        start, last_log = time.monotonic(), None
        while True:  # another program (not ours, so not under our lock) may hold DuckDB's own lock
            try:
                con = duckdb.connect(str(self.path))
                break
            except duckdb.IOException as e:
                waited = time.monotonic() - start
                if "lock" not in str(e).lower():
                    raise StorageError(storage_cause(e, self.path) or readable_database_hint(e, self.path)) from e
                if waited > self.lock_timeout_s:
                    raise TimeoutError(f"{self.path} stayed open in another program for {waited:.0f}s "
                                       f"({_holder(e)}): close that session (analysts: use `autointerp "
                                       f"snapshot`) or raise lock_timeout_s") from None
                if last_log is None or time.monotonic() - last_log >= _LOCK_WAIT_LOG_S:
                    log.warning("waiting %.0fs for %s: DuckDB's lock is held by another program (%s); close that "
                                "session or give analysts `autointerp snapshot`", waited, self.path, _holder(e))
                    last_log = time.monotonic()
                time.sleep(0.5)
            except duckdb.Error as e:  # not a DuckDB file, a newer/older format, a damaged header
                raise StorageError(readable_database_hint(e, self.path)) from e
        return self._ensure_schema(con, (str(self.path.resolve()), self.path.stat().st_ino))

    def _ensure_schema(self, con: duckdb.DuckDBPyConnection, key: tuple) -> duckdb.DuckDBPyConnection:
        """Every table and view, created or migrated once per process (``key``: the database's identity)."""
        if not self._initialized and key in _SCHEMA_READY:  # this process already brought this file up to date
            names = [*TABLES, *VIEWS]  # (a read, no DDL) unless the file was replaced under the same inode
            self._initialized = con.execute(queries.SCHEMA_TABLES_PRESENT, [names]).fetchone()[0] == len(names)
        if not self._initialized:
            if self.lake is None:  # (under the writer lock)
                self._apply_schema(con)
            else:
                self._apply_lake_schema(con)
            self._initialized = True
            _SCHEMA_READY.add(key)
        return con

    def _apply_schema(self, con: duckdb.DuckDBPyConnection) -> None:
        existing: dict[str, set[str]] = {}
        for t, c in con.execute(queries.SCHEMA_COLUMNS).fetchall():
            existing.setdefault(t, set()).add(c)
        for stmt in migration_statements(existing) + create_statements(keys=self.lake is None):
            con.execute(stmt)

    def _apply_lake_schema(self, con: duckdb.DuckDBPyConnection) -> None:
        """The schema of this code in the lake, once for every process of every host: its fingerprint is kept as
        the comment of table ``fingerprints``, and a process finding it there runs no DDL (processes starting at
        once would otherwise replace the views over each other and conflict); the first ones, racing, retry."""
        statements = create_statements(keys=False)
        fp = "schema-" + hashlib.sha256("\n".join(statements).encode()).hexdigest()[:16]
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                if con.execute(queries.SCHEMA_MARK, ["fingerprints"]).fetchone() == (fp,):
                    return
                con.begin()
                self._apply_schema(con)
                con.execute(queries.SET_SCHEMA_MARK.format(mark=fp))
                con.commit()
                return
            except duckdb.TransactionException as e:
                try:
                    con.rollback()
                except duckdb.Error:
                    pass
                if not is_conflict(e) or attempt == CONFLICT_RETRIES:
                    raise
                time.sleep(min(2.0, 0.05 * 2 ** attempt))

    @contextmanager
    def _writer_lock(self):
        if self.lake is not None:  # DuckLake's snapshots isolate readers and writers: no lock
            yield
            return
        start = time.monotonic()
        while True:
            try:
                self._lock.acquire(timeout=_LOCK_WAIT_LOG_S)
                break
            except Timeout:
                waited = time.monotonic() - start
                if waited > self.lock_timeout_s:
                    raise TimeoutError(
                        f"{self.path} stayed locked by another writer for {waited:.0f}s: wait for it to finish "
                        f"or raise lock_timeout_s"
                    ) from None
                log.warning("waiting %.0fs for the DuckDB writer lock %s (another run is writing)", waited,
                            self._lock.lock_file)
        try:
            yield
        finally:
            self._lock.release()

    def snapshot(self, dest: str | os.PathLike) -> Path:
        """A consistent copy of the warehouse at ``dest`` (taken between writes) for long analyst sessions."""
        import shutil

        if self.lake is not None:
            raise StorageError("a lake needs no snapshot: attach it read-only beside the writers "
                               "(docs/scale_out.md, \"Analysts\")")
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        with self._writer_lock():
            con = self._connect_rw()
            try:
                con.execute("CHECKPOINT")  # fold the WAL into the file, so the file alone is the database
            finally:
                con.close()
            shutil.copyfile(self.path, tmp)
        os.replace(tmp, dest)  # readers of an older snapshot at dest never see a half-written file
        return dest

    # --- helpers -------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.lake is not None or self.path.is_file()

    def init(self) -> None:
        with self.write():
            pass

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """A named lock every writer of this warehouse respects: a file beside the DuckDB file (one host), or the
        lake's advisory lock in PostgreSQL (every host)."""
        if self.lake is not None:
            with self.lake.lock(name):
                yield
            return
        lock = FileLock(f"{self.path}.{name}.lock")
        with lock:
            yield

    def record_fingerprint(self, con: duckdb.DuckDBPyConnection, fp: str, kind: str, spec: Mapping) -> None:
        """The spec of ``fp``, once. In the DuckDB file, inside the caller's transaction. In a lake, two
        transactions of two processes would each see it absent and both insert it (DuckLake merges concurrent
        inserts), so it commits on its own first, under the lake's lock: never twice, and kept if the caller's
        transaction rolls back (a spec nothing refers to yet)."""
        args = [fp, kind, json.dumps(spec, sort_keys=True, default=str), fp]
        if self.lake is None:
            con.execute(queries.RECORD_FINGERPRINT, args)
            return
        own = self.lake.connect()
        try:
            if own.execute(queries.FINGERPRINT_KNOWN, [fp]).fetchone()[0]:  # the usual case: no lock to take
                return
            with self.lock("fingerprints"):
                own.execute(queries.RECORD_FINGERPRINT, args)  # (auto-commit: a snapshot taken under the lock)
        finally:
            own.close()

    @staticmethod
    def insert(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> int:
        if table not in TABLES:
            raise KeyError(f"unknown table {table}")
        if frame.is_empty():
            return 0
        con.register("_frame", frame.to_arrow())
        try:
            with _one_thread(con) if frame.height < SMALL_INSERT_ROWS else nullcontext():
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _frame")
        finally:
            con.unregister("_frame")
        return frame.height

    @staticmethod
    def delete(con, table: str, where: Mapping | None = None) -> None:
        """Delete the rows of ``table`` whose columns equal ``where``'s values (every row without ``where``)."""
        if table not in TABLES:
            raise KeyError(f"unknown table {table}")
        unknown = set(where or {}) - set(columns(table))
        if unknown:
            raise KeyError(f"{table} has no column {sorted(unknown)}")
        cond = " AND ".join(f"{k} = ?" for k in (where or {}))
        con.execute(f"DELETE FROM {table}" + (f" WHERE {cond}" if cond else ""), list((where or {}).values()))

    @staticmethod
    def delete_partition(con, table: str, layer: str, first: int, last: int, where: Mapping | None = None) -> None:
        if table not in PARTITIONED:
            raise KeyError(f"{table} is not partitioned")
        extra = "".join(f" AND {k} = ?" for k in (where or {}))
        con.execute(
            f"DELETE FROM {table} WHERE layer = ? AND latent BETWEEN ? AND ?{extra}",
            [layer, first, last, *(where or {}).values()],
        )

    def replace_partition(self, layer: str, first: int, last: int, frames: Mapping[str, pl.DataFrame],
                          where: Mapping[str, Mapping] | None = None,
                          fingerprints: Mapping[str, tuple[str, Mapping]] | None = None) -> dict[str, int]:
        """Replace exactly the rows of (layer, first..last) in each table, all in one transaction.

        ``where[table]`` narrows the delete (e.g. to one explainer fingerprint, so other explainers'
        rows of the same latents stay).
        """
        for attempt in self.attempts():
            counts = {}
            with attempt as con:
                for fp, (kind, spec) in (fingerprints or {}).items():
                    self.record_fingerprint(con, fp, kind, spec)
                for table, frame in frames.items():
                    self.delete_partition(con, table, layer, first, last, (where or {}).get(table))
                    counts[table] = self.insert(con, table, frame)
        return counts
