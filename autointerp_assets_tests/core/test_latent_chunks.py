"""Reading a range's activations chunk by chunk: one streamed scan spooled per chunk gives every row once."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from autointerp_assets.core.latent_chunks import chunk_rows, read_chunk
from autointerp_assets.core.storage import Warehouse


def _publish(wh: Warehouse, cache_fp: str, afp: str, first: int, last: int, ctx_len: int, batches: list) -> None:
    """One partition of layer L from cache ``cache_fp``; rows inserted batch by batch, each sorted by
    (latent, token) as the cache writer stores them. ``batches``: lists of (latent, row_id, pos, value)."""
    with wh.write() as con:
        for acts in batches:
            lat, row, pos, val = (np.array(c) for c in zip(*sorted(acts)))
            wh.insert(con, "activation_cache", pl.DataFrame({
                "cache_fp": cache_fp, "layer": "L", "latent": lat.astype(np.int32),
                "token": (row * ctx_len + pos).astype(np.int32),
                "value_bits": val.astype(np.float16).view(np.uint16)}))
        wh.insert(con, "activation_partitions", pl.DataFrame({
            "layer": ["L"], "first_latent": [first], "last_latent": [last], "cache_fp": [cache_fp],
            "activations_fp": [afp], "ctx_len": [ctx_len], "n_nonzero": [sum(map(len, batches))]}))


def _rows(chunk) -> list[tuple]:
    fps = [chunk.activations_fps[i] for i in chunk.part]
    return sorted(zip(chunk.latent.tolist(), chunk.row_id.tolist(), chunk.pos.tolist(), chunk.value.tolist(), fps))


def _memory_limit(con) -> float:
    value, unit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0].split()
    return float(value) * {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}[unit]


@pytest.fixture()
def wh(tmp_path) -> Warehouse:
    """Layer L: latents 0-3 from cache A (rows of 33 tokens), 4-7 from cache B (rows of 65), two batches each."""
    rng = np.random.default_rng(0)
    w = Warehouse(tmp_path / "w.duckdb")

    def batch(lats, rows, ctx):
        return [(int(lat), r, int(p), float(rng.integers(1, 200)) / 8) for lat in lats for r in rows
                for p in rng.choice(np.arange(1, ctx), size=int(rng.integers(0, 6)), replace=False)]

    a = [batch(range(4), range(0, 10), 33), batch(range(4), range(10, 20), 33)]
    b = [batch(range(4, 8), range(0, 6), 65), batch(range(4, 8), range(6, 12), 65)]
    _publish(w, "A", "afp-A", 0, 3, 33, a)
    _publish(w, "B", "afp-B", 4, 7, 65, b)
    w.expected = sorted([(*r, "afp-A") for x in a for r in x] + [(*r, "afp-B") for x in b for r in x])
    return w


@pytest.mark.parametrize("budget", [1, 40, 150, 10**9])
def test_chunks_hold_every_row_of_the_range_once_in_bounded_chunks(wh, budget):
    with wh.read() as con:
        whole = read_chunk(con, "L", 1, 6)
        limit = _memory_limit(con)
        chunks = list(chunk_rows(con, "L", 1, 6, budget))
        assert _memory_limit(con) == limit  # restored
        con.execute("SET memory_limit = '3GiB'")
        list(chunk_rows(con, "L", 1, 6, budget))
        assert _memory_limit(con) == 3 * 2**30
    assert len(whole.latent) > 100 and _rows(whole) == [r for r in wh.expected if 1 <= r[0] <= 6]
    assert chunks[0].first == 1 and chunks[-1].last == 6
    assert all(a.last + 1 == b.first for a, b in zip(chunks, chunks[1:]))  # consecutive, covering the range
    for c in chunks:  # each holds its own latents only, at most the budget unless one latent alone is more
        assert set(c.latent.tolist()) <= set(range(c.first, c.last + 1))
        assert len(c.latent) <= budget or len(set(c.latent.tolist())) == 1
    assert sorted(r for c in chunks for r in _rows(c)) == _rows(whole)
    if budget == 1:
        assert len(chunks) == 6
    if budget == 10**9:
        assert len(chunks) == 1


def test_a_chunk_keeps_the_cache_order_within_each_latent(wh):
    # batches in row order, each sorted by (latent, token): a latent's rows come in (row, pos) order
    with wh.read() as con:
        for c in chunk_rows(con, "L", 0, 7, 40):
            for lat in set(c.latent.tolist()):
                mine = c.latent == lat
                key = c.row_id[mine].astype(np.int64) * 1000 + c.pos[mine]
                assert np.all(np.diff(key) > 0)
