"""Positional and unigram flags on constructed activations (real DuckDB, in memory)."""

from __future__ import annotations

import duckdb
import numpy as np

from autointerp_assets.core.config import ScoringConfig
from autointerp_assets.core.scoring import heuristics

ROWS, CTX = 200, 33


def _flags(acts: list[tuple[int, int, int, float]], tokens: np.ndarray, separators=(0,)):
    con = duckdb.connect()
    con.execute("CREATE TABLE acts (latent INTEGER, row_id INTEGER, pos INTEGER, value REAL)")
    con.executemany("INSERT INTO acts VALUES (?, ?, ?, ?)", acts)
    con.execute("CREATE TABLE toks (row_id INTEGER, token_ids INTEGER[])")
    con.executemany("INSERT INTO toks VALUES (?, ?)", [(r, tokens[r].tolist()) for r in range(ROWS)])
    f = heuristics.compute_flags(
        con, "SELECT a.*, t.token_ids[a.pos + 1] AS tok FROM acts a JOIN toks t USING (row_id)",
        "SELECT * FROM toks", [], separators, ScoringConfig())
    return {r["latent"]: r for r in f.iter_rows(named=True)}


def test_positional_single_token_and_plain_latents_are_told_apart():
    rng = np.random.default_rng(0)
    tokens = rng.integers(100, 5000, size=(ROWS, CTX))
    tokens[:, 0] = 0  # BOS
    tokens[rng.random((ROWS, CTX)) < 0.05] = 42  # a common token at random places
    tokens[:, 0] = 0
    acts = []
    for r in range(ROWS):
        acts.append((0, r, 3, 5.0))  # latent 0: always at position 3, whatever the token
        acts += [(1, r, int(p), 2.0) for p in np.flatnonzero(tokens[r] == 42) if p > 0]  # latent 1: token 42
        acts += [(2, r, int(p), float(rng.random() + 0.1)) for p in rng.choice(np.arange(1, CTX), 3, replace=False)]
    f = _flags(acts, tokens)
    assert f[0]["position_u"] > 0.9 and f[0]["flag_positional"]
    assert not f[0]["flag_single_token"] and not f[0]["flag_unigram"]  # position 3 holds a different token each row
    assert f[1]["position_u"] < 0.05 and not f[1]["flag_positional"]
    assert f[1]["top_token"] == 42 and f[1]["top_token_share"] == 1.0 and f[1]["tokens_for_mass"] == 1
    assert f[1]["flag_single_token"] and f[1]["flag_unigram"]
    assert f[2]["position_u"] < 0.05 and f[2]["tokens_for_mass"] > 100
    assert not (f[2]["flag_positional"] or f[2]["flag_single_token"] or f[2]["flag_unigram"])


def test_rare_latent_is_not_flagged_for_sampling_noise():
    rng = np.random.default_rng(1)
    tokens = rng.integers(100, 5000, size=(ROWS, CTX))
    # fires 15 times at random places: plug-in MI alone would look "positional", the bias correction removes it
    acts = [(7, int(r), int(p), 1.0) for r, p in zip(rng.integers(0, ROWS, 15), rng.integers(1, CTX, 15))]
    f = _flags(acts, tokens)
    counts = np.bincount([p - 1 for _, _, p, _ in acts], minlength=CTX - 1) / ROWS

    def hb(x):
        x = np.asarray(x, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.nan_to_num(-(x * np.log(x) + (1 - x) * np.log(1 - x)))

    plug_in = (hb(counts.mean()) - hb(counts).mean()) / hb(counts.mean())
    assert plug_in > 0.1  # the uncorrected estimate is far from 0 for 15 firings
    assert f[7]["position_u"] < 0.03 and not f[7]["flag_positional"]
    assert not f[7]["flag_unigram"]  # fewer firings than unigram_min_firing


def test_separator_positions_are_outside_the_data_of_the_positional_flag():
    """Many short documents per row: separators (id 0) stand at varying places. A latent that fires at position 5
    in every row where position 5 holds data is fully positional; counting separator rows as 'silent' data would
    halve its rate there and hide it."""
    rng = np.random.default_rng(2)
    tokens = rng.integers(100, 5000, size=(ROWS, CTX))
    tokens[:, 0] = 0
    tokens[rng.random((ROWS, CTX)) < 0.1] = 0  # a document boundary every ~10 tokens
    tokens[::2, 5] = 0  # position 5 is a separator in half of the rows
    acts = [(0, r, 5, 3.0) for r in range(ROWS) if tokens[r, 5] != 0]
    acts += [(1, r, int(p), 1.0) for r in range(ROWS) for p in rng.choice(np.arange(1, CTX), 2, replace=False)
             if tokens[r, p] != 0]
    f = _flags(acts, tokens)
    assert f[0]["position_u"] > 0.9 and f[0]["flag_positional"]
    assert f[1]["position_u"] < 0.05
    # counting separator rows as silent data (rate over all rows) understates how positional latent 0 is
    p_all = np.bincount([p for lat, _, p, _ in acts if lat == 0], minlength=CTX)[1:] / ROWS
    rate = p_all.mean()
    u_all = (_hb(rate) - _hb(p_all).mean()) / _hb(rate)
    assert u_all < 0.8 < f[0]["position_u"]


def _hb(x):
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(-(x * np.log(x) + (1 - x) * np.log(1 - x)))
