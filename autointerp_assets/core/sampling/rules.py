"""Windows, quantiles, train / test and random negatives: vectorized over a whole latent range at once.

Units. Each corpus row is cut into non-overlapping ``example_ctx_len``-token *fixed windows* starting
after BOS (position 1), as ``core.windows`` defines them (the config refuses a row length that leaves a
tail; a row here that has one anyway does not sample it). A latent's activating units are the
fixed windows where it fires; each has a max activation and a peak position (first arg-max). Units
are what is counted (``min_examples``), ranked, binned into ``n_quantiles`` equal-count bins
(0 = strongest, DuckDB ``ntile`` sizes) and sampled; every unit is sampled at most once per latent.

Shown window. ``fixed``: the unit itself. ``centred``: ``example_ctx_len`` tokens with the unit's
peak at ``peak_offset``, shifted to stay inside the row (so it may reach into a neighbouring unit or
the tail). Non-activating windows are always fixed windows (there is no peak to centre on).

Disjointness rule (checked by ``checks.disjointness``): no corpus token ``(row_id, pos)`` lies in both
a train and a test window of the same latent. For fixed windows this is "different units"; centred
windows of adjacent units can overlap, so test is drawn only from units whose shown window does not
intersect any train window. In particular a test window never contains a train window's peak and
vice versa. Train windows may overlap each other (centred), as may test windows. The explainer's
negatives (``train_non_activating``) are the draws after the scorers' ``non_activating`` ones, so the
two never share a window.

Randomness is DuckDB's ``hash(seed, latent, row, window)`` (and ``hash(seed + 1, latent, draw)`` for
random negatives): results do not depend on row order, threads or which other latents are in the range.

Why numpy and not SQL here: every step is a sort or a segmented reduction over arrays already sorted by
(latent, token) — the cache's order — and as SQL each was a window function or hash aggregate that
re-partitions the range (10+ statements, ~2 s for 1k latents; this is ~20x less). DuckDB does the
reads, the hashes and the insert.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..config import SamplerConfig
from ..latent_chunks import Chunk, read_chunk
from ..storage import queries
from ..windows import ALIVE, status_of, windows_per_row

SPLITS = ("train", "test", "non_activating", "train_non_activating")


# --- reading -------------------------------------------------------------------------------------------
@dataclass
class Acts:
    """The range's non-zero activations, sorted by (latent, row_id, pos)."""
    latent: np.ndarray
    row_id: np.ndarray
    pos: np.ndarray
    bits: np.ndarray  # the values' IEEE float16 bits, as cached
    ctx_len: int
    _key: np.ndarray | None = None

    @property
    def value(self) -> np.ndarray:
        return self.bits.view(np.float16).astype(np.float32)

    def part(self, i: int, j: int) -> Acts:
        """Rows i..j-1 (views, no copy)."""
        return Acts(self.latent[i:j], self.row_id[i:j], self.pos[i:j], self.bits[i:j], self.ctx_len,
                    None if self._key is None else self._key[i:j])

    @property
    def key(self) -> np.ndarray:
        """latent << 32 | token: strictly increasing."""
        if self._key is None:
            self._key = _key_of(self.latent, self.row_id.astype(np.int64) * self.ctx_len + self.pos)
        return self._key


def _key_of(latent: np.ndarray, token: np.ndarray) -> np.ndarray:
    key = latent.astype(np.int64) << 32
    key |= token
    return key


def read_activations(con, layer: str, first: int, last: int, ctx_len: int) -> Acts:
    """The published activations of (layer, first..last), read at once (``latent_chunks.read_chunk``: the
    cache's compact columns, without the ``activations`` view's float16 decode in SQL), as :class:`Acts`."""
    return acts_of(read_chunk(con, layer, first, last), ctx_len)


