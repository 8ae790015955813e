"""Examples on hand-built activations with known answers: windows, every train sampler, test, negatives."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from autointerp_assets.core import identity
from autointerp_assets.core import sampling as ex
from autointerp_assets.core.config import ConfigError, SamplerConfig, parse_config
from autointerp_assets.core.storage import Warehouse, queries
from autointerp_assets_tests.support.examples_data import AFP, CORPUS, write_activations, write_tokens

CTX, W, NW = 33, 8, 4  # rows of 33 tokens (BOS + 32): 4 fixed windows of 8 per row
ROWS = 30
BASE = dict(example_ctx_len=8, min_examples=10, n_quantiles=2, n_train=4, n_test=4, n_non_activating=4)


def unit_value(r: int, k: int) -> float:
    return (r * NW + k + 1) / 4  # distinct, exact in float16


def strong_latent(latent: int = 0, rows=range(20)) -> list[tuple]:
    """Fires once per window (offset 3) in the given rows, value rising with (row, window)."""
    return [(latent, r, 1 + k * W + 3, unit_value(r, k)) for r in rows for k in range(NW)]


@pytest.fixture()
def wh(tmp_path) -> Warehouse:
    w = Warehouse(tmp_path / "ex.duckdb")
    rng = np.random.default_rng(0)
    write_tokens(w, [[0] + rng.integers(1, 50, CTX - 1).tolist() for _ in range(ROWS)])
    return w


def build(wh, acts, ctx_len=CTX, first=0, last=3, max_per_range=None, **cfg) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(examples, latent selection) of the range, stored and read back through the ``examples`` view (token ids
    and acts joined from the corpus and the activations); the neighbours table lands in ``wh.last_neighbours``."""
    write_activations(wh, "L", first, last, ctx_len, acts)
    scfg = SamplerConfig(**{**BASE, **cfg})
    with wh.write() as con:
        built = ex.build_examples(con, scfg, ctx_len, max_per_range, "L", first, last, CORPUS)
        wh.last_neighbours = ex.neighbours_frame(built, "L", "cooccurrence", "s").sort("latent", "rank").select(
            "latent", "neighbour", "similarity", "rank").rows()
        con.execute("DELETE FROM example_windows")
        wh.insert(con, "example_windows", ex.windows_frame(built, "s", CORPUS, AFP))
        e = con.execute("SELECT * FROM examples ORDER BY latent, split, example_id").pl()
        assert e.height == built.examples.num_rows  # every stored window is visible with its tokens and activations
        return e, ex.selection_frame(built, "L", "s").sort("latent")


def split(frame, name, latent=0):
    return frame.filter((pl.col("split") == name) & (pl.col("latent") == latent))


