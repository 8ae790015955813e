"""Heuristic flags a user can filter latents on, computed in DuckDB SQL over all of a latent's activations.

- **flag_positional**: firing is explained by token position. Uncertainty coefficient U = I(fire; pos) / H(fire)
  over every data token of the corpus (separators excluded; 0 = position says nothing, 1 = position decides), with the
  Miller-Madow bias correction (K - 1) / (2 N) nats subtracted from the plug-in mutual information, so rare
  latents are not flagged for sampling noise alone. Flag: U >= ``positional_threshold``.
- **flag_single_token**: one token id carries at least ``single_token_share`` of the latent's activation mass.
- **flag_unigram**: at most ``unigram_max_tokens`` distinct token ids carry ``unigram_mass`` of the activation
  mass (delphi's blog: <= 20 tokens for 80 %), among latents firing at least ``unigram_min_firing`` times.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from ..latent_chunks import CHUNK_ACTIVATIONS, chunk_rows
from ..sampling.readback import corpus_token_ids
from ..storage import queries
from ..storage.warehouse import arrow_table, owned

FLAGS = ("flag_positional", "flag_single_token", "flag_unigram")
FLAG_COLUMNS = ("position_u", "top_token", "top_token_share", "tokens_for_mass", *FLAGS)


def compute_flags(con, acts_sql: str, tokens_sql: str, params: list, separators, cfg) -> pl.DataFrame:
    """One row per latent of ``acts_sql`` (columns latent, row_id, pos, value, tok: the token id there; never a
    separator position), in one query.

    ``tokens_sql`` gives (row_id, token_ids) of the whole corpus the activations index; ``params`` binds the
    ``?`` of acts_sql then tokens_sql. Only data positions count: position 0 and every ``separators`` token are
    outside the data (a position's firing rate is over the rows where it holds data). ``cfg`` holds the
    thresholds (ScoringConfig).
    """
    sql = queries.heuristic_flags(acts_sql, queries.data_positions(tokens_sql, separators), cfg)
    return con.execute(sql, params).pl()


def range_flags(con, layer: str, first: int, last: int, corpus_fp: str, separators, cfg,
                chunk_activations: int = CHUNK_ACTIVATIONS) -> pl.DataFrame:
    """``compute_flags`` of the published activations of (layer, first..last) over corpus ``corpus_fp``, in
    chunks of latents of bounded activations (every flag is per latent): the data positions are counted once,
    the corpus's token ids read once (4 bytes a token) and gathered for each chunk's activations."""
    valid = arrow_table(con.execute(queries.data_positions(queries.CORPUS_ROWS, separators), [corpus_fp]))
    flat, at = corpus_token_ids(con, corpus_fp)
    sql = queries.heuristic_flags(queries.CHUNK_FLAG_ROWS, queries.DATA_POSITION_ROWS, cfg)
    con.register("_valid", valid)
    frames = []
    try:
        for chunk in chunk_rows(con, layer, first, last, chunk_activations):
            tok = flat[at[chunk.row_id] + chunk.pos] if len(flat) else np.zeros(0, dtype=np.int32)
            con.register("_chunk", pa.table({"latent": chunk.latent, "row_id": chunk.row_id, "pos": chunk.pos,
                                             "value": chunk.value, "tok": tok}))
            frames.append(pl.from_arrow(owned(arrow_table(con.execute(sql)))))  # (small: copied out)
            del chunk, tok
    finally:
        con.unregister("_chunk")
        con.unregister("_valid")
    return pl.concat(frames)
