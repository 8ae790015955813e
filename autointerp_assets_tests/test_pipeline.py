"""End to end on the tiny config: real SmolLM2, trained SAEs, real vLLM engine, real DuckDB, via Dagster."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from autointerp_assets.core.config import load_config
from autointerp_assets.core.storage import TABLES, Warehouse
from autointerp_assets.defs.assets import (ALL, PARTITIONED_ASSETS, calibration, corpus_tokens, explanations, scores,
                                           sparse_coders)
from autointerp_assets.defs.partitions import PARTITIONS
from autointerp_assets.defs.resources import LLMResource, ProjectResource
from autointerp_assets_tests.conftest import CONFIG_PATH, write_config

pytestmark = pytest.mark.slow


def materialize(instance, selection, partition_key=None, config_path=CONFIG_PATH):
    res = dg.materialize(ALL, selection=selection, partition_key=partition_key, instance=instance,
                         resources={"project": ProjectResource(config_path=str(config_path)), "llm": LLMResource()})
    assert res.success
    return res


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture(scope="module")
def warehouse(instance) -> Warehouse:
    """Materialize everything once: the calibration, then 2 layers x 2 latent ranges."""
    cfg = load_config(CONFIG_PATH)
    materialize(instance, [corpus_tokens, sparse_coders, calibration])
    for key in PARTITIONS.get_partition_keys():
        materialize(instance, PARTITIONED_ASSETS, key)
    return Warehouse(cfg.resolve(cfg.database))


def snapshot(wh: Warehouse, table: str, where: str = "true") -> list[tuple]:
    with wh.read() as con:
        cols = [c for c in con.execute(f"SELECT * FROM {table} LIMIT 0").pl().columns if c != "created_at"]
        return con.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE {where} ORDER BY ALL").fetchall()


def test_every_table_has_rows(warehouse):
    for table in TABLES:
        n = warehouse.scalar(f"SELECT count(*) FROM {table}")
        if table == "latent_neighbours":  # stored only when the negatives need them (source 'neighbours')
            assert n == 0, "latent_neighbours computed though this config's negatives do not use them"
            continue
        if table in ("steering", "steered_texts"):  # no intervention scorer, no output explainer here: skipped
            assert n == 0, f"{table} computed though nothing configured reads it"  # (test_intervention_pipeline.py)
            continue
        assert n > 0, f"{table} is empty"
    # every partition got explanations and scores, with partition columns and fingerprints set
    per = warehouse.query("SELECT layer, latent // 32 AS r, count(*) AS n, list_sort(list(DISTINCT scorer)) AS scorers, "
                          "bool_and(explainer_fp LIKE 'explainer-%' AND scorer_fp LIKE 'scorer-%') AS fps "
                          "FROM scores GROUP BY ALL ORDER BY ALL")
    # asset scores = detection + fuzzing, then the configured extras (embedding) and controls
    want = ["detection", "detection_control", "embedding", "embedding_control", "fuzzing"]
    assert per.height == 4 and per["scorers"].to_list() == [want] * 4 and all(per["fps"])


def test_scores_metadata_and_views_carry_control_and_intervals(warehouse, instance):
    mats = instance.fetch_materializations(dg.AssetKey("scores"), limit=20).records
    assert len(mats) >= 4
    for rec in mats:
        md = {k: v.value for k, v in rec.asset_materialization.metadata.items()}
        parts = rec.asset_materialization.partition.split("|")
        layer = next(p for p in parts if p.startswith("layers"))
        rng = next(p for p in parts if not p.startswith("layers"))
        row = warehouse.query("SELECT * FROM scorer_summary WHERE layer = ? AND latent_range = ? AND scorer = "
                              "'detection' AND explainer_fp = ?", [layer, rng, md["explainer_fp"]]).row(0, named=True)
        # the metadata's control numbers are the SQL view's (rounded for people to 4 significant digits)
        assert md["detection_median_control"] == pytest.approx(row["median_control"], rel=1e-3, abs=1e-9)
        assert md["detection_median_difference"] == pytest.approx(row["median_difference"], rel=1e-3, abs=1e-9)
        assert md["detection_difference_ci95"] == [pytest.approx(row["difference_ci_low"], rel=1e-3, abs=1e-9),
                                                   pytest.approx(row["difference_ci_high"], rel=1e-3, abs=1e-9)]
        assert list(md)[0] == "controls"  # the key result first
        assert "flag_flag_positional" not in md and "flag_positional" in md
        assert all(f"{s}_plot" in md for s in ("detection", "fuzzing", "embedding")) and "layers_plot" in md
        assert "embedding_median_auroc" in md and "| detection | balanced_accuracy |" in md["controls"]
        assert md["score_histogram_plot"].startswith("![score histogram](data:image/png;base64,")
    # every ok detection score has its bootstrap interval around it, and its control row in the view
    from autointerp_assets.core.identity import explainer_fp

    det = warehouse.query("SELECT value, ci_low, ci_high FROM scores WHERE scorer = 'detection' AND status = 'ok' "
                          "AND explainer_fp = ?", [explainer_fp(load_config(CONFIG_PATH))])
    assert det.height > 0 and det["ci_low"].null_count() == 0
    assert ((det["ci_low"] <= det["value"] + 1e-9) & (det["value"] <= det["ci_high"] + 1e-9)).all()
    assert warehouse.scalar("SELECT count(*) FROM score_controls WHERE scorer = 'detection'") == det.height


def test_one_forward_pass_served_all_partitions(warehouse, instance):
    assert warehouse.scalar("SELECT count(*) FROM cache_complete") == 1
    rows = warehouse.scalar("SELECT count(*) FROM tokens")
    assert warehouse.scalar("SELECT max(row_stop) FROM cache_progress") == rows
    assert warehouse.scalar("SELECT count(*) FROM cache_progress") == -(-rows // 16)  # each batch once
    # published partitions hold exactly their cache rows; BOS (pos 0) never appears
    assert warehouse.scalar("SELECT count(*) FROM activations") == \
        warehouse.scalar("SELECT count(*) FROM activation_cache")
    assert warehouse.scalar("SELECT count(*) FROM activations WHERE pos = 0") == 0
    mats = instance.fetch_materializations(dg.AssetKey("activations"), limit=10).records
    reused = [m.asset_materialization.metadata["forward_pass_reused"].value for m in mats]
    assert sorted(reused) == [False, True, True, True]


def test_train_and_test_windows_never_overlap(warehouse):
    overlap = warehouse.scalar(
        "SELECT count(*) FROM examples a JOIN examples b USING (layer, latent, row_id, start_pos) "
        "WHERE a.split = 'train' AND b.split = 'test'")
    assert overlap == 0
    counts = warehouse.query("SELECT split, count(*) AS n, count(DISTINCT (layer, latent)) AS latents "
                             "FROM examples GROUP BY split ORDER BY split")
    assert counts["split"].to_list() == ["non_activating", "test", "train", "train_non_activating"]
    assert counts.filter(counts["split"] == "train")["n"][0] == 6 * counts["latents"][2]
    # test spans both quantile bins; non-activating windows really have no activation of the latent
    assert warehouse.scalar("SELECT count(DISTINCT quantile) FROM examples WHERE split = 'test'") == 2
    assert warehouse.scalar(
        "SELECT count(*) FROM examples e JOIN activations a ON a.layer = e.layer AND a.latent = e.latent "
        "AND a.row_id = e.row_id AND a.pos BETWEEN e.start_pos AND e.start_pos + 15 "
        "WHERE e.split = 'non_activating'") == 0
    # the stored activations of a train window match the activations table
    assert warehouse.scalar(
        "SELECT count(*) FROM (SELECT e.layer, e.latent, e.row_id, e.start_pos, list_max(e.acts) AS m, max(a.value) AS v "
        "FROM examples e JOIN activations a ON a.layer = e.layer AND a.latent = e.latent AND a.row_id = e.row_id "
        "AND a.pos BETWEEN e.start_pos AND e.start_pos + 15 WHERE e.split = 'train' GROUP BY ALL) WHERE abs(m - v) > 1e-6"
    ) == 0


def test_rematerializing_one_partition_replaces_exactly_it(warehouse, instance):
    tables = ["activations", "latent_stats", "examples", "explanations", "score_items", "scores"]
    others = "NOT (layer = 'layers.3' AND latent BETWEEN 0 AND 31)"
    own = "layer = 'layers.3' AND latent BETWEEN 0 AND 31"
    before_others = {t: snapshot(warehouse, t, others) for t in tables}
    before_own = {t: warehouse.scalar(f"SELECT count(*) FROM {t} WHERE {own}") for t in tables}
    key = dg.MultiPartitionKey({"layer": "layers.3", "latents": "00000-00031"})
    materialize(instance, PARTITIONED_ASSETS, key)
    for t in tables:
        assert snapshot(warehouse, t, others) == before_others[t], f"{t}: other partitions changed"
        assert warehouse.scalar(f"SELECT count(*) FROM {t} WHERE {own}") == before_own[t], f"{t}: duplicated"
    dup = warehouse.scalar("SELECT count(*) FROM (SELECT layer, latent, explainer_fp, scorer, count(*) n FROM scores "
                           "GROUP BY ALL HAVING n > 1)")
    assert dup == 0


def test_parse_failure_is_recorded_and_never_scored(warehouse, instance, tmp_root):
    # A second explainer (different fingerprint) whose one-token answers cannot hold the marker line.
    broken = write_config(tmp_root / "broken-explainer.yaml",
                          {"explainer": {"max_tokens": 1, "prefill_marker": False}})
    key = dg.MultiPartitionKey({"layer": "layers.1", "latents": "00000-00031"})
    old = warehouse.query("SELECT DISTINCT explainer_fp FROM explanations")["explainer_fp"].to_list()
    n_old_scores = warehouse.scalar("SELECT count(*) FROM scores")
    res = dg.materialize(ALL, selection=[explanations, scores], partition_key=key, instance=instance,
                         raise_on_error=False,
                         resources={"project": ProjectResource(config_path=str(broken)), "llm": LLMResource()})
    # every answer unusable: more than failures.max_share of the partition failed, so the step fails in one line
    assert not res.success and res.get_failed_step_keys() == {"explanations"}
    (event,) = res.get_step_failure_events()
    msg = event.step_failure_data.user_failure_data.description
    assert msg.startswith("explanations of layers.1 latents 0-31: ") and "are failures" in msg and "\n" not in msg
    assert "parse_error" in msg
    new = warehouse.query("SELECT * FROM explanations WHERE explainer_fp NOT IN (SELECT unnest(?))", [old])
    assert new.height > 0
    assert set(new["status"]) == {"parse_error"}
    assert new["explanation"].null_count() == new.height
    assert all(len(t) > 0 for t in new["raw_text"])  # the raw answer is kept for inspection
    fp = new["explainer_fp"][0]
    assert warehouse.scalar("SELECT count(*) FROM scores WHERE explainer_fp = ?", [fp]) == 0
    assert warehouse.scalar("SELECT count(*) FROM score_items WHERE explainer_fp = ?", [fp]) == 0
    # the first explainer's rows are untouched
    assert warehouse.scalar("SELECT count(*) FROM scores") == n_old_scores


def test_summary_reads_duckdb(warehouse):
    from autointerp_assets.core import stages

    cfg = load_config(CONFIG_PATH)
    summary = stages.partition_summary(stages.Context.of(cfg))
    assert summary.height >= 4
    assert set(summary.columns) >= {"layer", "latents", "latents_scored", "median_detection_bacc", "median_fuzzing_bacc"}
    assert all(0 <= v <= 1 for v in summary["median_detection_bacc"].drop_nulls())
    # the explainer's engine with the dtype it ran in, so runs from machines that resolve auto differently differ
    from autointerp_assets.core.caching import resolve_dtype

    # (the baseline explainers are compared in explainer_leaderboard / explainer_pairs, not listed here)
    llm = f"vllm smollm2 {resolve_dtype('auto')}"
    assert set(summary["explainer_engine"]) == {llm}
    mine = summary.filter(summary["explainer_engine"] == llm)
    assert mine.height == 4
    # the detection control sits next to the real median (asset scores ran the control on every partition)
    assert mine["median_detection_control"].null_count() == 0
    assert all(s.count("[") == 1 and s.startswith(("+", "-")) for s in mine["detection_minus_control"])


def test_existing_sparsify_checkpoint_is_loaded_not_trained(warehouse, tmp_root):
    from autointerp_assets.core import stages

    trained = warehouse.query("SELECT layer, path, sae_fp, num_latents FROM sparse_coders ORDER BY layer")
    root = str(__import__("pathlib").Path(trained["path"][0]).parent)
    cfg_path = write_config(tmp_root / "pretrained.yaml", {"database": str(tmp_root / "pretrained.duckdb"),
                                                           "sae": {"source": root}})
    infos = stages.run_sparse_coders(stages.Context.of(load_config(cfg_path)))
    assert [(i["layer"], i["path"], i["sae_fp"], i["num_latents"], i["source"]) for i in infos] == \
        [(r["layer"], r["path"], r["sae_fp"], r["num_latents"], root) for r in trained.iter_rows(named=True)]
    bad = write_config(tmp_root / "too-many-latents.yaml", {"database": str(tmp_root / "pretrained.duckdb"),
                                                            "sae": {"source": root},
                                                            "latents": {"start": 0, "stop": 5000, "range_size": 1000}})
    with pytest.raises(ValueError, match="lower latents.stop"):
        stages.run_sparse_coders(stages.Context.of(load_config(bad)))


def test_baselines_are_compared_with_the_llm_explainer_on_the_same_latents(warehouse):
    """top_tokens and logit_lens explained every latent the LLM explained and were scored by the same scorers:
    the leaderboard lists all three per scorer, explainer_pairs pairs them on the same latents with intervals."""
    cfg = load_config(CONFIG_PATH)
    from autointerp_assets.core.identity import explainer_fp

    llm = explainer_fp(cfg)
    lb = warehouse.query("SELECT * FROM explainer_leaderboard")
    names = {r["explainer_fp"]: r["explainer"] for r in lb.iter_rows(named=True)}
    assert sorted(set(names.values())) == ["baseline logit_lens", "baseline top_tokens", "smollm2 default"]
    for scorer in ("detection", "fuzzing", "embedding"):
        rows = lb.filter(lb["scorer"] == scorer)
        assert rows.height == 3 and rows["median_ci_low"].null_count() == 0, scorer
        assert (rows["median_ci_low"] <= rows["median_value"] + 1e-9).all()
    assert not lb["scorer"].str.ends_with("_control").any()  # controls are a column, not scorers
    controlled = lb.filter((lb["explainer_fp"] == llm) & lb["scorer"].is_in(list(cfg.scoring.control_scorers)))
    assert controlled.height == 2 and controlled["median_control"].null_count() == 0  # detection, embedding
    explained = dict(warehouse.query("SELECT explainer_fp, list_sort(list((layer, latent))) FROM explanations "
                                     "WHERE status = 'ok' GROUP BY ALL").iter_rows())
    assert len(explained) == 3  # the baselines explain every latent the LLM explained (and those it failed on)
    assert all(set(map(str, explained[llm])) <= set(map(str, v)) for v in explained.values())
    pairs = warehouse.query("SELECT * FROM explainer_pairs")
    with_llm = pairs.filter((pairs["explainer_a"] == llm) | (pairs["explainer_b"] == llm))
    assert set(with_llm["scorer"]) == {"detection", "fuzzing", "embedding"} and with_llm.height == 6
    assert (with_llm["latents"] == len(explained[llm])).all()
    assert ((with_llm["median_diff_ci_low"] <= with_llm["median_diff"] + 1e-9)
            & (with_llm["median_diff"] <= with_llm["median_diff_ci_high"] + 1e-9)).all()
    # no LLM call was made for a baseline
    baselines = [fp for fp, name in names.items() if name.startswith("baseline ")]
    assert len(baselines) == 2
    assert warehouse.scalar("SELECT count(*) FROM llm_calls WHERE role = 'explainer' AND explainer_fp IN (SELECT unnest(?))",
                            [baselines]) == 0
    assert warehouse.scalar("SELECT count(*) FROM llm_calls WHERE role = 'explainer' AND explainer_fp = ?", [llm]) > 0


def test_scorer_sensitivity_is_stored_and_agrees_with_the_items(warehouse):
    stored = warehouse.query("SELECT * FROM scorer_sensitivity WHERE scorer = 'detection'")
    assert stored.height == 4 and set(stored["reads_explanation"].to_list()) <= {True, False, None}
    indep = warehouse.query("""
        SELECT r.layer, sum((r.prediction <> c.prediction)::INT) AS changed, count(*) AS items
        FROM score_items r JOIN score_items c ON c.layer = r.layer AND c.latent = r.latent
             AND c.explainer_fp = r.explainer_fp AND c.example_id = r.example_id AND c.truth = r.truth
             AND c.scorer = 'detection_control'
        WHERE r.scorer = 'detection' GROUP BY r.layer ORDER BY r.layer""")
    per_layer = stored.group_by("layer").agg(pl.col("changed").sum(), pl.col("items").sum()).sort("layer")
    assert indep.rows() == per_layer.rows()
    report = warehouse.query("SELECT * FROM scorer_report WHERE scorer = 'detection'")
    assert report.height >= 4 and report["finding"].null_count() == 0


def test_the_calibration_ran_on_planted_latents(warehouse):
    from autointerp_assets.core import stages

    cfg = load_config(CONFIG_PATH)
    planted = warehouse.query("SELECT * FROM calibration_latents")
    assert planted.height >= 6 and (planted["status"] == "selected").sum() >= 4
    power = warehouse.query("SELECT * FROM calibration_power")
    assert set(power["scorer"]) == {"detection", "fuzzing", "embedding"}
    assert ((power["gold_wins"] >= 0) & (power["gold_wins"] <= 1)).all()
    rec = warehouse.query("SELECT * FROM calibration_recovery_rate")
    assert set(rec["explainer"]) == {"default", "baseline top_tokens"}
    lines = stages.calibration_lines(stages.Context.of(cfg))
    assert any(line.startswith("detection: the gold explanation beats a wrong one on") for line in lines)
    # its latents never reach the project's own tables
    assert warehouse.scalar("SELECT count(*) FROM scores WHERE layer = 'planted'") == 0
