"""Named queries over the tables and views of ``schema.py``: what the latent card, the latent browser, the
exports and the search read. Each takes ``$layer``, ``$first``, ``$last`` (one latent: first = last), so a
partition and a single latent are read the same way. The SQL lives here, not in the modules that use it.
"""

from __future__ import annotations

import re

from ..separators import sql_list
from ..windows import status_sql, unit_sql, windows_per_row


def bind(sql: str, values: dict) -> dict:
    """The named parameters ``sql`` uses, taken from ``values`` (DuckDB refuses unused ones)."""
    used = set(re.findall(r"\$([A-Za-z_]\w*)", sql))
    return {k: v for k, v in values.items() if k in used}

# every latent of the range: firing statistics, heuristic flags (latent_stats) and selection (latent_selection)
LATENTS = """
    SELECT s.layer, s.latent, s.status, s.n_firing, s.n_windows, s.density, s.max_activation, s.mean_activation,
           s.histogram, s.position_u, s.top_token, s.top_token_share, s.tokens_for_mass,
           coalesce(s.flag_positional, false) AS flag_positional,
           coalesce(s.flag_single_token, false) AS flag_single_token,
           coalesce(s.flag_unigram, false) AS flag_unigram,
           sel.status AS selection, sel.n_train, sel.n_test, sel.n_non_activating
    FROM latent_stats s
    LEFT JOIN latent_selection sel ON sel.layer = s.layer AND sel.latent = s.latent
    WHERE s.layer = $layer AND s.latent BETWEEN $first AND $last
    ORDER BY s.latent
"""

# the text of some token ids in the tokenizer of corpus $corpus (e.g. latents' top tokens)
TOKEN_TEXT = """
    SELECT v.token_id, v.token FROM corpora c JOIN vocabulary v USING (tokenizer_fp)
    WHERE c.corpus_fp = $corpus AND v.token_id IN (SELECT unnest($ids))
"""

# every explanation of the range, every explainer (failures too: the browser says why a latent has none)
EXPLANATIONS = """
    SELECT e.layer, e.latent, e.explainer_fp, e.status, e.explanation, e.error, e.created_at,
           f.spec->>'$.llm.model' AS explainer_model, f.spec->>'$.prompt_version' AS prompt_version
    FROM explanations e LEFT JOIN fingerprints f ON f.fingerprint = e.explainer_fp
    WHERE e.layer = $layer AND e.latent BETWEEN $first AND $last
    ORDER BY e.latent, e.created_at
"""

# every score of the range: the scorer's primary metric and interval, real and control rows side by side
SCORES = """
    SELECT r.layer, r.latent, r.explainer_fp, r.scorer, coalesce(r.metric, 'balanced_accuracy') AS metric,
           coalesce(r.value, r.balanced_accuracy) AS value, r.ci_low, r.ci_high, r.balanced_accuracy, r.auroc,
           r.f1, r.precision, r.recall, r.n, r.n_failed, r.status,
           c.value AS control_value, c.ci_low AS control_ci_low, c.ci_high AS control_ci_high
    FROM scores r
    LEFT JOIN scores c ON c.layer = r.layer AND c.latent = r.latent AND c.explainer_fp = r.explainer_fp
                      AND c.scorer = r.scorer || '_control' AND c.control AND c.status = 'ok'
    WHERE r.layer = $layer AND r.latent BETWEEN $first AND $last AND NOT coalesce(r.control, false)
    ORDER BY r.latent, r.explainer_fp, r.scorer
"""

# every example of the range as text with its (token, activation) pairs (view example_text)
EXAMPLES = """
    SELECT layer, latent, split, example_id, quantile, max_activation, text, tokens, source, neighbour, similarity
    FROM example_text
    WHERE layer = $layer AND latent BETWEEN $first AND $last
    ORDER BY latent, split, quantile, max_activation DESC, example_id
"""

# stored neighbours of the range (present when the sampler needed them: non_activating_source neighbours)
NEIGHBOURS = """
    SELECT latent, rank, neighbour, similarity, kind FROM latent_neighbours
    WHERE layer = $layer AND latent BETWEEN $first AND $last ORDER BY latent, rank
"""

# the sparse coder checkpoint of a layer (decoder-cosine neighbours when none are stored)
LATEST_CODER = "SELECT * FROM sparse_coders WHERE layer = $layer ORDER BY created_at DESC LIMIT 1"

# what each explainer fingerprint is (model, prompt version): names for people
EXPLAINERS = """
    SELECT fingerprint AS explainer_fp, spec->>'$.llm.model' AS model, spec->>'$.prompt_version' AS prompt_version,
           created_at
    FROM fingerprints WHERE kind = 'explainer' ORDER BY created_at
"""

# corpus size (tokens) per layer's published activations: the density denominator, for "n of N tokens"
CORPUS_TOKENS = """
    SELECT any_value(c.n_tokens) FROM activation_partitions p JOIN cache_complete c USING (cache_fp)
    WHERE p.layer = $layer AND $first BETWEEN p.first_latent AND p.last_latent
"""

# explanations with their stored embeddings (model = the embedding model key) for search; missing ones null
EXPLANATION_EMBEDDINGS = """
    SELECT e.layer, e.latent, e.explainer_fp, e.explanation, m.embedding
    FROM explanations e
    LEFT JOIN explanation_embeddings m ON m.layer = e.layer AND m.latent = e.latent
                                      AND m.explainer_fp = e.explainer_fp AND m.model = $model
    WHERE e.status = 'ok' AND e.explanation IS NOT NULL
      AND e.layer = coalesce($layer, e.layer) AND e.latent BETWEEN $first AND $last
    ORDER BY e.layer, e.latent, e.explainer_fp
"""

# delphi export: every detection / fuzzing item of one explainer with the example's tokens and activations
SCORE_ITEMS_WITH_TOKENS = """
    SELECT i.layer, i.latent, i.scorer, i.example_id, i.batch_index, i.quantile, i.activating, i.truth, i.prediction,
           i.probability, t.tokens, t.source, t.similarity
    FROM score_items i
    LEFT JOIN example_text t ON t.layer = i.layer AND t.latent = i.latent AND t.example_id = i.example_id
                            AND t.split = CASE WHEN i.activating THEN 'test' ELSE 'non_activating' END
    WHERE i.explainer_fp = $explainer AND i.layer = $layer AND i.scorer IN ('detection', 'fuzzing')
    ORDER BY i.latent, i.scorer, i.batch_index, i.example_id, i.truth
"""

