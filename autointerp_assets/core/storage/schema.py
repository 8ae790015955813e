"""Every DuckDB table and view of the project, declared once.

Each partitioned table carries the partition columns ``layer`` (hookpoint) and ``latent`` plus the
fingerprints of what it was made from; ``fingerprints`` holds the JSON each fingerprint hashes.
A partition (layer, latent range) is rewritten by delete + insert in one transaction
(``Warehouse.replace_partition``), so readers never see half of one.
"""

from __future__ import annotations

# Table name -> column DDL. Order here is the documented order (README "Tables").
TABLES: dict[str, str] = {
    # fingerprint -> the JSON it hashes (model + revision, SAE, corpus, sampler, explainer/scorer + prompt)
    "fingerprints": """
        fingerprint VARCHAR PRIMARY KEY,
        kind VARCHAR NOT NULL,
        spec JSON NOT NULL,
        created_at TIMESTAMP DEFAULT current_timestamp
    """,
    # one row per corpus row (context): token ids, BOS first
    "tokens": """
        corpus_fp VARCHAR NOT NULL,
        row_id INTEGER NOT NULL,
        token_ids INTEGER[] NOT NULL
    """,
    # the token strings of each tokenizer used (core.vocabulary): token = decoded text, piece = raw vocabulary
    # entry; keyed by tokenizer fingerprint (the subject model's identity), written once per tokenizer
    "vocabulary": """
        tokenizer_fp VARCHAR NOT NULL,
        token_id INTEGER NOT NULL,
        token VARCHAR NOT NULL,
        piece VARCHAR
    """,
    # which tokenizer made each corpus (so SQL can turn a corpus row's token ids into text)
    "corpora": """
        corpus_fp VARCHAR PRIMARY KEY,
        tokenizer_fp VARCHAR NOT NULL,
        source VARCHAR
    """,
    # the sparse coder per hookpoint (trained here or loaded)
    "sparse_coders": """
        layer VARCHAR NOT NULL,
        sae_fp VARCHAR NOT NULL,
        path VARCHAR NOT NULL,
        d_in INTEGER NOT NULL,
        num_latents INTEGER NOT NULL,
        k INTEGER,
        format VARCHAR,
        architecture VARCHAR,
        hook_input BOOLEAN,
        source VARCHAR NOT NULL,
        train_tokens BIGINT,
        fvu DOUBLE,
        dead_fraction DOUBLE,
        created_at TIMESTAMP DEFAULT current_timestamp
    """,
    # internal: the non-zero latent activations of a forward pass (all partitions at once; used once
    # cache_complete marks it), compact: token = row_id * ctx_len + pos, value_bits = the value as IEEE
    # float16 bits; each batch's rows are sorted by (layer, latent, token) so bitpacking/RLE compress
    # (~5 bytes per non-zero on disk). Read it through the `activations` view.
    "activation_cache": """
        cache_fp VARCHAR NOT NULL,
        layer VARCHAR NOT NULL,
        latent INTEGER NOT NULL,
        token INTEGER NOT NULL,
        value_bits USMALLINT NOT NULL
    """,
    # internal: the committed batches of a forward pass (its resume point)
    "cache_progress": """
        cache_fp VARCHAR NOT NULL,
        batch_index INTEGER NOT NULL,
        row_start INTEGER NOT NULL,
        row_stop INTEGER NOT NULL,
        n_nonzero BIGINT NOT NULL,
        seconds DOUBLE NOT NULL,
        committed_at TIMESTAMP DEFAULT current_timestamp
    """,
    # internal: a finished forward pass (tokens, non-zeros, seconds); its rows of activation_cache are usable
    "cache_complete": """
        cache_fp VARCHAR PRIMARY KEY,
        n_rows INTEGER NOT NULL,
        n_tokens BIGINT NOT NULL,
        n_nonzero BIGINT NOT NULL,
        seconds DOUBLE NOT NULL,
        completed_at TIMESTAMP DEFAULT current_timestamp
    """,
    # published partitions of `activations`: which cache serves (layer, first..last); replacing a row
    # replaces exactly that partition in the view, in one transaction
    "activation_partitions": """
        layer VARCHAR NOT NULL,
        first_latent INTEGER NOT NULL,
        last_latent INTEGER NOT NULL,
        cache_fp VARCHAR NOT NULL,
        activations_fp VARCHAR NOT NULL,
        ctx_len INTEGER NOT NULL,
        n_nonzero BIGINT NOT NULL,
        published_at TIMESTAMP DEFAULT current_timestamp
    """,
    # per latent: firing statistics over the cached corpus; heuristic flags (core.scoring.heuristics, set by
    # stage scores): position_u = uncertainty coefficient of firing given position, top_token and its
    # share of the activation mass, tokens_for_mass = token ids carrying scoring.unigram_mass of it,
    # and the flags flag_positional / flag_single_token / flag_unigram
    "latent_stats": """
        layer VARCHAR NOT NULL,
        latent INTEGER NOT NULL,
        n_firing BIGINT NOT NULL,
        n_windows BIGINT NOT NULL,
        density DOUBLE NOT NULL,
        max_activation REAL,
        mean_activation REAL,
        quantile_edges REAL[],
        histogram INTEGER[],
        status VARCHAR NOT NULL,
        activations_fp VARCHAR NOT NULL,
        position_u DOUBLE,
        top_token INTEGER,
        top_token_share DOUBLE,
        tokens_for_mass INTEGER,
        flag_positional BOOLEAN,
        flag_single_token BOOLEAN,
        flag_unigram BOOLEAN
    """,
    # per latent: was it given examples (selected) or not, and why (too_rare / dead / not_selected),
    # with its activating windows and how many train / test / non-activating examples it got
    "latent_selection": """
        layer VARCHAR NOT NULL,
        latent INTEGER NOT NULL,
        status VARCHAR NOT NULL,
        n_windows BIGINT NOT NULL,
        n_train INTEGER,
        n_test INTEGER,
        n_non_activating INTEGER,
        sampler_fp VARCHAR NOT NULL
    """,
    # per selected latent: its top-n most similar latents of the same range (sampler.neighbour_type:
    # Jaccard co-occurrence over windows, or decoder cosine); rank 1 = most similar
    "latent_neighbours": """
        layer VARCHAR NOT NULL,
        latent INTEGER NOT NULL,
        rank INTEGER NOT NULL,
        neighbour INTEGER NOT NULL,
        similarity REAL NOT NULL,
        kind VARCHAR NOT NULL,
        sampler_fp VARCHAR NOT NULL
    """,
    # sentence embedding (unit norm) of every fixed window of a corpus, once per (corpus, window
    # length, embedding model): shared by all latents and layers (embedding hard negatives)
    "window_embeddings": """
        corpus_fp VARCHAR NOT NULL,
        example_ctx_len INTEGER NOT NULL,
        model VARCHAR NOT NULL,
        row_id INTEGER NOT NULL,
        win INTEGER NOT NULL,
        embedding FLOAT[] NOT NULL
    """,
    # the example windows of a partition (read them through the `examples` view): train (explainer), test
    # (scorers; no token shared with a train window of the latent), non_activating (source random /
    # neighbours / embedding; neighbour = the similar latent it came from, similarity = its neighbour or
    # embedding similarity) and train_non_activating (the explainer's negatives). A window is corpus row
    # row_id, positions start_pos .. start_pos + length - 1 of corpus corpus_fp; its tokens and activations
    # are not copied here (tokens are stored once, activations once in the cache): the view reads them.
    "example_windows": """
        layer VARCHAR NOT NULL,
        latent INTEGER NOT NULL,
        split VARCHAR NOT NULL,
        example_id INTEGER NOT NULL,
        quantile SMALLINT NOT NULL,
        row_id INTEGER NOT NULL,
        start_pos SMALLINT NOT NULL,
        length SMALLINT NOT NULL,
        max_activation REAL NOT NULL,
        source VARCHAR,
        neighbour INTEGER,
        similarity REAL,
        sampler_fp VARCHAR NOT NULL,
        corpus_fp VARCHAR NOT NULL,
        activations_fp VARCHAR NOT NULL
    """,
    # one explanation per (layer, latent, explainer fingerprint); failures kept with their raw text;
    # status ok / parse_error / llm_error / budget_exceeded (not sent: a re-run continues with these) /
    # unavailable (a baseline explainer without its input, e.g. logit_lens without decoder weights; see error).
    # Monotone (core.stages.incremental): an ok row is replaced only by a newer ok one; a later failure is
    # kept beside it: attempts (times sent), failed_attempts, last_error and last_failed_at
    "explanations": """
        layer VARCHAR NOT NULL,
        latent INTEGER NOT NULL,
        explainer_fp VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        explanation VARCHAR,
        raw_text VARCHAR,
        error VARCHAR,
        prompt_tokens INTEGER,
        cached_tokens INTEGER,
        completion_tokens INTEGER,
        latency_s DOUBLE,
        cost_usd DOUBLE,
        sampler_fp VARCHAR NOT NULL,
        created_at TIMESTAMP DEFAULT current_timestamp,
        attempts INTEGER,
        failed_attempts INTEGER,
        last_error VARCHAR,
        last_failed_at TIMESTAMP
    """,
    # per example shown to a scorer: truth, prediction, probability; value = the example's own score for
    # embedding (cosine), surprisal (loss gain, nats/token) and simulation (simulated max, 0-10)
    "score_items": """
        layer VARCHAR NOT NULL,
        latent INTEGER NOT NULL,
        explainer_fp VARCHAR NOT NULL,
        scorer VARCHAR NOT NULL,
        scorer_fp VARCHAR NOT NULL,
        example_id INTEGER NOT NULL,
        batch_index INTEGER NOT NULL,
        quantile SMALLINT NOT NULL,
        activating BOOLEAN NOT NULL,
        truth BOOLEAN NOT NULL,
        prediction BOOLEAN,
        probability DOUBLE,
        value DOUBLE
    """,
    # per (latent, explainer, scorer): metrics. Stage scores adds the scorer's primary metric
    # (balanced_accuracy, auroc, correlation, accuracy) as metric/value with its per-latent bootstrap interval
    # (ci_low/ci_high; auroc_ci_* for AUROC). Detection / fuzzing intervals resample whole prompts (their 5
    # answers are not independent), stratified by the prompt's majority class: a cluster bootstrap; simulation
    # resamples examples, embedding / surprisal items, intruder rounds. status: ok / failed (no item answered) /
    # undefined (items answered but the metric has no value: one class only, a constant simulation) /
    # budget_exceeded, with status_reason saying why in words. Control rows are '<scorer>_control' (another
    # latent's explanation on this latent's examples); latent_range = the partition, e.g. '00000-01023'.
    # Monotone like explanations: attempts, failed_attempts, last_error, last_failed_at
    "scores": """
        layer VARCHAR NOT NULL,
        latent INTEGER NOT NULL,
        explainer_fp VARCHAR NOT NULL,
        scorer VARCHAR NOT NULL,
        scorer_fp VARCHAR NOT NULL,
        sampler_fp VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        n INTEGER NOT NULL,
        n_failed INTEGER NOT NULL,
        balanced_accuracy DOUBLE,
        accuracy DOUBLE,
        precision DOUBLE,
        recall DOUBLE,
        f1 DOUBLE,
        auroc DOUBLE,
        n_batches INTEGER NOT NULL,
        n_failed_batches INTEGER NOT NULL,
        failure_reasons VARCHAR[],
        prompt_tokens BIGINT,
        completion_tokens BIGINT,
        latency_s DOUBLE,
        cost_usd DOUBLE,
        created_at TIMESTAMP DEFAULT current_timestamp,
        control BOOLEAN DEFAULT false,
        metric VARCHAR,
        value DOUBLE,
        ci_low DOUBLE,
        ci_high DOUBLE,
        auroc_ci_low DOUBLE,
        auroc_ci_high DOUBLE,
        latent_range VARCHAR,
        status_reason VARCHAR,
        attempts INTEGER,
        failed_attempts INTEGER,
        last_error VARCHAR,
        last_failed_at TIMESTAMP
    """,
    # sentence embedding (unit norm) of each ok explanation (core.search), per embedding model; written by the
    # latent_pages asset per partition, read by `autointerp search` and the browser's search
    "explanation_embeddings": """
        layer VARCHAR NOT NULL,
        latent INTEGER NOT NULL,
        explainer_fp VARCHAR NOT NULL,
        model VARCHAR NOT NULL,
        embedding FLOAT[] NOT NULL
    """,
    # per partition, explainer and scorer with a control (core.scoring.sensitivity): does the scorer read the
    # explanation? items answered with both the real and the control explanation, how many answers changed,
    # the share with its interval (latents resampled), the threshold, the verdict (NULL = unclear) and the
    # finding in words. Written by stage scores in the transaction of the scores it describes.
    "scorer_sensitivity": """
        layer VARCHAR NOT NULL,
        latent_range VARCHAR NOT NULL,
        explainer_fp VARCHAR NOT NULL,
        scorer VARCHAR NOT NULL,
        latents INTEGER NOT NULL,
        items INTEGER NOT NULL,
        changed INTEGER NOT NULL,
        share_changed DOUBLE,
        share_ci_low DOUBLE,
        share_ci_high DOUBLE,
        min_share DOUBLE NOT NULL,
        reads_explanation BOOLEAN,
        finding VARCHAR NOT NULL,
        created_at TIMESTAMP DEFAULT current_timestamp
    """,
    # the known-answer calibration (core.calibration, stage calibration): the planted latents of a calibration
    # fingerprint (corpus, tokenizer, sampler, planted-set version) with their gold explanation, how many windows
    # they fire in and whether the sampler selected them
    "calibration_latents": """
        calibration_fp VARCHAR NOT NULL,
        latent INTEGER NOT NULL,
        planted VARCHAR NOT NULL,
        gold VARCHAR NOT NULL,
        n_token_ids INTEGER NOT NULL,
        n_windows BIGINT NOT NULL,
        status VARCHAR NOT NULL
    """,
    # per planted latent, scorer and variant: gold (its own gold explanation), control (another planted latent's
    # gold), explainer (the explainer explainer_fp's explanation of it); value = the scorer's primary metric.
    # Keyed by calibration and explainer fingerprint: re-run by the explainer_change sensor like scores
    "calibration_scores": """
        calibration_fp VARCHAR NOT NULL,
        explainer_fp VARCHAR NOT NULL,
        latent INTEGER NOT NULL,
        planted VARCHAR NOT NULL,
        scorer VARCHAR NOT NULL,
        scorer_fp VARCHAR NOT NULL,
        metric VARCHAR,
        variant VARCHAR NOT NULL,
        explanation VARCHAR,
        value DOUBLE,
        status VARCHAR NOT NULL,
        created_at TIMESTAMP DEFAULT current_timestamp
    """,
    # per explainer (recovered_by: the configured one, explainer_fp, and the top_tokens baseline) and planted
    # latent: its explanation, the gold nearest to it by sentence embedding, and whether that is its own
    "calibration_recovery": """
        calibration_fp VARCHAR NOT NULL,
        explainer_fp VARCHAR NOT NULL,
        recovered_by VARCHAR NOT NULL,
        explainer VARCHAR NOT NULL,
        latent INTEGER NOT NULL,
        planted VARCHAR NOT NULL,
        explanation VARCHAR,
        nearest VARCHAR NOT NULL,
        similarity DOUBLE NOT NULL,
        own_similarity DOUBLE NOT NULL,
        recovered BOOLEAN NOT NULL,
        created_at TIMESTAMP DEFAULT current_timestamp
    """,
    # per latent (stage steering): the strength of its decoder direction, added at its hookpoint, whose mean
    # KL(clean || steered) of the next-token distribution over the score prompts is target_kl (within the
    # tolerance when converged); kl = the value reached; strength_ratio = strength / the latent's max
    # activation; changed = score prompts whose steered continuation differs from the clean one; top_tokens /
    # top_increases = the tokens whose next-token probability rises most at that strength, averaged over the
    # explain prompts (what the output-centric explainers read)
    "steering": """
        layer VARCHAR NOT NULL,
        latent INTEGER NOT NULL,
        steering_fp VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        strength DOUBLE NOT NULL,
        strength_ratio DOUBLE,
        kl DOUBLE NOT NULL,
        target_kl DOUBLE NOT NULL,
        steps INTEGER NOT NULL,
        n_prompts INTEGER NOT NULL,
        changed INTEGER NOT NULL,
        top_token_ids INTEGER[] NOT NULL,
        top_tokens VARCHAR[] NOT NULL,
        top_increases DOUBLE[] NOT NULL
    """,
    # per latent and score prompt: the continuation sampled with the latent stimulated and the clean one
    # (same random draws), as text and token ids: what the intervention scorer shows
    "steered_texts": """
        layer VARCHAR NOT NULL,
        latent INTEGER NOT NULL,
        steering_fp VARCHAR NOT NULL,
        prompt_id INTEGER NOT NULL,
        prompt VARCHAR NOT NULL,
        clean VARCHAR NOT NULL,
        steered VARCHAR NOT NULL,
        clean_ids INTEGER[] NOT NULL,
        steered_ids INTEGER[] NOT NULL
    """,
    # per explained latent of one sparse coder (sae_fp): its decoder row (kind 'decoder', explainer_fp '') and
    # the unit-norm sentence embedding of each explainer's explanation (kind 'explanation', model = the
    # embedding model); rows of an earlier coder of the same hookpoint stay, so two coders can be compared
    "latent_vectors": """
        layer VARCHAR NOT NULL,
        latent INTEGER NOT NULL,
        sae_fp VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        explainer_fp VARCHAR NOT NULL,
        model VARCHAR NOT NULL,
        vector FLOAT[] NOT NULL
    """,
    # the LLM ledger, write-ahead (core.llm.ledger): a row per request, recorded as status 'sent' (its worst
    # case: counted prompt + max_tokens) before it is sent, completed as ok / error (unsent: stopped by a fatal
    # error first) with its real tokens in the results' transaction; a killed run's 'sent' rows stay, counted at
    # their worst case. Never rewritten otherwise: re-runs add rows. The budget is checked against its totals.
    # latent -1: a request recorded before its latent was known (the extra scorers)
    "llm_calls": """
        run_id VARCHAR NOT NULL,
        layer VARCHAR NOT NULL,
        latent INTEGER NOT NULL,
        stage VARCHAR NOT NULL,
        role VARCHAR NOT NULL,
        explainer_fp VARCHAR NOT NULL,
        fingerprint VARCHAR NOT NULL,
        scorer VARCHAR,
        batch_index INTEGER,
        engine VARCHAR NOT NULL,
        model VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        error VARCHAR,
        attempts INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        latency_s DOUBLE NOT NULL,
        cost_usd DOUBLE NOT NULL,
        created_at TIMESTAMP DEFAULT current_timestamp,
        call_id VARCHAR
    """,
}

