"""The per-partition summary users read after a run."""

from __future__ import annotations

import json

import polars as pl

from .context import Context, engine_label


def partition_summary(ctx: Context, current_fp: str | None = None) -> pl.DataFrame:
    """One row per (layer, latent range, explainer): the explainer's engine (with its dtype), latents scored, median balanced accuracies, and the
    detection control: its median and the median paired difference real - control [95 % CI] (view
    scorer_summary), so that a reader sees at once whether the medians are above chance.
    ``current_fp``: the active explainer's fingerprint; a column ``current`` marks its rows (an earlier
    explainer's row is never mistaken for this run's)."""
    cfg = ctx.cfg
    ranges = [(k, a, b) for k, (a, b) in zip(cfg.latent_keys(), cfg.latents.ranges())]
    values = ", ".join(f"('{k}', {a}, {b})" for k, a, b in ranges)
    frame = ctx.wh.query(f"""
        WITH r(latents, first, last) AS (VALUES {values}), per AS (
        SELECT s.layer, r.latents, s.explainer_fp,
               count(DISTINCT s.latent) FILTER (WHERE s.status = 'ok' AND NOT coalesce(s.control, false))
                   AS latents_scored,
               round(median(s.balanced_accuracy) FILTER (WHERE s.scorer = 'detection' AND s.status = 'ok'), 3)
                   AS median_detection_bacc,
               round(median(s.balanced_accuracy) FILTER (WHERE s.scorer = 'fuzzing' AND s.status = 'ok'), 3)
                   AS median_fuzzing_bacc,
               round(median(s.auroc) FILTER (WHERE s.scorer = 'detection'), 3) AS median_detection_auroc,
               round(median(s.auroc) FILTER (WHERE s.scorer = 'fuzzing'), 3) AS median_fuzzing_auroc
        FROM scores s JOIN r ON s.latent BETWEEN r.first AND r.last
        GROUP BY ALL)
        SELECT per.*, round(d.median_control, 3) AS median_detection_control,
               printf('%+.3f [%+.3f, %+.3f]', d.median_difference, d.difference_ci_low, d.difference_ci_high)
                   AS detection_minus_control
        FROM per LEFT JOIN scorer_summary d ON d.layer = per.layer AND d.latent_range = per.latents
             AND d.explainer_fp = per.explainer_fp AND d.scorer = 'detection'
        ORDER BY per.layer, per.latents, per.explainer_fp
    """)
    engine = pl.col("explainer_fp").replace_strict(explainer_engines(ctx), default=None, return_dtype=pl.Utf8)
    cols = frame.columns
    at = cols.index("explainer_fp") + 1
    frame = frame.with_columns(explainer_engine=engine).select(*cols[:at], "explainer_engine", *cols[at:])
    if current_fp is None:
        return frame
    return frame.with_columns(current=pl.col("explainer_fp") == current_fp).sort(
        ["layer", "latents", "current"], descending=[False, False, True])


def explainer_engines(ctx: Context) -> dict[str, str]:
    """Explainer fingerprint -> its engine in words (engine, model, dtype), from the stored specs: runs made
    on machines that resolve ``dtype: auto`` differently are told apart at a glance."""
    specs = ctx.wh.query("SELECT fingerprint, spec FROM fingerprints WHERE kind = 'explainer'").iter_rows()
    return {fp: engine_label(json.loads(spec).get("llm", {})) for fp, spec in specs}