# Parquet export: tables (and views) partitioned by layer, and the ones without a layer column
EXPORT_RELATIONS = """
    SELECT table_name, bool_or(column_name = 'layer') AS by_layer FROM information_schema.columns
    WHERE table_schema = 'main' AND table_name IN (SELECT unnest($names)) GROUP BY table_name ORDER BY table_name
"""

# per scorer of a partition and explainer: every latent's primary value, real and control rows ('<s>_control')
SCORE_VALUES = """
    SELECT regexp_replace(scorer, '_control$', '') AS scorer, coalesce(control, false) AS control,
           any_value(metric) AS metric, list(value ORDER BY latent) AS "values"
    FROM scores
    WHERE layer = $layer AND latent BETWEEN $first AND $last AND explainer_fp = $explainer AND status = 'ok'
      AND value IS NOT NULL
    GROUP BY ALL ORDER BY ALL
"""

# per layer and scorer (one explainer, every latent range): median and IQR of the real values, control median
LAYER_MEDIANS = """
    SELECT r.layer, r.scorer, any_value(r.metric) AS metric, count(*) AS latents, median(r.value) AS median,
           quantile_cont(r.value, 0.25) AS q25, quantile_cont(r.value, 0.75) AS q75, median(c.value) AS median_control
    FROM scores r
    LEFT JOIN scores c ON c.layer = r.layer AND c.latent = r.latent AND c.explainer_fp = r.explainer_fp
                      AND c.scorer = r.scorer || '_control' AND c.control AND c.status = 'ok'
    WHERE r.explainer_fp = $explainer AND NOT coalesce(r.control, false) AND r.status = 'ok' AND r.value IS NOT NULL
    GROUP BY ALL ORDER BY r.scorer, r.layer
"""

# the $n best latents by one scorer's primary metric (any explainer; any layer unless $layer names one): one pass
# over `scores` with a top-n (ties broken by the integer latent, cheap), no join: join explanations to its rows
TOP_LATENTS = """
    SELECT layer, latent, explainer_fp, scorer, coalesce(metric, 'balanced_accuracy') AS metric,
           coalesce(value, balanced_accuracy) AS value, ci_low, ci_high, n
    FROM scores
    WHERE scorer = $scorer AND status = 'ok' AND NOT coalesce(control, false)
      AND ($layer IS NULL OR layer = $layer) AND coalesce(value, balanced_accuracy) IS NOT NULL
    ORDER BY value DESC, latent
    LIMIT $n
"""


# --- core/stages/examples.py ---

# the published partitions' record, not the view (which would scan the layer's cache)
RANGE_ACTIVATIONS_FP = """
    SELECT any_value(activations_fp) FROM activation_partitions WHERE layer = ? AND first_latent <= ? AND
    last_latent >= ?
"""

# the examples view's rows of a range (for SQL readers; the stages read them by columns, sampling.read_windows,
# which must give exactly these rows: tested)
RANGE_EXAMPLE_TOKENS = """
    SELECT latent, split, example_id, quantile, token_ids, acts FROM examples WHERE layer = ? AND latent
    BETWEEN ? AND ? AND split IN (SELECT unnest(?)) ORDER BY latent, split, example_id
"""

# (in no order: read_windows orders them)
RANGE_PUBLISHED_WINDOWS = """
    SELECT w.latent, w.split, w.example_id, w.quantile, w.row_id, w.start_pos, w.length, w.corpus_fp, p.ctx_len
    FROM example_windows w JOIN activation_partitions p ON p.layer = w.layer AND w.latent BETWEEN p.first_latent
    AND p.last_latent AND p.activations_fp = w.activations_fp WHERE w.layer = ? AND w.latent BETWEEN ? AND ? AND
    w.split IN (SELECT unnest(?))
"""

CORPUS_ROWS_OF = """
    SELECT row_id, token_ids FROM tokens WHERE corpus_fp = ? AND row_id IN (SELECT unnest(?))
"""

RANGE_EXAMPLES_SAMPLER_FP = """
    SELECT any_value(sampler_fp) FROM examples WHERE layer = ? AND latent BETWEEN ? AND ?
"""

RANGE_EXPLANATIONS_OF = """
    SELECT latent, explanation, sampler_fp FROM explanations WHERE layer = ? AND latent BETWEEN ? AND ? AND
    explainer_fp = ? AND status = 'ok' ORDER BY latent
"""


# --- core/stages/explanations.py ---

RANGE_SELECTION_SAMPLER_FP = """
    SELECT any_value(sampler_fp) FROM latent_selection WHERE layer = ? AND latent BETWEEN ? AND ?
"""

RANGE_MAX_ACTIVATIONS = """
    SELECT latent, max_activation FROM latent_stats WHERE layer = ? AND latent BETWEEN ? AND ?
"""


# --- core/stages/baseline_explanations.py ---

RANGE_STALE_OR_UNSCORED_EXPLANATIONS = """
    SELECT count(*) FILTER (WHERE e.sampler_fp IS DISTINCT FROM ? OR (e.status = 'ok' AND ( SELECT
    count(DISTINCT s.scorer_fp) FROM scores s WHERE s.layer = e.layer AND s.latent = e.latent AND
    s.explainer_fp = e.explainer_fp AND s.scorer_fp IN (SELECT unnest(?)) AND s.latent_range IS NOT NULL ) <
    ?)), count(*) FROM explanations e WHERE e.layer = ? AND e.latent BETWEEN ? AND ? AND e.explainer_fp = ?
"""

RANGE_SELECTED_COUNT = """
    SELECT count(*) FROM latent_selection WHERE layer = ? AND latent BETWEEN ? AND ? AND status = 'selected'
"""


# --- core/stages/corpus.py ---

