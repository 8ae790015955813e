"""Intervention scoring, the output-centric explainers beside the active one, the analyses and the cost estimate,
end to end on a copy of the tiny pipeline's warehouse, through Dagster: real SmolLM2 (transformers hooks for
steering, vLLM for explaining and scoring), real MiniLM, real DuckDB.

The explainers: the project's (active, ``default``), the two baselines (``top_tokens``, ``logit_lens``: no LLM,
no control) and the output-centric ``token_change`` and ``input_output`` (``output_explainers``), all scored
by detection, fuzzing, embedding and intervention on the same latents. The estimate, made before the LLM stages
from the stored examples and also from the config alone, is checked against this run's ledger.
"""

from __future__ import annotations

import time
from datetime import datetime

import dagster as dg
import polars as pl
import pytest

from autointerp_assets.core.config import load_config
from autointerp_assets.core.identity import explainer_fp
from autointerp_assets.core.stages.context import Context
from autointerp_assets.core.stages.estimate import estimate, explainers_of
from autointerp_assets.core.storage import Warehouse
from autointerp_assets.defs.assets import (ALL, PARTITIONED_ASSETS, analyses, corpus_tokens, explanations,
                                           latent_vectors, scores, sparse_coders, steering)
from autointerp_assets.defs.partitions import PARTITIONS
from autointerp_assets.defs.resources import LLMResource, ProjectResource
from autointerp_assets_tests.conftest import write_config

pytestmark = pytest.mark.slow

SCORERS = ["detection", "fuzzing", "embedding", "intervention"]
CONTROLLED = ["detection", "embedding", "intervention"]
KINDS = ["default", "top_tokens", "logit_lens", "token_change", "input_output"]
WITH_CONTROL = {"default", "token_change", "input_output"}  # baselines run without the control


def _materialize(instance, selection, config_path, partition_key=None):
    res = dg.materialize(ALL, selection=selection, partition_key=partition_key, instance=instance,
                         resources={"project": ProjectResource(config_path=str(config_path)), "llm": LLMResource()})
    assert res.success
    return res


@pytest.fixture(scope="module")
def run(tmp_root):
    """The base tiny pipeline (materialized here unless an earlier module did), copied; then the companions run on
    the copy: steering, explanations, scores, latent_vectors per partition, then analyses."""
    d = tmp_root / "intervention"
    d.mkdir(exist_ok=True)
    # its own base warehouse: the shared one (CONFIG_PATH) is test_pipeline.py's, which counts forward passes
    base_path = write_config(d / "base.yaml", {"database": str(d / "base.duckdb")})
    wh = Warehouse(load_config(base_path).resolve(load_config(base_path).database))
    with dg.instance_for_test() as inst:
        _materialize(inst, [corpus_tokens, sparse_coders], base_path)
        for key in PARTITIONS.get_partition_keys():
            _materialize(inst, PARTITIONED_ASSETS, base_path, key)
    db = wh.snapshot(d / "intervention.duckdb")
    with Warehouse(db).write() as con:  # every LLM stage runs in full here (so the ledger is one whole run)
        for table in ("explanations", "scores", "score_items", "scorer_sensitivity"):
            con.execute(f"DELETE FROM {table}")
    cfg_path = write_config(d / "project.yaml", {
        "database": str(db), "output_explainers": ["token_change", "input_output"],
        "scoring": {"scorers": ["embedding", "intervention"], "control_scorers": CONTROLLED,
                           "bootstrap_samples": 200},
        "steering": {"n_explain": 4, "n_score": 6, "max_new_tokens": 6}})
    cfg = load_config(cfg_path)
    ctx = Context.of(cfg)
    before = estimate(ctx)  # the LLM stages have not run on these explainers: examples are stored
    with_config_only = estimate(Context(cfg, Warehouse(d / "empty.duckdb")))
    start = datetime.now()
    time.sleep(0.01)
    with dg.instance_for_test() as inst:
        for key in PARTITIONS.get_partition_keys():
            _materialize(inst, [steering, explanations, scores, latent_vectors], cfg_path, key)
        res = _materialize(inst, [analyses], cfg_path)
        analyses_md = {k: v.value for k, v in res.asset_materializations_for_node("analyses")[0].metadata.items()}
        scores_md = [{k: v.value for k, v in r.asset_materialization.metadata.items()}
                     for r in inst.fetch_materializations(dg.AssetKey("scores"), limit=10).records]
    fps = {name: explainer_fp(c) for name, c in explainers_of(ctx)}
    assert list(fps) == KINDS
    yield {"wh": ctx.wh, "cfg": cfg, "fps": fps, "start": start, "before": before,
           "config_only": with_config_only, "analyses_md": analyses_md, "scores_md": scores_md}