def acts_of(chunk: Chunk, ctx_len: int) -> Acts:
    """A chunk's activations sorted by (latent, token), positions on rows of ``ctx_len``. The chunk is in the
    cache's order: forward-pass batches in row order, each sorted by (latent, token), so a stable radix sort by
    latent alone orders them. That is verified, with a full sort as the fallback."""
    lat, row, pos = chunk.latent, chunk.row_id, chunk.pos
    # int32 throughout when the token index fits: half the bytes moved
    t_type = np.int32 if (int(row.max()) + 1 if len(row) else 0) * ctx_len < 2**31 else np.int64
    token = row.astype(t_type) * ctx_len + pos
    span = chunk.last - chunk.first + 1
    order = np.argsort((lat - chunk.first).astype(np.int16 if span <= 32767 else np.int32), kind="stable")
    lat, token = lat[order], token[order]
    key = _key_of(lat, token)
    if len(key) > 1 and not bool(np.all(key[1:] > key[:-1])):  # not in cache order: sort fully
        o2 = np.argsort(key)
        order, lat, token, key = order[o2], lat[o2], token[o2], key[o2]
    row = token // ctx_len
    return Acts(lat, row, token - row * ctx_len, chunk.bits[order], ctx_len, key)


def duck_hash(con, seed: int, *cols: np.ndarray) -> np.ndarray:
    """DuckDB's ``hash(seed, c1, c2, ...)`` of each row of the given columns (uint64)."""
    names = [f"c{i}" for i in range(len(cols))]
    con.register("_hash_in", pa.table({n: np.asarray(c) for n, c in zip(names, cols)}))
    try:
        sql = queries.HASH_ROWS.format(seed=int(seed), columns=", ".join(names))  # a literal seed: its type is the hash's
        return con.execute(sql).fetchnumpy()["h"].astype(np.uint64)
    finally:
        con.unregister("_hash_in")


