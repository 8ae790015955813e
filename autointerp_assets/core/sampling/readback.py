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
    w = con.execute(queries.RANGE_PUBLISHED_WINDOWS, [layer, first, last, list(splits)]).fetchnumpy()
    n = len(w["latent"])
    length = np.asarray(w["length"], dtype=np.int64)
    width = int(length.max()) if n else 0
    token_ids = np.zeros((n, width), dtype=np.int32)
    acts = np.zeros((n, width), dtype=np.float32)
    if n:
        latent, row, start = (np.asarray(w[c], dtype=np.int64) for c in ("latent", "row_id", "start_pos"))
        cols = np.arange(width)
        valid = cols[None, :] < length[:, None]
        pos = start[:, None] + cols[None, :]  # each window's positions in its row
        corpus = np.asarray(w["corpus_fp"], dtype=object)
        found = np.zeros(n, dtype=bool)
        fps = set(corpus.tolist())  # (one, nearly always)
        for fp in sorted(fps):
            mine = np.flatnonzero(corpus == fp) if len(fps) > 1 else slice(None)
            token_ids[mine], found[mine] = _tokens(con, fp, row[mine], pos[mine], valid[mine])
        acts[:] = _activations(con, layer, latent, row, start, length, width, int(w["ctx_len"].max()))
    else:
        found = np.zeros(0, dtype=bool)
    # a window whose corpus row is missing drops out, as in the view's join
    return Windows(np.asarray(w["latent"], dtype=np.int32)[found], np.asarray(w["split"], dtype=object)[found],
                   np.asarray(w["example_id"], dtype=np.int64)[found], np.asarray(w["quantile"], dtype=np.int16)[found],
                   length[found], token_ids[found], acts[found])


def _tokens(con, corpus_fp: str, row: np.ndarray, pos: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Token ids at ``pos`` of corpus rows ``row`` (0 where not ``valid``), and whether each row was found: one
    scan of the rows needed."""
    flat, at = corpus_token_ids(con, corpus_fp, np.unique(row))
    found = at[row] >= 0
    if not len(flat):
        return np.zeros(pos.shape, dtype=np.int32), found
    idx = np.maximum(at[row], 0)[:, None] + np.where(valid, pos, 0)
    return np.where(valid & found[:, None], flat[np.minimum(idx, len(flat) - 1)], 0), found


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