def test_steering_rows_are_calibrated_per_selected_latent(run):
    wh, cfg = run["wh"], run["cfg"]
    st = wh.query("SELECT * FROM steering")
    selected = wh.scalar("SELECT count(*) FROM latent_selection WHERE status = 'selected'")
    assert st.height == selected == 16
    ok = st.filter(pl.col("status") == "ok")
    assert ok.height >= 12, st.select("latent", "status", "kl")  # most reach 0.5 nats within 10 %
    assert ((ok["kl"] - 0.5).abs() <= 0.05 + 1e-9).all() and (st["strength"] > 0).all()
    assert (st["n_prompts"] == 6).all() and st["top_tokens"].list.len().min() == cfg.steering.n_tokens
    texts = wh.query("SELECT * FROM steered_texts")
    assert texts.height == 16 * 6 and texts["steered_ids"].list.len().min() == 6
    # the clean continuation of a prompt is the same for every latent (shared draws)
    assert texts.group_by("prompt_id").agg(pl.col("clean").n_unique())["clean"].max() == 1
    changed = texts.filter(pl.col("clean_ids") != pl.col("steered_ids")).height
    assert changed == st["changed"].sum() and changed > 0


def test_every_explainer_is_scored_by_every_scorer_on_the_same_latents(run):
    wh, fps = run["wh"], run["fps"]
    ex = wh.query("SELECT explainer_fp, list_sort(list(latent)) AS latents FROM explanations "
                  "WHERE explainer_fp IN (SELECT unnest(?)) GROUP BY ALL", [list(fps.values())])
    assert ex.height == 5 and len({tuple(x) for x in ex["latents"]}) == 1  # the same 16 latents
    for name, efp in fps.items():
        ok = wh.query("SELECT latent FROM explanations WHERE explainer_fp = ? AND status = 'ok'", [efp])["latent"]
        assert ok.len() >= 8, name
        got = wh.query("SELECT scorer, count(*) AS n FROM scores WHERE explainer_fp = ? GROUP BY scorer", [efp])
        want = SCORERS + ([f"{s}_control" for s in CONTROLLED] if name in WITH_CONTROL else [])
        assert dict(got.iter_rows()) == {s: ok.len() for s in want}, name
    inter = wh.query("SELECT * FROM scores WHERE scorer LIKE 'intervention%' AND status = 'ok'")
    assert inter.height > 0 and (inter["metric"] == "balanced_accuracy").all()
    assert ((inter["ci_low"] <= inter["value"] + 1e-9) & (inter["value"] <= inter["ci_high"] + 1e-9)).all()
    assert (inter["n"] == 6).all() and (inter["n_batches"] == 2).all()  # 6 pairs, 4 per prompt
    items = wh.query("SELECT layer, latent, explainer_fp, scorer, sum(truth::INT) AS first FROM score_items WHERE "
                     "scorer LIKE 'intervention%' GROUP BY ALL")
    assert (items["first"] == 3).all()  # the steered continuation shown first in exactly half the pairs
    calls = wh.scalar("SELECT count(*) FROM llm_calls WHERE scorer = 'intervention_control' AND created_at >= ?",
                      [run["start"]])
    assert calls == 2 * wh.scalar("SELECT count(*) FROM scores WHERE scorer = 'intervention_control'")


