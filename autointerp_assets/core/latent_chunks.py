"""A partition's latents cut into consecutive chunks of bounded activations: the memory bound of the stages
after caching that read activations (latent_stats, examples). Every statistic and sampling rule they apply
is per latent, so a chunk at a time gives the rows of one pass, in memory set by the chunk, not the corpus."""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

from .storage import queries

# published activations read at once at most (measured, one partition's examples at 1 M tokens: 8 M -> 1.58 GB
# peak RSS, 2 M -> 0.89 GB, the same seconds)
CHUNK_ACTIVATIONS = 2_000_000


def activation_counts(con, layer: str, first: int, last: int) -> np.ndarray:
    """Published activations per latent of (layer, first..last), in latent order (one aggregate per cache)."""
    counts = np.zeros(last - first + 1, dtype=np.int64)
    parts = con.execute(queries.RANGE_ACTIVATION_PARTITIONS, [first, last, layer, last, first]).fetchall()
    for cache_fp, _, lo, hi in parts:
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


def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do
        return None


_TRIM = _malloc_trim()


def release_memory() -> None:
    """Hand the heap pages freed by a chunk back to the OS (glibc keeps them otherwise, and the next chunk's
    arrays land beside them: measured 1.44 GB -> 1.01 GB peak for one partition's examples at 1 M tokens)."""
    if _TRIM is not None:
        _TRIM(0)
