"""Windows, quantiles, train / test and random negatives: DuckDB SQL over a whole latent range at once.

Units. Each corpus row is cut into non-overlapping ``example_ctx_len``-token *fixed windows* starting
after BOS (position 1); a tail shorter than a window is not used. A latent's activating units are the
fixed windows where it fires; each has a max activation and a peak position (first arg-max). Units
are what is counted (``min_examples``), ranked, binned into ``n_quantiles`` equal-count bins
(0 = strongest) and sampled; every unit is sampled at most once per latent.

Shown window. ``fixed``: the unit itself. ``centred``: ``example_ctx_len`` tokens with the unit's
peak at ``peak_offset``, shifted to stay inside the row (so it may reach into a neighbouring unit or
the tail). Non-activating windows are always fixed windows (there is no peak to centre on).

Disjointness rule (checked by ``checks.disjointness``): no corpus token ``(row_id, pos)`` lies in both
a train and a test window of the same latent. For fixed windows this is "different units"; centred
windows of adjacent units can overlap, so test is drawn only from units whose shown window does not
intersect any train window. In particular a test window never contains a train window's peak and
vice versa. Train windows may overlap each other (centred), as may test windows.

Randomness is a seeded hash of (seed, latent, row, window): results do not depend on row order,
threads or which other latents are in the range.
"""

from __future__ import annotations

from ..config import SamplerConfig

SAMPLER_VERSION = "windows-v2"

# columns carried through the train / test tables
_COLS = "latent, row_id, win, max_act, peak, start_pos, quantile, h, rk_top"


def windows_per_row(ctx_len: int, example_ctx_len: int) -> int:
    return (ctx_len - 1) // example_ctx_len


def sampler_spec(cfg: SamplerConfig, activations_fp: str, max_per_range: int | None,
                 embedding_model: dict | None = None) -> dict:
    """What the sampler fingerprint hashes: every setting, the activations it reads, the embedding model."""
    return {"version": SAMPLER_VERSION, "sampler": cfg.model_dump(), "activations_fp": activations_fp,
            "max_per_range": max_per_range, "embedding_model": embedding_model}


def _start_expr(cfg: SamplerConfig, ctx_len: int) -> str:
    w = cfg.example_ctx_len
    if cfg.window == "fixed":
        return f"1 + win * {w}"
    return f"least(greatest(peak - {cfg.peak_offset}, 1), {ctx_len - w})"


def _spread(pool: str, n: int) -> str:
    """The first ``n`` units per latent of ``pool`` taken round-robin over the quantile bins, in hash
    order within a bin: n // q per bin, the remainder to the strongest bins, and a bin that runs
    short is made up from the others."""
    return f"""
        SELECT {_COLS} FROM (
            SELECT *, row_number() OVER (PARTITION BY latent ORDER BY rk_b, quantile) AS rr
            FROM (SELECT *, row_number() OVER (PARTITION BY latent, quantile ORDER BY h, row_id, win) AS rk_b
                  FROM {pool})
        ) WHERE rr <= {n}"""


def _train_sql(cfg: SamplerConfig) -> str:
    n = cfg.n_train
    if cfg.train_type == "quantiles":
        return _spread("_ranked", n)
    if cfg.train_type == "top":
        return f"SELECT {_COLS} FROM _ranked WHERE rk_top <= {n}"
    if cfg.train_type == "random":
        return (f"SELECT {_COLS} FROM _ranked "
                f"QUALIFY row_number() OVER (PARTITION BY latent ORDER BY h, row_id, win) <= {n}")
    n_top = round(cfg.ratio_top * n)  # mix
    return (f"SELECT {_COLS} FROM _ranked WHERE rk_top <= {n_top} UNION ALL "
            + _spread(f"(SELECT * FROM _ranked WHERE rk_top > {n_top})", n - n_top))