CORPUS_REGISTERED = """
    SELECT count(*) FROM corpora WHERE corpus_fp = ?
"""

DELETE_CORPUS_TOKENS = """
    DELETE FROM tokens WHERE corpus_fp = ?
"""

# the corpus rows in order, at most ? of them (NULL: all)
CORPUS_TOKEN_IDS = """
    SELECT token_ids FROM tokens WHERE corpus_fp = ? ORDER BY row_id LIMIT ?
"""


# --- core/stages/sparse_coders.py ---

DELETE_LAYER_CODERS = """
    DELETE FROM sparse_coders WHERE layer IN (SELECT unnest(?::VARCHAR[]))
"""

LAYER_CODERS = """
    SELECT * FROM sparse_coders WHERE layer IN (SELECT unnest(?::VARCHAR[]))
"""


# --- core/stages/classifier_scores.py ---

RANGE_CLASSIFIER_SCORES = """
    SELECT scorer, status, balanced_accuracy, auroc, n_failed_batches FROM scores WHERE layer = ? AND latent
    BETWEEN ? AND ? AND explainer_fp = ? AND scorer IN (SELECT unnest(?::VARCHAR[]))
"""


# --- core/stages/intervention_scores.py ---

RANGE_INTERVENTION_SCORES = """
    SELECT latent, scorer, status, value FROM scores WHERE layer = ? AND latent BETWEEN ? AND ? AND
    explainer_fp = ? AND scorer IN (SELECT unnest(?::VARCHAR[]))
"""

RANGE_EXPLANATIONS_WITH_SCORE = """
    SELECT count(*), count(s.latent) FROM explanations e LEFT JOIN scores s ON s.layer = e.layer AND
    s.latent = e.latent AND s.explainer_fp = e.explainer_fp AND s.scorer = 'intervention' AND s.scorer_fp =
    ? WHERE e.layer = ? AND e.latent BETWEEN ? AND ? AND e.explainer_fp = ? AND e.status = 'ok'
"""


# --- core/stages/steering.py ---

RANGE_SELECTED_MAX_ACTIVATIONS = """
    SELECT l.latent, s.max_activation FROM latent_selection l JOIN latent_stats s USING (layer, latent)
    WHERE l.layer = ? AND l.latent BETWEEN ? AND ? AND l.status = 'selected' ORDER BY l.latent
"""

RANGE_STEERED_LATENTS = """
    SELECT latent FROM steering WHERE layer = ? AND latent BETWEEN ? AND ? AND steering_fp = ?
"""

RANGE_STEERING = """
    SELECT * FROM steering WHERE layer = ? AND latent BETWEEN ? AND ? AND steering_fp = ? ORDER BY latent
"""

RANGE_STEERED_TEXTS = """
    SELECT * FROM steered_texts WHERE layer = ? AND latent BETWEEN ? AND ? AND steering_fp = ? ORDER BY
    latent, prompt_id
"""


# --- core/stages/summary.py ---

# per partition (latent ranges given as three parallel lists: key, first, last) and explainer: latents scored,
# median detection / fuzzing balanced accuracy and AUROC, the detection and intervention controls in words
PARTITION_SUMMARY = """
        WITH r(latents, first, last) AS (SELECT unnest(?::VARCHAR[]), unnest(?::INTEGER[]), unnest(?::INTEGER[])),
        per AS (
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
                   AS detection_minus_control,
               round(i.median, 3) AS median_intervention_bacc,
               printf('%+.3f [%+.3f, %+.3f]', i.median_difference, i.difference_ci_low, i.difference_ci_high)
                   AS intervention_minus_control
        FROM per LEFT JOIN scorer_summary d ON d.layer = per.layer AND d.latent_range = per.latents
             AND d.explainer_fp = per.explainer_fp AND d.scorer = 'detection'
        LEFT JOIN scorer_summary i ON i.layer = per.layer AND i.latent_range = per.latents
             AND i.explainer_fp = per.explainer_fp AND i.scorer = 'intervention'
        ORDER BY per.layer, per.latents, per.explainer_fp
"""

SENSITIVITY_FINDINGS = """
    SELECT layer, latent_range, explainer_fp, scorer, reads_explanation, share_changed, median_difference,
    difference_ci_low, difference_ci_high, finding FROM scorer_report WHERE finding IS NOT NULL AND
    share_changed IS NOT NULL ORDER BY layer, latent_range, explainer_fp, scorer
"""

RANGE_EXPLAINER_VALUES = """
    SELECT latent, explainer_fp, scorer, metric, value FROM scores WHERE layer = ? AND latent BETWEEN ? AND
    ? AND NOT coalesce(control, false) AND status = 'ok' AND value IS NOT NULL AND explainer_fp IN (SELECT
    unnest(?))
"""

RANGE_SCORER_SUMMARY = """
    SELECT * FROM scorer_summary WHERE layer = ? AND latent_range = ? AND explainer_fp IN (SELECT unnest(?))
"""

LATEST_CALIBRATION_OF = """
    SELECT calibration_fp FROM calibration_scores WHERE explainer_fp = ? ORDER BY created_at DESC LIMIT 1
"""

EXPLAINER_SPECS = """
    SELECT fingerprint, spec FROM fingerprints WHERE kind = 'explainer'
"""

CALIBRATION_POWER_OF = """
    SELECT * FROM calibration_power WHERE calibration_fp = ? AND explainer_fp = ? ORDER BY scorer
"""

CALIBRATION_RECOVERY_OF = """
    SELECT * FROM calibration_recovery_rate WHERE calibration_fp = ? AND explainer_fp = ? ORDER BY explainer
"""


# --- core/stages/incremental.py ---

RANGE_DONE_EXPLANATIONS = """
    SELECT latent FROM explanations WHERE layer = ? AND latent BETWEEN ? AND ? AND explainer_fp = ? AND
    status = 'ok' AND (? IS NULL OR sampler_fp = ?)
"""

