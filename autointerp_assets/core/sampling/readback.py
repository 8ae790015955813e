"""Reading a partition's example windows back with their tokens and activations, by columns.

The ``examples`` view gives the same rows in SQL (a join of every window with its corpus row and a grouped
join of the activations it covers); for a whole range that costs more than building the windows. Here the
range is read in three scans -- the windows, their corpus rows, the range's activations from the cache
(:func:`.rules.read_activations`) -- and each window's tokens and activations are gathered with numpy.
Same rows, same values, same order as the view (tested)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa

from ..storage import queries
from ..storage.warehouse import arrow_table
from .rules import read_activations


@dataclass
class Windows:
    """Example windows in (latent, split, example_id) order; ``token_ids`` / ``acts``: one row per window,
    its first ``length`` entries valid (the rest padding)."""
    latent: np.ndarray
    split: np.ndarray  # object: 'train', 'test', ...
    example_id: np.ndarray
    quantile: np.ndarray
    length: np.ndarray
    token_ids: np.ndarray  # int32 [windows, width]
    acts: np.ndarray  # float32 [windows, width], 0 where the latent is silent

    def __len__(self) -> int:
        return len(self.latent)


def read_windows(con, layer: str, first: int, last: int, splits: Sequence[str]) -> Windows:
    """The windows of (layer, first..last) in ``splits`` whose activations are the published ones (a window of an
    earlier publication drops out, as in the view), with their token ids and activations."""
    w = arrow_table(con.execute(queries.RANGE_PUBLISHED_WINDOWS, [layer, first, last, list(splits)]))
    split_names, split = _codes(w, "split")
    latent, example_id = _ints(w, "latent"), _ints(w, "example_id")
    order = _window_order(latent, np.argsort(np.argsort(split_names))[split], example_id)
    latent, example_id, split = latent[order], example_id[order], split[order]
    length, row, start, quantile = (_ints(w, c)[order] for c in ("length", "row_id", "start_pos", "quantile"))
    n = len(order)
    width = int(length.max()) if n else 0
    token_ids = np.zeros((n, width), dtype=np.int32)
    acts = np.zeros((n, width), dtype=np.float32)
    found = np.zeros(n, dtype=bool)
    if n:
        valid = np.arange(width, dtype=np.int32)[None, :] < length[:, None].astype(np.int32)
        names, corpus = _codes(w, "corpus_fp")
        corpus = corpus[order]
        for i, fp in enumerate(names):  # (one, nearly always)
            mine = np.flatnonzero(corpus == i) if len(names) > 1 else slice(None)
            token_ids[mine], found[mine] = _tokens(con, fp, row[mine], start[mine], valid[mine])
        acts[:] = _activations(con, layer, latent, row, start, length, width, int(pa.compute.max(w["ctx_len"]).as_py()))
    # a window whose corpus row is missing drops out, as in the view's join
    return Windows(latent.astype(np.int32)[found], np.asarray(split_names, dtype=object)[split][found],
                   example_id[found], quantile.astype(np.int16)[found], length[found], token_ids[found], acts[found])


def _window_order(latent: np.ndarray, split_rank: np.ndarray, example_id: np.ndarray) -> np.ndarray:
    """The order of (latent, split, example_id) (``split_rank``: the split's place in string order), the view's
    ORDER BY: an argsort of the three packed in one int when they fit (a sort in DuckDB cost 5x the read)."""
    if not len(latent):
        return np.zeros(0, dtype=np.int64)
    lat = latent - latent.min()
    bits_s, bits_e = int(split_rank.max()).bit_length(), int(example_id.max()).bit_length()
    if int(lat.max()).bit_length() + bits_s + bits_e <= 63 and example_id.min() >= 0:
        return np.argsort((lat << (bits_s + bits_e)) | (split_rank << bits_e) | example_id)
    return np.lexsort((example_id, split_rank, lat))


def _ints(table: pa.Table, column: str) -> np.ndarray:
    return np.asarray(table.column(column).combine_chunks(), dtype=np.int64)


def _codes(table: pa.Table, column: str) -> tuple[list, np.ndarray]:
    """A string column as (its distinct values, each row's index into them)."""
    d = pa.compute.dictionary_encode(table.column(column)).combine_chunks()
    return d.dictionary.to_pylist(), np.asarray(d.indices, dtype=np.int64)


def _tokens(con, corpus_fp: str, row: np.ndarray, start: np.ndarray,
            valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of the windows (corpus row ``row``, from ``start``; 0 where not ``valid``), and whether each
    row was found: one scan of the rows needed."""
    flat, at = corpus_token_ids(con, corpus_fp, np.unique(row))
    found = at[row] >= 0
    if not len(flat):
        return np.zeros(valid.shape, dtype=np.int32), found
    first = np.where(found, at[row] + start, 0)  # each window's first token in ``flat``
    t = np.int32 if len(flat) + valid.shape[1] < 2**31 else np.int64
    idx = first.astype(t)[:, None] + np.arange(valid.shape[1], dtype=t)[None, :]
    np.minimum(idx, len(flat) - 1, out=idx)  # (a cell past its row's end is zeroed below)
    out = flat[idx]
    out[~(valid & found[:, None])] = 0
    return out, found


def corpus_token_ids(con, corpus_fp: str, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The token ids of corpus rows ``rows`` (every row when None), one scan: ``flat`` (int32, rows end to end)
    and ``at`` (indexed by row_id: where the row starts in ``flat``, -1 for a row not read). The token at
    (row, pos) is ``flat[at[row] + pos]``."""
    if rows is None:
        table = arrow_table(con.execute(queries.CORPUS_ROWS, [corpus_fp]))
    else:
        table = arrow_table(con.execute(queries.CORPUS_ROWS_OF, [corpus_fp, rows.astype(np.int32)]))
    ids = table.column("token_ids").combine_chunks()
    order = np.asarray(table.column("row_id"), dtype=np.int64)  # the order the rows came back in
    flat = np.asarray(pa.compute.list_flatten(ids), dtype=np.int32)
    top = max(int(order.max()) if len(order) else -1, int(rows.max()) if rows is not None and len(rows) else -1)
    at = np.full(top + 1, -1, dtype=np.int64)
    offsets = np.asarray(ids.offsets, dtype=np.int64)
    at[order] = offsets[:-1] - offsets[0]  # (list_flatten starts at the first offset)
    return flat, at


def _activations(con, layer: str, latent: np.ndarray, row: np.ndarray, start: np.ndarray, length: np.ndarray,
                 width: int, ctx_len: int) -> np.ndarray:
    """Each window's activations of its own latent (0 where silent; ``width`` columns, the first ``length``
    its tokens): the range's non-zeros read once, sorted by (latent, token); each window's run of them found by
    two binary searches and scattered to their offsets in the window."""
    acts = read_activations(con, layer, int(latent.min()), int(latent.max()), ctx_len)
    out = np.zeros((len(latent), width), dtype=np.float32)
    keys = acts.key
    if not len(keys):
        return out
    start = (latent << 32) | (row * ctx_len + start)  # each window's first token's key
    lo = np.searchsorted(keys, start)
    n = np.searchsorted(keys, start + length) - lo  # the latent's non-zeros inside the window
    which = np.repeat(np.arange(len(lo)), n)
    at = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n - lo, n)  # indices into keys, run by run
    out[which, keys[at] - start[which]] = acts.value[at]
    return out
