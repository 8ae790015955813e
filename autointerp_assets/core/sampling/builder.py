"""The sampler's driver: every row of one partition's examples, selection and neighbours, built at once.

``build_examples`` builds the whole range: DuckDB reads the activations and hashes the draws, numpy sorts
and reduces (the rules are in :mod:`.rules`), SQL / blockwise torch / sparse products give the neighbour
and embedding negatives (their SQL works on temp tables of this connection). A row is a window (corpus
row, start, length), not a copy of its tokens and activations: the ``examples`` view joins those in. The
result is a value (:class:`Built`); ``windows_frame`` / ``selection_frame`` / ``neighbours_frame`` give the
rows of the three tables the caller publishes.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import torch

from ..config import SamplerConfig
from ..latent_chunks import CHUNK_ACTIVATIONS, chunk_rows
from ..storage import queries
from ..storage.warehouse import cursor
from . import embeddings, neighbours
from .rules import (SPLITS, Acts, Units, acts_of, merge_negatives, random_negatives, rank_units, read_activations,
                    row_lengths, selection_of, spread, start_of, test_pool, train_of, units_of, window_lengths,
                    windows_per_row)


@dataclass
class Built:
    examples: pa.Table    # the rows of table ``example_windows`` without sampler_fp, corpus_fp, activations_fp
    selection: pa.Table   # latent, status, n_windows, n_train, n_test, n_non_activating
    neighbours: pa.Table  # latent, neighbour, similarity, rank (empty unless the negatives need them)


# sub-ranges sampled at once (numpy and DuckDB release the GIL); the cores this process may use, at most 4
THREADS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def build_examples(con, cfg: SamplerConfig, ctx_len: int, max_per_range: int | None, layer: str, first: int,
                   last: int, corpus_fp: str, w_dec: torch.Tensor | None = None,
                   embedding_key: str | None = None, threads: int = THREADS,
                   chunk_activations: int = CHUNK_ACTIVATIONS) -> Built:
    """All rows of one partition. ``w_dec``: decoder rows first..last (neighbour_type 'decoder');
    ``embedding_key``: cached window embeddings to use (source 'embedding').

    Memory is bounded by ``chunk_activations``, not by the corpus: with random negatives (the default) every
    rule is per latent but the selection cap, which counts eligible latents in id order, so the range is built
    in consecutive chunks of latents holding at most that many activations each (one latent at least) and
    the chunks' rows concatenated: the same rows as one pass (tested). Neighbour and embedding negatives
    look across the whole range, which is then read at once."""
    if cfg.non_activating_source != "random":
        return _build(con, cfg, ctx_len, max_per_range, layer, first, last, corpus_fp, w_dec, embedding_key,
                      threads)
    parts, eligible = [], 0
    for chunk in chunk_rows(con, layer, first, last, chunk_activations):
        part = _build(con, cfg, ctx_len, max_per_range, layer, chunk.first, chunk.last, corpus_fp, None, None,
                      threads, eligible, acts_of(chunk, ctx_len))
        del chunk
        eligible += sum(s in ("selected", "not_selected") for s in part.selection["status"].to_pylist())
        parts.append(part)
    return Built(pa.concat_tables([p.examples for p in parts]), pa.concat_tables([p.selection for p in parts]),
                 _neighbours_empty())


def _build(con, cfg: SamplerConfig, ctx_len: int, max_per_range: int | None, layer: str, first: int, last: int,
           corpus_fp: str, w_dec: torch.Tensor | None, embedding_key: str | None, threads: int,
           eligible_before: int = 0, acts: Acts | None = None) -> Built:
    """The rows of latents first..last, read at once (``acts``: their activations, already read);
    ``eligible_before``: eligible latents of the partition below ``first`` (the selection cap counts them)."""
    source, w = cfg.non_activating_source, cfg.example_ctx_len
    if source == "neighbours" and cfg.neighbour_type == "decoder" and w_dec is None:
        raise ValueError("neighbour_type 'decoder' needs the decoder rows (w_dec) of the range")
    if source == "embedding" and embedding_key is None:
        raise ValueError("non_activating_source 'embedding' needs embedding_key (see embeddings.model_key)")
    nw = windows_per_row(ctx_len, w)
    n_neg = cfg.n_non_activating + cfg.n_train_non_activating
    row_len = row_lengths(con, corpus_fp)
    n_rows = len(row_len)
    bounds = np.linspace(first, last + 1, max(1, min(threads, last - first + 1)) + 1).astype(np.int64)
    subs = [(int(a), int(b) - 1) for a, b in zip(bounds[:-1], bounds[1:])]
    if acts is None:
        acts = read_activations(con, layer, first, last, ctx_len)
    # sorted by latent, so cut into views
    cuts = [0, *np.searchsorted(acts.latent, [a for a, _ in subs[1:]]).tolist(), len(acts.latent)]
    cursors = [cursor(con) for _ in subs]  # one connection per sub-range: DuckDB runs their queries at once
    try:
        with ThreadPoolExecutor(len(subs)) as pool:
            found = list(pool.map(lambda i, j: units_of(acts.part(i, j), cfg), cuts[:-1], cuts[1:]))
            lat, row, win, max_act, peak = (np.concatenate(c) for c in zip(*found))
            latents, n_windows, status = selection_of(lat, cfg, first, last, max_per_range, eligible_before)
            selected = latents[status == "selected"]
            parts = list(pool.map(lambda cur, sub, units: _sample(
                cur, cfg, ctx_len, sub[0], units, selected[(selected >= sub[0]) & (selected <= sub[1])], n_rows, nw,
                n_neg), cursors, subs, found))
    finally:
        for cur in cursors:
            cur.close()
    train, test, rnd = (_concat([getattr(p, k) for p in parts]) for k in ("train", "test", "rnd"))

    sel_table = pa.table({"latent": latents.astype(np.int32), "status": status.tolist(), "n_windows": n_windows})
    con.register("_selection", sel_table)
    nb_table, primary = _neighbours_empty(), None
    if source in ("neighbours", "embedding"):  # their SQL reads the range's units as tables
        _temp_table(con, "_wins", pa.table({"latent": lat.astype(np.int32), "row_id": row.astype(np.int32),
                                            "win": win.astype(np.int32), "max_act": max_act}))
        ranked = _concat([{k: getattr(p.u, k) for k in ("latent", "row_id", "win", "rk_top")} for p in parts])
        _temp_table(con, "_ranked", pa.table({"latent": ranked["latent"].astype(np.int32),
                                              "row_id": ranked["row_id"].astype(np.int32),
                                              "win": ranked["win"].astype(np.int32), "rk_top": ranked["rk_top"]}))
        if source == "neighbours":
            if cfg.neighbour_type == "decoder":
                frame = neighbours.decoder_neighbours(w_dec, first, selected.tolist(), cfg.n_neighbours)
            else:
                frame = neighbours.cooccurrence_neighbours(lat, row * nw + win, selected, cfg.n_neighbours)
            nb_table = frame.to_arrow()
            _temp_table(con, "_neighbours", nb_table)
            neighbours.neighbour_negatives(con, cfg, n_neg)
        else:
            embeddings.hard_negatives(con, cfg, ctx_len, corpus_fp, embedding_key, n_neg)
        primary = con.execute(queries.NEG_PRIMARY_ROWS).fetchnumpy()
    # random negatives are final per latent, so their sub-ranges merged them already; other sources merge here
    neg = rnd if source == "random" else merge_negatives(primary, rnd, source, cfg.n_non_activating,
                                                          cfg.n_train_non_activating, nw)

    # the picked windows: train, test, then the negatives (fixed windows)
    act = _concat([train, test])
    n_act, n_neg_rows = len(act["latent"]), len(neg["latent"])
    p_lat = np.concatenate([act["latent"], neg["latent"]])
    p_row = np.concatenate([act["row_id"], neg["wid"] // nw])
    p_win = np.concatenate([act["win"], neg["wid"] % nw])
    p_start = np.concatenate([act["start"], 1 + (neg["wid"] % nw) * w])
    split = np.concatenate([np.zeros(len(train["latent"]), dtype=np.int8),
                            np.ones(len(test["latent"]), dtype=np.int8), np.where(neg["train"], 3, 2).astype(np.int8)])
    sim = np.concatenate([np.full(n_act, np.nan, dtype=np.float32), neg["similarity"]])
    nb = np.concatenate([np.full(n_act, -1, dtype=np.int64), neg["neighbour"]])
    src = np.concatenate([np.full(n_act, None, dtype=object), neg["source"]])
    examples = pa.table({
        "layer": pa.array([layer] * len(p_lat), pa.string()),
        "latent": p_lat.astype(np.int32),
        "split": pa.DictionaryArray.from_arrays(pa.array(split), pa.array(SPLITS)).cast(pa.string()),
        "example_id": (p_row * nw + p_win).astype(np.int32),
        "quantile": np.concatenate([act["quantile"], np.full(n_neg_rows, -1)]).astype(np.int16),
        "row_id": p_row.astype(np.int32),
        "start_pos": p_start.astype(np.int16),
        "length": window_lengths(row_len, p_row, p_start, w).astype(np.int16),
        "max_activation": np.concatenate([act["max_act"], np.zeros(n_neg_rows, dtype=np.float32)]),
        "source": pa.array(src, pa.string()),
        "neighbour": pa.array(nb.astype(np.int32), mask=nb < 0),
        "similarity": pa.array(sim, mask=np.isnan(sim)),
    })
    counts = {s: np.bincount(p_lat[split == i] - first, minlength=len(latents)).astype(np.int32)
              for i, s in enumerate(SPLITS)}
    selection = pa.table({"latent": latents.astype(np.int32), "status": status.tolist(), "n_windows": n_windows,
                          **{f"n_{s}": counts[s] for s in ("train", "test", "non_activating")}})
    return Built(examples, selection, nb_table)


@dataclass
class _Sampled:
    u: Units     # the ranked units (the neighbour / embedding SQL reads them)
    train: dict  # the picked windows' columns: latent, row_id, win, start, quantile, max_act
    test: dict
    rnd: dict    # random negatives: latent, wid, ord (source 'random': merged, as merge_negatives returns them)


def _sample(con, cfg: SamplerConfig, ctx_len: int, first: int, units: tuple, selected: np.ndarray, n_rows: int,
            nw: int, n_neg: int) -> _Sampled:
    """Train, test and random negatives of the selected latents of one sub-range starting at ``first``."""
    lat, row, win, max_act, peak = units
    u = rank_units(con, lat, row, win, max_act, peak, selected, cfg, first)
    start = start_of(u, cfg, ctx_len)
    train = train_of(u, cfg)
    if cfg.window == "fixed":  # fixed windows share a token only when they are the same unit
        unused = np.ones(len(u.latent), dtype=bool)
        unused[train] = False
        pool = np.flatnonzero(unused)
    else:
        pool = test_pool(u, train, start, cfg.example_ctx_len)
    test = spread(u, pool, cfg.n_test)
    n_total = n_rows * nw
    unit_keys = (lat - first) * n_total + row * nw + win  # sorted: units are in (latent, row, win) order
    rnd = random_negatives(con, cfg, selected, unit_keys, n_rows, nw, n_neg, first)
    if cfg.non_activating_source == "random":  # nothing to merge with: the final negatives of these latents
        rnd = merge_negatives(None, rnd, "random", cfg.n_non_activating, cfg.n_train_non_activating, nw)
    cols = lambda i: {"latent": u.latent[i], "row_id": u.row_id[i], "win": u.win[i], "start": start[i],  # noqa: E731
                      "quantile": u.quantile[i], "max_act": u.max_act[i]}
    return _Sampled(u, cols(train), cols(test), rnd)


def _concat(parts: list[dict]) -> dict:
    """Columns of consecutive parts (sub-ranges in latent order, or train then test) as one."""
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _temp_table(con, name: str, table: pa.Table) -> None:
    """A real temp table (the neighbour rounds join it repeatedly: a scan of registered Arrow would be redone)."""
    con.unregister(name)  # an earlier build on this connection may have registered it as a view
    con.register("_arrow_in", table)
    try:
        con.execute(queries.TEMP_TABLE_FROM_ARROW.format(name=name))
    finally:
        con.unregister("_arrow_in")


def _neighbours_empty() -> pa.Table:
    return pa.table({"latent": pa.array([], pa.int32()), "neighbour": pa.array([], pa.int32()),
                     "similarity": pa.array([], pa.float32()), "rank": pa.array([], pa.int32())})


def windows_frame(built: Built, sampler_fp: str, corpus_fp: str, activations_fp: str) -> pl.DataFrame:
    """Table ``example_windows``'s rows of ``built``."""
    return pl.from_arrow(built.examples).with_columns(sampler_fp=pl.lit(sampler_fp), corpus_fp=pl.lit(corpus_fp),
                                                      activations_fp=pl.lit(activations_fp))


def selection_frame(built: Built, layer: str, sampler_fp: str) -> pl.DataFrame:
    """Table ``latent_selection``'s rows of ``built``."""
    return pl.from_arrow(built.selection).with_columns(layer=pl.lit(layer), sampler_fp=pl.lit(sampler_fp))


def neighbours_frame(built: Built, layer: str, kind: str, sampler_fp: str) -> pl.DataFrame:
    """Table ``latent_neighbours``'s rows of ``built`` (``kind``: cooccurrence or decoder)."""
    return pl.from_arrow(built.neighbours).with_columns(layer=pl.lit(layer), kind=pl.lit(kind),
                                                        sampler_fp=pl.lit(sampler_fp))