RANGE_DONE_SCORES = """
    SELECT s.latent, s.scorer, s.scorer_fp FROM scores s JOIN explanations e ON e.layer = s.layer AND
    e.latent = s.latent AND e.explainer_fp = s.explainer_fp AND e.status = 'ok' WHERE s.layer = ? AND
    s.latent BETWEEN ? AND ? AND s.explainer_fp = ? AND s.status IN (SELECT unnest(?::VARCHAR[])) AND
    s.created_at >= e.created_at AND s.scorer IN (SELECT unnest(?::VARCHAR[]))
"""

FAILED_EXPLANATION_REASONS = """
    SELECT coalesce(error, status) FROM explanations WHERE layer = ? AND explainer_fp = ? AND status NOT IN
    ('ok', 'budget_exceeded' ) AND latent IN (SELECT unnest(?::INTEGER[]))
"""

FAILED_SCORE_REASONS = """
    SELECT coalesce(failure_reasons[1], status) FROM scores WHERE layer = ? AND explainer_fp = ? AND status
    NOT IN ('ok', 'undefined' , 'budget_exceeded' ) AND latent IN (SELECT unnest(?::INTEGER[])) AND scorer
    IN (SELECT unnest(?::VARCHAR[]))
"""


# --- core/stages/latent_stats.py ---

def latent_stats(n_tokens: int, window: int, min_examples: int, ctx_len: int, quantiles: tuple[float, ...],
                 hist_bins: int, source: str = "activations") -> str:
    """Table latent_stats's rows of latents $first..$last of $layer, over ``source``: the `activations` view or a
    relation with its columns latent, row_id, pos, value, activations_fp holding (at least) those latents'
    rows. ``n_tokens``: the corpus's data tokens; ``window``: the unit of sampling (core.windows)."""
    unit = unit_sql("pos", window)
    layer = "layer = $layer AND " if source == "activations" else ""
    return f"""
        WITH a AS (SELECT latent, row_id, pos, value, activations_fp FROM {source}
                   WHERE {layer}latent BETWEEN $first AND $last),
        per AS (
            SELECT latent, count(*) AS n_firing,
                   count(DISTINCT (row_id, {unit}))
                       FILTER (WHERE {unit} BETWEEN 0 AND {windows_per_row(ctx_len, window) - 1})
                       AS n_windows,
                   max(value) AS max_activation, avg(value) AS mean_activation,
                   quantile_cont(value, {list(quantiles)}) AS quantile_edges,
                   any_value(activations_fp) AS activations_fp
            FROM a GROUP BY latent
        ),
        bins AS (
            SELECT latent, least(floor(value / max_activation * {hist_bins}), {hist_bins - 1})::INTEGER AS bin,
                   count(*)::INTEGER AS n
            FROM a JOIN per USING (latent) WHERE max_activation > 0 GROUP BY ALL
        ),
        hist AS (
            SELECT p.latent, list(coalesce(b.n, 0) ORDER BY r.bin) AS histogram
            FROM per p CROSS JOIN range({hist_bins}) r(bin)
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


RANGE_STATUS_COUNTS = """
    SELECT status, count(*) FROM latent_stats WHERE layer = ? AND latent BETWEEN ? AND ? GROUP BY status
"""

RANGE_LATENT_STATS = """
    SELECT latent, density, status, max_activation, histogram FROM latent_stats
    WHERE layer = ? AND latent BETWEEN ? AND ? ORDER BY latent
"""

# tokens of corpus ? that are data: every position but 0 and the separators (the first parameter: their ids)
DATA_TOKENS = """
    SELECT coalesce(sum(len(list_filter(token_ids[2:], x -> NOT list_contains(?::INTEGER[], x)))), 0)
    FROM tokens WHERE corpus_fp = ?
"""


# --- core/stages/activations.py ---

DELETE_CACHE_FROM_TOKEN = """
    DELETE FROM activation_cache WHERE cache_fp = ? AND token >= ?
"""

INSERT_CACHE_PROGRESS = """
    INSERT INTO cache_progress (cache_fp, batch_index, row_start, row_stop, n_nonzero, seconds) VALUES (?,
    ?, ?, ?, ?, ?)
"""

# once per cache (params: cache_fp, n_rows, n_tokens, n_nonzero, seconds, cache_fp); a lake has no primary key
INSERT_CACHE_COMPLETE = """
    INSERT INTO cache_complete (cache_fp, n_rows, n_tokens, n_nonzero, seconds) SELECT ?, ?, ?, ?, ? WHERE NOT
    EXISTS (SELECT 1 FROM cache_complete WHERE cache_fp = ?)
"""

DELETE_ACTIVATION_PARTITION = """
    DELETE FROM activation_partitions WHERE layer = ? AND first_latent <= ? AND last_latent >= ?
"""

INSERT_ACTIVATION_PARTITION = """
    INSERT INTO activation_partitions (layer, first_latent, last_latent, cache_fp, activations_fp, ctx_len,
    n_nonzero) VALUES (?, ?, ?, ?, ?, ?, ?)
"""

CORPUS_ROWS_BETWEEN = """
    SELECT token_ids FROM tokens WHERE corpus_fp = ? AND row_id >= ? AND row_id < ? ORDER BY row_id
"""

CACHE_COMPLETE_OF = """
    SELECT n_tokens, n_nonzero, seconds FROM cache_complete WHERE cache_fp = ?
"""

# the cache writer's connection while it sorts and writes a commit group: bounded memory, one thread, and no
# "optimistic" write where DuckDB has the switch (1.5.6 on; not 1.5.5, the version the lake's extension wheels need):
# a group over one row group of 122,880 rows would be written as it is inserted, each column segment in blocks of
# its own (measured on make run's cache: 17.1 MB without, 19.1 MB with, +12 %); kept in memory it is packed
CACHE_WRITER_SETTINGS = ("SET memory_limit = '{memory_gb}GB'", "SET threads = 1")
NO_OPTIMISTIC_WRITE = "enable_optimistic_write"  # SET to false where the setting exists
SETTING_EXISTS = "SELECT count(*) FROM duckdb_settings() WHERE name = ?"
SET_SETTING_FALSE = "SET {name} = false"

INSERT_CACHE_BATCH = """
    INSERT INTO activation_cache SELECT cache_fp::VARCHAR, layer::VARCHAR, latent, token, value_bits FROM
    _batch
