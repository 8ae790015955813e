"""Stage latent_stats: per-latent firing statistics of a partition, in SQL.

Per (layer, latent): firing count (non-zero tokens), activating windows (units as ``core.windows`` defines
them, the same count latent_selection makes), density (firing tokens / data tokens of the corpus: every
separator position excluded, see ``core.separators``), max / mean activation, quantile edges (10/25/50/75/90/99 %), and a
histogram of its activations: ``HIST_BINS`` equal-width bins over (0, max_activation], computed in chunks of
latents of bounded activations (memory does not grow with the corpus). Every latent
of the range gets a row: ``dead`` (never fires), ``too_rare`` (fewer than sampler.min_examples
windows) or ``alive`` -- none is dropped silently.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from ..latent_chunks import CHUNK_ACTIVATIONS, Chunk, chunk_rows
from ..storage import queries
from ..storage.warehouse import arrow_table, owned
from .activations import separators_of
from .context import Context

HIST_BINS = 16
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def run_latent_stats(ctx: Context, layer: str, first: int, last: int,
                     chunk_activations: int = CHUNK_ACTIVATIONS) -> dict:
    cfg = ctx.cfg
    n_tokens = data_tokens(ctx)
    sql = queries.latent_stats(n_tokens, cfg.sampler.example_ctx_len, cfg.sampler.min_examples, cfg.corpus.ctx_len,
                               QUANTILES, HIST_BINS, source="_chunk")
    with ctx.wh.session():
        # in chunks of bounded activations (every statistic is per latent; a chunk holds a latent that fires),
        # outside a transaction: one keeps every relation registered in it alive until it ends
        with ctx.wh.read() as con:
            rows = pa.concat_tables([_stats(con, sql, layer, chunk)
                                     for chunk in chunk_rows(con, layer, first, last, chunk_activations)])
        for attempt in ctx.wh.attempts():
            with attempt as con:
                ctx.wh.delete_partition(con, "latent_stats", layer, first, last)
                ctx.wh.insert(con, "latent_stats", pl.from_arrow(rows))
                counts = dict(con.execute(queries.RANGE_STATUS_COUNTS, [layer, first, last]).fetchall())
                stats = con.execute(queries.RANGE_LATENT_STATS, [layer, first, last]).fetchall()
    listed = {s: [r[0] for r in stats if r[2] == s] for s in ("dead", "too_rare")}
    pooled = [0] * HIST_BINS  # activations of alive latents, each relative to its own max
    for r in stats:
        if r[2] == "alive" and r[4]:
            pooled = [p + c for p, c in zip(pooled, r[4])]
    return {"status_counts": counts, "densities": [r[1] for r in stats], "dead": listed["dead"],
            "too_rare": listed["too_rare"], "n_tokens": n_tokens, "pooled_histogram": pooled,
            "max_activation": max((r[3] for r in stats if r[3] is not None), default=None)}


def _stats(con, sql: str, layer: str, chunk: Chunk) -> pa.Table:
    """The latent_stats rows of one chunk's latents (copied out of DuckDB's result: see ``owned``)."""
    con.register("_chunk", _relation(chunk))
    try:
        return owned(arrow_table(con.execute(sql, {"layer": layer, "first": chunk.first, "last": chunk.last})))
    finally:
        con.unregister("_chunk")


def _relation(chunk: Chunk) -> pa.Table:
    """A chunk's rows with the `activations` view's columns (values decoded from their float16 bits)."""
    fps = pa.array(chunk.activations_fps or [""], pa.string())
    return pa.table({"latent": chunk.latent, "row_id": chunk.row_id, "pos": chunk.pos, "value": chunk.value,
                     "activations_fp": pa.DictionaryArray.from_arrays(pa.array(chunk.part), fps)})


def data_tokens(ctx: Context) -> int:
    """Tokens of the corpus that are data: every position but 0 and the separators."""
    return int(ctx.wh.scalar(queries.DATA_TOKENS, [list(separators_of(ctx)), ctx.corpus_fp()]))
