"""Many short documents per row: every separator position is outside the data, end to end.

Real SmolLM2, a real TopK SAE trained here, real DuckDB: corpus -> SAE training -> caching -> latent_stats
-> examples -> flags on a corpus of 6-20-token documents (a separator every ~12 tokens), then the checks a
researcher would run in SQL: no activation on any separator, latent_stats and latent_selection count the same
windows and agree on every status, no latent that fires is called dead, no example shows a separator firing.
"""

from __future__ import annotations

import json
import random

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from autointerp_assets.core import stages
from autointerp_assets.core.config import ConfigError, load_config, parse_config
from autointerp_assets.core.latent_chunks import chunks_of
from autointerp_assets.core.scoring import heuristics
from autointerp_assets.core.separators import sql_list
from autointerp_assets.core.stages import activations as activations_stage
from autointerp_assets.core.stages.latent_stats import data_tokens
from autointerp_assets_tests.conftest import write_config

pytestmark = pytest.mark.slow

WORDS = ("the cat sat on a mat while seven dogs ran past it , and then : return x + 1 for i in range ( 10 ) "
         "Python keeps lists [ 1 , 2 ] and dicts { } open ( file ) . Alice met Bob in Paris").split()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("separators")
    rng = random.Random(0)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) for _ in range(1500)]
    (tmp / "short.jsonl").write_text("\n".join(json.dumps({"text": d}) for d in docs))
    cfg = load_config(write_config(tmp / "p.yaml", {
        "database": str(tmp / "w.duckdb"),
        "corpus": {"source": str(tmp / "short.jsonl"), "n_tokens": 65 * 96, "ctx_len": 65},
        "sae": {"expansion_factor": 2, "k": 16, "train_tokens": 65 * 96, "epochs": 1, "batch_size": 512},
        "latents": {"start": 0, "stop": 64, "range_size": 64, "max_per_range": None},
        "sampler": {"min_examples": 12, "n_quantiles": 2, "n_train": 6, "n_test": 4, "n_non_activating": 4,
                    "example_ctx_len": 16, "window": "fixed", "non_activating_source": "random"}}))
    ctx = stages.Context.of(cfg)
    stages.run_corpus(ctx)
    stages.run_sparse_coders(ctx)
    cfp, _ = stages.ensure_cache(ctx)
    for layer in cfg.hookpoints:
        stages.publish_activations(ctx, cfp, layer, 0, 63)
        stages.run_latent_stats(ctx, layer, 0, 63)
        stages.run_examples(ctx, layer, 0, 63)
    return ctx


def test_the_corpus_has_many_documents_per_row(built):
    seps = activations_stage.separators_of(built)
    per_row = built.wh.query(f"SELECT len(list_filter(token_ids[2:], x -> list_contains({sql_list(seps)}, x))) AS n "
                             "FROM tokens WHERE corpus_fp = ?", [built.corpus_fp()])["n"]
    assert per_row.min() >= 3 and per_row.sum() > 96 * 4
    rows = built.wh.scalar("SELECT count(*) FROM tokens WHERE corpus_fp = ?", [built.corpus_fp()])
    assert data_tokens(built) == rows * 64 - per_row.sum()


def test_no_activation_on_any_separator_position(built):
    seps = sql_list(activations_stage.separators_of(built))
    on_sep, total = built.wh.query(
        f"SELECT count(*) FILTER (WHERE list_contains({seps}, t.token_ids[a.pos + 1])), count(*) FROM activations a "
        "JOIN tokens t ON t.corpus_fp = ? AND t.row_id = a.row_id", [built.corpus_fp()]).row(0)
    assert total > 5_000 and on_sep == 0
    # and no example shows a separator as firing
    shown = built.wh.query(f"""
        SELECT count(*) FILTER (WHERE list_contains({seps}, tok) AND act > 0) AS firing_seps,
               count(*) FILTER (WHERE list_contains({seps}, tok)) AS seps_shown
        FROM (SELECT unnest(token_ids) AS tok, unnest(acts) AS act FROM examples)""").row(0, named=True)
    assert shown["seps_shown"] > 0 and shown["firing_seps"] == 0