def test_activations_are_read_in_latent_token_order_whatever_the_stored_order(wh):
    from autointerp_assets.core.sampling.rules import read_activations

    acts = strong_latent(0) + strong_latent(2, rows=range(5)) + [(1, 3, 7, 0.5)]
    shuffled = [acts[i] for i in np.random.default_rng(1).permutation(len(acts))]
    # the cache's own order: batches of 8 rows in row order, each sorted by (latent, token)
    batched = sorted(acts, key=lambda a: (a[1] // 8, a[0], a[1], a[2]))
    for stored in (shuffled, batched):
        write_activations(wh, "L", 0, 3, CTX, stored)
        with wh.read() as con:
            got = read_activations(con, "L", 0, 3, CTX)
            part = read_activations(con, "L", 1, 2, CTX)
        assert [(int(a), int(r), int(p), float(v)) for a, r, p, v in zip(got.latent, got.row_id, got.pos, got.value)] \
            == sorted(acts)
        assert list(got.key) == [(a << 32) | (r * CTX + p) for a, r, p, _ in sorted(acts)]
        assert set(part.latent.tolist()) == {1, 2} and len(part.key) == 1 + 5 * NW


@pytest.mark.parametrize("ctx_len", [CTX, 70_000])  # the packed (value, -pos) key in 32 bits, and in 64
def test_units_have_the_window_max_and_its_first_position_and_skip_bos_and_the_tail(ctx_len):
    from autointerp_assets.core.sampling.rules import Acts, units_of

    nw = (ctx_len - 1) // W
    tail = 1 + nw * W  # first position after the last full window
    rng = np.random.default_rng(3)
    rows = []  # (latent, row, pos, value): ties, tiny and large float16 values, BOS and tail positions
    for lat in (0, 2):
        for row in (0, 4):
            for pos in sorted(rng.choice(np.arange(1, 3 * W + 1), 10, replace=False).tolist() + [0, tail]):
                if pos < ctx_len:
                    rows.append((lat, row, pos, float(rng.choice([2.0 ** -20, 0.5, 3.0, 3.0, 1e4]))))
    rows.sort()
    lat, row, pos, val = (np.array(c) for c in zip(*rows))
    got = units_of(Acts(lat.astype(np.int32), row.astype(np.int32), pos.astype(np.int32),
                        val.astype(np.float16).view(np.uint16), ctx_len), SamplerConfig(**BASE))
    want: dict = {}
    for a, r, p, v in rows:  # reference: per (latent, row, window) the max and the first position reaching it
        k = (p - 1) // W
        if p >= 1 and k < nw:
            best = want.get((a, r, k))
            if best is None or np.float16(v) > best[0]:
                want[(a, r, k)] = (np.float16(v), p)
    assert [(int(a), int(r), int(k), float(m), int(p)) for a, r, k, m, p in zip(*got)] == \
        [(a, r, k, float(m), p) for (a, r, k), (m, p) in sorted(want.items())]


def test_top_sampler_takes_the_strongest_windows_and_tokens_match_the_corpus(wh):
    e, _ = build(wh, strong_latent(), train_type="top")
    train = split(e, "train")
    top = sorted((unit_value(r, k) for r in range(20) for k in range(NW)), reverse=True)[:4]
    assert sorted(train["max_activation"].to_list(), reverse=True) == top
    rows = wh.query("SELECT row_id, token_ids FROM tokens ORDER BY row_id")["token_ids"].to_list()
    for r in train.iter_rows(named=True):
        assert r["start_pos"] == 1 + (r["example_id"] % NW) * W
        assert r["token_ids"] == rows[r["row_id"]][r["start_pos"]:r["start_pos"] + W]
        assert r["acts"][3] == r["max_activation"] and sum(a > 0 for a in r["acts"]) == 1


def test_quantile_bins_and_even_spread_over_them(wh):
    e, _ = build(wh, strong_latent(), n_quantiles=4, n_train=6, n_test=8, min_examples=14)
    # 80 windows ranked by value: bin 0 = the strongest 20, ... bin 3 = the weakest 20
    ranked = sorted(((unit_value(r, k), r * NW + k) for r in range(20) for k in range(NW)), reverse=True)
    bin_of = {wid: i // 20 for i, (_, wid) in enumerate(ranked)}
    act = e.filter(pl.col("split").is_in(["train", "test"]))
    assert all(bin_of[i] == q for i, q in zip(act["example_id"], act["quantile"]))
    # 6 train over 4 bins: 2, 2, 1, 1 (remainder to the strongest); 8 test: 2 per bin
    assert split(e, "train").group_by("quantile").len().sort("quantile")["len"].to_list() == [2, 2, 1, 1]
    assert split(e, "test").group_by("quantile").len().sort("quantile")["len"].to_list() == [2, 2, 2, 2]
    assert not set(split(e, "train")["example_id"]) & set(split(e, "test")["example_id"])


def test_random_sampler_is_seeded_and_mix_takes_the_top_share(wh):
    a, _ = build(wh, strong_latent(), train_type="random", seed=1)
    b, _ = build(wh, strong_latent(), train_type="random", seed=1)
    c, _ = build(wh, strong_latent(), train_type="random", seed=2)
    assert a.equals(b)
    assert set(split(a, "train")["example_id"]) != set(split(c, "train")["example_id"])
    m, _ = build(wh, strong_latent(), train_type="mix", ratio_top=0.5, n_train=6, n_quantiles=2)
    vals = sorted(split(m, "train")["max_activation"].to_list(), reverse=True)
    top = sorted((unit_value(r, k) for r in range(20) for k in range(NW)), reverse=True)
    assert vals[:3] == top[:3]  # round(0.5 * 6) strongest, the other 3 spread over the bins
    assert split(m, "train").filter(pl.col("max_activation") < top[2])["quantile"].n_unique() == 2


@pytest.mark.parametrize("cfg", [{}, {"train_type": "mix", "ratio_top": 0.5}, {"window": "centred"},
                                 {"non_activating_source": "neighbours"}])
def test_a_range_sampled_in_sub_ranges_on_threads_gives_the_rows_of_one_pass(wh, cfg):
    # latent 1 too rare, and the cap (2) spans sub-ranges: 0 and 2 selected, 3 not
    acts = (strong_latent(0) + [(1, r, 2, 1.0) for r in range(3)] + strong_latent(2, rows=range(3, 18))
            + strong_latent(3, rows=range(8, 30)))
    write_activations(wh, "L", 0, 3, CTX, acts)
    built = []
    for threads in (1, 3):  # sub-ranges 0, 1, 2-3
        with wh.read() as con:
            built.append(ex.build_examples(con, SamplerConfig(**{**BASE, **cfg}), CTX, 2, "L", 0, 3, CORPUS,
                                           threads=threads))
    one, three = built
    assert one.selection["status"].to_pylist() == ["selected", "too_rare", "selected", "not_selected"]
    assert set(one.examples["latent"].to_pylist()) == {0, 2}
    assert one.examples.equals(three.examples) and one.selection.equals(three.selection)
    assert one.neighbours.equals(three.neighbours)


@pytest.mark.parametrize("cfg", [{}, {"train_type": "mix", "ratio_top": 0.5}, {"window": "centred"}])
def test_a_range_built_in_bounded_chunks_gives_the_rows_of_one_pass(wh, cfg):
    # chunks of at most 30 activations: latent 0 (80) alone, 1 + 2 (3 + 60) split, 3 (88) alone; the cap (2)
    # counts eligible latents across chunks: 0 and 2 selected, 3 not
    from autointerp_assets.core.latent_chunks import activation_counts, latent_chunks

    acts = (strong_latent(0, rows=range(20)) + [(1, r, 2, 1.0) for r in range(3)] + strong_latent(2, rows=range(3, 18))
            + strong_latent(3, rows=range(8, 30)))
    write_activations(wh, "L", 0, 4, CTX, acts)
    with wh.read() as con:
        counts = activation_counts(con, "L", 0, 4)
        assert counts.tolist() == [80, 3, 60, 88, 0]
        assert latent_chunks(counts, 0, 30) == [(0, 0), (1, 1), (2, 2), (3, 4)]
        assert latent_chunks(counts, 0, 150) == [(0, 2), (3, 4)] and latent_chunks(counts, 0, 10**9) == [(0, 4)]
        built = [ex.build_examples(con, SamplerConfig(**{**BASE, **cfg}), CTX, 2, "L", 0, 4, CORPUS,
                                   chunk_activations=budget) for budget in (10**9, 30, 150)]
    rows = [pl.from_arrow(b.examples).sort("latent", "split", "example_id") for b in built]  # (chunks in turn)
    whole = built[0]
    assert whole.selection["status"].to_pylist() == ["selected", "too_rare", "selected", "not_selected", "dead"]
    assert set(rows[0]["latent"]) == {0, 2} and set(rows[0]["split"]) >= {"train", "test", "non_activating"}
    for chunked, r in zip(built[1:], rows[1:]):
        assert r.equals(rows[0]) and whole.selection.equals(chunked.selection)


def test_too_rare_and_dead_latents_are_listed_not_skipped(wh):
    acts = strong_latent(0) + [(1, r, 2, 1.0) for r in range(3)]
    e, sel = build(wh, acts, max_per_range=None)
    assert sel.select("latent", "status", "n_windows").rows() == [
        (0, "selected", 80, ), (1, "too_rare", 3), (2, "dead", 0), (3, "dead", 0)]
    assert set(e["latent"]) == {0}
    _, capped = build(wh, strong_latent(0) + strong_latent(2), max_per_range=1)
    assert capped.filter(pl.col("latent") == 2)["status"][0] == "not_selected"


def test_centred_windows_put_the_peak_at_the_offset_and_never_share_tokens_with_train(wh):
    # peaks at every window's first token: a centred window (offset 6) reaches into the previous window
    acts = [(0, r, 1 + k * W, unit_value(r, k)) for r in range(20) for k in range(NW)]
    e, _ = build(wh, acts, window="centred", centre_offset=6, n_train=8, n_test=8, min_examples=16)
    for r in e.filter(pl.col("split").is_in(["train", "test"])).iter_rows(named=True):
        peak = 1 + (r["example_id"] % NW) * W
        assert r["start_pos"] == min(max(peak - 6, 1), CTX - W)
        assert r["acts"][peak - r["start_pos"]] == r["max_activation"] == max(r["acts"])
        assert len(r["token_ids"]) == W
    train, test = split(e, "train"), split(e, "test")
    for t in test.iter_rows(named=True):  # the rule: no token (row, pos) in both a train and a test window
        for s in train.filter(pl.col("row_id") == t["row_id"]).iter_rows(named=True):
            assert s["start_pos"] + W <= t["start_pos"] or t["start_pos"] + W <= s["start_pos"]
    assert test.height == 8
    with wh.write() as con:  # the stored-partition check agrees
        assert ex.disjointness(con, "L", 0, 3) == {"overlapping_windows": 0, "shared_peaks": 0,
                                                   "shared_negatives": 0, "firing_negatives": 0}


@pytest.mark.parametrize("source", ["random", "neighbours"])
def test_explainer_negatives_are_their_own_windows_never_the_scorers(wh, source):
    acts = strong_latent(0, rows=range(10)) + strong_latent(1, rows=range(5, 20))
    e, sel = build(wh, acts, n_non_activating=8, n_train_non_activating=5, non_activating_source=source,
                   windows_per_neighbour=3)
    for lat, fires in ((0, range(10)), (1, range(5, 20))):
        scorer, mine = split(e, "non_activating", lat), split(e, "train_non_activating", lat)
        assert scorer.height == 8 and mine.height == 5
        assert not set(scorer["example_id"]) & set(mine["example_id"])  # the leak this split exists to stop
        assert not set(mine["row_id"]) & set(fires) and all(max(a) == 0 for a in mine["acts"])
    assert sel["n_non_activating"].to_list()[:2] == [8, 8]  # the scorers' count is unchanged
    again, _ = build(wh, acts, n_non_activating=8, n_train_non_activating=5, non_activating_source=source,
                     windows_per_neighbour=3)
    assert again.equals(e)
    # the scorers' negatives do not depend on how many the explainer gets
    fewer, _ = build(wh, acts, n_non_activating=8, n_train_non_activating=0, non_activating_source=source,
                     windows_per_neighbour=3)
    assert fewer.filter(pl.col("split") == "train_non_activating").is_empty()
    assert fewer.filter(pl.col("split") == "non_activating").equals(e.filter(pl.col("split") == "non_activating"))
    with wh.write() as con:
        assert ex.disjointness(con, "L", 0, 3)["shared_negatives"] == 0


def test_random_negatives_are_silent_distinct_and_seeded_per_latent(wh):
    acts = strong_latent(0, rows=range(10)) + strong_latent(1, rows=range(5, 20))
    e, sel = build(wh, acts, n_non_activating=12)
    neg0, neg1 = split(e, "non_activating", 0), split(e, "non_activating", 1)
    assert neg0.height == neg1.height == 12 and sel["n_non_activating"].to_list()[:2] == [12, 12]
    assert neg0["example_id"].n_unique() == 12  # without replacement
    assert all(r >= 10 for r in neg0["row_id"]) and all(r < 5 or r >= 20 for r in neg1["row_id"])
    assert all(max(a) == 0 for a in e.filter(pl.col("split") == "non_activating")["acts"])
    assert set(neg0["example_id"]) != set(neg1["example_id"])  # not the same draws for every latent
    assert set(neg0["source"]) == {"random"}


def test_cooccurrence_neighbours_are_exact_jaccard_and_their_negatives_never_contain_the_latent(wh):
    a = [(0, r, 1 + k * W + 1, 1.0) for r in range(12) for k in range(NW)]            # 48 windows, rows 0-11
    b = [(1, r, 1 + k * W + 2, unit_value(r, k)) for r in range(6, 18) for k in range(NW)]  # rows 6-17: 24 shared
    c = [(2, r, 1 + k * W + 5, 0.5) for r in range(10, 30) for k in range(NW)]         # rows 10-29: 8 shared with a
    e, _ = build(wh, a + b + c, non_activating_source="neighbours", n_non_activating=10, windows_per_neighbour=6)
    nb = wh.last_neighbours
    jac = {(0, 1): 24 / (48 + 48 - 24), (0, 2): 8 / (48 + 80 - 8)}
    assert [(x[0], x[1], x[3]) for x in nb if x[0] == 0] == [(0, 1, 1), (0, 2, 2)]
    assert [round(x[2], 6) for x in nb if x[0] == 0] == [round(jac[(0, 1)], 6), round(jac[(0, 2)], 6)]
    neg = split(e, "non_activating", 0)
    assert neg.height == 10
    fires_a = {(r, k) for r in range(12) for k in range(NW)}
    assert not {(r, i % NW) for r, i in zip(neg["row_id"], neg["example_id"])} & fires_a
    # neighbour 1 first: its 6 strongest windows outside latent 0 (rows 16-17), then neighbour 2's
    from_b = neg.filter(pl.col("neighbour") == 1)
    strongest_b = sorted(((unit_value(r, k), r * NW + k) for r in range(12, 18) for k in range(NW)), reverse=True)[:6]
    assert sorted(from_b["example_id"]) == sorted(i for _, i in strongest_b)
    assert set(neg["source"]) == {"neighbours"} and neg.filter(pl.col("neighbour") == 2).height == 4


def test_decoder_neighbours_are_the_highest_cosines(tmp_path):
    import torch
    from safetensors.torch import save_file

    w = torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [-1, 0, 0], [0.6, 0.8, 0]])
    nb = ex.neighbours.decoder_neighbours(w, first=100, latents=[100, 102], n_neighbours=2, block=1)
    cos = torch.nn.functional.normalize(w, dim=1) @ torch.nn.functional.normalize(w, dim=1).T
    assert nb.filter(pl.col("latent") == 100)["neighbour"].to_list() == [101, 104]
    assert nb.filter(pl.col("latent") == 102)["neighbour"].to_list() == [104, 101]
    assert nb["similarity"][0] == pytest.approx(float(cos[0, 1]))
    save_file({"W_dec": w, "encoder.weight": w.T.contiguous()}, str(tmp_path / "sae.safetensors"))
    assert torch.equal(ex.neighbours.decoder_rows(tmp_path, 1, 3), w[1:4])


def test_the_disjointness_check_fails_on_overlapping_data(wh):
    write_activations(wh, "L", 0, 3, CTX, [(0, 0, 5, 2.0), (0, 0, 20, 1.0)])
    row = {"layer": "L", "latent": 0, "quantile": 0, "row_id": 0, "max_activation": 2.0, "length": W,
           "sampler_fp": "s", "corpus_fp": CORPUS, "activations_fp": AFP}
    bad = pl.DataFrame([
        {**row, "split": "train", "example_id": 0, "start_pos": 1},  # peak at 5
        {**row, "split": "test", "example_id": 1, "start_pos": 4},  # overlaps the train window, holds its peak
        {**row, "split": "test", "example_id": 2, "start_pos": 17},  # clean
        {**row, "split": "non_activating", "example_id": 3, "start_pos": 17},  # the latent fires at 20
        {**row, "split": "non_activating", "example_id": 5, "start_pos": 25},
        {**row, "split": "train_non_activating", "example_id": 5, "start_pos": 25},  # shown twice
        {**row, "split": "train_non_activating", "example_id": 6, "start_pos": 1, "row_id": 1},
    ])
    with wh.write() as con:
        wh.insert(con, "example_windows", bad)
        assert ex.disjointness(con, "L", 0, 3) == {"overlapping_windows": 1, "shared_peaks": 1, "shared_negatives": 1,
                                                   "firing_negatives": 1}
        assert ex.disjointness(con, "L", 4, 7) == {"overlapping_windows": 0, "shared_peaks": 0, "shared_negatives": 0,
                                                   "firing_negatives": 0}


def test_sampler_settings_are_validated_with_the_fix():
    with pytest.raises(ConfigError, match="centre_offset.*example_ctx_len"):
        parse_config({"sampler": {"example_ctx_len": 16, "centre_offset": 16}})
    with pytest.raises(ConfigError, match="min_examples.*n_train \\+ n_test"):
        parse_config({"sampler": {"min_examples": 50}})
    with pytest.raises(ConfigError, match="example_ctx_len.*ctx_len"):
        parse_config({"corpus": {"ctx_len": 16}, "sampler": {"example_ctx_len": 16}})
    assert SamplerConfig(example_ctx_len=32).peak_offset == 24


def test_every_setting_is_in_the_fingerprint():
    base = identity.sampler_spec(SamplerConfig(), "a", None)
    for change in ({"window": "centred"}, {"non_activating_source": "neighbours"}, {"neighbour_type": "decoder"},
                   {"ratio_top": 0.3}, {"embedding_queries": 3}, {"windows_per_neighbour": 2}):
        assert identity.sampler_spec(SamplerConfig(**change), "a", None) != base


def _view_rows(con, splits) -> list[tuple]:
    return [(r[0], r[1], r[2], r[3], list(r[4]), list(r[5]))
            for r in con.execute(queries.RANGE_EXAMPLE_TOKENS, ["L", 0, 3, splits]).fetchall()]


def _columnar_rows(con, splits) -> list[tuple]:
    w = ex.read_windows(con, "L", 0, 3, splits)
    return [(int(w.latent[i]), w.split[i], int(w.example_id[i]), int(w.quantile[i]),
             w.token_ids[i, :w.length[i]].tolist(), w.acts[i, :w.length[i]].tolist()) for i in range(len(w))]


def test_windows_read_back_by_columns_are_the_views_rows(wh):
    """read_windows (three scans + numpy gathers, what the LLM stages read) gives the ``examples`` view's rows:
    the same windows, order, token ids and activations, 0 where the latent is silent; a window of an earlier
    publication drops out and a short window keeps its own length, in both."""
    acts = (strong_latent(0) + strong_latent(2, rows=range(3, 18))
            + [(3, r, 1 + k * W + j, unit_value(r, k) / (j + 1)) for r in range(8, 30) for k in range(NW)
               for j in (0, 2, 5)])
    e, _ = build(wh, acts, window="centred", centre_offset=3, n_non_activating=6, n_train_non_activating=2)
    with wh.write() as con:
        con.execute("INSERT INTO example_windows SELECT * REPLACE (example_id + 1000 AS example_id, "
                    "'older-activations' AS activations_fp) FROM example_windows WHERE latent = 0 LIMIT 3")
        con.execute("INSERT INTO example_windows SELECT * REPLACE (example_id + 2000 AS example_id, "
                    "(length - 3)::SMALLINT AS length) FROM example_windows WHERE latent = 3 AND split = 'test' LIMIT 2")
    with wh.read() as con:
        for splits in (["train", "test", "non_activating", "train_non_activating"], ["test", "non_activating"]):
            view = _view_rows(con, splits)
            assert _columnar_rows(con, splits) == view
            assert not any(r[2] >= 1000 and r[0] == 0 for r in view)  # the earlier publication's windows
            assert sum(len(r[4]) == W - 3 for r in view) == 2
        assert {r[0] for r in view} == {0, 2, 3} and any(a > 0 for r in view for a in r[5])
        assert any(a == 0 for r in view if r[1] == "test" for a in r[5])  # silent tokens inside firing windows


def test_packed_sorts_give_the_exact_orders_of_their_definitions_ties_included():
    from autointerp_assets.core.sampling.rules import _by_hash, _first_of_each, sort_by

    rng = np.random.default_rng(11)
    for n, groups, hashes in ((5_000, 40, 2**64), (5_000, 3, 50), (1, 1, 2**64)):  # distinct hashes; many ties
        group = rng.integers(0, groups, n)
        h = rng.integers(0, hashes, n, dtype=np.uint64)
        assert np.array_equal(_by_hash(group, h), np.lexsort((np.arange(n), h, group)))
        minor = rng.integers(0, 2**16, n).astype(np.uint32)
        assert np.array_equal(sort_by(group, minor, 16), np.lexsort((np.arange(n), minor, group)))
        key = rng.integers(0, max(2, n // 3), n)
        assert np.array_equal(_first_of_each(key), np.sort(np.unique(key, return_index=True)[1]))
