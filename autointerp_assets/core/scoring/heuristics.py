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

import polars as pl

from ..storage import queries

FLAGS = ("flag_positional", "flag_single_token", "flag_unigram")
FLAG_COLUMNS = ("position_u", "top_token", "top_token_share", "tokens_for_mass", *FLAGS)


def compute_flags(con, acts_sql: str, tokens_sql: str, params: list, separators, cfg) -> pl.DataFrame:
    """One row per latent of ``acts_sql`` (columns latent, row_id, pos, value; never a separator position).

    ``tokens_sql`` gives (row_id, token_ids) of the corpus rows the activations index (token at pos =
    token_ids[pos + 1]); ``params`` binds the ``?`` of acts_sql then tokens_sql. Only data positions count:
    position 0 and every ``separators`` token are outside the data (a position's firing rate is over the
    rows where it holds data). ``cfg`` holds the thresholds (ScoringConfig).
    """
    return con.execute(queries.heuristic_flags(acts_sql, tokens_sql, separators, cfg), params).pl()