def units_sql(cfg: SamplerConfig, ctx_len: int, max_per_range: int | None) -> str:
    """Temp tables ``_acts`` (the range's activations), ``_wins`` (activating units) and ``_selection``."""
    w = cfg.example_ctx_len
    nw = windows_per_row(ctx_len, w)
    cap = f"pick > {max_per_range}" if max_per_range else "false"
    return f"""
    CREATE OR REPLACE TEMP TABLE _acts AS
        SELECT latent, row_id, pos, value, (pos - 1) // {w} AS win
        FROM activations WHERE layer = $layer AND latent BETWEEN $first AND $last;

    CREATE OR REPLACE TEMP TABLE _wins AS
        SELECT latent, row_id, win, max(value) AS max_act, arg_max(pos, (value, -pos)) AS peak
        FROM _acts WHERE win < {nw} GROUP BY ALL;

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
                    WHEN {cap} THEN 'not_selected'
                    ELSE 'selected' END AS status
        FROM ranked;
    """


def train_test_sql(cfg: SamplerConfig, ctx_len: int) -> str:
    """Temp tables ``_ranked`` (selected latents' units, binned), ``_train`` and ``_test`` (disjoint)."""
    w = cfg.example_ctx_len
    return f"""
    CREATE OR REPLACE TEMP TABLE _ranked AS
        SELECT w.latent, w.row_id, w.win, w.max_act, w.peak,
               ({_start_expr(cfg, ctx_len)})::INTEGER AS start_pos,
               ntile({cfg.n_quantiles}) OVER (PARTITION BY w.latent ORDER BY w.max_act DESC, w.row_id, w.win) - 1
                   AS quantile,
               hash({int(cfg.seed)}, w.latent, w.row_id, w.win) AS h,
               row_number() OVER (PARTITION BY w.latent ORDER BY w.max_act DESC, w.row_id, w.win) AS rk_top
        FROM _wins w JOIN _selection s USING (latent) WHERE s.status = 'selected';

    CREATE OR REPLACE TEMP TABLE _train AS {_train_sql(cfg)};

    -- test: only units whose shown window shares no token with a train window of the latent
    CREATE OR REPLACE TEMP TABLE _test AS {_spread(_test_pool(cfg), cfg.n_test)};
    """


def _test_pool(cfg: SamplerConfig) -> str:
    if cfg.window == "fixed":  # fixed windows share a token only when they are the same unit
        return "(SELECT r.* FROM _ranked r ANTI JOIN _train t USING (latent, row_id, win))"
    w = cfg.example_ctx_len
    return f"""(
            SELECT r.* FROM _ranked r WHERE NOT EXISTS (
                SELECT 1 FROM _train t WHERE t.latent = r.latent AND t.row_id = r.row_id
                  AND t.start_pos < r.start_pos + {w} AND r.start_pos < t.start_pos + {w}))"""


def random_negatives_sql(cfg: SamplerConfig, ctx_len: int) -> str:
    """Temp table ``_neg_random``: per selected latent, seeded draws of fixed windows where it never fires,
    without replacement (``ord`` = draw order). Row ids are 0..n_rows-1 (corpus packing)."""
    nw = windows_per_row(ctx_len, cfg.example_ctx_len)
    draws = 4 * cfg.n_non_activating + 16  # oversampled: drawn windows where the latent fires are dropped
    return f"""
    CREATE OR REPLACE TEMP TABLE _neg_random AS
        WITH n_rows AS (SELECT count(*) AS n FROM tokens WHERE corpus_fp = $corpus_fp),
        draws AS (
            SELECT s.latent, j, (hash({int(cfg.seed)} + 1, s.latent, j) % (n_rows.n * {nw}))::BIGINT AS wid
            FROM _selection s, n_rows, range({draws}) r(j)
            WHERE s.status = 'selected' AND n_rows.n > 0
        ), uniq AS (SELECT latent, wid, min(j) AS ord FROM draws GROUP BY ALL)
        SELECT latent, (wid // {nw})::INTEGER AS row_id, (wid % {nw})::INTEGER AS win, ord
        FROM uniq u
        WHERE NOT EXISTS (SELECT 1 FROM _wins x WHERE x.latent = u.latent
                          AND x.row_id = u.wid // {nw} AND x.win = u.wid % {nw});
    """


