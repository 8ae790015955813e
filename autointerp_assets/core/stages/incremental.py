"""Incremental, monotone LLM stages: send only the work that is missing or failed, never lose a good result.

The units of work are latents (``explanations``) and (latent, scorer) pairs (``scores``), for the current
explainer fingerprint. Three rules:

- **Plan** (:func:`done_latents`, :func:`done_scores`): a unit is done when it has an ``ok`` row (for an
  explanation: made from the current examples; for a score: ``ok`` or ``undefined``, by the current scorer
  fingerprint, at least as new as the ok explanation it scores). A run sends only the units that are not done, unless
  it is forced (``autointerp run --force`` / the run tag ``autointerp/force``), which re-sends all of them.
- **Merge** (:func:`merge`): a new ``ok`` row replaces the unit's row (and its item rows); a new failure
  replaces a failure, but never an ``ok`` row: the good row stays and the failure is kept beside it
  (``attempts``, ``failed_attempts``, ``last_error``, ``last_failed_at``). A unit that was not sent (the
  budget) is never counted as an attempt.
- **Verdict** (:func:`verdict`): a stage whose units failed beyond ``failures.max_share``, or that met a fatal
  server error, fails its step with one line (after its results and failures are committed).
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

import polars as pl

from ..errors import StageFailed

OK = "ok"
DONE = ("ok", "undefined")  # a score whose items were answered but whose metric has no value is an outcome, not a failure
NOT_SENT = ("budget_exceeded",)
HISTORY = ("attempts", "failed_attempts", "last_error", "last_failed_at")


def done_latents(wh, layer: str, first: int, last: int, efp: str, sampler_fp: str | None = None) -> set[int]:
    """Latents of the range with an ok explanation by this explainer (made from the examples of
    ``sampler_fp`` when given: an explanation of other examples is redone, never kept as done)."""
    return set(wh.query("SELECT latent FROM explanations WHERE layer = ? AND latent BETWEEN ? AND ? AND explainer_fp = ? "
                        "AND status = 'ok' AND (? IS NULL OR sampler_fp = ?)",
                        [layer, first, last, efp, sampler_fp, sampler_fp])["latent"].to_list())


def done_scores(wh, layer: str, first: int, last: int, efp: str,
                scorers: Sequence[str] | Mapping[str, str]) -> set[tuple[int, str]]:
    """(latent, scorer) pairs with a done score (ok, or undefined: answered, the metric has no value) at least as
    new as the ok explanation it scores. ``scorers``: names, or {name: current scorer fingerprint}, then a score
    by another scorer fingerprint (the scorer's config changed) is not done."""
    if not scorers:
        return set()
    fps = dict(scorers) if isinstance(scorers, Mapping) else {}
    rows = wh.query("SELECT s.latent, s.scorer, s.scorer_fp FROM scores s JOIN explanations e ON e.layer = s.layer AND "
                    "e.latent = s.latent AND e.explainer_fp = s.explainer_fp AND e.status = 'ok' "
                    "WHERE s.layer = ? AND s.latent BETWEEN ? AND ? AND s.explainer_fp = ? "
                    "AND s.status IN (SELECT unnest(?::VARCHAR[])) "
                    "AND s.created_at >= e.created_at AND s.scorer IN (SELECT unnest(?::VARCHAR[]))",
                    [layer, first, last, efp, list(DONE), list(scorers)])
    return {(lat, name) for lat, name, sfp in rows.iter_rows() if fps.get(name, sfp) == sfp}


def failed_units(con, table: str, layer: str, efp: str, latents: Sequence[int],
                 scorers: Sequence[str] | None = None) -> list[str]:
    """The reason of every unit of ``latents`` (x ``scorers`` for scores) whose row is a failure now (not a
    budget stop): the partition's state, for :func:`verdict`."""
    if not latents:
        return []
    if table == "explanations":
        rows = con.execute("SELECT coalesce(error, status) FROM explanations WHERE layer = ? AND explainer_fp = ? "
                           "AND status NOT IN ('ok', 'budget_exceeded') AND latent IN (SELECT unnest(?::INTEGER[]))",
                           [layer, efp, list(latents)]).fetchall()
    else:
        rows = con.execute("SELECT coalesce(failure_reasons[1], status) FROM scores WHERE layer = ? AND explainer_fp = ? "
                           "AND status NOT IN ('ok', 'undefined', 'budget_exceeded') AND latent IN (SELECT unnest(?::INTEGER[])) "
                           "AND scorer IN (SELECT unnest(?::VARCHAR[]))",
                           [layer, efp, list(latents), list(scorers or [])]).fetchall()
    return [r[0] for r in rows]


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


def verdict(stage: str, where: str, *, sent: int, server_failures: Sequence[str], units: int,
            failures: Sequence[str], max_share: float, fatal: str | None = None, unit: str = "latents",
            summary: dict | None = None) -> None:
    """Raise :class:`StageFailed` (one line) when

    - a fatal server error (refused connection, key, model) stopped the stage;
    - more than ``max_share`` of the ``sent`` units failed with server errors left after the retries (5xx,
      429, timeouts, malformed bodies: ``server_failures``, one reason each) — the server is unhealthy;
    - more than ``max_share`` of the partition's ``units`` are failures now (``failures``: one reason per
      failed unit, this run's and earlier ones) — answers or requests that do not work.
    """
    kept = "earlier good results are kept, and the next run re-sends only what is missing or failed"
    if fatal:
        raise StageFailed(f"{stage} of {where}: {fatal}; stopped at once ({sent} {unit} were to be sent; {kept})",
                          summary)
    if sent and server_failures and len(server_failures) / sent > max_share:
        top, n = Counter(_kind(r) for r in server_failures).most_common(1)[0]
        raise StageFailed(f"{stage} of {where}: {len(server_failures)} of {sent} {unit} sent failed after retries "
                          f"(more than failures.max_share = {max_share:g}), {n}x: {top}; check the LLM server (its log, "
                          f"load, llm.timeout_s) and re-run: {kept}", summary)
    if units and failures and len(failures) / units > max_share:
        top, n = Counter(_kind(r) for r in failures).most_common(1)[0]
        raise StageFailed(f"{stage} of {where}: {len(failures)} of {units} {unit} are failures (more than "
                          f"failures.max_share = {max_share:g}), {n}x: {top}; fix the cause (the model's answers, "
                          f"max_tokens, the prompts' length) and re-run: {kept}", summary)


def _kind(reason: str | None) -> str:
    text = " ".join((reason or "unknown").split())
    return text if len(text) <= 160 else text[:157] + "..."