"""

CACHE_RESUME_ROW = """
    SELECT coalesce(max(row_stop), 0) FROM cache_progress WHERE cache_fp = ?
"""

CORPUS_ROW_COUNT = """
    SELECT count(*) FROM tokens WHERE corpus_fp = ?
"""

CACHE_NONZEROS = """
    SELECT count(*) FROM activation_cache WHERE cache_fp = ?
"""

CACHE_RANGE_NONZEROS = """
    SELECT count(*) FROM activation_cache WHERE cache_fp = ? AND layer = ? AND latent BETWEEN ? AND ?
"""


# --- core/stages/calibration.py ---

LEDGER_NEXT_ROWID = """
    SELECT coalesce(max(rowid) + 1, 0) FROM llm_calls
"""

CALIBRATION_SCORES_OF = """
    SELECT s.latent, s.scorer, s.scorer_fp, s.metric, s.value, s.status, s.control, s.explainer_fp,
    e.explanation FROM scores s LEFT JOIN explanations e ON e.layer = s.layer AND e.latent = s.latent AND
    e.explainer_fp = s.explainer_fp WHERE s.layer = ? AND s.explainer_fp IN (?, ?)
"""

LEDGER_ROWS_FROM = """
    SELECT * EXCLUDE (created_at) FROM llm_calls WHERE rowid >= ?
"""

CALIBRATION_POWER_ROWS = """
    SELECT * EXCLUDE (calibration_fp, explainer_fp) FROM calibration_power WHERE calibration_fp = ? AND
    explainer_fp = ? ORDER BY scorer
"""

CALIBRATION_RECOVERY_ROWS = """
    SELECT * EXCLUDE (calibration_fp, explainer_fp) FROM calibration_recovery_rate WHERE calibration_fp = ?
    AND explainer_fp = ? ORDER BY explainer
"""

CALIBRATION_LATENT_ROWS = """
    SELECT latent, planted, status, n_windows, gold FROM calibration_latents WHERE calibration_fp = ? ORDER
    BY latent
"""

INSERT_CACHE_COMPLETE_PLANTED = """
    INSERT INTO cache_complete (cache_fp, n_rows, n_tokens, n_nonzero, seconds) VALUES (?, ?, ?, ?, 0)
"""

INSERT_ACTIVATION_PARTITION_PLANTED = """
    INSERT INTO activation_partitions (layer, first_latent, last_latent, cache_fp, activations_fp, ctx_len,
    n_nonzero) VALUES (?, 0, ?, ?, ?, ?, ?)
"""

LAYER_SELECTION_SAMPLER_FP = """
    SELECT any_value(sampler_fp) FROM latent_selection WHERE layer = ?
"""

DELETE_EXPLAINER_EXPLANATIONS = """
    DELETE FROM explanations WHERE explainer_fp = ?
"""

DELETE_CALIBRATION_LATENTS = """
    DELETE FROM calibration_latents WHERE calibration_fp = ?
"""

LAYER_SELECTION_STATUS = """
    SELECT latent, status FROM latent_selection WHERE layer = ?
"""

LAYER_SELECTION_WINDOWS = """
    SELECT latent, n_windows FROM latent_selection WHERE layer = ?
"""

CACHE_COMPLETE_COUNT = """
    SELECT count(*) FROM cache_complete WHERE cache_fp = ?
"""

LAYER_EXPLANATIONS_OF = """
    SELECT latent, explanation FROM explanations WHERE layer = ? AND explainer_fp = ? AND status = 'ok'
"""


# --- core/stages/scorers.py ---

DELETE_RANGE_SENSITIVITY = """
    DELETE FROM scorer_sensitivity WHERE layer = ? AND latent_range = ? AND explainer_fp = ? AND scorer IN
    (SELECT unnest(?::VARCHAR[]))
"""

RANGE_REAL_VALUES = """
    SELECT latent, scorer, value FROM scores WHERE layer = ? AND latent_range = ? AND explainer_fp = ? AND
    status = 'ok' AND scorer IN (SELECT unnest(?))
"""

RANGE_CONTROL_VALUES = """
    SELECT latent, scorer, value FROM scores WHERE layer = ? AND latent_range = ? AND explainer_fp = ? AND
    status = 'ok' AND control AND value IS NOT NULL
"""

CHUNK_FLAG_ROWS = """
    SELECT latent, row_id, pos, value, tok FROM _chunk
"""

DATA_POSITION_ROWS = """
    SELECT pos, nv FROM _valid
"""

CORPUS_ROWS = """
    SELECT row_id, token_ids FROM tokens WHERE corpus_fp = ?
"""

RANGE_CLASSIFIER_ITEMS = """
    SELECT latent, scorer, example_id, truth, prediction, probability, batch_index FROM score_items WHERE
    layer = ? AND latent BETWEEN ? AND ? AND explainer_fp = ? AND scorer IN (SELECT unnest(?))
"""

SET_CLASSIFIER_METRIC = """
    UPDATE scores SET metric = 'balanced_accuracy' , value = balanced_accuracy, control = false,
    latent_range = ? WHERE layer = ? AND latent BETWEEN ? AND ? AND explainer_fp = ? AND scorer IN (SELECT
    unnest(?))
"""

RANGE_CONTROLLED_ITEMS = """
    SELECT scorer, latent, example_id, truth, prediction, value FROM score_items WHERE layer = ? AND latent
    BETWEEN ? AND ? AND explainer_fp = ?
"""

RANGE_CONTROLLED_VALUES = """
    SELECT scorer, latent, coalesce(value, balanced_accuracy) AS value FROM scores WHERE layer = ? AND
    latent BETWEEN ? AND ? AND explainer_fp = ? AND status = 'ok'
"""

# the heuristic flag columns (core.scoring.heuristics.FLAG_COLUMNS) of the latents in the registered frame _flags
SET_LATENT_FLAGS = """
    UPDATE latent_stats SET position_u = f.position_u, top_token = f.top_token, top_token_share = f.top_token_share,
    tokens_for_mass = f.tokens_for_mass, flag_positional = f.flag_positional,
    flag_single_token = f.flag_single_token, flag_unigram = f.flag_unigram
    FROM _flags f WHERE latent_stats.layer = ? AND latent_stats.latent = f.latent
