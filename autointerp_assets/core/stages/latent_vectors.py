"""Stage latent_vectors: per explained latent of a partition, its decoder row and the sentence embedding of each
explainer's explanation, keyed by the coder (sae_fp): what the views latent_matches and sae_similarity compare
across hookpoints or across two coders of one hookpoint.

Replaces, in one transaction, the partition's rows of the current coder only: rows of an earlier coder of the
same hookpoint stay (a retrained SAE is compared with its predecessor through them).
"""

from __future__ import annotations

import time

import polars as pl

from ..examples.neighbours import decoder_rows
from ..scoring import embedding
from .context import Context


def run_latent_vectors(ctx: Context, layer: str, first: int, last: int) -> dict:
    t0 = time.perf_counter()
    coder = ctx.wh.query("SELECT path, sae_fp FROM sparse_coders WHERE layer = ? ORDER BY created_at DESC LIMIT 1",
                         [layer])
    if coder.is_empty():
        raise RuntimeError(f"latent_vectors needs the sparse coder of {layer}: materialize sparse_coders first")
    path, sae_fp = coder.row(0)
    expl = ctx.wh.query("SELECT latent, explainer_fp, explanation FROM explanations WHERE layer = ? AND latent "
                        "BETWEEN ? AND ? AND status = 'ok' ORDER BY explainer_fp, latent", [layer, first, last])
    latents = sorted(set(expl["latent"].to_list()))
    rows = []
    if latents:
        w = decoder_rows(path, first, last)[[lat - first for lat in latents]].float()
        rows += [{"layer": layer, "latent": lat, "sae_fp": sae_fp, "kind": "decoder", "explainer_fp": "", "model": "",
                  "vector": w[i].tolist()} for i, lat in enumerate(latents)]
        model = ctx.cfg.scoring_extras.embedding_model
        key = embedding.identity(model)["model"]
        vecs = embedding.encoder(model)(expl["explanation"].to_list())
        rows += [{"layer": layer, "latent": lat, "sae_fp": sae_fp, "kind": "explanation", "explainer_fp": efp,
                  "model": key, "vector": vecs[i].tolist()}
                 for i, (lat, efp) in enumerate(zip(expl["latent"].to_list(), expl["explainer_fp"].to_list()))]
    frame = pl.DataFrame(rows, schema_overrides={"vector": pl.List(pl.Float32)}) if rows else pl.DataFrame()
    ctx.wh.replace_partition(layer, first, last, {"latent_vectors": frame}, where={"latent_vectors": {"sae_fp": sae_fp}})
    return {"sae_fp": sae_fp, "latents": len(latents), "explanations": expl.height,
            "explainers": expl["explainer_fp"].n_unique() if expl.height else 0,
            "seconds": round(time.perf_counter() - t0, 2)}