# Tables rewritten per partition (layer, latent range).
PARTITIONED = ("latent_stats", "latent_selection", "latent_neighbours", "example_windows", "explanations", "score_items",
               "scores", "explanation_embeddings", "steering", "steered_texts", "latent_vectors")

# Tables of older databases that nothing uses any more; dropped on open.
RETIRED = ("activation_batches",)  # the staging of caches before v3 (batches now go straight to activation_cache)

# IEEE float16 bits (USMALLINT) -> REAL: sign * (1024 + mantissa) * 2^(exponent - 25), subnormals m * 2^-24.
FP16_TO_REAL = """(CASE WHEN ({b}::INTEGER >> 10) & 31 = 0 THEN ({b}::INTEGER & 1023) * pow(2, -24)
        ELSE (1024 + ({b}::INTEGER & 1023)) * pow(2, (({b}::INTEGER >> 10) & 31) - 25) END
        * CASE WHEN {b} >= 32768 THEN -1 ELSE 1 END)::REAL"""

VIEWS: dict[str, str] = {
    # published non-zero activations, one row per (layer, latent, row_id, pos), BOS excluded; value is
    # float16-exact. A partition is visible once published (activation_partitions), never half of one.
    "activations": f"""
        SELECT c.layer, c.latent, (c.token // p.ctx_len)::INTEGER AS row_id, (c.token % p.ctx_len)::SMALLINT AS pos,
               {FP16_TO_REAL.format(b="c.value_bits")} AS value, p.activations_fp
        FROM activation_partitions p
        JOIN activation_cache c ON c.cache_fp = p.cache_fp AND c.layer = p.layer
                                AND c.latent BETWEEN p.first_latent AND p.last_latent
    """,
    # example windows (table example_windows) with their token ids and activations (acts: one value per token,
    # 0 where the latent is silent; float16-exact), read from `tokens` and the published activations. A window
    # whose activations were re-published under another fingerprint drops out rather than show other values.
    "examples": """
        WITH hits AS (
            SELECT w.layer, w.latent, w.split, w.example_id, list((a.pos - w.start_pos)::INTEGER ORDER BY a.pos) AS i,
                   list(a.value ORDER BY a.pos) AS v
            FROM example_windows w
            JOIN activations a ON a.layer = w.layer AND a.latent = w.latent AND a.row_id = w.row_id
                              AND a.pos >= w.start_pos AND a.pos < w.start_pos + w.length
                              AND a.activations_fp = w.activations_fp
            GROUP BY ALL)
        SELECT w.layer, w.latent, w.split, w.example_id, w.quantile, w.row_id, w.start_pos, w.max_activation,
               t.token_ids[w.start_pos + 1 : w.start_pos + w.length] AS token_ids,
               list_transform(range(w.length::INTEGER), lambda j: coalesce(h.v[list_position(h.i, j)], 0)::REAL) AS acts,
               w.source, w.neighbour, w.similarity, w.sampler_fp, w.corpus_fp
        FROM example_windows w
        JOIN tokens t ON t.corpus_fp = w.corpus_fp AND t.row_id = w.row_id
        JOIN activation_partitions p ON p.layer = w.layer AND w.latent BETWEEN p.first_latent AND p.last_latent
                                    AND p.activations_fp = w.activations_fp
        LEFT JOIN hits h ON h.layer = w.layer AND h.latent = w.latent AND h.split = w.split
                        AND h.example_id = w.example_id
    """,
    # each example as text: `text` with the firing tokens (activation > 0) marked << >> (adjacent ones in one
    # span), `tokens` = one (token, activation) pair per token, token strings from `vocabulary` via `corpora`
    "example_text": """
        WITH t AS (
            SELECT e.layer, e.latent, e.split, e.example_id, e.quantile, e.max_activation, e.source, e.neighbour,
                   e.similarity, e.row_id, e.start_pos, i,
                   coalesce(v.token, '<' || e.token_ids[i] || '>') AS token, e.acts[i] AS act,
                   coalesce(e.acts[i - 1], 0) > 0 AS prev, coalesce(e.acts[i + 1], 0) > 0 AS next
            FROM (SELECT *, unnest(range(1, len(token_ids) + 1)) AS i FROM examples) e
            LEFT JOIN corpora c ON c.corpus_fp = e.corpus_fp
            LEFT JOIN vocabulary v ON v.tokenizer_fp = c.tokenizer_fp AND v.token_id = e.token_ids[i])
        SELECT layer, latent, split, example_id, quantile, max_activation,
               string_agg(CASE WHEN act > 0 AND NOT prev THEN '<<' ELSE '' END || token
                          || CASE WHEN act > 0 AND NOT next THEN '>>' ELSE '' END, '' ORDER BY i) AS text,
               list({'token': token, 'activation': act} ORDER BY i) AS tokens,
               source, neighbour, similarity, row_id, start_pos
        FROM t GROUP BY ALL
    """,
    # the latest-made explanation per latent and explainer, with both headline scores side by side
    "latent_scores": """
        SELECT e.layer, e.latent, e.explainer_fp, e.explanation,
               d.balanced_accuracy AS detection_bacc, d.auroc AS detection_auroc,
               f.balanced_accuracy AS fuzzing_bacc, f.auroc AS fuzzing_auroc
        FROM explanations e
        LEFT JOIN scores d ON d.layer = e.layer AND d.latent = e.latent AND d.explainer_fp = e.explainer_fp
                          AND d.scorer = 'detection' AND d.status = 'ok'
        LEFT JOIN scores f ON f.layer = e.layer AND f.latent = e.latent AND f.explainer_fp = e.explainer_fp
                          AND f.scorer = 'fuzzing' AND f.status = 'ok'
        WHERE e.status = 'ok'
    """,
    # per latent and scorer: the real score next to its random-explanation control ('<scorer>_control'),
    # both with their bootstrap intervals, and the paired difference real - control (columns real_value /
    # control_value: REAL is a type name, so a column `real` could not be selected unquoted)
    "score_controls": """
        SELECT r.layer, r.latent, r.latent_range, r.explainer_fp, r.scorer, r.metric,
               r.value AS real_value, r.ci_low, r.ci_high, c.value AS control_value, c.ci_low AS control_ci_low,
               c.ci_high AS control_ci_high, r.value - c.value AS difference
        FROM scores r
        JOIN scores c ON c.layer = r.layer AND c.latent = r.latent AND c.explainer_fp = r.explainer_fp
                     AND c.scorer = r.scorer || '_control' AND c.control AND c.status = 'ok'
        WHERE NOT coalesce(r.control, false) AND r.status = 'ok'
    """,
    # per partition, explainer and scorer: median and IQR of the per-latent values (never pooled across
    # latents), the control's median, and the median paired difference with its distribution-free 95 %
    # interval (order statistics k, n + 1 - k; the same rule as core.scoring.bootstrap.median_ci); and how many
    # latents have no value: latents_undefined (answered, metric undefined: see scores.status_reason) and
    # latents_failed (nothing answered). `latents` counts only those with a value.
    "scorer_summary": """
        WITH pairs AS (
            SELECT r.layer, r.latent_range, r.explainer_fp, r.scorer, r.metric, r.value AS real,
                   c.value AS control, r.value - c.value AS diff
            FROM scores r
            LEFT JOIN scores c ON c.layer = r.layer AND c.latent = r.latent AND c.explainer_fp = r.explainer_fp
                              AND c.scorer = r.scorer || '_control' AND c.control AND c.status = 'ok'
            WHERE NOT coalesce(r.control, false) AND r.status = 'ok' AND r.value IS NOT NULL
              AND r.latent_range IS NOT NULL),
        agg AS (
            SELECT layer, latent_range, explainer_fp, scorer, any_value(metric) AS metric, count(*) AS latents,
                   median(real) AS median, quantile_cont(real, 0.25) AS q25, quantile_cont(real, 0.75) AS q75,
                   median(control) AS median_control, median(diff) AS median_difference,
                   list_sort(list(diff) FILTER (WHERE diff IS NOT NULL)) AS d
            FROM pairs GROUP BY ALL),
        states AS (
            SELECT layer, latent_range, explainer_fp, scorer, any_value(metric) AS metric,
                   count(*) FILTER (WHERE status = 'undefined') AS latents_undefined,
                   count(*) FILTER (WHERE status = 'failed') AS latents_failed
            FROM scores WHERE NOT coalesce(control, false) AND latent_range IS NOT NULL GROUP BY ALL)
        SELECT st.layer, st.latent_range, st.explainer_fp, st.scorer, coalesce(a.metric, st.metric) AS metric,
               coalesce(a.latents, 0) AS latents, a.median, a.q25, a.q75, a.median_control, a.median_difference,
               a.d[a.k] AS difference_ci_low, a.d[len(a.d) + 1 - a.k] AS difference_ci_high,
               st.latents_undefined, st.latents_failed
        FROM states st
        LEFT JOIN (SELECT *, greatest(floor(len(d) / 2 - 1.959964 * sqrt(len(d)) / 2), 1)::INTEGER AS k FROM agg) a
               USING (layer, latent_range, explainer_fp, scorer)
    """,
    # what a researcher reads first, per partition, explainer and scorer: the median score, the control, the
    # paired difference with its interval, latents without a value, and whether the scorer reads the explanation
    # at all (share of answers that change with another latent's explanation; table scorer_sensitivity)
    "scorer_report": """
        SELECT m.layer, m.latent_range, m.explainer_fp, m.scorer, m.metric, m.latents, m.median, m.median_control,
               m.median_difference, m.difference_ci_low, m.difference_ci_high, m.latents_undefined, m.latents_failed,
               s.share_changed, s.share_ci_low, s.share_ci_high, s.reads_explanation,
               coalesce(s.finding, CASE WHEN m.median_control IS NULL THEN m.scorer || ': no control, so no test of '
                        'whether it reads the explanation' END) AS finding
        FROM scorer_summary m
        LEFT JOIN scorer_sensitivity s USING (layer, latent_range, explainer_fp, scorer)
    """,
    # the calibration's verdict per scorer: its power to tell a planted latent's gold explanation from another's
    # (median paired difference gold - control with its distribution-free 95 % interval, share of planted latents
    # where gold wins) and where the configured explainer's explanations land (median, explainer - control)
    "calibration_power": """
        WITH s AS (SELECT calibration_fp, explainer_fp, scorer, latent, variant, any_value(metric) AS metric,
                          any_value(value) AS value
                   FROM calibration_scores WHERE status = 'ok' AND value IS NOT NULL GROUP BY ALL),
        p AS (SELECT g.calibration_fp, g.explainer_fp, g.scorer, g.metric, g.latent, g.value AS gold,
                     c.value AS control, e.value AS explainer
              FROM s g
              LEFT JOIN s c ON c.calibration_fp = g.calibration_fp AND c.explainer_fp = g.explainer_fp
                           AND c.scorer = g.scorer AND c.latent = g.latent AND c.variant = 'control'
              LEFT JOIN s e ON e.calibration_fp = g.calibration_fp AND e.explainer_fp = g.explainer_fp
                           AND e.scorer = g.scorer AND e.latent = g.latent AND e.variant = 'explainer'
              WHERE g.variant = 'gold'),
        agg AS (
            SELECT calibration_fp, explainer_fp, scorer, any_value(metric) AS metric, count(*) AS latents,
                   median(gold) AS median_gold, median(control) AS median_control, median(explainer) AS median_explainer,
                   median(gold - control) AS power_median_difference,
                   list_sort(list(gold - control) FILTER (WHERE control IS NOT NULL)) AS d,
                   avg((gold > control)::INT) FILTER (WHERE control IS NOT NULL) AS gold_wins,
                   median(explainer - control) AS explainer_minus_control,
                   list_sort(list(explainer - control) FILTER (WHERE explainer IS NOT NULL AND control IS NOT NULL)) AS x
            FROM p GROUP BY ALL),
        k AS (SELECT *, greatest(floor(len(d) / 2 - 1.959964 * sqrt(len(d)) / 2), 1)::INTEGER AS kd,
                        greatest(floor(len(x) / 2 - 1.959964 * sqrt(len(x)) / 2), 1)::INTEGER AS kx FROM agg)
        SELECT calibration_fp, explainer_fp, scorer, metric, latents, median_gold, median_control, median_explainer,
               power_median_difference, d[kd] AS power_ci_low, d[len(d) + 1 - kd] AS power_ci_high, gold_wins,
               explainer_minus_control, x[kx] AS explainer_minus_control_ci_low,
               x[len(x) + 1 - kx] AS explainer_minus_control_ci_high
        FROM k
    """,
    # per explainer: how often its explanation of a planted latent is nearest to that latent's own gold (chance =
    # 1 / planted latents)
    "calibration_recovery_rate": """
        SELECT calibration_fp, explainer_fp, explainer, recovered_by, count(*) AS latents,
               avg(recovered::INT) AS recovery, 1 / count(*) AS chance, median(own_similarity) AS median_own_similarity
        FROM calibration_recovery GROUP BY ALL
    """,
    # per (layer, latent, scorer): the most recently made ok score, whichever explainer made it
    "latest_scores": """
        SELECT s.layer, s.latent, s.scorer, s.explainer_fp, e.explanation, s.balanced_accuracy, s.auroc, s.f1,
               s.n, s.n_failed, s.created_at
        FROM scores s
        LEFT JOIN explanations e ON e.layer = s.layer AND e.latent = s.latent AND e.explainer_fp = s.explainer_fp
        WHERE s.status = 'ok'
        QUALIFY row_number() OVER (PARTITION BY s.layer, s.latent, s.scorer ORDER BY s.created_at DESC) = 1
    """,
    # one row per (explainer, scorer): the median of the scorer's primary metric over the explainer's latents with
    # its distribution-free 95 % interval, the control's median beside it (controls are not listed as scorers),
    # explanation success, tokens and $ per latent (spend from the llm_calls ledger: every request, retries
    # included), ranked per scorer by the median. `explainer` names it: the LLM's model and prompt kind, or
    # "baseline <kind>" for the explainers that need no LLM (top_tokens, logit_lens).
    "explainer_leaderboard": """
        WITH ex AS (
            SELECT explainer_fp, count(*) AS latents_explained, avg((status = 'ok')::INT) AS ok_rate,
                   sum(coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0)) AS tokens
            FROM explanations GROUP BY ALL),
        sc AS (
            SELECT explainer_fp, scorer, any_value(coalesce(metric, 'balanced_accuracy')) AS metric,
                   count(*) AS latents_scored, median(coalesce(value, balanced_accuracy)) AS median_value,
                   list_sort(list(coalesce(value, balanced_accuracy)) FILTER (WHERE coalesce(value, balanced_accuracy)
                                                                              IS NOT NULL)) AS v,
                   median(balanced_accuracy) AS median_bacc, avg(balanced_accuracy) AS mean_bacc,
                   median(auroc) AS median_auroc
            FROM scores WHERE status = 'ok' AND NOT coalesce(control, false) GROUP BY ALL),
        ctl AS (
            SELECT explainer_fp, regexp_replace(scorer, '_control$', '') AS scorer, median(value) AS median_control
            FROM scores WHERE status = 'ok' AND control GROUP BY ALL),
        tok AS (
            SELECT explainer_fp, sum(coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0)) AS tokens
            FROM scores WHERE status = 'ok' GROUP BY ALL),
        spend AS (SELECT explainer_fp, sum(cost_usd) AS usd FROM llm_calls GROUP BY ALL)
        SELECT sc.explainer_fp, f.spec->>'$.llm.model' AS model, sc.scorer,
               CASE WHEN f.spec->>'$.llm.model' IS NOT NULL
                    THEN (f.spec->>'$.llm.model') || ' ' || coalesce(f.spec->>'$.settings.kind', '')
                    WHEN f.spec->>'$.kind' IS NOT NULL THEN 'baseline ' || (f.spec->>'$.kind') END AS explainer,
               sc.metric, ex.latents_explained,
               round(ex.ok_rate, 3) AS ok_rate, sc.latents_scored, round(sc.median_value, 3) AS median_value,
               sc.v[greatest(floor(len(sc.v) / 2 - 1.959964 * sqrt(len(sc.v)) / 2), 1)::INTEGER] AS median_ci_low,
               sc.v[len(sc.v) + 1 - greatest(floor(len(sc.v) / 2 - 1.959964 * sqrt(len(sc.v)) / 2), 1)::INTEGER]
                   AS median_ci_high,
               round(ctl.median_control, 3) AS median_control, round(sc.median_bacc, 3) AS median_bacc,
               round(sc.mean_bacc, 3) AS mean_bacc, round(sc.median_auroc, 3) AS median_auroc,
               round((ex.tokens + coalesce(tok.tokens, 0)) / ex.latents_explained, 1) AS tokens_per_latent,
               spend.usd / ex.latents_explained AS usd_per_latent,
               rank() OVER (PARTITION BY sc.scorer ORDER BY sc.median_value DESC) AS rank
        FROM sc JOIN ex USING (explainer_fp)
        LEFT JOIN ctl USING (explainer_fp, scorer)
        LEFT JOIN tok USING (explainer_fp)
        LEFT JOIN spend USING (explainer_fp)
        LEFT JOIN fingerprints f ON f.fingerprint = sc.explainer_fp
        ORDER BY sc.scorer, rank
    """,
    # explainers compared on the same latents, per scorer (controls excluded): paired differences b - a of the
    # scorer's primary metric (balanced accuracy, AUROC, correlation...), their median with its distribution-free
    # 95 % interval, their mean with a normal 95 % interval, and how often each explainer wins
    "explainer_pairs": """
        WITH s AS (SELECT layer, latent, explainer_fp, scorer, coalesce(metric, 'balanced_accuracy') AS metric,
                          coalesce(value, balanced_accuracy) AS v
                   FROM scores WHERE status = 'ok' AND NOT coalesce(control, false)
                     AND coalesce(value, balanced_accuracy) IS NOT NULL),
        names AS (SELECT fingerprint,
                         CASE WHEN spec->>'$.llm.model' IS NOT NULL
                              THEN (spec->>'$.llm.model') || ' ' || coalesce(spec->>'$.settings.kind', '')
                              WHEN spec->>'$.kind' IS NOT NULL THEN 'baseline ' || (spec->>'$.kind') END AS name
                  FROM fingerprints),
        agg AS (
            SELECT a.explainer_fp AS explainer_a, b.explainer_fp AS explainer_b, a.scorer, any_value(a.metric) AS metric,
                   count(*) AS latents, median(a.v) AS median_a, median(b.v) AS median_b, median(b.v - a.v) AS median_diff,
                   list_sort(list(b.v - a.v)) AS d, avg(b.v - a.v) AS mean_diff,
                   stddev_samp(b.v - a.v) / sqrt(count(*)) AS se,
                   count(*) FILTER (WHERE b.v > a.v) AS b_better, count(*) FILTER (WHERE b.v < a.v) AS a_better
            FROM s a JOIN s b ON a.layer = b.layer AND a.latent = b.latent AND a.scorer = b.scorer
                              AND a.explainer_fp < b.explainer_fp
            GROUP BY ALL),
        k AS (SELECT *, greatest(floor(len(d) / 2 - 1.959964 * sqrt(len(d)) / 2), 1)::INTEGER AS k FROM agg)
        SELECT explainer_a, na.name AS name_a, explainer_b, nb.name AS name_b, scorer, metric, latents,
               round(median_a, 3) AS median_a, round(median_b, 3) AS median_b, round(median_diff, 3) AS median_diff,
               d[k] AS median_diff_ci_low, d[len(d) + 1 - k] AS median_diff_ci_high,
               round(mean_diff, 3) AS mean_diff, round(se, 3) AS se_mean_diff,
               mean_diff - 1.959964 * se AS mean_diff_ci_low, mean_diff + 1.959964 * se AS mean_diff_ci_high,
               b_better, a_better
        FROM k LEFT JOIN names na ON na.fingerprint = explainer_a LEFT JOIN names nb ON nb.fingerprint = explainer_b
        ORDER BY scorer, latents DESC
    """,
    # scorer agreement: per partition and explainer, the Spearman rank correlation of the per-latent values of
    # every pair of scorers (real rows, latents scored by both; average ranks for ties) with a 95 % interval
    # from Fisher's z and the Bonett-Wright standard error sqrt((1 + r^2 / 2) / (n - 3)) (null below 4 latents);
    # the correlation itself null where one scorer gives every shared latent the same value
    "scorer_agreement": """
        WITH v AS (
            SELECT layer, latent_range, explainer_fp, scorer, latent, value FROM scores
            WHERE NOT coalesce(control, false) AND status = 'ok' AND value IS NOT NULL AND latent_range IS NOT NULL),
        p AS (
            SELECT a.layer, a.latent_range, a.explainer_fp, a.scorer AS scorer_a, b.scorer AS scorer_b,
                   a.latent, a.value AS x, b.value AS y
            FROM v a JOIN v b ON a.layer = b.layer AND a.latent_range = b.latent_range
                              AND a.explainer_fp = b.explainer_fp AND a.latent = b.latent AND a.scorer < b.scorer),
        r AS (
            SELECT *, rank() OVER (PARTITION BY layer, latent_range, explainer_fp, scorer_a, scorer_b ORDER BY x)
                      + (count(*) OVER (PARTITION BY layer, latent_range, explainer_fp, scorer_a, scorer_b, x) - 1) / 2.0
                      AS rx,
                      rank() OVER (PARTITION BY layer, latent_range, explainer_fp, scorer_a, scorer_b ORDER BY y)
                      + (count(*) OVER (PARTITION BY layer, latent_range, explainer_fp, scorer_a, scorer_b, y) - 1) / 2.0
                      AS ry
            FROM p),
        c AS (
            SELECT layer, latent_range, explainer_fp, scorer_a, scorer_b, count(*) AS latents,
                   -- NULL, not NaN, where a scorer gives every shared latent the same value (undefined)
                   CASE WHEN NOT isnan(corr(rx, ry)) THEN corr(rx, ry) END AS spearman
            FROM r GROUP BY ALL)
        SELECT *, CASE WHEN latents >= 4 AND spearman IS NOT NULL THEN tanh(atanh(
                      least(greatest(spearman, -0.999999), 0.999999)) - 1.959964 * sqrt((1 + spearman ^ 2 / 2)
                      / (latents - 3))) END AS ci_low,
                  CASE WHEN latents >= 4 AND spearman IS NOT NULL THEN tanh(atanh(
                      least(greatest(spearman, -0.999999), 0.999999)) + 1.959964 * sqrt((1 + spearman ^ 2 / 2)
                      / (latents - 3))) END AS ci_high
        FROM c
    """,
    # SAE similarity through explanations (Paulo et al. §5): for each explained latent of one coder (a side =
    # hookpoint + sae_fp) and each other side with the same explainer, its best match among the other side's
    # explained latents by explanation embedding (cosine) and by decoder direction (cosine; only between equal
    # widths), and whether the two agree. One row per (explainer, latent, other side).
    "latent_matches": """
        WITH e AS (SELECT layer, sae_fp, latent, explainer_fp, vector FROM latent_vectors WHERE kind = 'explanation'),
        d AS (SELECT layer, sae_fp, latent, vector FROM latent_vectors WHERE kind = 'decoder'),
        by_text AS (
            SELECT a.explainer_fp, a.layer AS layer_a, a.sae_fp AS sae_fp_a, a.latent AS latent_a,
                   b.layer AS layer_b, b.sae_fp AS sae_fp_b, count(*) AS candidates,
                   arg_max(b.latent, list_cosine_similarity(a.vector, b.vector)) AS match_by_explanation,
                   max(list_cosine_similarity(a.vector, b.vector)) AS explanation_similarity
            FROM e a JOIN e b ON a.explainer_fp = b.explainer_fp AND (a.layer <> b.layer OR a.sae_fp <> b.sae_fp)
            GROUP BY ALL),
        by_decoder AS (
            SELECT ea.explainer_fp, da.layer AS layer_a, da.sae_fp AS sae_fp_a, da.latent AS latent_a,
                   db.layer AS layer_b, db.sae_fp AS sae_fp_b,
                   arg_max(db.latent, list_cosine_similarity(da.vector, db.vector)) AS match_by_decoder,
                   max(list_cosine_similarity(da.vector, db.vector)) AS decoder_cosine
            FROM e ea
            JOIN d da ON da.layer = ea.layer AND da.sae_fp = ea.sae_fp AND da.latent = ea.latent
            JOIN e eb ON eb.explainer_fp = ea.explainer_fp AND (eb.layer <> ea.layer OR eb.sae_fp <> ea.sae_fp)
            JOIN d db ON db.layer = eb.layer AND db.sae_fp = eb.sae_fp AND db.latent = eb.latent
                     AND len(db.vector) = len(da.vector)
            GROUP BY ALL)
        SELECT t.*, d.match_by_decoder, d.decoder_cosine, t.match_by_explanation = d.match_by_decoder AS agree
        FROM by_text t LEFT JOIN by_decoder d USING (explainer_fp, layer_a, sae_fp_a, latent_a, layer_b, sae_fp_b)
    """,
    # per (explainer, side a, side b): how similar two coders are through their latents' best matches: mean
    # best-match explanation similarity and decoder cosine, how often the two best matches agree with a 95 %
    # Wilson interval, and the agreement expected by chance (1 / the other side's candidates)
    "sae_similarity": """
        WITH m AS (
            SELECT explainer_fp, layer_a, sae_fp_a, layer_b, sae_fp_b, count(*) AS latents,
                   max(candidates) AS candidates, avg(explanation_similarity) AS mean_explanation_similarity,
                   avg(decoder_cosine) AS mean_decoder_cosine, count(agree) AS compared,
                   count(*) FILTER (WHERE agree) AS agreements
            FROM latent_matches GROUP BY ALL),
        w AS (SELECT *, agreements / nullif(compared, 0) AS p, 1.959964 AS z FROM m)
        SELECT explainer_fp, layer_a, sae_fp_a, layer_b, sae_fp_b, latents, candidates, mean_explanation_similarity,
               mean_decoder_cosine, compared, agreements, p AS agreement,
               (p + z * z / (2 * compared) - z * sqrt(p * (1 - p) / compared + z * z / (4 * compared * compared)))
                   / (1 + z * z / compared) AS agreement_ci_low,
               (p + z * z / (2 * compared) + z * sqrt(p * (1 - p) / compared + z * z / (4 * compared * compared)))
                   / (1 + z * z / compared) AS agreement_ci_high,
               1.0 / candidates AS chance_agreement
        FROM w
    """,
    # everything that went wrong, one row each: failed explanations, failed or partly failed scores, and good
    # results whose latest re-run failed (status 'ok (kept)': the good row stayed, last_error says why)
    "failures": """
        SELECT 'explanation' AS stage, layer, latent, explainer_fp, NULL::VARCHAR AS scorer,
               CASE WHEN status = 'ok' THEN 'ok (kept)' ELSE status END AS status,
               CASE WHEN status = 'ok' THEN last_error ELSE coalesce(error, left(raw_text, 200)) END AS detail,
               CASE WHEN status = 'ok' THEN last_failed_at ELSE created_at END AS created_at
        FROM explanations WHERE status <> 'ok' OR last_failed_at > created_at
        UNION ALL
        SELECT 'score', layer, latent, explainer_fp, scorer,
               CASE WHEN status = 'ok' AND last_failed_at > created_at THEN 'ok (kept)' ELSE status END,
               CASE WHEN status = 'ok' AND last_failed_at > created_at THEN last_error ELSE
               n_failed || ' of ' || n || ' items failed: ' || coalesce(array_to_string(failure_reasons, '; '), '') END,
               CASE WHEN status = 'ok' AND last_failed_at > created_at THEN last_failed_at ELSE created_at END
        FROM scores WHERE status <> 'ok' OR n_failed > 0 OR n_failed_batches > 0 OR last_failed_at > created_at
    """,
}


