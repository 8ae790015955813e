"""Monotone writes of LLM results: a good row is never replaced by a failure (the rule of the incremental stages).

A row's ``status`` is ``ok`` / ``undefined`` (done: an answer was used), ``budget_exceeded`` (never sent) or a
failure. :func:`merge` writes a partition's unit rows inside the caller's transaction: a new done row replaces the
unit's row (and its item rows); a new failure replaces a failure but never a done row, which stays, with the
failure kept beside it (``attempts``, ``failed_attempts``, ``last_error``, ``last_failed_at``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import polars as pl

OK = "ok"
DONE = ("ok", "undefined")  # a score whose items were answered but whose metric has no value is an outcome, not a failure
NOT_SENT = ("budget_exceeded",)
HISTORY = ("attempts", "failed_attempts", "last_error", "last_failed_at")


def merge(con, wh, table: str, rows: pl.DataFrame, key: Sequence[str], reason: str,
          items: Mapping[str, pl.DataFrame] | None = None) -> dict[str, int]:
    """Write ``rows`` (one per unit) into ``table`` monotonically, inside the caller's transaction.

    ``key``: the unit's columns; ``reason``: the column of ``rows`` holding a failure's reason (columns named
    ``_...`` are not stored); ``items``:
    tables of per-unit detail rows (same key columns) replaced together with their unit. Returns counts of
    units ``replaced`` (new ok, or a failure over a failure) and ``kept`` (a failure beside an ok row)."""
    if rows.is_empty():
        return {"replaced": 0, "kept": 0}
    key = list(key)
    con.register("_units", rows.select(key).to_arrow())
    try:
        old = con.execute(f"SELECT {', '.join('t.' + k for k in key)}, t.status AS old_status, "
                          f"{', '.join('t.' + h for h in HISTORY)} FROM {table} t JOIN _units u USING ({', '.join(key)})"
                          ).pl()
    finally:
        con.unregister("_units")
    if old.is_empty():
        old = pl.DataFrame(schema={**{k: rows.schema[k] for k in key}, "old_status": pl.Utf8, "attempts": pl.Int32,
                                   "failed_attempts": pl.Int32, "last_error": pl.Utf8, "last_failed_at": pl.Datetime})
    both = rows.join(old.with_columns(pl.col(k).cast(rows.schema[k]) for k in key), on=key, how="left")
    sent = ~pl.col("status").is_in(NOT_SENT)
    failed = ~pl.col("status").is_in(DONE) & sent
    both = both.with_columns(
        keep_old=(~pl.col("status").is_in(DONE) & pl.col("old_status").is_in(DONE)).fill_null(False),
        attempts=(pl.col("attempts").fill_null(0) + sent.cast(pl.Int32)).cast(pl.Int32),
        failed_attempts=(pl.col("failed_attempts").fill_null(0) + failed.cast(pl.Int32)).cast(pl.Int32),
        last_error=pl.when(failed).then(pl.col(reason).cast(pl.Utf8)).otherwise(pl.col("last_error")),
        last_failed_at=pl.when(failed).then(pl.lit(None, pl.Datetime)).otherwise(pl.col("last_failed_at")),
        new_failure=failed,
    )
    replace = both.filter(~pl.col("keep_old"))
    kept = both.filter(pl.col("keep_old") & pl.col("new_failure"))
    keys = replace.select(key)
    if not keys.is_empty():
        con.register("_replace", keys.to_arrow())
        try:
            for t in [table, *(items or {})]:
                on = " AND ".join(f"{t}.{k} = _replace.{k}" for k in key)
                con.execute(f"DELETE FROM {t} USING _replace WHERE {on}")
        finally:
            con.unregister("_replace")
        wh.insert(con, table, replace.drop("old_status", "keep_old", "new_failure",
                                           *[c for c in replace.columns if c.startswith("_")]))
        con.register("_failed", replace.filter(pl.col("new_failure")).select(key).to_arrow())
        try:  # the failure's time is the transaction's (as created_at)
            on = " AND ".join(f"{table}.{k} = _failed.{k}" for k in key)
            con.execute(f"UPDATE {table} SET last_failed_at = current_timestamp FROM _failed WHERE {on}")
        finally:
            con.unregister("_failed")
        for t, frame in (items or {}).items():
            if not frame.is_empty():
                wh.insert(con, t, frame.join(keys.with_columns(pl.col(k).cast(frame.schema[k]) for k in key),
                                             on=key, how="semi"))
    if not kept.is_empty():
        con.register("_kept", kept.select(*key, "attempts", "failed_attempts", "last_error").to_arrow())
        try:
            on = " AND ".join(f"{table}.{k} = _kept.{k}" for k in key)
            con.execute(f"UPDATE {table} SET attempts = _kept.attempts, failed_attempts = _kept.failed_attempts, "
                        f"last_error = _kept.last_error, last_failed_at = current_timestamp FROM _kept WHERE {on}")
        finally:
            con.unregister("_kept")
    return {"replaced": replace.height, "kept": kept.height}
