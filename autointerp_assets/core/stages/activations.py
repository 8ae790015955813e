"""Stage activations: one resumable forward pass for every hookpoint, then per-partition publishing."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from .. import caching
from ..fingerprint import fingerprint
from ..sparse_coders import load_sparse_coder
from .context import Context, model_identity
from .corpus import load_rows
from .sparse_coders import coder_rows

CACHE_VERSION = "topk-nonzero-v1"


def activations_fp(ctx: Context, layer: str, coders: dict[str, dict]) -> str:
    return fingerprint("activations", {"version": CACHE_VERSION, "corpus_fp": ctx.corpus_fp(),
                                       "model": model_identity(ctx.cfg.subject_model, ctx.workdir),
                                       "dtype": ctx.cfg.caching.dtype, "sae_fp": coders[layer]["sae_fp"]})


def cache_fp(ctx: Context, coders: dict[str, dict]) -> str:
    lat = ctx.cfg.latents
    return fingerprint("cache", {"layers": {h: activations_fp(ctx, h, coders) for h in ctx.cfg.hookpoints},
                                 "latents": [lat.start, lat.stop]})


def ensure_cache(ctx: Context) -> tuple[str, dict]:
    """One forward pass over the corpus for all hookpoints (resumable); reused when already complete."""
    cfg = ctx.cfg
    coders = coder_rows(ctx)
    cfp = cache_fp(ctx, coders)
    with ctx.wh.read() as con:
        done = con.execute("SELECT n_tokens, n_nonzero, seconds FROM cache_complete WHERE cache_fp = ?", [cfp]).fetchone()
        start_row = con.execute("SELECT coalesce(max(row_stop), 0) FROM cache_progress WHERE cache_fp = ?",
                                [cfp]).fetchone()[0]
    if done:
        ctx.log(f"activation cache {cfp} complete: reusing it (no forward pass)")
        return cfp, {"reused": True, "tokens": done[0], "nonzero": done[1], "seconds": done[2]}
    rows = load_rows(ctx)
    n_rows = len(rows)
    if start_row:
        ctx.log(f"resuming activation cache {cfp} at row {start_row}/{n_rows}")
    with ctx.wh.write() as con:  # rows past the resume point can only be leftovers; keep the cache exact
        con.execute("DELETE FROM activation_cache WHERE cache_fp = ? AND row_id >= ?", [cfp, start_row])
    lm, _ = caching.load_subject_model(ctx.model_dir(), cfg.caching.dtype, cfg.caching.threads)
    saes = {h: load_sparse_coder(Path(coders[h]["path"]).parent, h) for h in cfg.hookpoints}
    t_start, done_tokens, last_log = time.perf_counter(), 0, 0.0
    total_nz = 0
    for a, b, per_hook, secs in caching.cache_batches(lm, saes, rows, cfg.caching.batch_rows,
                                                       cfg.latents.start, cfg.latents.stop, start_row):
        frame = pl.concat([pl.DataFrame({"cache_fp": cfp, "layer": ba.hookpoint, "latent": ba.latent,
                                         "row_id": ba.row_id, "pos": ba.pos, "value": ba.value})
                           for ba in per_hook])
        with ctx.wh.write() as con:  # a batch and its progress mark commit together
            ctx.wh.insert(con, "activation_cache", frame)
            con.execute("INSERT INTO cache_progress (cache_fp, batch_index, row_start, row_stop, n_nonzero, seconds)"
                        " VALUES (?, ?, ?, ?, ?, ?)", [cfp, a // cfg.caching.batch_rows, a, b, frame.height, secs])
        total_nz += frame.height
        done_tokens += (b - a) * cfg.corpus.ctx_len
        el = time.perf_counter() - t_start
        if el - last_log > 10 or b == n_rows:
            last_log = el
            rate = done_tokens / max(el, 1e-9)
            eta = (n_rows - b) * cfg.corpus.ctx_len / max(rate, 1e-9)
            ctx.log(f"caching: {b * cfg.corpus.ctx_len}/{n_rows * cfg.corpus.ctx_len} tokens, "
                    f"{rate:,.0f} tok/s, ETA {eta:.0f}s")
    elapsed = time.perf_counter() - t_start
    with ctx.wh.write() as con:
        n_nz = con.execute("SELECT count(*) FROM activation_cache WHERE cache_fp = ?", [cfp]).fetchone()[0]
        con.execute("INSERT INTO cache_complete (cache_fp, n_rows, n_tokens, n_nonzero, seconds) VALUES (?,?,?,?,?) "
                    "ON CONFLICT DO NOTHING", [cfp, n_rows, n_rows * cfg.corpus.ctx_len, n_nz, elapsed])
    tokens = (n_rows - start_row) * cfg.corpus.ctx_len
    return cfp, {"reused": False, "tokens": tokens, "nonzero": int(n_nz), "seconds": round(elapsed, 2),
                 "tokens_per_s": round(tokens / max(elapsed, 1e-9), 1)}


def publish_activations(ctx: Context, cfp: str, layer: str, first: int, last: int) -> int:
    coders = coder_rows(ctx)
    afp = activations_fp(ctx, layer, coders)
    with ctx.wh.write() as con:
        ctx.wh.delete_partition(con, "activations", layer, first, last)
        con.execute("INSERT INTO activations BY NAME SELECT layer, latent, row_id, pos, value, ? AS activations_fp "
                    "FROM activation_cache WHERE cache_fp = ? AND layer = ? AND latent BETWEEN ? AND ? "
                    "ORDER BY latent, row_id, pos", [afp, cfp, layer, first, last])
        n = con.execute("SELECT count(*) FROM activations WHERE layer = ? AND latent BETWEEN ? AND ?",
                        [layer, first, last]).fetchone()[0]
    return int(n)
