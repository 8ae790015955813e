"""The per-partition summary users read after a run."""

from __future__ import annotations

import polars as pl

from .context import Context


def partition_summary(ctx: Context) -> pl.DataFrame:
    """One row per (layer, latent range, explainer): latents scored and median balanced accuracies."""
    cfg = ctx.cfg
    ranges = [(k, a, b) for k, (a, b) in zip(cfg.latent_keys(), cfg.latents.ranges())]
    values = ", ".join(f"('{k}', {a}, {b})" for k, a, b in ranges)
    return ctx.wh.query(f"""
        WITH r(latents, first, last) AS (VALUES {values})
        SELECT s.layer, r.latents, s.explainer_fp,
               count(DISTINCT s.latent) FILTER (WHERE s.status = 'ok') AS latents_scored,
               round(median(s.balanced_accuracy) FILTER (WHERE s.scorer = 'detection' AND s.status = 'ok'), 3)
                   AS median_detection_bacc,
               round(median(s.balanced_accuracy) FILTER (WHERE s.scorer = 'fuzzing' AND s.status = 'ok'), 3)
                   AS median_fuzzing_bacc,
               round(median(s.auroc) FILTER (WHERE s.scorer = 'detection'), 3) AS median_detection_auroc,
               round(median(s.auroc) FILTER (WHERE s.scorer = 'fuzzing'), 3) AS median_fuzzing_auroc
        FROM scores s JOIN r ON s.latent BETWEEN r.first AND r.last
        GROUP BY ALL ORDER BY s.layer, r.latents, s.explainer_fp
    """)
