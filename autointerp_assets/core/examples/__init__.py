"""Examples of a partition: windows, train / test (disjoint by construction) and non-activating windows.

``build_examples`` runs the whole range in one DuckDB connection (SQL, plus blockwise torch for
decoder neighbours and embedding scores) and leaves temp tables ``_selection`` (per-latent status),
``_neighbours`` and ``_examples`` for the caller to publish. The rules are in ``sampling``.
"""

from __future__ import annotations

import polars as pl
import torch

from ..config import SamplerConfig
from . import embeddings, neighbours
from .checks import disjointness
from .sampling import (EMPTY_PRIMARY, SAMPLER_VERSION, SELECTION_SQL, examples_sql, negatives_sql,
                       random_negatives_sql, sampler_spec, train_test_sql, units_sql, windows_per_row)

__all__ = ["SAMPLER_VERSION", "SELECTION_SQL", "build_examples", "disjointness", "embeddings", "neighbours",
           "sampler_spec", "windows_per_row"]


def run_sql(con, sql: str, params: dict) -> None:
    """Run ;-separated statements, each with the named parameters it uses."""
    for stmt in (s.strip() for s in sql.split(";")):
        if stmt:
            con.execute(stmt, {k: v for k, v in params.items() if f"${k}" in stmt})


def build_examples(con, cfg: SamplerConfig, ctx_len: int, max_per_range: int | None, layer: str, first: int,
                   last: int, corpus_fp: str, w_dec: torch.Tensor | None = None,
                   embedding_key: str | None = None) -> None:
    """All temp tables for one partition. ``w_dec``: decoder rows first..last (neighbour_type 'decoder');
    ``embedding_key``: cached window embeddings to use (source 'embedding')."""
    params = {"layer": layer, "first": first, "last": last, "corpus_fp": corpus_fp}
    run_sql(con, units_sql(cfg, ctx_len, max_per_range), params)
    if cfg.neighbour_type == "decoder":
        if w_dec is None:
            raise ValueError("neighbour_type 'decoder' needs the decoder rows (w_dec) of the range")
        sel = [r[0] for r in con.execute("SELECT latent FROM _selection WHERE status = 'selected' ORDER BY latent")
               .fetchall()]
        frame = neighbours.decoder_neighbours(w_dec, first, sel, cfg.n_neighbours)
    else:
        frame = neighbours.cooccurrence_neighbours(con, cfg.n_neighbours)
    con.register("_nb_frame", frame.to_arrow())
    con.execute("CREATE OR REPLACE TEMP TABLE _neighbours AS SELECT * FROM _nb_frame")
    con.unregister("_nb_frame")
    run_sql(con, train_test_sql(cfg, ctx_len), params)
    run_sql(con, random_negatives_sql(cfg, ctx_len), params)
    if cfg.non_activating_source == "neighbours":
        neighbours.neighbour_negatives(con, cfg)
    elif cfg.non_activating_source == "embedding":
        if embedding_key is None:
            raise ValueError("non_activating_source 'embedding' needs embedding_key (see embeddings.model_key)")
        embeddings.hard_negatives(con, cfg, ctx_len, corpus_fp, embedding_key)
    else:
        run_sql(con, EMPTY_PRIMARY, params)
    run_sql(con, negatives_sql(cfg), params)
    run_sql(con, examples_sql(cfg, ctx_len), params)


def selection_frame(con, layer: str) -> pl.DataFrame:
    return con.execute(SELECTION_SQL, {"layer": layer}).pl()
