"""Example windows per latent, built in DuckDB SQL over a whole latent range at once.

Windows: each corpus row is cut into non-overlapping ``example_ctx_len``-token windows starting after
BOS (position 1); a tail shorter than a window is not used. Per latent, activating windows are ranked
by their max activation and split into ``n_quantiles`` equal-count bins (0 = strongest).
Randomness is a seeded hash of (seed, latent, window), so results do not depend on row order or
threads. **Train and test are disjoint by construction**: test is drawn from the windows left after
train is taken. Non-activating windows are drawn without replacement from windows where the latent
never fires. Latents with fewer than ``min_examples`` activating windows are listed with a reason.
"""

from __future__ import annotations

from .config import SamplerConfig

SAMPLER_VERSION = "windows-v1"


def sampler_spec(cfg: SamplerConfig, activations_fp: str, max_per_range: int | None) -> dict:
    return {"version": SAMPLER_VERSION, "sampler": cfg.model_dump(), "activations_fp": activations_fp,
            "max_per_range": max_per_range}


def windows_per_row(ctx_len: int, example_ctx_len: int) -> int:
    return (ctx_len - 1) // example_ctx_len


def _train_filter(cfg: SamplerConfig) -> str:
    per_q = max(cfg.n_train // cfg.n_quantiles, 1)
    if cfg.train_type == "quantiles":
        return f"rk_q <= {per_q}"
    if cfg.train_type == "top":
        return f"rk_top <= {cfg.n_train}"
    return f"rk_rand <= {cfg.n_train}"  # random


def build_examples_sql(cfg: SamplerConfig, ctx_len: int, max_per_range: int | None) -> str:
    """SQL over tables ``activations`` and ``tokens``; parameters: layer, first, last, corpus_fp.

    Creates temp tables ``_selection`` (per-latent status) and ``_examples`` (the example rows).
    """
    w = cfg.example_ctx_len
    nw = windows_per_row(ctx_len, w)
    q = cfg.n_quantiles
    test_per_q = cfg.n_test // q
    seed = int(cfg.seed)
    return f"""
    CREATE OR REPLACE TEMP TABLE _acts AS
        SELECT latent, row_id, (pos - 1) // {w} AS win, pos, value
        FROM activations
        WHERE layer = $layer AND latent BETWEEN $first AND $last AND (pos - 1) // {w} < {nw};

    CREATE OR REPLACE TEMP TABLE _wins AS
        SELECT latent, row_id, win, max(value) AS max_act FROM _acts GROUP BY ALL;

    CREATE OR REPLACE TEMP TABLE _selection AS
        WITH counts AS (
            SELECT l.latent, coalesce(c.n, 0) AS n_windows
            FROM range($first, $last + 1) l(latent)
            LEFT JOIN (SELECT latent, count(*) AS n FROM _wins GROUP BY latent) c USING (latent)
        ), ranked AS (
            SELECT *, row_number() OVER (PARTITION BY n_windows >= {cfg.min_examples} ORDER BY latent) AS pick
            FROM counts
        )
        SELECT latent, n_windows,
               CASE WHEN n_windows = 0 THEN 'dead'
                    WHEN n_windows < {cfg.min_examples} THEN 'too_rare'
                    WHEN {'pick > ' + str(max_per_range) if max_per_range else 'false'} THEN 'not_selected'
                    ELSE 'selected' END AS status
        FROM ranked;

    CREATE OR REPLACE TEMP TABLE _ranked AS
        WITH binned AS (
            SELECT w.*, ntile({q}) OVER (PARTITION BY latent ORDER BY max_act DESC, row_id, win) - 1 AS quantile,
                   hash({seed}, latent, row_id, win) AS h
            FROM _wins w JOIN _selection s USING (latent) WHERE s.status = 'selected'
        )
        SELECT *,
               row_number() OVER (PARTITION BY latent, quantile ORDER BY h) AS rk_q,
               row_number() OVER (PARTITION BY latent ORDER BY max_act DESC, row_id, win) AS rk_top,
               row_number() OVER (PARTITION BY latent ORDER BY h) AS rk_rand
        FROM binned;

    CREATE OR REPLACE TEMP TABLE _picked AS
        WITH train AS (
            SELECT latent, row_id, win, quantile, max_act, 'train' AS split FROM _ranked WHERE {_train_filter(cfg)}
        ), rest AS (
            SELECT r.* FROM _ranked r ANTI JOIN train t USING (latent, row_id, win)
        ), test AS (
            SELECT latent, row_id, win, quantile, max_act, 'test' AS split
            FROM (SELECT *, row_number() OVER (PARTITION BY latent, quantile ORDER BY h) AS rk FROM rest)
            WHERE rk <= {test_per_q}
        ), n_rows AS (
            SELECT count(*) AS n FROM tokens WHERE corpus_fp = $corpus_fp
        ), candidates AS (  -- seeded draws of window ids, de-duplicated: sampling without replacement
            SELECT s.latent, j,
                   (hash({seed} + 1, s.latent, j) % (n_rows.n * {nw}))::BIGINT AS wid
            FROM _selection s, n_rows, range({4 * cfg.n_non_activating + 16}) r(j)
            WHERE s.status = 'selected'
        ), negatives AS (
            SELECT latent, (wid // {nw})::INTEGER AS row_id, (wid % {nw})::INTEGER AS win, -1 AS quantile,
                   0.0::REAL AS max_act, 'non_activating' AS split
            FROM (
                SELECT c.*, row_number() OVER (PARTITION BY c.latent ORDER BY j) AS rk
                FROM (SELECT latent, wid, min(j) AS j FROM candidates GROUP BY ALL) c
                WHERE NOT EXISTS (SELECT 1 FROM _wins x WHERE x.latent = c.latent
                                  AND x.row_id = c.wid // {nw} AND x.win = c.wid % {nw})
            )
            WHERE rk <= {cfg.n_non_activating}
        )
        SELECT * FROM train UNION ALL SELECT * FROM test UNION ALL SELECT * FROM negatives;

    CREATE OR REPLACE TEMP TABLE _examples AS
        WITH pos AS (
            SELECT p.*, 1 + p.win * {w} AS start_pos, i
            FROM _picked p, range({w}) r(i)
        ), filled AS (
            SELECT pos.latent, pos.row_id, pos.win, pos.start_pos, pos.i, coalesce(a.value, 0.0) AS v
            FROM pos LEFT JOIN _acts a
              ON a.latent = pos.latent AND a.row_id = pos.row_id AND a.pos = pos.start_pos + pos.i
        ), arrays AS (
            SELECT latent, row_id, win, list(v ORDER BY i)::REAL[] AS acts FROM filled GROUP BY ALL
        )
        SELECT $layer AS layer, p.latent, p.split, (p.row_id * {nw} + p.win)::INTEGER AS example_id,
               p.quantile::SMALLINT AS quantile, p.row_id, (1 + p.win * {w})::SMALLINT AS start_pos,
               p.max_act::REAL AS max_activation,
               list_slice(t.token_ids, 2 + p.win * {w}, 1 + (p.win + 1) * {w}) AS token_ids,
               a.acts
        FROM _picked p
        JOIN arrays a USING (latent, row_id, win)
        JOIN tokens t ON t.corpus_fp = $corpus_fp AND t.row_id = p.row_id;
    """