"""

SET_CLASSIFIER_CIS = """
    UPDATE scores SET ci_low = c.ci_low, ci_high = c.ci_high, auroc_ci_low = c.auroc_ci_low, auroc_ci_high =
    c.auroc_ci_high FROM _ci c WHERE scores.layer = c.layer AND scores.latent = c.latent AND
    scores.explainer_fp = c.explainer_fp AND scores.scorer = c.scorer
"""

RANGE_UNDEFINED_FAILED = """
    SELECT scorer, count(*) FILTER (WHERE status = 'undefined' ), count(*) FILTER (WHERE status = 'failed' )
    FROM scores WHERE layer = ? AND latent_range = ? AND explainer_fp = ? AND NOT coalesce(control, false)
    GROUP BY scorer
"""


# --- defs/checks.py ---

RANGE_OVERLAPPING_SELECTED = """
    SELECT count(*) FROM (SELECT latent FROM latent_selection WHERE status = 'selected' AND layer = ? AND
    latent BETWEEN ? AND ?) s WHERE (SELECT count(DISTINCT split) FROM examples e WHERE e.layer = ? AND
    e.latent = s.latent AND e.split IN ('train', 'test' )) < 2
"""

RANGE_MISSING_SCORES = """
    SELECT e.latent, k.scorer FROM explanations e CROSS JOIN (SELECT unnest(?::VARCHAR[]) AS scorer) k WHERE
    e.explainer_fp = ? AND e.status = 'ok' AND e.layer = ? AND e.latent BETWEEN ? AND ? AND NOT EXISTS
    (SELECT 1 FROM scores s WHERE s.layer = e.layer AND s.latent = e.latent AND s.explainer_fp =
    e.explainer_fp AND s.scorer = k.scorer) ORDER BY ALL
"""

RANGE_OK_EXPLANATION_COUNT = """
    SELECT count(*) FROM explanations WHERE explainer_fp = ? AND status = 'ok' AND layer = ? AND latent
    BETWEEN ? AND ?
"""

RANGE_SCORER_SUMMARY_ROWS = """
    SELECT scorer, metric, latents, median, median_control, median_difference, difference_ci_low,
    difference_ci_high FROM scorer_summary WHERE explainer_fp = ? AND layer = ? AND latent_range = ? AND
    median_control IS NOT NULL ORDER BY scorer
"""

RANGE_SENSITIVITY_ROWS = """
    SELECT scorer, items, changed, share_changed, share_ci_low, share_ci_high, min_share, reads_explanation,
    finding FROM scorer_sensitivity WHERE explainer_fp = ? AND layer = ? AND latent_range = ? ORDER BY
    scorer
"""

RANGE_EXPLANATION_COVERAGE = """
    SELECT count(*) FILTER (WHERE e.latent IS NULL) AS missing, count(e.latent) AS explained, count(*)
    FILTER (WHERE e.status = 'ok' ) AS ok FROM latent_selection s LEFT JOIN explanations e ON e.layer =
    s.layer AND e.latent = s.latent AND e.explainer_fp = ? WHERE s.status = 'selected' AND s.layer = ? AND
    s.latent BETWEEN ? AND ?
"""

RANGE_FAILED_SCORE_COUNT = """
    SELECT count(*) AS n, count(*) FILTER (WHERE s.status <> 'ok' ) AS failed FROM scores s JOIN
    explanations e USING (layer, latent, explainer_fp) WHERE e.status = 'ok' AND s.explainer_fp = ? AND
    s.layer = ? AND s.latent BETWEEN ? AND ? AND s.scorer IN (SELECT unnest(?::VARCHAR[]))
"""

RANGE_SELECTION_COUNTS = """
    SELECT status, count(*) FROM latent_selection WHERE layer = ? AND latent BETWEEN ? AND ? GROUP BY ALL
"""

# --- core/scoring/heuristics.py ---

def _hb(x: str) -> str:
    """Binary entropy in nats of a probability expression (0 at 0 and 1)."""
    return f"(CASE WHEN {x} <= 0 OR {x} >= 1 THEN 0 ELSE -({x} * ln({x}) + (1 - {x}) * ln(1 - {x})) END)"


def data_positions(tokens_sql: str, separators) -> str:
    """(pos, nv): how many rows of ``tokens_sql`` (row_id, token_ids) hold data at each position (not position 0,
    not a separator token): the denominators of the positional flag."""
    return f"""
    WITH t AS (SELECT unnest(token_ids) AS tok, generate_subscripts(token_ids, 1) - 1 AS pos FROM ({tokens_sql}))
    SELECT pos, count(*)::DOUBLE AS nv FROM t WHERE pos > 0 AND NOT list_contains({sql_list(separators)}, tok)
    GROUP BY pos
    """


def heuristic_flags(acts_sql: str, valid_sql: str, cfg) -> str:
    """The heuristic flag columns per latent of ``acts_sql`` (latent, row_id, pos, value, tok: the token id at
    the position) given ``valid_sql``'s data positions (pos, nv: ``data_positions``); ``cfg``: the thresholds
    (see core.scoring.heuristics)."""
    return f"""
    WITH a AS ({acts_sql}),
    valid AS ({valid_sql}),
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
    mass AS (SELECT latent, tok, sum(value) AS m FROM a GROUP BY ALL),
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


# --- cli.py ---

SELECTION_COUNT = """
    SELECT count(*) FROM latent_selection
"""


# --- core/stages/estimate.py ---

LATENT_STEERED_TEXTS = """
    SELECT prompt_id, prompt, clean, steered FROM steered_texts WHERE layer = ? AND latent = ? ORDER BY
    prompt_id
"""

RANGE_STEERING_TOKENS = """
    SELECT latent, top_tokens, top_increases FROM steering WHERE layer = ? AND latent BETWEEN ? AND ?
"""

