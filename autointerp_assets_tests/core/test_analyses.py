"""The analyses views over known rows: scorer agreement (Spearman with its interval) and SAE similarity through
explanations (best matches by explanation embedding and by decoder cosine, how often they agree)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from autointerp_assets.core import analyses
from autointerp_assets.core.storage import Warehouse

EFP = "explainer-aaaa"


def _scores(wh, rows):
    with wh.write() as con:
        for layer, rng, scorer, latent, value, control in rows:
            con.execute("INSERT INTO scores (layer, latent, explainer_fp, scorer, scorer_fp, sampler_fp, status, n, "
                        "n_failed, n_batches, n_failed_batches, control, metric, value, latent_range) VALUES "
                        "(?, ?, ?, ?, 'sc', 's', 'ok', 10, 0, 1, 0, ?, 'm', ?, ?)",
                        [layer, latent, EFP, scorer, control, value, rng])


def test_scorer_agreement_is_spearman_per_partition_with_ties_and_an_interval(tmp_path):
    wh = Warehouse(tmp_path / "a.duckdb")
    rng = np.random.default_rng(0)
    x = rng.normal(size=30).round(1)  # rounding makes ties
    y = (x + rng.normal(scale=0.8, size=30)).round(1)
    z = rng.normal(size=30)
    rows = [("layers.1", "00000-00031", s, i, float(v), False) for s, vals in (("detection", x), ("fuzzing", y),
                                                                             ("embedding", z)) for i, v in enumerate(vals)]
    rows += [("layers.1", "00000-00031", "detection_control", i, 0.5, True) for i in range(30)]  # never paired
    rows += [("layers.2", "00000-00031", "detection", i, float(i), False) for i in range(3)]  # 3 latents: no interval
    rows += [("layers.2", "00000-00031", "fuzzing", i, float(-i), False) for i in range(3)]
    # a scorer that gives every latent the same value: the correlation is undefined (NULL, not NaN)
    flat = (("detection", [0.5] * 5), ("fuzzing", range(5)))
    rows += [("layers.3", "00000-00031", s, i, v, False) for s, vals in flat for i, v in enumerate(vals)]
    _scores(wh, rows)
    agree = analyses.agreement(wh, EFP)
    one = agree.filter(agree["layer"] == "layers.1")
    assert sorted(zip(one["scorer_a"], one["scorer_b"])) == [("detection", "embedding"), ("detection", "fuzzing"),
                                                            ("embedding", "fuzzing")]
    for r in one.iter_rows(named=True):
        vals = {"detection": x, "fuzzing": y, "embedding": z}
        expected = stats.spearmanr(vals[r["scorer_a"]], vals[r["scorer_b"]]).statistic
        assert r["latents"] == 30 and r["spearman"] == pytest.approx(expected, abs=1e-9)
        assert r["ci_low"] < r["spearman"] < r["ci_high"]
        se = np.sqrt((1 + expected ** 2 / 2) / 27)
        assert r["ci_high"] == pytest.approx(np.tanh(np.arctanh(expected) + 1.959964 * se), abs=1e-9)
    two = agree.filter(agree["layer"] == "layers.2").row(0, named=True)
    assert two["spearman"] == pytest.approx(-1.0) and two["ci_low"] is None and two["latents"] == 3
    flat = agree.filter(agree["layer"] == "layers.3").row(0, named=True)
    assert flat["latents"] == 5 and flat["spearman"] is None and flat["ci_low"] is None and flat["ci_high"] is None
    mats = analyses.agreement_matrices(agree)
    assert mats[("layers.1", "00000-00031", EFP)][("detection", "fuzzing")] == pytest.approx(
        stats.spearmanr(x, y).statistic)


def _vectors(wh, rows):
    with wh.write() as con:
        for layer, sae, latent, kind, efp, vec in rows:
            con.execute("INSERT INTO latent_vectors VALUES (?, ?, ?, ?, ?, 'm', ?)",
                        [layer, latent, sae, kind, efp, [float(v) for v in vec]])


def test_sae_similarity_matches_latents_by_explanation_and_decoder_and_counts_agreement(tmp_path):
    """Side B is side A's latents permuted with a little noise, except latent 3, whose decoder points elsewhere:
    both best matches find the permuted partner for 4 of 5 latents; the decoder misses latent 3's."""
    wh = Warehouse(tmp_path / "s.duckdb")
    rng = np.random.default_rng(1)
    expl, dec = rng.normal(size=(5, 16)), rng.normal(size=(5, 32))
    perm = [2, 4, 0, 1, 3]  # A's latent i is B's latent 100 + perm[i]
    dec_b = dec + rng.normal(scale=0.05, size=dec.shape)
    dec_b[3] = -dec[3]  # latent 3's partner points the other way on side B
    rows = []
    for i in range(5):
        rows += [("layers.1", "sae-a", i, "explanation", EFP, expl[i]), ("layers.1", "sae-a", i, "decoder", "", dec[i]),
                 ("layers.2", "sae-b", 100 + perm[i], "explanation", EFP, expl[i] + rng.normal(scale=0.05, size=16)),
                 ("layers.2", "sae-b", 100 + perm[i], "decoder", "", dec_b[i])]
    rows.append(("layers.2", "sae-b", 200, "decoder", "", rng.normal(size=32)))  # unexplained: never a candidate
    _vectors(wh, rows)
    m = analyses.matches(wh, EFP).filter(analyses.matches(wh, EFP)["layer_a"] == "layers.1")
    assert m.height == 5 and set(m["candidates"]) == {5}
    assert m["match_by_explanation"].to_list() == [100 + p for p in perm]
    by_dec = dict(zip(m["latent_a"], m["match_by_decoder"]))
    assert all(by_dec[i] == 100 + perm[i] for i in (0, 1, 2, 4)) and by_dec[3] != 100 + perm[3]
    assert m.filter(m["latent_a"] != 3)["agree"].all() and not m.filter(m["latent_a"] == 3)["agree"][0]
    sim = analyses.similarity(wh, EFP)
    ab = sim.filter((sim["layer_a"] == "layers.1") & (sim["layer_b"] == "layers.2")).row(0, named=True)
    assert (ab["latents"], ab["candidates"], ab["compared"], ab["agreements"]) == (5, 5, 5, 4)
    assert ab["agreement"] == pytest.approx(0.8) and ab["chance_agreement"] == pytest.approx(0.2)
    assert ab["agreement_ci_low"] < 0.8 < ab["agreement_ci_high"] and 0 <= ab["agreement_ci_low"]
    assert ab["mean_explanation_similarity"] > 0.95
    assert sim.height == 2  # both directions


def test_decoders_of_different_widths_are_not_compared(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    _vectors(wh, [("layers.1", "sae-a", 0, "explanation", EFP, [1, 0]), ("layers.1", "sae-a", 0, "decoder", "", [1, 0, 0]),
                  ("other", "sae-b", 0, "explanation", EFP, [1, 0]), ("other", "sae-b", 0, "decoder", "", [1, 0])])
    m = analyses.matches(wh, EFP)
    assert m.height == 2 and m["match_by_explanation"].to_list() == [0, 0]
    assert m["match_by_decoder"].null_count() == 2 and m["agree"].null_count() == 2