def test_stats_and_selection_count_the_same_windows_and_agree_on_status(built):
    both = built.wh.query("""
        SELECT s.layer, s.latent, s.n_firing, s.n_windows AS stats_windows, l.n_windows AS selection_windows,
               s.status AS stats_status, l.status AS selection_status
        FROM latent_stats s JOIN latent_selection l USING (layer, latent)""")
    assert both.height == 2 * 64
    assert (both["stats_windows"] == both["selection_windows"]).all()
    mapped = both["selection_status"].replace({"selected": "alive", "not_selected": "alive"})
    assert (mapped == both["stats_status"]).all()
    assert set(both["stats_status"]) >= {"alive"}
    # dead means never fires: no latent with a firing is dead, in either table
    assert both.filter((pl.col("n_firing") > 0) & ((pl.col("stats_status") == "dead")
                                                   | (pl.col("selection_status") == "dead"))).height == 0
    # every activation lies in a window that can be sampled (windows tile the row: no tail)
    w, nw = 16, 64 // 16
    assert built.wh.scalar(f"SELECT count(*) FROM activations WHERE (pos - 1) // {w} NOT BETWEEN 0 AND {nw - 1}") == 0


def test_flags_never_name_a_separator_as_top_token(built):
    seps = activations_stage.separators_of(built)
    with built.wh.read() as con:
        f = heuristics.compute_flags(
            con, "SELECT a.latent, a.row_id, a.pos, a.value, t.token_ids[a.pos + 1] AS tok FROM activations a "
                 "JOIN tokens t ON t.row_id = a.row_id AND t.corpus_fp = ? WHERE a.layer = ?",
            "SELECT row_id, token_ids FROM tokens WHERE corpus_fp = ?", [built.corpus_fp(), "layers.1",
                                                                           built.corpus_fp()],
            seps, built.cfg.scoring)
        last = int(f["latent"].max())
        # the stage's way: in chunks of latents of bounded activations, token ids gathered in numpy
        chunked = heuristics.range_flags(con, "layers.1", 0, last, built.corpus_fp(), seps, built.cfg.scoring,
                                         chunk_activations=500)
        assert len(chunks_of(con, "layers.1", 0, last, 500)) > 3
    assert f.height > 20 and not f["top_token"].is_in(list(seps)).any()
    assert ((f["position_u"] >= 0) & (f["position_u"] <= 1)).all()
    assert_frame_equal(chunked, f, check_exact=False, rtol=1e-9)


def test_a_row_length_that_leaves_an_unsampleable_tail_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"positions 225-255 outside every 32-token window.*set corpus.ctx_len "
                                          r"to 225 or 257"):
        parse_config({"corpus": {"ctx_len": 256}})
    with pytest.raises(ConfigError, match=r"corpus.ctx_len \(128\).*set corpus.ctx_len to 113 or 129"):
        parse_config({"corpus": {"ctx_len": 128}, "sampler": {"example_ctx_len": 16}})
    assert parse_config({"corpus": {"ctx_len": 129}, "sampler": {"example_ctx_len": 16}}).corpus.ctx_len == 129


def test_the_cache_and_sae_fingerprints_change_with_the_separator_rule(built, monkeypatch):
    """An older warehouse's cache (made before every separator was excluded) is never reused: its fingerprint
    differs, so the forward pass runs again instead of mixing old rows in."""
    from autointerp_assets.core.stages import sparse_coders

    coders = stages.coder_rows(built)
    new_cache, new_sae = activations_stage.cache_fp(built, coders), sparse_coders.sae_train_spec(built)
    from autointerp_assets.core import identity

    monkeypatch.setattr(identity, "CACHE_VERSION", "sparse-fp16-v3")
    assert activations_stage.cache_fp(built, coders) != new_cache
    assert new_sae["separators"][0] == "every-separator-v1" and 0 in new_sae["separators"]
    done = built.wh.query("SELECT cache_fp FROM cache_complete")["cache_fp"].to_list()
    assert done == [new_cache]
    np.testing.assert_array_equal(sorted(activations_stage.separators_of(built)), [0, 1, 2])
