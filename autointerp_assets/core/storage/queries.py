"""Named queries over the tables and views of ``schema.py``: what the latent card, the latent browser, the
exports and the search read. Each takes ``$layer``, ``$first``, ``$last`` (one latent: first = last), so a
partition and a single latent are read the same way. The SQL lives here, not in the modules that use it.
"""

from __future__ import annotations

import re


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
CODER_PATH = "SELECT path FROM sparse_coders WHERE layer = $layer ORDER BY created_at DESC LIMIT 1"

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
