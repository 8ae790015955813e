"""Stage latent_stats: per-latent firing statistics of a partition, in SQL.

Per (layer, latent): firing count (non-zero tokens), activating windows (units as ``core.windows`` defines
them, the same count latent_selection makes), density (firing tokens / data tokens of the corpus: every
separator position excluded, see ``core.separators``), max / mean activation, quantile edges (10/25/50/75/90/99 %), and a
histogram of its activations: ``HIST_BINS`` equal-width bins over (0, max_activation]. Every latent
of the range gets a row: ``dead`` (never fires), ``too_rare`` (fewer than sampler.min_examples
windows) or ``alive`` -- none is dropped silently.
"""

from __future__ import annotations

from ..separators import sql_list
from ..windows import status_sql, unit_sql, windows_per_row
from .activations import separators_of
from .context import Context

HIST_BINS = 16
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def latent_stats_sql(n_tokens: int, window: int, min_examples: int, ctx_len: int) -> str:
    """SQL over the `activations` view; parameters: layer, first, last. ``n_tokens``: the corpus's data tokens."""
    unit = unit_sql("pos", window)
    return f"""
        WITH a AS (SELECT latent, row_id, pos, value, activations_fp FROM activations
                   WHERE layer = $layer AND latent BETWEEN $first AND $last),
        per AS (
            SELECT latent, count(*) AS n_firing,
                   count(DISTINCT (row_id, {unit})) FILTER (WHERE {unit} BETWEEN 0 AND {windows_per_row(ctx_len, window) - 1})
                       AS n_windows,
                   max(value) AS max_activation, avg(value) AS mean_activation,
                   quantile_cont(value, {list(QUANTILES)}) AS quantile_edges,
                   any_value(activations_fp) AS activations_fp
            FROM a GROUP BY latent
        ),
        bins AS (
            SELECT latent, least(floor(value / max_activation * {HIST_BINS}), {HIST_BINS - 1})::INTEGER AS bin,
                   count(*)::INTEGER AS n
            FROM a JOIN per USING (latent) WHERE max_activation > 0 GROUP BY ALL
        ),
        hist AS (
            SELECT p.latent, list(coalesce(b.n, 0) ORDER BY r.bin) AS histogram
            FROM per p CROSS JOIN range({HIST_BINS}) r(bin)
            LEFT JOIN bins b ON b.latent = p.latent AND b.bin = r.bin
            GROUP BY p.latent
        )
        SELECT $layer AS layer, l.latent, coalesce(n_firing, 0) AS n_firing, coalesce(n_windows, 0) AS n_windows,
               coalesce(n_firing, 0) / {max(n_tokens, 1)}::DOUBLE AS density,
               max_activation::REAL AS max_activation, mean_activation::REAL AS mean_activation,
               quantile_edges::REAL[] AS quantile_edges, histogram,
               {status_sql("n_windows", min_examples)} AS status,
               coalesce(activations_fp, (SELECT any_value(activations_fp) FROM a), '') AS activations_fp
        FROM range($first, $last + 1) l(latent) LEFT JOIN per USING (latent) LEFT JOIN hist USING (latent)
        ORDER BY latent
    """


def run_latent_stats(ctx: Context, layer: str, first: int, last: int) -> dict:
    cfg = ctx.cfg
    n_tokens = data_tokens(ctx)
    sql = latent_stats_sql(n_tokens, cfg.sampler.example_ctx_len, cfg.sampler.min_examples, cfg.corpus.ctx_len)
    where = "layer = ? AND latent BETWEEN ? AND ?"
    with ctx.wh.write() as con:
        ctx.wh.delete_partition(con, "latent_stats", layer, first, last)
        con.execute("INSERT INTO latent_stats BY NAME " + sql, {"layer": layer, "first": first, "last": last})
        counts = dict(con.execute(f"SELECT status, count(*) FROM latent_stats WHERE {where} GROUP BY status",
                                  [layer, first, last]).fetchall())
        stats = con.execute(f"SELECT latent, density, status, max_activation, histogram FROM latent_stats "
                            f"WHERE {where} ORDER BY latent", [layer, first, last]).fetchall()
    listed = {s: [r[0] for r in stats if r[2] == s] for s in ("dead", "too_rare")}
    pooled = [0] * HIST_BINS  # activations of alive latents, each relative to its own max
    for r in stats:
        if r[2] == "alive" and r[4]:
            pooled = [p + c for p, c in zip(pooled, r[4])]
    return {"status_counts": counts, "densities": [r[1] for r in stats], "dead": listed["dead"],
            "too_rare": listed["too_rare"], "n_tokens": n_tokens, "pooled_histogram": pooled,
            "max_activation": max((r[3] for r in stats if r[3] is not None), default=None)}


def data_tokens(ctx: Context) -> int:
    """Tokens of the corpus that are data: every position but 0 and the separators."""
    seps = sql_list(separators_of(ctx))
    return int(ctx.wh.scalar(f"SELECT coalesce(sum(len(list_filter(token_ids[2:], x -> NOT list_contains({seps}, x)))), 0) "
                             "FROM tokens WHERE corpus_fp = ?", [ctx.corpus_fp()]))