RANGE_SELECTED_LATENTS = """
    SELECT latent FROM latent_selection WHERE layer = ? AND latent BETWEEN ? AND ? AND status = 'selected'
    ORDER BY latent
"""


# --- core/llm/ledger.py ---

DELETE_LEDGER_RUN_STATUS = """
    DELETE FROM llm_calls WHERE run_id = ? AND status = ?
"""

LEDGER_TOTALS = """
    SELECT coalesce(sum(prompt_tokens + completion_tokens), 0), coalesce(sum(cost_usd), 0) FROM llm_calls
"""


# --- core/export/delphi.py ---

LAYER_EXPLANATIONS_IN_ORDER = """
    SELECT latent, explanation FROM explanations WHERE layer = ? AND explainer_fp = ? AND status = 'ok'
    ORDER BY latent
"""

LAYER_FIRING_COUNTS = """
    SELECT latent, n_firing FROM latent_stats WHERE layer = ?
"""

LAYER_NUM_LATENTS = """
    SELECT max(num_latents) FROM sparse_coders WHERE layer = ?
"""


# --- core/vocabulary.py ---

DELETE_CORPUS = """
    DELETE FROM corpora WHERE corpus_fp = ?
"""

INSERT_CORPUS = """
    INSERT INTO corpora (corpus_fp, tokenizer_fp, source) VALUES (?, ?, ?)
"""

TOKENIZER_VOCABULARY_COUNT = """
    SELECT count(*) FROM vocabulary WHERE tokenizer_fp = ?
"""


# --- core/sampling/neighbours.py ---

CREATE_NEG_PRIMARY = """
    CREATE OR REPLACE TEMP TABLE _neg_primary (latent INTEGER, row_id INTEGER, win INTEGER, neighbour
    INTEGER, similarity REAL, ord BIGINT)
"""

# one round of neighbour negatives (temp tables _selection, _neighbours, _wins): for the latents with fewer than ?
# negatives so far, the strongest windows (at most ? per neighbour) of their neighbours ranked ? to ? where the
# latent is silent; parameters: n, lowest rank, highest rank, windows per neighbour
NEIGHBOUR_NEGATIVES_ROUND = """
        INSERT INTO _neg_primary
        WITH short AS (
            SELECT s.latent FROM _selection s
            LEFT JOIN (SELECT latent, count(DISTINCT (row_id, win)) AS got FROM _neg_primary GROUP BY latent) p
                USING (latent)
            WHERE s.status = 'selected' AND coalesce(p.got, 0) < ?
        ), cand AS (
            SELECT nb.latent, nb.neighbour, nb.similarity, nb.rank, w.row_id, w.win, w.max_act
            FROM _neighbours nb SEMI JOIN short USING (latent)
            JOIN _wins w ON w.latent = nb.neighbour
            ANTI JOIN _wins x ON x.latent = nb.latent AND x.row_id = w.row_id AND x.win = w.win
            WHERE nb.rank BETWEEN ? AND ?
        )
        SELECT latent, row_id, win, neighbour, similarity,
               rank * 1000000 + row_number() OVER (PARTITION BY latent, neighbour ORDER BY max_act DESC, row_id, win)
        FROM cand
        QUALIFY row_number() OVER (PARTITION BY latent, neighbour ORDER BY max_act DESC, row_id, win) <= ?
"""

NEIGHBOURS_MAX_RANK = """
    SELECT coalesce(max(rank), 0) FROM _neighbours
"""


# --- core/sampling/embeddings.py ---

NEG_PRIMARY_FROM_HARD = """
    CREATE OR REPLACE TEMP TABLE _neg_primary AS SELECT * FROM _hard_frame
"""

DELETE_WINDOW_EMBEDDINGS_ROWS = """
    DELETE FROM window_embeddings WHERE corpus_fp = ? AND example_ctx_len = ? AND model = ? AND row_id
    BETWEEN ? AND ?
"""

CORPUS_ROWS_NOT_EMBEDDED = """
    SELECT row_id, token_ids FROM tokens WHERE corpus_fp = $c AND row_id NOT IN ( SELECT DISTINCT row_id
    FROM window_embeddings WHERE corpus_fp = $c AND example_ctx_len = $w AND model = $m) ORDER BY row_id
"""

# the cached embedding of every window of a corpus (parameters: windows per row, corpus, window length, model)
WINDOW_EMBEDDINGS_BY_WID = """
    SELECT row_id * ? + win AS wid, embedding FROM window_embeddings
    WHERE corpus_fp = ? AND example_ctx_len = ? AND model = ? ORDER BY wid
"""

# the sampler's ranked units (temp table _ranked) among each latent's top ? as window ids
RANKED_QUERY_WINDOWS = """
    SELECT latent, row_id * ? + win, rk_top FROM _ranked WHERE rk_top <= ?
"""

# the windows where each selected latent fires (temp tables _wins, _selection) as window ids
SELECTED_FIRING_WINDOWS = """
    SELECT w.latent, w.row_id * ? + w.win FROM _wins w JOIN _selection s USING (latent) WHERE s.status = 'selected'
"""

SELECTED_OF_BUILD = """
    SELECT latent FROM _selection WHERE status = 'selected' ORDER BY latent
"""


# --- core/sampling/rules.py ---

RANGE_ACTIVATION_PARTITIONS = """
    SELECT cache_fp, ctx_len, greatest(first_latent, ?) AS lo, least(last_latent, ?) AS hi, activations_fp FROM
    activation_partitions WHERE layer = ? AND first_latent <= ? AND last_latent >= ? ORDER BY first_latent
"""

CACHE_RANGE_ROWS = """
    SELECT latent, token, value_bits FROM activation_cache WHERE cache_fp = ? AND layer = ? AND latent
    BETWEEN ? AND ?
"""

# --- core/storage/warehouse.py ---

