"""Stage activations: one resumable forward pass for every hookpoint, then per-partition publishing.

The forward pass streams its non-zeros into ``activation_cache``, a group of consecutive batches
(``caching.commit_every_s`` of work) at a time, sorted by (layer, latent, token) within the group, each
batch with its ``cache_progress`` mark (one transaction per group), reading the corpus
``caching.read_rows`` rows at a time, so memory does not grow with the corpus and a killed run resumes
after its last committed batch. A writer thread commits group g while the subject model runs group g+1
(DuckDB releases the GIL); at most one group is in flight, so batches commit in order. No
rows are visible before the pass is complete: ``cache_complete`` marks it, and a partition is
published as one row in ``activation_partitions``, which the ``activations`` view reads through.
There is no final global sort: it cost ~3% of the pass and could not overlap with it; a batch's
~115k rows sorted by latent already compress to ~4 bytes per non-zero.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import chain
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa

from .. import caching, identity
from ..separators import model_separators
from ..storage import queries
from ..storage.warehouse import arrow_table, buffer_pool
from .context import Context
from .sparse_coders import check_width, coder_rows, load_coders

FP16_MAX = 65504.0
MAX_GROUP_NONZERO = 1 << 22  # a commit group holds at most ~4M non-zeros (~60 MB) however fast the batches come


def activations_fp(ctx: Context, layer: str, coders: dict[str, dict]) -> str:
    return identity.activations_fp(ctx.cfg, ctx.workdir, coders[layer]["sae_fp"], separators_of(ctx))


def separators_of(ctx: Context) -> tuple[int, ...]:
    """The separator token ids of this corpus and subject model (never cached)."""
    return model_separators(ctx.cfg.corpus, ctx.model_dir())


def cache_fp(ctx: Context, coders: dict[str, dict]) -> str:
    lat = ctx.cfg.latents
    return identity.cache_fp({h: activations_fp(ctx, h, coders) for h in ctx.cfg.hookpoints}, lat.start, lat.stop)


def fp16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> IEEE float16 bit patterns (uint16), clamped to float16's finite range."""
    return np.clip(values, -FP16_MAX, FP16_MAX).astype(np.float16).view(np.uint16)