# --- units, selection, ranking -------------------------------------------------------------------------
@dataclass
class Units:
    """Activating units sorted by (latent, row_id, win), with rank / bin / hash for selected latents."""
    latent: np.ndarray
    row_id: np.ndarray
    win: np.ndarray
    max_act: np.ndarray
    peak: np.ndarray
    selected: np.ndarray   # per unit: its latent is selected
    rk_top: np.ndarray     # 1 = strongest unit of its latent (ties: row, window)
    quantile: np.ndarray   # 0 = strongest bin
    h: np.ndarray          # seeded hash: the sampling order
    _by_bin: tuple[np.ndarray, np.ndarray] | None = None

    def by_bin(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit indices in (latent, quantile, hash, index) order, and each one's position in its bin (1 = first):
        sorted once, every draw (train, test, mix) takes a subset of it, in the same order."""
        if self._by_bin is None:
            q = int(self.quantile.max()) + 1 if len(self.quantile) else 1
            g = (self.latent - (self.latent.min() if len(self.latent) else 0)) * q + self.quantile
            o = _by_hash(g, self.h)
            self._by_bin = o, rank_in_groups(g[o])
        return self._by_bin


def _starts(*keys: np.ndarray) -> np.ndarray:
    """Indices where a run of equal (keys...) begins, for arrays sorted by them."""
    n = len(keys[0])
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    return np.flatnonzero(change)


def rank_in_groups(group: np.ndarray) -> np.ndarray:
    """1-based position of each element within its run of equal ``group`` values (array sorted by group)."""
    s = _starts(group)
    sizes = np.diff(np.append(s, len(group)))
    return np.arange(len(group)) - np.repeat(s, sizes) + 1


def units_of(acts: Acts, cfg: SamplerConfig) -> tuple[np.ndarray, ...]:
    """(latent, row_id, win, max_act, peak) of every activating unit, sorted by (latent, row_id, win)."""
    w = cfg.example_ctx_len
    nw = windows_per_row(acts.ctx_len, w)
    # BOS (never cached) would be window -1 and the tail after the last full window is window nw: both are
    # reduced as units of their own and dropped below (cheaper than filtering every activation first)
    win = (acts.pos - 1) // w
    s = _starts(acts.latent, acts.row_id * (nw + 2) + (win + 1))
    if len(s) == 0:
        return (np.zeros(0, dtype=np.int64),) * 3 + (np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64))
    # one reduction gives both the max and its first position: the max of (value, -pos) packed in one unsigned
    # int whose order is that order (float16 bits made monotonic above, the negated position below)
    wide, shift = (np.uint32, 16) if acts.ctx_len <= 0xFFFF else (np.uint64, 32)
    mask = wide((1 << shift) - 1)
    b = acts.bits
    key = np.where(b & np.uint16(0x8000), b ^ np.uint16(0xFFFF), b | np.uint16(0x8000)).astype(wide) << wide(shift)
    key |= mask - acts.pos.astype(wide)
    best = np.maximum.reduceat(key, s)
    full = (win[s] >= 0) & (win[s] < nw)
    s, best = s[full], best[full]
    hi = (best >> wide(shift)).astype(np.uint16)
    max_bits = np.where(hi & np.uint16(0x8000), hi ^ np.uint16(0x8000), hi ^ np.uint16(0xFFFF))
    return (acts.latent[s].astype(np.int64), acts.row_id[s].astype(np.int64), win[s].astype(np.int64),
            max_bits.view(np.float16).astype(np.float32), (mask - (best & mask)).astype(np.int64))


def selection_of(unit_latent: np.ndarray, cfg: SamplerConfig, first: int, last: int,
                 max_per_range: int | None, eligible_before: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(latents first..last, activating windows, status) with status dead / too_rare / not_selected / selected
    (the cap keeps the lowest latent ids among the eligible; ``eligible_before`` are below ``first``)."""
    latents = np.arange(first, last + 1, dtype=np.int64)
    n_windows = np.bincount(unit_latent - first, minlength=len(latents)).astype(np.int64)
    status = status_of(n_windows, cfg.min_examples)  # the rule latent_stats uses (core.windows)
    eligible = status == ALIVE
    status[eligible] = "selected"
    if max_per_range:
        status[eligible & (np.cumsum(eligible) + eligible_before > max_per_range)] = "not_selected"
    return latents, n_windows, status


def sort_by(major: np.ndarray, minor: np.ndarray, minor_bits: int) -> np.ndarray:
    """Argsort by (major, minor, index) for non-negative ints ``major`` and unsigned ``minor`` of
    ``minor_bits`` bits: one quicksort of a packed uint64 key when the three fit (with the index as the
    last field, so keys are unique and the order is exact), else a lexsort."""
    n = len(major)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    idx_bits, major_bits = int(n - 1).bit_length(), int(major.max()).bit_length()
    if major_bits + minor_bits + idx_bits <= 64:
        key = (major.astype(np.uint64) << np.uint64(minor_bits + idx_bits)) \
            | (minor.astype(np.uint64) << np.uint64(idx_bits)) | np.arange(n, dtype=np.uint64)
        return _low_bits(np.sort(key), idx_bits)  # (a sort of the keys is ~3x faster than their argsort)
    return np.lexsort((np.arange(n), minor, major))


def _desc_key(x: np.ndarray) -> np.ndarray:
    """uint32 that sorts float32 ``x`` descending."""
    b = np.asarray(x, dtype=np.float32).view(np.uint32)
    asc = np.where(b & np.uint32(0x80000000), ~b, b | np.uint32(0x80000000))
    return np.uint32(0xFFFFFFFF) - asc


def ntile_sizes(counts: np.ndarray, q: int) -> np.ndarray:
    """[len(counts), q] bin sizes of DuckDB's ``ntile(q)`` over partitions of ``counts`` rows: the first
    ``count % q`` bins one row larger; a partition of fewer than q rows gets one row per bin."""
    qq = np.minimum(q, counts)
    size = counts // np.maximum(qq, 1)
    n_large = (counts - qq * size)[:, None]
    i = np.arange(q)
    return np.where(i < n_large, size[:, None] + 1, np.where(i < qq[:, None], size[:, None], 0))


def rank_units(con, lat, row, win, max_act, peak, selected_latents: np.ndarray, cfg: SamplerConfig,
               first: int) -> Units:
    sel = np.isin(lat, selected_latents, kind="table")  # a lookup table over the id range, no sort
    if not sel.all():
        lat, row, win, max_act, peak = lat[sel], row[sel], win[sel], max_act[sel], peak[sel]
    # strongest first within a latent; ties by (row, win): a stable sort of units already in that order
    order = sort_by(lat - first, _desc_key(max_act), 32)
    rk = np.empty(len(lat), dtype=np.int64)
    rk[order] = rank_in_groups(lat[order])
    # bins are runs of consecutive ranks: laid out in rank order by repeat (no per-unit division)
    q = cfg.n_quantiles
    sizes = ntile_sizes(np.bincount(lat - first), q)  # per latent id first.. in order; unused ids get no rows
    quantile = np.empty(len(lat), dtype=np.int64)
    quantile[order] = np.repeat(np.tile(np.arange(q), len(sizes)), sizes.ravel())
    h = duck_hash(con, cfg.seed, lat, row, win) if len(lat) else np.zeros(0, dtype=np.uint64)
    return Units(lat, row, win, max_act, peak, np.ones(len(lat), dtype=bool), rk, quantile, h)


# --- train / test --------------------------------------------------------------------------------------
def spread(u: Units, pool: np.ndarray, n: int) -> np.ndarray:
    """Indices of the first ``n`` units per latent of ``pool`` (unit indices) taken round-robin over the
    quantile bins, in hash order within a bin: n // q per bin, the remainder to the strongest bins, and a
    bin that runs short is made up from the others."""
    if n <= 0 or len(pool) == 0:
        return np.zeros(0, dtype=np.int64)
    q = int(u.quantile.max()) + 1
    o, rk_b = u.by_bin()
    if len(pool) < len(u.latent):  # each unit's position among the pool's units of its bin (pool: unique)
        member = np.zeros(len(u.latent), dtype=bool)
        member[pool] = True
        m = member[o]
        c = np.cumsum(m)
        gs = np.arange(len(o)) - rk_b + 1  # where each unit's bin starts
        rk_b = np.where(m, c - c[gs] + m[gs], n + 1)
    keep = np.flatnonzero(rk_b <= n)  # deeper than n in a bin can never be among the first n
    o, rk_b = o[keep], rk_b[keep]
    lat = u.latent[o] - u.latent.min()
    key = ((lat * (n + 1) + rk_b) * q + u.quantile[o]).astype(np.uint64)  # (latent, rk_b, quantile): unique
    ibits = int(len(o) - 1).bit_length()
    if int(key.max()).bit_length() + ibits <= 64:
        o = o[_low_bits(np.sort((key << np.uint64(ibits)) | np.arange(len(o), dtype=np.uint64)), ibits)]
    else:
        o = o[np.argsort(key)]
    return o[rank_in_groups(u.latent[o]) <= n]


def _by_hash(group: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Argsort by (group, h, index): one sort of (group, the hash's top bits, index) packed in a uint64, exact
    unless two packed keys tie on (group, hash bits) (then a lexsort)."""
    n = len(group)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    gbits, ibits = int(group.max()).bit_length(), int(n - 1).bit_length()
    hbits = 64 - gbits - ibits
    if hbits >= 16:
        key = (group.astype(np.uint64) << np.uint64(64 - gbits)) if gbits else np.zeros(n, dtype=np.uint64)
        key |= (h >> np.uint64(64 - hbits)) << np.uint64(ibits)
        key |= np.arange(n, dtype=np.uint64)
        key.sort()
        hi = key >> np.uint64(ibits)
        if not np.any(hi[1:] == hi[:-1]):
            return _low_bits(key, ibits)
    return np.lexsort((np.arange(n), h, group))


def _low_bits(key: np.ndarray, bits: int) -> np.ndarray:
    """The index packed in the low ``bits`` bits of each sorted key."""
    return (key & np.uint64((1 << bits) - 1)).astype(np.int64)


def _first_n_by_hash(u: Units, pool: np.ndarray, n: int) -> np.ndarray:
    if len(pool) == 0:
        return pool
    o = pool[_by_hash(u.latent[pool] - u.latent[pool].min(), u.h[pool])]
    return o[rank_in_groups(u.latent[o]) <= n]


def train_of(u: Units, cfg: SamplerConfig) -> np.ndarray:
    n, every = cfg.n_train, np.arange(len(u.latent))
    if cfg.train_type == "quantiles":
        return spread(u, every, n)
    if cfg.train_type == "top":
        return np.flatnonzero(u.rk_top <= n)
    if cfg.train_type == "random":
        return _first_n_by_hash(u, every, n)
    n_top = round(cfg.ratio_top * n)  # mix
    # in unit order, as the other samplers: a range sampled in sub-ranges gives the rows in the same order
    return np.sort(np.concatenate([np.flatnonzero(u.rk_top <= n_top),
                                   spread(u, np.flatnonzero(u.rk_top > n_top), n - n_top)]))


def start_of(u: Units, cfg: SamplerConfig, ctx_len: int) -> np.ndarray:
    w = cfg.example_ctx_len
    if cfg.window == "fixed":
        return 1 + u.win * w
    return np.minimum(np.maximum(u.peak - cfg.peak_offset, 1), ctx_len - w)


def test_pool(u: Units, train: np.ndarray, start: np.ndarray, w: int) -> np.ndarray:
    """Units whose shown window shares no token with a train window of the latent (all windows have
    length ``w``, so only the train windows nearest in start position can intersect)."""
    key = (u.latent << 40) | (u.row_id << 16)
    tkey = np.sort(key[train] + start[train])
    me = key + start
    i = np.searchsorted(tkey, me)
    clash = np.zeros(len(me), dtype=bool)
    for j in (i - 1, i):
        ok = (j >= 0) & (j < len(tkey))
        t = tkey[np.clip(j, 0, max(len(tkey) - 1, 0))] if len(tkey) else me
        same = ok & ((t >> 16) == (me >> 16))
        clash |= same & (np.abs(t - me) < w)
    return np.flatnonzero(~clash)


# --- negatives -----------------------------------------------------------------------------------------
def random_negatives(con, cfg: SamplerConfig, selected: np.ndarray, unit_keys: np.ndarray, n_rows: int, nw: int,
                     n: int, first: int) -> dict:
    """Per selected latent, seeded draws of fixed windows where it never fires, without replacement
    (``ord`` = draw order; the first ``n`` kept). ``unit_keys``: sorted (latent - first) * n_windows + window
    id of every activating unit. Row ids are 0..n_rows-1 (corpus packing)."""
    total = n_rows * nw
    if n <= 0 or total == 0 or len(selected) == 0:
        return {k: np.zeros(0, dtype=np.int64) for k in ("latent", "wid", "ord")}
    draws = 4 * n + 16  # oversampled: drawn windows where the latent fires (or repeats) are dropped
    lat = np.repeat(selected, draws)
    j = np.tile(np.arange(draws, dtype=np.int64), len(selected))
    wid = (duck_hash(con, cfg.seed + 1, lat, j) % np.uint64(total)).astype(np.int64)
    key = (lat - first) * total + wid
    first_draw = _first_of_each(key)  # the earliest draw of each (latent, window), in draw order
    lat, wid, j, key = lat[first_draw], wid[first_draw], j[first_draw], key[first_draw]
    fires = np.isin(key, unit_keys)  # (numpy takes a lookup table over the key range when that is cheap)
    lat, wid, j = lat[~fires], wid[~fires], j[~fires]
    keep = rank_in_groups(lat) <= n
    return {"latent": lat[keep], "wid": wid[keep], "ord": j[keep]}


def _first_of_each(key: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each value of ``key`` (non-negative ints), in index order."""
    n = len(key)
    ibits = int(n - 1).bit_length() if n else 0
    if n and int(key.max()).bit_length() + ibits <= 64:  # one sort of (key, index) packed
        packed = np.sort((key.astype(np.uint64) << np.uint64(ibits)) | np.arange(n, dtype=np.uint64))
        hi = packed >> np.uint64(ibits)
        firsts = np.ones(n, dtype=bool)
        firsts[1:] = hi[1:] != hi[:-1]
        return np.sort(_low_bits(packed[firsts], ibits))
    return np.sort(np.unique(key, return_index=True)[1])


def merge_negatives(primary: dict | None, rnd: dict, source: str, n_scorer: int, n_train: int, nw: int) -> dict:
    """The primary source (neighbours / embedding; may be empty) first, made up with random draws; each
    window once per latent. Per latent the first ``n_scorer`` are the scorers' ``non_activating``, the next
    ``n_train`` the explainer's ``train_non_activating`` (disjoint by construction). ``rnd``: as
    :func:`random_negatives` returns them (by latent, then draw order; each window once per latent)."""
    m = len(rnd["latent"])
    if primary is None or not len(primary["latent"]):  # the random draws alone, already in their final order
        rk = rank_in_groups(rnd["latent"])
        keep = rk <= n_scorer + n_train
        return {"latent": rnd["latent"][keep], "wid": rnd["wid"][keep], "ord": rnd["ord"][keep],
                "tier": np.ones(int(keep.sum()), dtype=np.int64),
                "neighbour": np.full(int(keep.sum()), -1, dtype=np.int64),
                "similarity": np.full(int(keep.sum()), np.nan, dtype=np.float32), "train": rk[keep] > n_scorer,
                "source": np.full(int(keep.sum()), "random", dtype=object)}
    parts = {"latent": [rnd["latent"]], "wid": [rnd["wid"]], "ord": [rnd["ord"]],
             "tier": [np.ones(m, dtype=np.int64)], "neighbour": [np.full(m, -1, dtype=np.int64)],
             "similarity": [np.full(m, np.nan, dtype=np.float32)]}
    if primary is not None and len(primary["latent"]):
        k = len(primary["latent"])
        parts["latent"].insert(0, primary["latent"].astype(np.int64))
        parts["wid"].insert(0, primary["row_id"].astype(np.int64) * nw + primary["win"].astype(np.int64))
        parts["ord"].insert(0, primary["ord"].astype(np.int64))
        parts["tier"].insert(0, np.zeros(k, dtype=np.int64))
        parts["neighbour"].insert(0, primary["neighbour"].astype(np.int64))  # -1 = none
        parts["similarity"].insert(0, primary["similarity"].astype(np.float32))
    c = {k: np.concatenate(v) for k, v in parts.items()}
    o = np.lexsort((c["ord"], c["tier"], c["wid"], c["latent"]))  # per window: the best (tier, ord) first
    c = {k: v[o] for k, v in c.items()}
    first = np.ones(len(o), dtype=bool)
    first[1:] = (c["latent"][1:] != c["latent"][:-1]) | (c["wid"][1:] != c["wid"][:-1])
    c = {k: v[first] for k, v in c.items()}
    o = np.lexsort((c["wid"], c["ord"], c["tier"], c["latent"]))
    c = {k: v[o] for k, v in c.items()}
    rk = rank_in_groups(c["latent"])
    keep = rk <= n_scorer + n_train
    c = {k: v[keep] for k, v in c.items()}
    c["train"] = rk[keep] > n_scorer
    c["source"] = np.where(c["tier"] == 0, source, "random").astype(object)
    return c


# --- the rows of `example_windows` ----------------------------------------------------------------------
def row_lengths(con, corpus_fp: str) -> np.ndarray:
    """Each corpus row's length in tokens (row_id = index; packing numbers rows 0..n-1)."""
    return con.execute(queries.CORPUS_ROW_LENGTHS, [corpus_fp]).fetchnumpy()["n"].astype(np.int64)


def window_lengths(lengths: np.ndarray, row: np.ndarray, start: np.ndarray, w: int) -> np.ndarray:
    """Tokens of each window (row, start..start+w-1) inside its row: w, or less where a shorter row ends."""
    return np.clip(lengths[row] - start, 0, w) if len(row) else np.zeros(0, dtype=np.int64)