def columns(table: str) -> dict[str, str]:
    """Declared columns of a table: name -> type (constraints dropped)."""
    out = {}
    for line in TABLES[table].strip().splitlines():
        name, typ = line.strip().rstrip(",").split()[:2]
        out[name] = typ
    return out


def migration_statements(existing: dict[str, set[str]]) -> list[str]:
    """ALTER statements adding declared columns that an older database lacks (as nullable columns), and
    DROPs of retired tables.

    A database from before the compact activation cache (activation_cache with row_id/pos/value and a
    table `activations`) drops both and forgets its forward passes: they are recomputed on demand.
    """
    out = [f"DROP TABLE {t}" for t in RETIRED if t in existing]
    if "activation_cache" in existing and "token" not in existing["activation_cache"]:
        out += ["DROP TABLE IF EXISTS activations", "DROP TABLE activation_cache"]
        out += [f"DELETE FROM {t}" for t in ("cache_progress", "cache_complete") if t in existing]
        existing = {t: c for t, c in existing.items() if t not in ("activations", "activation_cache")}
    if "examples" in existing and "example_windows" not in existing:  # v1 examples: a table with copied tokens
        out += [f"CREATE TABLE example_windows ({TABLES['example_windows'].strip()})", _EXAMPLES_V1_TO_WINDOWS,
                "DROP TABLE examples"]
        existing = {t: c for t, c in existing.items() if t != "examples"}
    return out + [f"ALTER TABLE {t} ADD COLUMN {c} {typ}" for t, cols in existing.items() if t in TABLES
                  for c, typ in columns(t).items() if c not in cols]


