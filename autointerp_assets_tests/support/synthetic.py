"""A synthetic examples partition written straight into a real DuckDB warehouse, so the LLM stages can
run without the subject model, SAE training or caching (token ids are real SmolLM2 ids).

Written the way the pipeline stores it: one corpus row (BOS + ``ctx`` tokens) per example window in
``tokens``, the window's non-zero activations in the compact cache behind the ``activations`` view, and
the window itself in ``example_windows``; the ``examples`` view joins them back together."""

from __future__ import annotations

import random

import numpy as np
import polars as pl

from autointerp_assets.core.storage import Warehouse

SAMPLER_FP = "sampler-synthetic"
ACTIVATIONS_FP = "activations-synthetic"


def write_partition(wh: Warehouse, layer: str, latents: list[int], n_train: int = 6, n_test: int = 6,
                    n_non_activating: int = 6, ctx: int = 16, seed: int = 0) -> None:
    rng = random.Random(seed)
    corpus, cache = f"corpus-synthetic-{layer}", f"cache-synthetic-{layer}"
    first, last = min(latents), max(latents)
    windows, tokens, fired, stats, selection = [], [], [], [], []
    for lat in latents:
        eid = 0
        for split, n in (("train", n_train), ("test", n_test), ("non_activating", n_non_activating)):
            for i in range(n):
                row_id = lat * 1000 + eid  # a row of its own per window
                tokens.append({"corpus_fp": corpus, "row_id": row_id,
                               "token_ids": [0] + [rng.randrange(300, 20000) for _ in range(ctx)]})
                top = 0.0
                if split != "non_activating":
                    for j in rng.sample(range(ctx), 2):
                        value = float(np.float16(rng.uniform(0.5, 5.0)))  # the cache stores float16
                        fired.append((lat, row_id * (ctx + 1) + 1 + j, value))
                        top = max(top, value)
                windows.append({"layer": layer, "latent": lat, "split": split, "example_id": eid,
                                "quantile": -1 if split == "non_activating" else i % 2, "row_id": row_id,
                                "start_pos": 1, "length": ctx, "max_activation": top, "sampler_fp": SAMPLER_FP,
                                "corpus_fp": corpus, "activations_fp": ACTIVATIONS_FP})
                eid += 1
        stats.append({"layer": layer, "latent": lat, "n_firing": 20, "n_windows": 20, "density": 0.01,
                      "max_activation": 5.0, "mean_activation": 2.0, "quantile_edges": [2.5], "status": "alive",
                      "activations_fp": ACTIVATIONS_FP})
        selection.append({"layer": layer, "latent": lat, "status": "selected", "n_windows": 20,
                          "sampler_fp": SAMPLER_FP})
    lat, tok, val = (np.array(c) for c in zip(*fired))
    with wh.write() as con:
        con.execute("DELETE FROM tokens WHERE corpus_fp = ? AND row_id BETWEEN ? AND ?", [corpus, first * 1000,
                                                                                          last * 1000 + 999])
        con.execute("DELETE FROM activation_cache WHERE cache_fp = ? AND latent BETWEEN ? AND ?", [cache, first, last])
        con.execute("DELETE FROM activation_partitions WHERE layer = ? AND first_latent = ? AND last_latent = ?",
                    [layer, first, last])
        wh.insert(con, "tokens", pl.DataFrame(tokens, schema_overrides={"token_ids": pl.List(pl.Int32)}))
        wh.insert(con, "activation_cache", pl.DataFrame({
            "cache_fp": cache, "layer": layer, "latent": lat.astype(np.int32), "token": tok.astype(np.int32),
            "value_bits": val.astype(np.float16).view(np.uint16)}))
        wh.insert(con, "activation_partitions", pl.DataFrame({
            "layer": [layer], "first_latent": [first], "last_latent": [last], "cache_fp": [cache],
            "activations_fp": [ACTIVATIONS_FP], "ctx_len": [ctx + 1], "n_nonzero": [len(fired)]}))
        for table, data in (("example_windows", windows), ("latent_stats", stats), ("latent_selection", selection)):
            wh.delete_partition(con, table, layer, first, last)
            wh.insert(con, table, pl.DataFrame(data, schema_overrides={"quantile_edges": pl.List(pl.Float32)}))


def self_promoting(unembed, n: int, start: int = 1000, step: int = 997, keep=lambda t: True) -> list[int]:
    """Token ids whose own unembedding row ranks them first (so a decoder row along it promotes them)."""
    out = []
    for t in range(start, unembed.shape[0], step):
        if int((unembed @ unembed[t]).argmax()) == t and keep(t):
            out.append(t)
        if len(out) == n:
            return out
    raise AssertionError("no self-promoting tokens found")


def record_sparse_coder(wh: Warehouse, layer: str, sae_dir, w_dec) -> None:
    """A sparse_coders row for a test checkpoint dir holding only W_dec (what the logit readers need)."""
    with wh.write() as con:
        wh.insert(con, "sparse_coders", pl.DataFrame([{
            "layer": layer, "sae_fp": "sae-test", "path": str(sae_dir), "d_in": w_dec.shape[1],
            "num_latents": w_dec.shape[0], "k": 4, "source": "test"}]))
