"""The warehouse as a DuckLake: its catalog in PostgreSQL, its data files as Parquet under a data path.

Every connection is an in-memory DuckDB that loads the ``ducklake`` and ``postgres_scanner`` extensions from their
PyPI wheels (never downloaded at run time: the wheels must be built for the installed DuckDB, checked here with
the fix in the error) and attaches the lake as the default catalog, so the project's SQL runs unchanged. Writers
on any number of processes and hosts commit without a file lock (DuckLake's snapshots: a transaction that
conflicts with one committed meanwhile fails at commit and is retried by the caller); readers see the last
committed snapshot and never block a writer. The password never appears here: libpq reads PGPASSWORD or
~/.pgpass.
"""

from __future__ import annotations

import importlib
import os
import tempfile
import threading
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import duckdb

from ..errors import StorageError

# (package module, its file's stem, the name DuckDB loads it by: the entry point is <name>_duckdb_cpp_init)
EXTENSIONS = (("duckdb_extension_postgres", "postgres", "postgres_scanner"),
              ("duckdb_extension_ducklake", "ducklake", "ducklake"))
OBJECT_STORE = ("duckdb_extension_httpfs", "httpfs", "httpfs")  # only for an s3:// / https:// data path
ALIAS = "lake"
_BOOTSTRAP_RETRIES = 10  # attaching while another process creates a new lake's catalog tables: tried again


def _package(module: str) -> str:
    return module.replace("_", "-")


def extension_file(module: str, stem: str, name: str) -> Path:
    """The extension binary of ``module``'s wheel for the installed DuckDB, under the file name DuckDB loads it by
    (a link beside it when the wheel names it otherwise)."""
    version = duckdb.__version__
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise StorageError(f"the lake needs the DuckDB extension wheel {_package(module)}: pip install "
                           f"{_package(module)}=={version} (the installed duckdb's version)") from None
    base = Path(mod.__file__).parent / "extensions"
    built = sorted(p.name[1:] for p in base.iterdir() if p.name.startswith("v")) if base.is_dir() else []
    found = base / f"v{version}" / f"{stem}.duckdb_extension"
    if not found.is_file():
        raise StorageError(f"{_package(module)} is built for DuckDB {', '.join(built) or '(none)'} but duckdb "
                           f"{version} is installed: pip install duckdb=={built[-1] if built else '<its version>'} "
                           f"(extensions load only into the DuckDB they were built for)")
    if stem == name:
        return found
    link_dir = Path(tempfile.gettempdir()) / f"autointerp-duckdb-extensions-{os.getuid()}" / f"v{version}"
    link = link_dir / f"{name}.duckdb_extension"
    if not (link.is_symlink() and os.readlink(link) == str(found)):
        link_dir.mkdir(parents=True, exist_ok=True)
        tmp = link_dir / f".{name}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(found)
        os.replace(tmp, link)  # atomic: a concurrent process sees the old link or the new one
    return link


