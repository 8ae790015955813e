"""The per-partition summary users read after a run."""

from __future__ import annotations

import polars as pl

from .context import Context


def partition_summary(ctx: Context) -> pl.DataFrame:
    """One row per (layer, latent range, explainer): latents scored, median balanced accuracies, and the
    detection control: its median and the median paired difference real - control [95 % CI] (view
    scorer_summary), so that a reader sees at once whether the medians are above chance."""
    cfg = ctx.cfg
    ranges = [(k, a, b) for k, (a, b) in zip(cfg.latent_keys(), cfg.latents.ranges())]
    values = ", ".join(f"('{k}', {a}, {b})" for k, a, b in ranges)
    return ctx.wh.query(f"""
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
