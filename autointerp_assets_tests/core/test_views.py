"""The SQL views for users (leaderboard, paired differences, latest scores, failures) over known rows."""

from __future__ import annotations

import pytest

from autointerp_assets.core.storage import Warehouse

A, B = "explainer-aaaa", "explainer-bbbb"
# balanced accuracy per latent (detection) for explainers A and B; B is better on 3 of 4 shared latents
BACC = {A: {0: 0.50, 1: 0.60, 2: 0.70, 3: 0.80}, B: {0: 0.70, 1: 0.65, 2: 0.70, 3: 0.90, 4: 0.40}}


@pytest.fixture()
def wh(tmp_path) -> Warehouse:
    wh = Warehouse(tmp_path / "views.duckdb")
    with wh.write() as con:
        for efp, per in BACC.items():
            con.execute("INSERT INTO fingerprints (fingerprint, kind, spec) VALUES (?, 'explainer', ?)",
                        [efp, f'{{"llm": {{"model": "model-{efp[-1]}"}}}}'])
            for latent, bacc in per.items():
                con.execute("INSERT INTO explanations (layer, latent, explainer_fp, status, explanation, prompt_tokens, "
                            "completion_tokens, sampler_fp) VALUES ('layers.1', ?, ?, 'ok', 'x', 100, 10, 's')",
                            [latent, efp])
                con.execute("INSERT INTO scores (layer, latent, explainer_fp, scorer, scorer_fp, sampler_fp, status, "
                            "n, n_failed, balanced_accuracy, auroc, n_batches, n_failed_batches, prompt_tokens, "
                            "completion_tokens) VALUES ('layers.1', ?, ?, 'detection', 'sc', 's', 'ok', 10, ?, ?, "
                            "0.5, 2, 0, 40, 0)", [latent, efp, 1 if latent == 4 else 0, bacc])
        con.execute("INSERT INTO explanations (layer, latent, explainer_fp, status, raw_text, sampler_fp) "
                    "VALUES ('layers.1', 5, ?, 'parse_error', 'no marker here', 's')", [A])
    return wh


def test_pairs_compare_explainers_on_the_same_latents(wh):
    pairs = wh.query("SELECT * FROM explainer_pairs")
    assert pairs.height == 1
    row = pairs.row(0, named=True)
    assert (row["explainer_a"], row["explainer_b"], row["latents"]) == (A, B, 4)  # latent 4: B only
    diffs = [BACC[B][i] - BACC[A][i] for i in range(4)]  # 0.2, 0.05, 0, 0.1
    assert row["median_diff"] == pytest.approx(0.075, abs=1e-3)
    assert row["mean_diff"] == pytest.approx(sum(diffs) / 4, abs=1e-3)
    assert (row["b_better"], row["a_better"]) == (3, 0)
    assert row["median_a"] == pytest.approx(0.65) and row["median_b"] == pytest.approx(0.70)
    assert row["metric"] == "balanced_accuracy" and (row["name_a"], row["name_b"]) == ("model-a ", "model-b ")
    # the median's order-statistic interval over 4 latents is min..max; the mean's is mean +- 1.96 se
    assert (row["median_diff_ci_low"], row["median_diff_ci_high"]) == (pytest.approx(0.0), pytest.approx(0.2))
    import statistics

    se = statistics.stdev(diffs) / 2
    assert row["mean_diff_ci_low"] == pytest.approx(sum(diffs) / 4 - 1.959964 * se, abs=1e-9)


def test_leaderboard_ranks_by_median_with_tokens_per_latent(wh):
    lb = wh.query("SELECT * FROM explainer_leaderboard ORDER BY rank")
    assert lb["explainer_fp"].to_list() == [B, A] and lb["rank"].to_list() == [1, 2]
    assert lb["model"].to_list() == ["model-b", "model-a"]
    a = lb.row(1, named=True)
    assert a["latents_explained"] == 5 and a["ok_rate"] == pytest.approx(0.8) and a["latents_scored"] == 4
    # A: 4 ok explanations x 110 tokens + 4 scores x 40 tokens over 5 explained latents
    assert a["tokens_per_latent"] == pytest.approx((4 * 110 + 4 * 40) / 5)


