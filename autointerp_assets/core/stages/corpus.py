"""Stage corpus_tokens: pack the corpus into BOS-first rows in table `tokens`."""

from __future__ import annotations

import time

import numpy as np
import polars as pl

from .. import corpus
from ..identity import corpus_spec, model_identity
from ..storage import queries
from ..storage.warehouse import arrow_table
from ..vocabulary import write_vocabulary
from .context import Context


def run_corpus(ctx: Context) -> dict:
    from transformers import AutoTokenizer

    cfg = ctx.cfg.corpus
    tok = AutoTokenizer.from_pretrained(ctx.model_dir())
    n_rows = cfg.n_tokens // cfg.ctx_len
    t0 = time.perf_counter()
    rows = corpus.pack_rows(corpus.iter_documents(cfg, ctx.cfg.root), tok, cfg.ctx_len, n_rows, corpus.bos_id(cfg, tok))
    fp = ctx.corpus_fp()
    frame = pl.DataFrame({"corpus_fp": [fp] * n_rows, "row_id": np.arange(n_rows, dtype=np.int32),
                          "token_ids": pl.Series(rows).cast(pl.List(pl.Int32))})
    for attempt in ctx.wh.attempts():
        with attempt as con:
            ctx.wh.record_fingerprint(con, fp, "corpus", corpus_spec(ctx.cfg, ctx.workdir))
            con.execute(queries.DELETE_CORPUS_TOKENS, [fp])
            ctx.wh.insert(con, "tokens", frame)
            write_vocabulary(ctx.wh, con, ctx.model_dir(), model_identity(ctx.cfg.subject_model, ctx.workdir), fp,
                             cfg.source)
    secs = time.perf_counter() - t0
    ctx.log(f"corpus {cfg.source}: {n_rows} rows x {cfg.ctx_len} tokens in {secs:.1f}s ({fp})")
    return {"corpus_fp": fp, "rows": n_rows, "tokens": n_rows * cfg.ctx_len, "seconds": round(secs, 2)}


def ensure_vocabulary(ctx: Context) -> None:
    """The current corpus's tokenizer strings in `vocabulary` / `corpora` (a warehouse made before they existed)."""
    fp = ctx.corpus_fp()
    if ctx.wh.scalar(queries.CORPUS_REGISTERED, [fp]):
        return
    for attempt in ctx.wh.attempts():
        with attempt as con:
            write_vocabulary(ctx.wh, con, ctx.model_dir(), model_identity(ctx.cfg.subject_model, ctx.workdir), fp,
                             ctx.cfg.corpus.source)


def load_rows(ctx: Context, limit: int | None = None) -> np.ndarray:
    fp = ctx.corpus_fp()
    with ctx.wh.read() as con:
        tbl = con.execute(queries.CORPUS_TOKEN_IDS, [fp, limit or None])  # LIMIT NULL: every row
        tbl = arrow_table(tbl)
    if tbl.num_rows == 0:
        raise RuntimeError(f"no corpus rows for {fp}: materialize corpus_tokens first")
    col = tbl.column("token_ids").combine_chunks()
    return np.asarray(col.flatten(), dtype=np.int32).reshape(tbl.num_rows, -1)
