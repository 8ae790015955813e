"""Stage latent_stats: per-latent firing statistics of a partition, in SQL."""

from __future__ import annotations

from .context import Context


def run_latent_stats(ctx: Context, layer: str, first: int, last: int) -> dict:
    cfg = ctx.cfg
    w = cfg.sampler.example_ctx_len
    n_rows = ctx.wh.scalar("SELECT count(*) FROM tokens WHERE corpus_fp = ?", [ctx.corpus_fp()])
    n_tokens = n_rows * (cfg.corpus.ctx_len - 1)
    sql = f"""
        WITH a AS (SELECT * FROM activations WHERE layer = $layer AND latent BETWEEN $first AND $last),
        per AS (
            SELECT latent, count(*) AS n_firing,
                   count(DISTINCT (row_id, (pos - 1) // {w})) AS n_windows,
                   max(value) AS max_activation, avg(value) AS mean_activation,
                   quantile_cont(value, [0.1, 0.25, 0.5, 0.75, 0.9, 0.99]) AS quantile_edges,
                   any_value(activations_fp) AS activations_fp
            FROM a GROUP BY latent
        )
        SELECT $layer AS layer, l.latent, coalesce(n_firing, 0) AS n_firing, coalesce(n_windows, 0) AS n_windows,
               coalesce(n_firing, 0) / {max(n_tokens, 1)}::DOUBLE AS density,
               max_activation::REAL AS max_activation, mean_activation::REAL AS mean_activation,
               quantile_edges::REAL[] AS quantile_edges,
               CASE WHEN n_firing IS NULL THEN 'dead'
                    WHEN n_windows < {cfg.sampler.min_examples} THEN 'too_rare' ELSE 'alive' END AS status,
               coalesce(activations_fp, (SELECT any_value(activations_fp) FROM a), '') AS activations_fp
        FROM range($first, $last + 1) l(latent) LEFT JOIN per USING (latent)
        ORDER BY latent
    """
    with ctx.wh.write() as con:
        ctx.wh.delete_partition(con, "latent_stats", layer, first, last)
        con.execute("INSERT INTO latent_stats BY NAME " + sql, {"layer": layer, "first": first, "last": last})
        counts = con.execute("SELECT status, count(*) FROM latent_stats WHERE layer = ? AND latent BETWEEN ? AND ? "
                             "GROUP BY status", [layer, first, last]).fetchall()
        dens = con.execute("SELECT density FROM latent_stats WHERE layer = ? AND latent BETWEEN ? AND ? ORDER BY latent",
                           [layer, first, last]).fetchall()
    return {"status_counts": dict(counts), "densities": [d[0] for d in dens]}