# Table `examples` before example_windows held each window's token ids and acts; its rows keep their windows:
# the corpus is the one whose row holds exactly those tokens there, the activations the sampler's.
_EXAMPLES_V1_TO_WINDOWS = """
    INSERT INTO example_windows BY NAME
    SELECT e.* EXCLUDE (token_ids, acts), len(e.token_ids)::SMALLINT AS length,
           coalesce((SELECT any_value(t.corpus_fp) FROM tokens t WHERE t.row_id = e.row_id
                     AND t.token_ids[e.start_pos + 1 : e.start_pos + len(e.token_ids)] = e.token_ids), '') AS corpus_fp,
           coalesce((SELECT f.spec->>'$.activations_fp' FROM fingerprints f WHERE f.fingerprint = e.sampler_fp), '')
               AS activations_fp
    FROM examples e"""


def create_statements(keys: bool = True) -> list[str]:
    """Every table and view. ``keys=False``: without PRIMARY KEY constraints (a DuckLake has none; its writers
    insert a key only where no row holds it)."""
    stmts = [f"CREATE TABLE IF NOT EXISTS {name} ({ddl.strip() if keys else ddl.strip().replace(' PRIMARY KEY', '')})"
             for name, ddl in TABLES.items()]
    stmts += [f"CREATE OR REPLACE VIEW {name} AS {sql.strip()}" for name, sql in VIEWS.items()]
    return stmts
