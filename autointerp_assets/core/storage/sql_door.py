"""The read-only SQL door (``autointerp sql``): a user's statement runs on a connection that cannot change the
warehouse or touch any other file.

The connection is opened ``read_only`` with DuckDB's ``enable_external_access`` off and the configuration
locked: ``DROP`` / ``INSERT`` / ``UPDATE`` / ``CREATE`` are refused by the read-only attach, and
``read_text`` / ``read_csv`` / ``COPY ... TO`` / ``EXPORT`` / ``ATTACH`` / ``INSTALL`` / ``LOAD`` by the
disabled file system; ``SET`` cannot undo either. Writes are not offered: the pipeline writes (``autointerp
run``), and a copy for free-form work comes from ``autointerp snapshot``. A missing warehouse is an error,
never created. A lake (``lake:`` in the config) is attached read-only the same way, its data directory the
only one readable.
"""

from __future__ import annotations

import duckdb
import polars as pl

from ..errors import StorageError, readable_database_hint
from .lake import bare_connection
from .warehouse import Warehouse

CONFIG = {"enable_external_access": False, "lock_configuration": True}


class Refused(ValueError):
    """The statement would write or reach outside the warehouse (one line)."""


def missing(wh: Warehouse, config_hint: str = "the config's `database:`") -> str:
    return (f"no warehouse at {wh.path}: run `autointerp run` first (it creates it), or fix {config_hint} "
            "(a mistyped path would otherwise open an empty database)")


def read_only_query(wh: Warehouse, sql: str) -> pl.DataFrame:
    """The result of ``sql`` on a read-only, file-access-free connection to the warehouse."""
    if not wh.exists():
        raise StorageError(missing(wh))
    wh.init()  # bring our own schema (tables, views) up to date first, under the writer lock
    with wh._writer_lock():  # a consistent read between two writers' transactions
        try:
            con = _lake_door(wh) if wh.lake is not None else duckdb.connect(str(wh.path), read_only=True,
                                                                               config=CONFIG)
        except duckdb.Error as e:
            raise StorageError(readable_database_hint(e, wh.path)) from e
        try:
            return con.execute(sql).pl()
        except duckdb.Error as e:
            why = explain(e)
            if why is None:
                raise
            if wh.lake is not None:  # a lake has no snapshot: the analyst attaches it
                why = why.replace("open a copy (autointerp snapshot) in any DuckDB client",
                                  "attach the lake in any DuckDB client (docs/scale_out.md)")
            raise Refused(why) from None
        finally:
            con.close()


def _lake_door(wh: Warehouse) -> duckdb.DuckDBPyConnection:
    """The same door on a lake: attached read-only (the last committed snapshot; writers go on), then file access
    off but for the lake's own data directory, and the configuration locked."""
    con = bare_connection()
    try:
        wh.lake.attach(con, "lake", read_only=True)
        con.execute("USE lake")
        con.execute("SET allowed_directories = ?", [[wh.lake.data_path]])  # (a directory or a store's prefix)
        for k, v in CONFIG.items():
            con.execute(f"SET {k} = {str(v).lower()}")
    except BaseException:
        con.close()
        raise
    return con


def explain(e: duckdb.Error) -> str | None:
    """One line saying why the door refused ``e``'s statement; None when ``e`` is not a refusal."""
    first = " ".join(str(e).splitlines()[0].split())
    if isinstance(e, duckdb.PermissionException) or "disabled" in first:
        return (f"refused: autointerp sql reads the warehouse only, with file access off ({first}): query its "
                "tables and views; for files or other databases open a copy (autointerp snapshot) in any DuckDB client")
    if "read-only" in first:
        return (f"refused: autointerp sql is read-only ({first}): the pipeline writes (autointerp run, --force to "
                "redo); for scratch tables open a copy (autointerp snapshot) in any DuckDB client")
    if "configuration has been locked" in first:
        return f"refused: autointerp sql's settings are fixed ({first})"
    return None
