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

from ..separators import sql_list

FLAGS = ("flag_positional", "flag_single_token", "flag_unigram")
FLAG_COLUMNS = ("position_u", "top_token", "top_token_share", "tokens_for_mass", *FLAGS)


def _hb(x: str) -> str:
    """Binary entropy in nats of a probability expression (0 at 0 and 1)."""
    return f"(CASE WHEN {x} <= 0 OR {x} >= 1 THEN 0 ELSE -({x} * ln({x}) + (1 - {x}) * ln(1 - {x})) END)"


def compute_flags(con, acts_sql: str, tokens_sql: str, params: list, separators, cfg) -> pl.DataFrame:
    """One row per latent of ``acts_sql`` (columns latent, row_id, pos, value; never a separator position).

    ``tokens_sql`` gives (row_id, token_ids) of the corpus rows the activations index (token at pos =
    token_ids[pos + 1]); ``params`` binds the ``?`` of acts_sql then tokens_sql. Only data positions count:
    position 0 and every ``separators`` token are outside the data (a position's firing rate is over the
    rows where it holds data). ``cfg`` holds the thresholds (ScoringExtrasConfig).
    """
    seps = sql_list(separators)
    sql = f"""
    WITH a AS ({acts_sql}),
    t AS (SELECT row_id, unnest(token_ids) AS tok, generate_subscripts(token_ids, 1) - 1 AS pos FROM ({tokens_sql})),
    valid AS (SELECT pos, count(*)::DOUBLE AS nv FROM t WHERE pos > 0 AND NOT list_contains({seps}, tok) GROUP BY pos),
    totals AS (SELECT sum(nv) AS n, count(*) AS k FROM valid),
    per_pos AS (SELECT a.latent, a.pos, v.nv, count(*)::DOUBLE / v.nv AS p FROM a JOIN valid v USING (pos)
                GROUP BY a.latent, a.pos, v.nv),
    pos_stats AS (
        SELECT latent, sum(p * nv) / any_value(n) AS rate, sum(nv * {_hb('p')}) / any_value(n) AS h_cond,
               any_value(n) AS n, any_value(k) AS k
        FROM per_pos, totals GROUP BY latent),
    pos_info AS (
        SELECT latent, CASE WHEN {_hb('rate')} > 0
                            THEN greatest({_hb('rate')} - h_cond - (k - 1) / (2 * n), 0) / {_hb('rate')}
                            ELSE 0 END AS position_u,
               rate * n AS n_firing
        FROM pos_stats),
    mass AS (SELECT a.latent, t.tok, sum(a.value) AS m FROM a JOIN t USING (row_id, pos) GROUP BY ALL),
    ranked AS (
        SELECT latent, tok, m, sum(m) OVER (PARTITION BY latent) AS total,
               sum(m) OVER (PARTITION BY latent ORDER BY m DESC, tok ROWS UNBOUNDED PRECEDING) AS cum,
               row_number() OVER (PARTITION BY latent ORDER BY m DESC, tok) AS rank
        FROM mass),
    tok_info AS (
        SELECT latent, any_value(tok) FILTER (WHERE rank = 1) AS top_token,
               any_value(m / total) FILTER (WHERE rank = 1) AS top_token_share,
               count(*) FILTER (WHERE cum - m < {cfg.unigram_mass} * total) AS tokens_for_mass
        FROM ranked WHERE total > 0 GROUP BY latent)
    SELECT p.latent, p.position_u, t.top_token::INTEGER AS top_token, t.top_token_share,
           t.tokens_for_mass::INTEGER AS tokens_for_mass,
           p.position_u >= {cfg.positional_threshold} AS flag_positional,
           coalesce(t.top_token_share >= {cfg.single_token_share}, false) AS flag_single_token,
           coalesce(t.tokens_for_mass <= {cfg.unigram_max_tokens} AND p.n_firing >= {cfg.unigram_min_firing}, false)
               AS flag_unigram
    FROM pos_info p LEFT JOIN tok_info t USING (latent) ORDER BY p.latent
    """
    return con.execute(sql, params).pl()
