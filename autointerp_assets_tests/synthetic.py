"""A synthetic examples partition written straight into a real DuckDB warehouse, so the LLM stages can
run without the subject model, SAE training or caching (token ids are real SmolLM2 ids)."""

from __future__ import annotations

import random

import polars as pl

from autointerp_assets.core.storage import Warehouse

SAMPLER_FP = "sampler-synthetic"


def write_partition(wh: Warehouse, layer: str, latents: list[int], n_train: int = 6, n_test: int = 6,
                    n_non_activating: int = 6, ctx: int = 16, seed: int = 0) -> None:
    rng = random.Random(seed)
    rows, stats, selection = [], [], []
    for lat in latents:
        eid = 0
        for split, n in (("train", n_train), ("test", n_test), ("non_activating", n_non_activating)):
            for i in range(n):
                ids = [rng.randrange(300, 20000) for _ in range(ctx)]
                acts = [0.0] * ctx
                if split != "non_activating":
                    for j in rng.sample(range(ctx), 2):
                        acts[j] = round(rng.uniform(0.5, 5.0), 3)
                rows.append({"layer": layer, "latent": lat, "split": split, "example_id": eid,
                             "quantile": -1 if split == "non_activating" else i % 2, "row_id": eid,
                             "start_pos": 1, "max_activation": max(acts), "token_ids": ids, "acts": acts,
                             "sampler_fp": SAMPLER_FP})
                eid += 1
        stats.append({"layer": layer, "latent": lat, "n_firing": 20, "n_windows": 20, "density": 0.01,
                      "max_activation": 5.0, "mean_activation": 2.0, "quantile_edges": [2.5], "status": "alive",
                      "activations_fp": "activations-synthetic"})
        selection.append({"layer": layer, "latent": lat, "status": "selected", "n_windows": 20,
                          "sampler_fp": SAMPLER_FP})
    with wh.write() as con:
        for table, data in (("examples", rows), ("latent_stats", stats), ("latent_selection", selection)):
            wh.delete_partition(con, table, layer, min(latents), max(latents))
            wh.insert(con, table, pl.DataFrame(data, schema_overrides={"acts": pl.List(pl.Float32),
                                                                        "quantile_edges": pl.List(pl.Float32)}))