# the schema's tables of the connection's own catalog (an attached lake's, not the in-memory one's)
SCHEMA_TABLES_PRESENT = """
    SELECT count(*) FROM information_schema.tables WHERE table_catalog = current_database() AND table_schema = 'main'
    AND table_name IN (SELECT unnest(?))
"""
SCHEMA_COLUMNS = """
    SELECT table_name, column_name FROM information_schema.columns WHERE table_catalog = current_database() AND
    table_schema = 'main'
"""
# a lake's schema fingerprint: the comment of table fingerprints (not a row: the lake's rows are the file's)
SCHEMA_MARK = """
    SELECT comment FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main' AND
    table_name = ?
"""
SET_SCHEMA_MARK = "COMMENT ON TABLE fingerprints IS '{mark}'"
CURRENT_DATABASE = "SELECT current_database()"
USE_DATABASE = 'USE "{name}"'
# once per fingerprint (params: fingerprint, kind, spec, fingerprint); a lake has no primary key to conflict on
FINGERPRINT_KNOWN = "SELECT count(*) > 0 FROM fingerprints WHERE fingerprint = ?"
RECORD_FINGERPRINT = """
    INSERT INTO fingerprints (fingerprint, kind, spec) SELECT ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM fingerprints
    WHERE fingerprint = ?)
"""

MEMORY_LIMIT = "SELECT current_setting('memory_limit')"
SET_MEMORY_LIMIT = "SET memory_limit = '{limit}'"
RESET_MEMORY_LIMIT = "RESET memory_limit"
THREADS = "SELECT current_setting('threads')"
SET_THREADS = "SET threads = {n}"

RANGE_PUBLISHED_NONZERO = """
    SELECT coalesce(sum(n_nonzero), 0) FROM activation_partitions WHERE layer = ? AND first_latent <= ? AND
    last_latent >= ?
"""

CACHE_RANGE_COUNTS = """
    SELECT latent, count(*) AS n FROM activation_cache WHERE cache_fp = ? AND layer = ? AND latent BETWEEN ? AND ?
    GROUP BY latent
"""

CORPUS_ROW_LENGTHS = """
    SELECT len(token_ids) AS n FROM tokens WHERE corpus_fp = ? ORDER BY row_id
"""


# --- core/sampling/builder.py ---

NEG_PRIMARY_ROWS = """
    SELECT latent, row_id, win, coalesce(neighbour, -1) AS neighbour, similarity, ord FROM _neg_primary
"""


# --- core/analyses.py ($explainer: one explainer's rows, NULL: all) ---

SCORER_AGREEMENT_ROWS = """
    SELECT * FROM scorer_agreement WHERE $explainer IS NULL OR explainer_fp = $explainer
    ORDER BY layer, latent_range, explainer_fp, scorer_a, scorer_b
"""

SAE_SIMILARITY_ROWS = """
    SELECT * FROM sae_similarity WHERE $explainer IS NULL OR explainer_fp = $explainer
    ORDER BY explainer_fp, layer_a, layer_b, sae_fp_a, sae_fp_b
"""

LATENT_MATCHES_ROWS = """
    SELECT * FROM latent_matches WHERE $explainer IS NULL OR explainer_fp = $explainer
    ORDER BY layer_a, latent_a, layer_b
"""


# --- core/export/parquet.py (templates: {relation} from EXPORT_RELATIONS, {out} a quoted path) ---

LAYER_FILTER = " WHERE layer = $layer"
EXPORT_COUNT = "SELECT count(*) FROM {relation}{where}"
EXPORT_BY_LAYER = ("COPY (SELECT * FROM {relation}{where}) TO '{out}' "
                   "(FORMAT parquet, PARTITION_BY (layer), OVERWRITE_OR_IGNORE)")
EXPORT_WHOLE = "COPY (SELECT * FROM {relation}) TO '{out}/data.parquet' (FORMAT parquet)"


# --- core/sampling/checks.py (the sampling rules on a stored partition: each count is 0 when it holds) ---

TRAIN_TEST_OVERLAPS = """
        WITH e AS (SELECT latent, split, row_id, start_pos, start_pos + length AS stop
                   FROM example_windows WHERE layer = $layer AND latent BETWEEN $first AND $last)
        SELECT count(*) FROM e a JOIN e b ON a.latent = b.latent AND a.row_id = b.row_id
            AND a.start_pos < b.stop AND b.start_pos < a.stop
        WHERE a.split = 'train' AND b.split = 'test'
"""

TRAIN_PEAKS_IN_TEST = """
        WITH e AS (SELECT latent, split, row_id, start_pos, start_pos + len(token_ids) AS stop,
                          start_pos + list_position(acts, list_max(acts)) - 1 AS peak
                   FROM examples
                   WHERE layer = $layer AND latent BETWEEN $first AND $last AND split IN ('train', 'test'))
        SELECT count(*) FROM e a JOIN e b ON a.latent = b.latent AND a.row_id = b.row_id
            AND a.peak >= b.start_pos AND a.peak < b.stop
        WHERE a.split = 'train' AND b.split = 'test'
"""

SHARED_NEGATIVES = """
        WITH e AS (SELECT latent, split, row_id, start_pos, start_pos + length AS stop
                   FROM example_windows WHERE layer = $layer AND latent BETWEEN $first AND $last
                         AND split IN ('non_activating', 'train_non_activating'))
        SELECT count(*) FROM e a JOIN e b ON a.latent = b.latent AND a.row_id = b.row_id
            AND a.start_pos < b.stop AND b.start_pos < a.stop
        WHERE a.split = 'train_non_activating' AND b.split = 'non_activating'
"""

FIRING_NEGATIVES = """
        SELECT count(DISTINCT (e.latent, e.example_id)) FROM example_windows e JOIN activations a
            ON a.layer = e.layer AND a.latent = e.latent AND a.row_id = e.row_id
            AND a.pos >= e.start_pos AND a.pos < e.start_pos + e.length
        WHERE e.split IN ('non_activating', 'train_non_activating') AND 
            e.layer = $layer AND e.latent BETWEEN $first AND $last
"""


# --- core/sampling/rules.py and builder.py (templates) ---

# DuckDB's hash of each row of the registered _hash_in, seeded: {seed} an int literal (a parameter's type would
# change the hash), {columns} the column names
HASH_ROWS = "SELECT hash({seed}, {columns}) AS h FROM _hash_in"

TEMP_TABLE_FROM_ARROW = "CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _arrow_in"
