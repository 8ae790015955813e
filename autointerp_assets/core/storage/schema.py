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
    # internal: the non-zero latent activations of a finished forward pass (all partitions at once),
    # compact: token = row_id * ctx_len + pos, value_bits = the value as IEEE float16 bits; rows are
    # sorted by (layer, latent, token) so zone maps skip other latents and bitpacking/RLE compress
    # (~3-4 bytes per non-zero on disk). Read it through the `activations` view.
    "activation_cache": """
        cache_fp VARCHAR NOT NULL,
        layer VARCHAR NOT NULL,
        latent INTEGER NOT NULL,
        token INTEGER NOT NULL,
        value_bits USMALLINT NOT NULL
    """,
    # internal: committed batches of the forward pass (resume point) and completion marks
    "cache_progress": """
        cache_fp VARCHAR NOT NULL,
        batch_index INTEGER NOT NULL,
        row_start INTEGER NOT NULL,
        row_stop INTEGER NOT NULL,
        n_nonzero BIGINT NOT NULL,
        seconds DOUBLE NOT NULL,
        committed_at TIMESTAMP DEFAULT current_timestamp
    """,
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
    # per latent: firing statistics over the cached corpus
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
        activations_fp VARCHAR NOT NULL
    """,
    # per latent: was it given examples (selected) or not, and why
    "latent_selection": """
        layer VARCHAR NOT NULL,
        latent INTEGER NOT NULL,
        status VARCHAR NOT NULL,
        n_windows BIGINT NOT NULL,
        sampler_fp VARCHAR NOT NULL
    """,
    # example windows: train (explainer), test (scorers, disjoint from train), non_activating
    "examples": """
        layer VARCHAR NOT NULL,
        latent INTEGER NOT NULL,
        split VARCHAR NOT NULL,
        example_id INTEGER NOT NULL,
        quantile SMALLINT NOT NULL,
        row_id INTEGER NOT NULL,
        start_pos SMALLINT NOT NULL,
        max_activation REAL NOT NULL,
        token_ids INTEGER[] NOT NULL,
        acts REAL[] NOT NULL,
        sampler_fp VARCHAR NOT NULL
    """,
    # one explanation per (layer, latent, explainer fingerprint); failures kept with their raw text;
    # status ok / parse_error / llm_error / budget_exceeded (not sent: a re-run continues with these)
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
        created_at TIMESTAMP DEFAULT current_timestamp
    """,
    # per example shown to a scorer: truth, prediction, probability
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
        probability DOUBLE
    """,
    # per (latent, explainer, scorer): metrics
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
        created_at TIMESTAMP DEFAULT current_timestamp
    """,
    # the LLM ledger: one row per request whose results were committed (append-only: re-runs add rows,
    # so spend is never forgotten); the budget is checked against its totals
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
        created_at TIMESTAMP DEFAULT current_timestamp
    """,
}

# Tables rewritten per partition (layer, latent range).
PARTITIONED = ("latent_stats", "latent_selection", "latent_neighbours", "examples", "explanations", "score_items",
               "scores")

# Internal tables that are empty between runs: batches streamed by a running forward pass (same
# compact columns as activation_cache, in batch order), moved sorted into activation_cache at the end.
STAGING: dict[str, str] = {
    "activation_batches": """
        cache_fp VARCHAR NOT NULL,
        layer VARCHAR NOT NULL,
        latent INTEGER NOT NULL,
        token INTEGER NOT NULL,
        value_bits USMALLINT NOT NULL
    """,
}

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
}


def columns(table: str) -> dict[str, str]:
    """Declared columns of a table: name -> type (constraints dropped)."""
    out = {}
    for line in TABLES[table].strip().splitlines():
        name, typ = line.strip().rstrip(",").split()[:2]
        out[name] = typ
    return out


def migration_statements(existing: dict[str, set[str]]) -> list[str]:
    """ALTER statements adding declared columns that an older database lacks (as nullable columns).

    A database from before the compact activation cache (activation_cache with row_id/pos/value and a
    table `activations`) drops both and forgets its forward passes: they are recomputed on demand.
    """
    out = []
    if "activation_cache" in existing and "token" not in existing["activation_cache"]:
        out += ["DROP TABLE IF EXISTS activations", "DROP TABLE activation_cache"]
        out += [f"DELETE FROM {t}" for t in ("cache_progress", "cache_complete") if t in existing]
        existing = {t: c for t, c in existing.items() if t not in ("activations", "activation_cache")}
    return out + [f"ALTER TABLE {t} ADD COLUMN {c} {typ}" for t, cols in existing.items() if t in TABLES
                  for c, typ in columns(t).items() if c not in cols]


def create_statements() -> list[str]:
    stmts = [f"CREATE TABLE IF NOT EXISTS {name} ({ddl.strip()})" for name, ddl in {**TABLES, **STAGING}.items()]
    stmts += [f"CREATE OR REPLACE VIEW {name} AS {sql.strip()}" for name, sql in VIEWS.items()]
    return stmts
