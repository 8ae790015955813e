"""A partition's latents cut into consecutive chunks of bounded activations: the memory bound of the stages
after caching that read activations (latent_stats, examples, the scores stage's heuristic flags). Every statistic and sampling rule they apply
is per latent, so a chunk at a time gives the rows of one pass, in memory set by the chunk, not the corpus.

The cache is stored by forward batch (every batch holds every latent), so no chunk could skip blocks of it:
reading chunk after chunk from DuckDB would scan the whole layer once per chunk (time growing with the square
of the corpus). ``chunk_rows`` scans the range once instead, streamed, and spools each chunk's rows to a
temporary file of its own; chunks are then read back one at a time. DuckDB's buffer pool is capped during the
scan (it would otherwise keep every block it read)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .memory import release_memory
from .storage import queries
from .storage.warehouse import buffer_pool

# published activations read at once at most (measured, one partition's examples at 1 M tokens: 8 M -> 1.58 GB
# peak RSS, 2 M -> 0.89 GB, the same seconds)
CHUNK_ACTIVATIONS = 2_000_000
SCAN_BATCH_ROWS = 1 << 20      # rows of the streamed scan handled at once
_SPOOLED = np.dtype([("latent", "<i4"), ("row_id", "<i4"), ("pos", "<i2"), ("bits", "<u2")])


@dataclass
class Chunk:
    """The published activations of latents first..last in the cache's compact columns, in the cache's order
    (forward batches in row order, each sorted by (latent, token)); ``part`` indexes ``activations_fps`` (the
    partition each row was published in)."""
    first: int
    last: int
    latent: np.ndarray   # int32
    row_id: np.ndarray   # int32
    pos: np.ndarray      # int16
    bits: np.ndarray     # uint16: the value's IEEE float16 bits
    part: np.ndarray     # uint16
    activations_fps: list[str]

    @property
    def value(self) -> np.ndarray:
        return self.bits.view(np.float16).astype(np.float32)


def activation_counts(con, layer: str, first: int, last: int) -> np.ndarray:
    """Published activations per latent of (layer, first..last), in latent order (one aggregate per cache)."""
    counts = np.zeros(last - first + 1, dtype=np.int64)
    for cache_fp, _, lo, hi, _ in _partitions(con, layer, first, last):
        got = con.execute(queries.CACHE_RANGE_COUNTS, [cache_fp, layer, lo, hi]).fetchnumpy()
        np.add.at(counts, np.asarray(got["latent"], dtype=np.int64) - first, np.asarray(got["n"], dtype=np.int64))
    return counts


def latent_chunks(counts: np.ndarray, first: int, budget: int = CHUNK_ACTIVATIONS) -> list[tuple[int, int]]:
    """Consecutive (first, last) latent ranges covering ``counts`` (activations per latent from ``first``),
    each holding at most ``budget`` activations unless one latent alone holds more. A latent that never fires
    joins the chunk before it, so every chunk holds a firing latent unless none fires."""
    out, start, held = [], 0, 0
    for i, n in enumerate(counts.tolist()):
        if n and held and held + n > budget:
            out.append((first + start, first + i - 1))
            start, held = i, 0
        held += n
    out.append((first + start, first + len(counts) - 1))
    return out


def chunks_of(con, layer: str, first: int, last: int, budget: int = CHUNK_ACTIVATIONS) -> list[tuple[int, int]]:
    """The chunks of (layer, first..last)'s published activations: the whole range, without counting, when the
    partitions it overlaps hold no more than ``budget`` in all (their recorded totals)."""
    if con.execute(queries.RANGE_PUBLISHED_NONZERO, [layer, last, first]).fetchone()[0] <= budget:
        return [(first, last)]
    return latent_chunks(activation_counts(con, layer, first, last), first, budget)


def read_chunk(con, layer: str, first: int, last: int) -> Chunk:
    """The published activations of (layer, first..last), read at once: one scan of each partition's cache."""
    parts = _partitions(con, layer, first, last)
    cols = [_compact(con.execute(queries.CACHE_RANGE_ROWS, [p[0], layer, p[2], p[3]]).fetchnumpy(), p[1])
            for p in parts]
    part = [np.full(len(c[0]), i, dtype=np.uint16) for i, c in enumerate(cols)]
    return _chunk(first, last, [*zip(*cols), part] if cols else None, [p[4] for p in parts])


