"""The analyses a researcher reruns on their own SAEs (Paulo et al., arXiv 2410.13928): how scorers agree,
and how similar two coders (two hookpoints, or two SAEs of one hookpoint) are through their latents'
explanations and decoder directions. The SQL is the views ``scorer_agreement``, ``latent_matches`` and
``sae_similarity`` (core.storage.schema); this module reads them for reports and plots.
"""

from __future__ import annotations

import polars as pl

from .storage import Warehouse, queries


def agreement(wh: Warehouse, explainer_fp: str | None = None) -> pl.DataFrame:
    """Rows of scorer_agreement (one explainer, or all), ordered by partition and scorer pair."""
    return wh.query(queries.SCORER_AGREEMENT_ROWS, {"explainer": explainer_fp})


def agreement_matrices(frame: pl.DataFrame) -> dict[tuple[str, str, str], dict[tuple[str, str], float | None]]:
    """(layer, latent_range, explainer_fp) -> {(scorer_a, scorer_b): spearman}."""
    out: dict = {}
    for r in frame.iter_rows(named=True):
        out.setdefault((r["layer"], r["latent_range"], r["explainer_fp"]), {})[(r["scorer_a"], r["scorer_b"])] = \
            r["spearman"]
    return out


def similarity(wh: Warehouse, explainer_fp: str | None = None) -> pl.DataFrame:
    return wh.query(queries.SAE_SIMILARITY_ROWS, {"explainer": explainer_fp})


def matches(wh: Warehouse, explainer_fp: str | None = None) -> pl.DataFrame:
    return wh.query(queries.LATENT_MATCHES_ROWS, {"explainer": explainer_fp})
