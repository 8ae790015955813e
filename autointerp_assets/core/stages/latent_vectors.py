"""Stage latent_vectors: per explained latent of a partition, its decoder row and the sentence embedding of each
explainer's explanation, keyed by the coder (sae_fp): what the views latent_matches and sae_similarity compare
across hookpoints or across two coders of one hookpoint.

Replaces, in one transaction, the partition's rows of the current coder only: rows of an earlier coder of the
same hookpoint stay (a retrained SAE is compared with its predecessor through them). The explanation embeddings
are the search's (``core.search``, the browser's sentence model): stored ones are reused, missing ones embedded.
"""

from __future__ import annotations

import time

import polars as pl

from .. import search
from ..sampling.embeddings import model_key
from ..sampling.neighbours import decoder_rows
from .context import Context
from .sparse_coders import latest_coder


def run_latent_vectors(ctx: Context, layer: str, first: int, last: int) -> dict:
    t0 = time.perf_counter()
    coder = latest_coder(ctx.wh, layer)
    # without a registered coder (a warehouse of examples brought from elsewhere) only the explanations are
    # compared: no decoder rows, coder key ''
    path, sae_fp = (coder["path"], coder["sae_fp"]) if coder else (None, "")
    if path is None:
        ctx.log(f"latent_vectors {layer}: no sparse coder registered; explanation embeddings only")
    expl, vecs, _ = search.explanation_vectors(ctx.wh, ctx.cfg.search_model, layer, first, last)
    latents = sorted(set(expl["latent"].to_list())) if expl.height else []
    rows = []
    if latents and path is not None:
        w = decoder_rows(path, first, last)[[lat - first for lat in latents]].float()
        rows += [{"layer": layer, "latent": lat, "sae_fp": sae_fp, "kind": "decoder", "explainer_fp": "", "model": "",
                  "vector": w[i].tolist()} for i, lat in enumerate(latents)]
    if latents:
        key = model_key(ctx.cfg.search_model)
        rows += [{"layer": layer, "latent": lat, "sae_fp": sae_fp, "kind": "explanation", "explainer_fp": efp,
                  "model": key, "vector": vecs[i].tolist()}
                 for i, (lat, efp) in enumerate(zip(expl["latent"].to_list(), expl["explainer_fp"].to_list()))]
    frame = pl.DataFrame(rows, schema_overrides={"vector": pl.List(pl.Float32)}) if rows else pl.DataFrame()
    ctx.wh.replace_partition(layer, first, last, {"latent_vectors": frame}, where={"latent_vectors": {"sae_fp": sae_fp}})
    return {"sae_fp": sae_fp, "latents": len(latents), "explanations": expl.height,
            "explainers": expl["explainer_fp"].n_unique() if expl.height else 0,
            "seconds": round(time.perf_counter() - t0, 2)}