def negatives_sql(cfg: SamplerConfig) -> str:
    """Temp table ``_neg``: ``_neg_primary`` (neighbours / embedding; may be empty) first, made up to
    ``n_non_activating`` with random draws; each window once per latent."""
    source = cfg.non_activating_source
    return f"""
    CREATE OR REPLACE TEMP TABLE _neg AS
        SELECT latent, row_id, win, source, neighbour, similarity FROM (
            SELECT * FROM (
                SELECT latent, row_id, win, '{source}' AS source, neighbour, similarity, 0 AS tier, ord
                FROM _neg_primary
                UNION ALL
                SELECT latent, row_id, win, 'random', NULL::INTEGER, NULL::REAL, 1, ord FROM _neg_random
            ) QUALIFY row_number() OVER (PARTITION BY latent, row_id, win ORDER BY tier, ord) = 1
        ) QUALIFY row_number() OVER (PARTITION BY latent ORDER BY tier, ord, row_id, win) <= {cfg.n_non_activating};
    """


EMPTY_PRIMARY = """
    CREATE OR REPLACE TEMP TABLE _neg_primary AS
        SELECT NULL::INTEGER AS latent, NULL::INTEGER AS row_id, NULL::INTEGER AS win,
               NULL::INTEGER AS neighbour, NULL::REAL AS similarity, NULL::BIGINT AS ord
        WHERE false;
"""


def examples_sql(cfg: SamplerConfig, ctx_len: int) -> str:
    """Temp table ``_examples``: the rows of table ``examples`` (without sampler_fp) for train, test
    and non-activating windows, with token ids and this latent's activation per token."""
    w = cfg.example_ctx_len
    nw = windows_per_row(ctx_len, w)
    return f"""
    CREATE OR REPLACE TEMP TABLE _picked AS
        SELECT latent, row_id, win, start_pos, quantile, max_act, 'train' AS split,
               NULL::VARCHAR AS source, NULL::INTEGER AS neighbour, NULL::REAL AS similarity FROM _train
        UNION ALL
        SELECT latent, row_id, win, start_pos, quantile, max_act, 'test', NULL, NULL, NULL FROM _test
        UNION ALL
        SELECT latent, row_id, win, 1 + win * {w}, -1, 0.0, 'non_activating', source, neighbour, similarity
        FROM _neg;

    CREATE OR REPLACE TEMP TABLE _examples AS
        WITH hits AS (  -- the latent's non-zeros inside each picked window (few per window)
            SELECT p.latent, p.row_id, p.win, list(a.pos - p.start_pos) AS idx, list(a.value) AS val
            FROM _picked p JOIN _acts a ON a.latent = p.latent AND a.row_id = p.row_id
                AND a.pos >= p.start_pos AND a.pos < p.start_pos + {w}
            GROUP BY ALL
        )
        SELECT $layer AS layer, p.latent, p.split, (p.row_id * {nw} + p.win)::INTEGER AS example_id,
               p.quantile::SMALLINT AS quantile, p.row_id, p.start_pos::SMALLINT AS start_pos,
               p.max_act::REAL AS max_activation,
               list_slice(t.token_ids, p.start_pos + 1, p.start_pos + {w}) AS token_ids,
               list_transform(range({w}), i -> coalesce(h.val[list_position(h.idx, i)], 0.0)::REAL) AS acts,
               p.source, p.neighbour, p.similarity
        FROM _picked p
        LEFT JOIN hits h USING (latent, row_id, win)
        JOIN tokens t ON t.corpus_fp = $corpus_fp AND t.row_id = p.row_id;
    """


SELECTION_SQL = """
    SELECT $layer AS layer, s.latent, s.status, s.n_windows,
           coalesce(c.n_train, 0)::INTEGER AS n_train, coalesce(c.n_test, 0)::INTEGER AS n_test,
           coalesce(c.n_non_activating, 0)::INTEGER AS n_non_activating
    FROM _selection s LEFT JOIN (
        SELECT latent, count(*) FILTER (WHERE split = 'train') AS n_train,
               count(*) FILTER (WHERE split = 'test') AS n_test,
               count(*) FILTER (WHERE split = 'non_activating') AS n_non_activating
        FROM _examples GROUP BY latent) c USING (latent)
"""
