"""The analyses a researcher reruns on their own SAEs (Paulo et al., arXiv 2410.13928): how scorers agree,
and how similar two coders (two hookpoints, or two SAEs of one hookpoint) are through their latents'
explanations and decoder directions. The SQL is the views ``scorer_agreement``, ``latent_matches`` and
``sae_similarity`` (core.storage.schema); this module reads them for reports and plots.
"""

from __future__ import annotations

import polars as pl

from .storage import Warehouse


def agreement(wh: Warehouse, explainer_fp: str | None = None) -> pl.DataFrame:
    """Rows of scorer_agreement (one explainer, or all), ordered by partition and scorer pair."""
    where, args = ("WHERE explainer_fp = ?", [explainer_fp]) if explainer_fp else ("", [])
    return wh.query(f"SELECT * FROM scorer_agreement {where} ORDER BY layer, latent_range, explainer_fp, scorer_a, "
                    "scorer_b", args)


def agreement_matrices(frame: pl.DataFrame) -> dict[tuple[str, str, str], dict[tuple[str, str], float | None]]:
    """(layer, latent_range, explainer_fp) -> {(scorer_a, scorer_b): spearman}."""
    out: dict = {}
    for r in frame.iter_rows(named=True):
        out.setdefault((r["layer"], r["latent_range"], r["explainer_fp"]), {})[(r["scorer_a"], r["scorer_b"])] = \
            r["spearman"]
    return out


def similarity(wh: Warehouse, explainer_fp: str | None = None) -> pl.DataFrame:
    where, args = ("WHERE explainer_fp = ?", [explainer_fp]) if explainer_fp else ("", [])
    return wh.query(f"SELECT * FROM sae_similarity {where} ORDER BY explainer_fp, layer_a, layer_b, sae_fp_a, "
                    "sae_fp_b", args)


def matches(wh: Warehouse, explainer_fp: str | None = None) -> pl.DataFrame:
    where, args = ("WHERE explainer_fp = ?", [explainer_fp]) if explainer_fp else ("", [])
    return wh.query(f"SELECT * FROM latent_matches {where} ORDER BY layer_a, latent_a, layer_b", args)