def chunk_rows(con, layer: str, first: int, last: int, budget: int = CHUNK_ACTIVATIONS) -> Iterator[Chunk]:
    """The chunks of (layer, first..last) in latent order, each read whole (``chunks_of``'s ranges). One chunk:
    read directly; several: the range scanned once, streamed, each chunk's rows spooled to a temporary file."""
    with buffer_pool(con):  # the counts scan the whole range too
        bounds = chunks_of(con, layer, first, last, budget)
    if len(bounds) == 1:
        yield read_chunk(con, layer, first, last)
        return
    parts = _partitions(con, layer, first, last)
    fps = [p[4] for p in parts]
    with tempfile.TemporaryDirectory(prefix="autointerp-chunks-") as tmp:
        files = [[Path(tmp) / f"{c}-{p}.bin" for p in range(len(parts))] for c in range(len(bounds))]
        with buffer_pool(con):
            for p, (cache_fp, p_ctx, lo, hi, _) in enumerate(parts):
                _spool(con.execute(queries.CACHE_RANGE_ROWS, [cache_fp, layer, lo, hi]), p_ctx,
                       np.array([a for a, _ in bounds], dtype=np.int64), [f[p] for f in files])
        release_memory()
        for (a, b), chunk_files in zip(bounds, files):
            spooled = [np.fromfile(f, dtype=_SPOOLED) for f in chunk_files]
            for f in chunk_files:
                f.unlink()
            chunk = _chunk(a, b, list(zip(*[(s["latent"], s["row_id"], s["pos"], s["bits"],
                                              np.full(len(s), i, dtype=np.uint16)) for i, s in enumerate(spooled)])),
                           fps)
            del spooled
            yield chunk
            del chunk  # the caller has dropped it too: its memory goes back before the next chunk is read
            release_memory()


def _spool(result, p_ctx: int, lows: np.ndarray, files: list[Path]) -> None:
    """A streamed scan of one partition's cache rows appended to the files of the chunks (first latents
    ``lows``), each chunk's rows in scan order."""
    handles = [open(f, "wb") for f in files]
    try:
        for batch in _reader(result):
            lat, row, pos, bits = _compact({k: batch.column(k).to_numpy() for k in batch.schema.names}, p_ctx)
            which = np.searchsorted(lows, lat, side="right") - 1
            order = np.argsort(which, kind="stable")  # each chunk's rows together, in scan order
            ends = np.cumsum(np.bincount(which, minlength=len(lows)))
            rows = np.empty(len(lat), dtype=_SPOOLED)
            rows["latent"], rows["row_id"], rows["pos"], rows["bits"] = lat[order], row[order], pos[order], bits[order]
            for c, (a, b) in enumerate(zip([0, *ends[:-1]], ends)):
                if b > a:
                    rows[a:b].tofile(handles[c])
    finally:
        for h in handles:
            h.close()


def _partitions(con, layer: str, first: int, last: int) -> list[tuple]:
    """(cache_fp, ctx_len, lo, hi, activations_fp) of each published partition overlapping first..last."""
    return con.execute(queries.RANGE_ACTIVATION_PARTITIONS, [first, last, layer, last, first]).fetchall()


def _compact(a: dict, p_ctx: int) -> tuple[np.ndarray, ...]:
    """latent, row_id, pos, bits of a scan of the cache (token = row_id * p_ctx + pos)."""
    token = np.asarray(a["token"])
    row = (token // p_ctx).astype(np.int32)
    return (np.asarray(a["latent"], dtype=np.int32), row, (token - row.astype(token.dtype) * p_ctx).astype(np.int16),
            np.asarray(a["value_bits"], dtype=np.uint16))


def _chunk(first: int, last: int, cols: list | None, fps: list[str]) -> Chunk:
    """A Chunk of the columns' pieces (latent, row_id, pos, bits, part; a piece per partition)."""
    dtypes = (np.int32, np.int32, np.int16, np.uint16, np.uint16)
    if cols is None:
        return Chunk(first, last, *(np.zeros(0, dtype=d) for d in dtypes), fps)
    return Chunk(first, last, *(np.ascontiguousarray(c[0]) if len(c) == 1 else np.concatenate(c) for c in cols), fps)


def _reader(result):
    """A result's record batches, streamed, across duckdb 1.4 (fetch_record_batch) and 1.5 (to_arrow_reader)."""
    fn = getattr(result, "to_arrow_reader", None) or result.fetch_record_batch
    return fn(SCAN_BATCH_ROWS)