def stream_rows(ctx: Context, start_row: int, n_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """(row_start, rows) batches of ``caching.batch_rows``, read from DuckDB ``read_rows`` at a time."""
    batch = ctx.cfg.caching.batch_rows
    chunk = max(batch, ctx.cfg.caching.read_rows // batch * batch)  # whole batches per read
    fp = ctx.corpus_fp()
    for lo in range(start_row, n_rows, chunk):
        hi = min(lo + chunk, n_rows)
        with ctx.wh.read() as con:
            tbl = arrow_table(con.execute(queries.CORPUS_ROWS_BETWEEN, [fp, lo, hi]))
        col = tbl.column("token_ids").combine_chunks()
        rows = np.asarray(col.flatten(), dtype=np.int64).reshape(tbl.num_rows, -1)
        if len(rows) != hi - lo:
            raise RuntimeError(f"corpus rows {lo}..{hi} of {fp} are missing: re-materialize corpus_tokens")
        for a in range(0, len(rows), batch):
            yield lo + a, rows[a:a + batch]


def ensure_cache(ctx: Context, on_commit: Callable[[int, int], None] | None = None) -> tuple[str, dict]:
    """One forward pass over the corpus for all hookpoints (resumable); reused when already complete.

    ``on_commit(row_start, row_stop)`` is called after each batch is committed. Runs that find the
    same cache unfinished take turns on the warehouse's per-cache lock (every host of a lake's): the second
    waits, then reuses it, instead of running the subject model again and inserting the same batches twice.
    """
    cfp = cache_fp(ctx, coder_rows(ctx))
    with ctx.wh.lock(cfp):
        return _ensure_cache(ctx, on_commit)


def _ensure_cache(ctx: Context, on_commit: Callable[[int, int], None] | None) -> tuple[str, dict]:
    cfg = ctx.cfg
    coders = coder_rows(ctx)
    cfp = cache_fp(ctx, coders)
    ctx_len = cfg.corpus.ctx_len
    with ctx.wh.read() as con:
        done = con.execute(queries.CACHE_COMPLETE_OF, [cfp]).fetchone()
        start_row = con.execute(queries.CACHE_RESUME_ROW, [cfp]).fetchone()[0]
        n_rows = con.execute(queries.CORPUS_ROW_COUNT, [ctx.corpus_fp()]).fetchone()[0]
    if done:
        ctx.log(f"activation cache {cfp} complete: reusing it (no forward pass)")
        return cfp, {"reused": True, "tokens": done[0], "nonzero": done[1], "seconds": done[2]}
    if n_rows == 0:
        raise RuntimeError(f"no corpus rows for {ctx.corpus_fp()}: materialize corpus_tokens first")
    if n_rows * ctx_len >= 2**31:
        raise ValueError(f"{n_rows * ctx_len} tokens exceed the cache's 2^31 token index: lower corpus.n_tokens")
    if start_row:
        ctx.log(f"resuming activation cache {cfp} at row {start_row}/{n_rows} (batches before it are committed)")
    for attempt in ctx.wh.attempts():  # rows past the resume point can only be leftovers; keep the cache exact
        with attempt as con:
            con.execute(queries.DELETE_CACHE_FROM_TOKEN, [cfp, start_row * ctx_len])
    lm, _ = caching.load_subject_model(ctx.model_dir(), cfg.caching.dtype, cfg.caching.threads)
    saes = load_coders(coders)
    inputs = [h for h, c in saes.items() if c.hook_input]
    for h, width in caching.hook_width(lm, list(saes), inputs).items():  # exact, before the corpus pass
        check_width(h, saes[h], width)
    t_start, last_log, done_tokens, waited, writer_s = time.perf_counter(), 0.0, 0, 0.0, 0.0
    total = n_rows * ctx_len
    batches = stream_rows(ctx, start_row, n_rows)

    def committed(group: list, pending: Future) -> None:
        nonlocal last_log, done_tokens, waited, writer_s
        t0 = time.perf_counter()
        n_nz, secs = pending.result()  # re-raises a failed write here
        writer_s += secs
        waited += time.perf_counter() - t0
        for a, b, _ph, _s in group:
            if on_commit:
                on_commit(a, b)
            done_tokens += (b - a) * ctx_len
        a, b = group[0][0], group[-1][1]
        el = time.perf_counter() - t_start
        if el - last_log > 10 or b == n_rows or a == start_row:
            last_log = el
            rate = done_tokens / max(el, 1e-9)
            ctx.log(f"caching: {b * ctx_len:,}/{total:,} tokens ({b / n_rows:.0%}), {rate:,.0f} tok/s, "
                    f"ETA {(n_rows - b) * ctx_len / max(rate, 1e-9):.0f}s, last commit {len(group)} batch(es), "
                    f"{n_nz:,} non-zeros")

    # Batches gather into one transaction per ``commit_every_s`` of forward work: DuckDB's per-transaction cost
    # (connect, commit, checkpoint on close) is paid once per group, not per batch. Each batch keeps its
    # cache_progress mark. The writer commits group g while the subject model runs group g+1.
    pending, group, nnz, since = None, [], 0, time.perf_counter()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-writer") as writer:
        for item in chain(caching.cache_batches(lm, saes, batches, cfg.latents.start, cfg.latents.stop,
                                                cfg.caching.encode_dtype, separators_of(ctx)), [None]):  # None: the end, flush
            if item:
                group.append(item)
                nnz += sum(len(ba.latent) for ba in item[2])
                if time.perf_counter() - since < cfg.caching.commit_every_s and nnz < MAX_GROUP_NONZERO:
                    continue
            if pending:  # group g-1 committed (its write overlapped this group's forward passes)
                committed(*pending)
            pending = (group, writer.submit(_timed_write, ctx, cfp, group)) if group else None
            group, nnz, since = [], 0, time.perf_counter()
        if pending:
            committed(*pending)
    forward_s = time.perf_counter() - t_start
    n_nz = _finish(ctx, cfp, n_rows, forward_s)
    elapsed = time.perf_counter() - t_start
    ctx.log(f"activation cache {cfp}: {n_nz:,} non-zeros, complete ({elapsed - forward_s:.1f}s to finish)")
    tokens = (n_rows - start_row) * ctx_len
    return cfp, {"reused": False, "tokens": tokens, "nonzero": int(n_nz), "seconds": round(elapsed, 2),
                 "tokens_per_s": round(tokens / max(elapsed, 1e-9), 1), "forward_s": round(forward_s, 2),
                 "write_wait_s": round(waited, 2), "writer_s": round(writer_s, 2),
                 "finish_s": round(elapsed - forward_s, 2)}


def _timed_write(*args) -> tuple[int, float]:
    """_write_group and its seconds on the writer thread (time it shares the cores with the forward pass)."""
    t0 = time.perf_counter()
    n = _write_group(*args)
    return n, time.perf_counter() - t0


def _write_group(ctx: Context, cfp: str, group: list) -> int:
    """A group of consecutive batches: their non-zeros (all hookpoints, one sorted INSERT) and a progress mark
    per batch, in one transaction."""
    ctx_len = ctx.cfg.corpus.ctx_len
    per_hook = [caching.BatchActivations.concat([ph[i] for _a, _b, ph, _s in group]) for i in range(len(group[0][2]))]
    counts = [len(ba.latent) for ba in per_hook]
    n = sum(counts)
    # sorted by (layer, latent, token) here, single-threaded: the writer must not take cores from the forward
    # pass it overlaps (a multi-threaded DuckDB sort stalls torch's parallel regions)
    layer_ix = np.repeat(np.arange(len(per_hook), dtype=np.int32), counts)
    latent = np.concatenate([ba.latent for ba in per_hook])
    token = np.concatenate([ba.row_id * np.int32(ctx_len) + ba.pos.astype(np.int32) for ba in per_hook])
    names = sorted(ba.hookpoint for ba in per_hook)  # layer order of the sort = the names' order
    layer_rank = np.array([names.index(ba.hookpoint) for ba in per_hook], dtype=np.int32)[layer_ix]
    # each hookpoint's rows leave encode_batch (and a group's batches come) in token order, so a stable sort by
    # (layer, latent) alone gives (layer, latent, token): a radix sort when that key fits 16 bits (~10x cheaper
    # than a 3-key lexsort)
    span = int(latent.max()) + 1 if n else 1
    if len(per_hook) * span <= 2**15:
        order = np.argsort((layer_rank * span + latent).astype(np.int16), kind="stable")
    else:
        order = np.lexsort((token, latent, layer_rank))
    tbl = pa.table({
        "cache_fp": pa.DictionaryArray.from_arrays(np.zeros(n, dtype=np.int32), [cfp]),
        "layer": pa.DictionaryArray.from_arrays(layer_rank[order], names),
        "latent": latent[order], "token": token[order],
        "value_bits": fp16_bits(np.concatenate([ba.value for ba in per_hook]))[order]})
    for attempt in ctx.wh.attempts():
        with attempt as con:
            if n:
                for setting in queries.CACHE_WRITER_SETTINGS:
                    con.execute(setting.format(memory_gb=float(ctx.cfg.caching.duckdb_memory_gb)))
                if con.execute(queries.SETTING_EXISTS, [queries.NO_OPTIMISTIC_WRITE]).fetchone()[0]:
                    con.execute(queries.SET_SETTING_FALSE.format(name=queries.NO_OPTIMISTIC_WRITE))
                con.register("_batch", tbl)
                try:
                    con.execute(queries.INSERT_CACHE_BATCH)
                finally:
                    con.unregister("_batch")
            batch_rows = ctx.cfg.caching.batch_rows
            con.executemany(queries.INSERT_CACHE_PROGRESS, [
                [cfp, a // batch_rows, a, b, sum(len(ba.latent) for ba in ph), secs] for a, b, ph, secs in group])
    return n


def _finish(ctx: Context, cfp: str, n_rows: int, seconds: float) -> int:
    """Mark the cache complete (its rows are already in activation_cache, committed batch by batch)."""
    for attempt in ctx.wh.attempts():
        with attempt as con:
            n_nz = con.execute(queries.CACHE_NONZEROS, [cfp]).fetchone()[0]
            con.execute(queries.INSERT_CACHE_COMPLETE, [cfp, n_rows, n_rows * ctx.cfg.corpus.ctx_len, n_nz, seconds,
                                                        cfp])
    return int(n_nz)


def publish_activations(ctx: Context, cfp: str, layer: str, first: int, last: int) -> int:
    """Make (layer, first..last) of cache ``cfp`` the partition's activations; replaces exactly it."""
    coders = coder_rows(ctx)
    afp = activations_fp(ctx, layer, coders)
    for attempt in ctx.wh.attempts():
        with attempt as con:
            con.execute(queries.DELETE_ACTIVATION_PARTITION, [layer, last, first])
            with buffer_pool(con):  # (a count over the layer's cache)
                n = con.execute(queries.CACHE_RANGE_NONZEROS, [cfp, layer, first, last]).fetchone()[0]
            con.execute(queries.INSERT_ACTIVATION_PARTITION, [layer, first, last, cfp, afp, ctx.cfg.corpus.ctx_len, n])
    return int(n)