def bare_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that never downloads or auto-loads an extension (the lake's come from their wheels)."""
    return duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


@dataclass(frozen=True)
class Lake:
    """A DuckLake's catalog (libpq connection string, no password), data path (resolved) and, for data in an object
    store, DuckDB's settings to reach it (credentials excepted: the environment's)."""
    catalog: str
    data_path: str
    store: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, cfg) -> Lake | None:
        """The project's lake (``cfg.lake``; a relative data path is the project root's), or None."""
        lake = getattr(cfg, "lake", None)
        if lake is None:
            return None
        data = lake.data_path if "://" in lake.data_path else str(cfg.resolve(lake.data_path))
        store = lake.object_store.settings() if lake.object_store is not None else ()
        return cls(lake.catalog, data.rstrip("/") + "/", store)

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A connection to the lake: a cursor of this process's one DuckDB instance with the lake attached (loading
        the extensions and attaching costs ~0.2 s; a cursor, well under a millisecond). Each cursor has its own
        transactions, and each transaction starts from the lake's latest snapshot."""
        with _INSTANCES_LOCK:
            key = (self, os.getpid())  # (a forked child attaches anew)
            db = _INSTANCES.get(key)
            if db is None:
                db = _INSTANCES[key] = self._attach()
        cur = db.cursor()
        cur.execute(f"USE {ALIAS}")
        return cur

    def _attach(self) -> duckdb.DuckDBPyConnection:
        for attempt in range(_BOOTSTRAP_RETRIES + 1):
            con = bare_connection()
            try:
                self.attach(con, ALIAS)
                return con
            except StorageError as e:  # another process is creating a new lake's catalog tables: attach again
                con.close()
                if "Failed to initialize DuckLake" not in str(e) or attempt == _BOOTSTRAP_RETRIES:
                    raise
                time.sleep(0.2 * (attempt + 1))
            except BaseException:
                con.close()
                raise
        raise AssertionError("unreachable")

    def attach(self, con: duckdb.DuckDBPyConnection, alias: str, read_only: bool = False) -> None:
        """Attach the lake to ``con`` as ``alias`` (its extensions loaded from their wheels first): what an
        analyst's session does, read-only, beside the writers."""
        remote = "://" in self.data_path
        files = [extension_file(*e) for e in EXTENSIONS + ((OBJECT_STORE,) if remote else ())]
        if not remote and not read_only:
            Path(self.data_path).mkdir(parents=True, exist_ok=True)
        try:
            for f in files:
                con.execute(f"LOAD {_quote(str(f))}")
        except duckdb.Error as e:
            raise StorageError(f"cannot load a DuckDB extension of the lake: {str(e).splitlines()[0]}") from None
        if remote:
            self._reach_store(con)
        try:
            # data inlining (small inserts kept in the catalog) is off: it reserves the column name row_id
            con.execute(f"ATTACH {_quote('ducklake:postgres:' + self.catalog)} AS {alias} "
                        f"(DATA_PATH {_quote(self.data_path)}, DATA_INLINING_ROW_LIMIT 0"
                        f"{', READ_ONLY' if read_only else ''})")
        except duckdb.Error as e:
            raise StorageError(f"cannot open the lake (catalog '{self.catalog}', data {self.data_path}): "
                               f"{str(e).splitlines()[0]} -- start PostgreSQL or fix lake.catalog / lake.data_path") \
                from None

    def _reach_store(self, con: duckdb.DuckDBPyConnection) -> None:
        """Apply the object store's settings to ``con`` and make one listing request under the data path, so that a
        wrong endpoint, a missing bucket or refused credentials fail here in one line, not at a stage's first
        commit."""
        for name, value in self.store:
            con.execute(f"SET GLOBAL {name} = {_quote(value)}")  # (every cursor of the instance)
        try:
            # (S3 lists the keys that start with the part before the wildcard: none, whatever the lake holds)
            con.execute("SELECT count(*) FROM glob(?)", [self.data_path + ".autointerp-reach-*"]).fetchall()
        except duckdb.Error as e:
            why = " ".join(str(e).split("LINE 1:")[0].split())[:300]  # (without the echoed query)
            raise StorageError(f"cannot reach the lake's data at {self.data_path}: {why} -- create the bucket, check "
                               "lake.object_store (endpoint, url_style, use_ssl) and export AWS_ACCESS_KEY_ID and "
                               "AWS_SECRET_ACCESS_KEY") from None

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold the lake-wide lock ``name`` (a PostgreSQL advisory lock in the catalog's database): one holder on
        every process of every host at a time. A holder that dies releases it (its connection closes)."""
        import psycopg2

        key = zlib.crc32(f"autointerp:{name}".encode()) - 2 ** 31  # a signed 32-bit key of the name
        try:
            con = psycopg2.connect(self.catalog)
        except psycopg2.Error as e:
            raise StorageError(f"cannot reach the lake's catalog '{self.catalog}' to lock {name}: "
                               f"{str(e).strip().splitlines()[0]} -- start PostgreSQL or fix lake.catalog") from None
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(%s)", [key])
            yield
        finally:
            con.close()  # (ends the session: the lock goes with it)


_INSTANCES: dict[tuple[Lake, int], duckdb.DuckDBPyConnection] = {}
_INSTANCES_LOCK = threading.Lock()


def is_conflict(err: BaseException) -> bool:
    """A commit refused because another transaction committed a conflicting change first (retry it)."""
    return isinstance(err, duckdb.TransactionException) and "conflict" in str(err).lower()