def test_leaderboard_summary_and_metadata_carry_every_explainer_and_the_intervention_scorer(run):
    wh = run["wh"]
    lb = wh.query("SELECT * FROM explainer_leaderboard WHERE explainer_fp IN (SELECT unnest(?)) AND "
                  "scorer = 'intervention'", [list(run["fps"].values())])
    assert lb.height == 5 and (lb["metric"] == "balanced_accuracy").all()
    assert any("token_change" in e for e in lb["explainer"]) and any("input_output" in e for e in lb["explainer"])
    summary = wh.query("SELECT * FROM scorer_summary WHERE scorer = 'intervention'")
    assert summary.height == 4 * 5  # 4 partitions x 5 explainers
    assert summary.filter(pl.col("explainer_fp").is_in([run["fps"][k] for k in WITH_CONTROL]))[
        "median_control"].null_count() == 0
    md = run["scores_md"][0]
    assert "intervention_median_balanced_accuracy" in md and "| intervention | balanced_accuracy |" in md["controls"]
    assert "| token_change | intervention | balanced_accuracy |" in md["companion_controls"]
    assert "| intervention | balanced_accuracy | token_change |" in md["baselines_vs_explainer"]


def test_analyses_views_and_metadata(run):
    wh, efp = run["wh"], run["fps"]["default"]
    agree = wh.query("SELECT * FROM scorer_agreement WHERE explainer_fp = ?", [efp])
    # per partition every pair of the 4 scorers, over the latents both scored
    assert agree.height == 4 * 6 and set(agree["latents"]) <= {3, 4}
    assert agree.filter(pl.col("spearman").is_not_null())["spearman"].is_between(-1, 1).all()
    matches = wh.query("SELECT * FROM latent_matches WHERE explainer_fp = ?", [efp])
    ok = wh.scalar("SELECT count(*) FROM explanations WHERE explainer_fp = ? AND status = 'ok'", [efp])
    assert matches.height == ok and set(matches["layer_a"]) == {"layers.1", "layers.3"}
    assert matches["decoder_cosine"].null_count() == 0 and matches["agree"].null_count() == 0
    sim = wh.query("SELECT * FROM sae_similarity WHERE explainer_fp = ?", [efp])
    assert sim.height == 2 and (sim["compared"] == sim["latents"]).all()
    assert (sim["chance_agreement"] == 1 / sim["candidates"]).all()
    md = run["analyses_md"]
    assert md["explainer_fp"] == efp and "| layers.1 | 00000-00031 |" in md["scorer_agreement"]
    assert md["agreement_layers.1_00000-00031"].startswith("![agreement")
    assert md["latent_matches_plot"].startswith("![latent matches](data:image/png;base64,")


def _ledger(run) -> pl.DataFrame:
    names = {fp: name for name, fp in run["fps"].items()}
    led = run["wh"].query("SELECT stage, explainer_fp, coalesce(scorer, '') AS scorer, count(*) AS requests, "
                          "sum(prompt_tokens)::BIGINT AS prompt_tokens, sum(completion_tokens)::BIGINT AS completion_tokens "
                          "FROM llm_calls WHERE created_at >= ? GROUP BY ALL", [run["start"]])
    return led.with_columns(explainer=pl.col("explainer_fp").replace_strict(names)).drop("explainer_fp")


@pytest.mark.parametrize("which", ["before", "config_only"])
def test_the_estimate_is_within_ten_percent_of_the_ledger(run, which):
    est = run[which].filter(pl.col("requests") > 0)  # the baselines' explanations cost no request
    led = _ledger(run)
    both = est.join(led, on=["stage", "explainer", "scorer"], how="full", suffix="_ledger", coalesce=True)
    assert both.filter(pl.col("requests").is_null() | pl.col("requests_ledger").is_null()).is_empty(), both
    tot = lambda f, c: int(f[c].sum())  # noqa: E731
    for col in ("prompt_tokens", "completion_tokens"):
        assert abs(tot(est, col) - tot(led, col)) <= 0.1 * tot(led, col) + (200 if col == "completion_tokens" else 0), \
            (col, tot(est, col), tot(led, col))
    # per stage and scorer: requests and prompt tokens within 10 % (parse failures leave latents unscored)
    for r in both.iter_rows(named=True):
        assert abs(r["prompt_tokens"] - r["prompt_tokens_ledger"]) <= 0.1 * r["prompt_tokens_ledger"], r
        assert abs(r["requests"] - r["requests_ledger"]) <= 0.1 * r["requests_ledger"], r