def test_latest_scores_and_failures(wh):
    latest = wh.query("SELECT latent, explainer_fp FROM latest_scores ORDER BY latent")
    assert latest["latent"].to_list() == [0, 1, 2, 3, 4]  # one row per latent and scorer
    fails = wh.query("SELECT stage, latent, explainer_fp, status, detail FROM failures ORDER BY stage")
    assert fails.rows() == [("explanation", 5, A, "parse_error", "no marker here"),
                            ("score", 4, B, "ok", "1 of 10 items failed: ")]


def _control_rows(wh, efp: str, real: list[float], control: list[float], scorer: str = "detection",
                  metric: str = "balanced_accuracy") -> None:
    with wh.write() as con:
        for latent, (r, c) in enumerate(zip(real, control)):
            for name, v, ctl in ((scorer, r, False), (f"{scorer}_control", c, True)):
                con.execute("INSERT INTO scores (layer, latent, explainer_fp, scorer, scorer_fp, sampler_fp, status, "
                            "n, n_failed, n_batches, n_failed_batches, control, metric, value, latent_range) "
                            "VALUES ('layers.2', ?, ?, ?, 'sc', 's', 'ok', 10, 0, 2, 0, ?, ?, ?, '00000-00031')",
                            [latent, efp, name, ctl, metric, v])


def test_control_at_chance_check_passes_near_chance_and_warns_far_from_it(tmp_path):
    from autointerp_assets.defs.checks import control_status

    wh = Warehouse(tmp_path / "ctl.duckdb")
    _control_rows(wh, "explainer-near", [0.9, 0.8, 0.7, 0.85, 0.6], [0.45, 0.55, 0.5, 0.52, 0.48])
    _control_rows(wh, "explainer-near", [0.2, 0.1, 0.3, 0.25, 0.2], [0.01, -0.02, 0.05, 0.0, 0.02],
                  scorer="simulation", metric="correlation")
    passed, md = control_status(wh, "explainer-near", "layers.2", "00000-00031", 0.1)
    assert passed and md["controlled_scorers"] == 2 and md["off_chance"] == "none"
    # a scorer that says "activating" to a random latent's explanation: control median 0.8, far from 0.5
    _control_rows(wh, "explainer-biased", [0.9, 0.8, 0.85, 0.9, 0.8], [0.8, 0.75, 0.85, 0.8, 0.9])
    passed, md = control_status(wh, "explainer-biased", "layers.2", "00000-00031", 0.1)
    assert not passed and md["off_chance"] == "detection"
    # a wider tolerance accepts it; an unknown partition has no controlled scorer and passes vacuously
    assert control_status(wh, "explainer-biased", "layers.2", "00000-00031", 0.35)[0]
    assert control_status(wh, "explainer-biased", "layers.9", "00000-00031", 0.1)[1]["controlled_scorers"] == 0


def test_leaderboard_lists_controls_as_a_column_not_as_scorers(wh):
    with wh.write() as con:
        for latent, v in {0: 0.45, 1: 0.55, 2: 0.50, 3: 0.60}.items():
            con.execute("INSERT INTO scores (layer, latent, explainer_fp, scorer, scorer_fp, sampler_fp, status, n, "
                        "n_failed, n_batches, n_failed_batches, control, metric, value) VALUES ('layers.1', ?, ?, "
                        "'detection_control', 'sc', 's', 'ok', 10, 0, 2, 0, true, 'balanced_accuracy', ?)",
                        [latent, A, v])
    lb = wh.query("SELECT explainer_fp, scorer, median_value, median_control FROM explainer_leaderboard ORDER BY rank")
    assert lb["scorer"].to_list() == ["detection", "detection"]  # no 'detection_control' row
    assert lb.filter(lb["explainer_fp"] == A)["median_control"].to_list() == [pytest.approx(0.525)]
    assert lb.filter(lb["explainer_fp"] == B)["median_control"].to_list() == [None]
    assert lb["median_value"].to_list() == [pytest.approx(0.70), pytest.approx(0.65)]
