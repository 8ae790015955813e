"""The LLM budget through Dagster (real vLLM SmolLM2, real DuckDB, Dagster's in-process execution).

A budget stop is a *run failure*: the step raises ``dg.Failure`` with the one-line reason and the spend
of what was committed as metadata, so the partition is not materialized (the UI shows it failed),
downstream steps are skipped, and a retry is a plain re-materialization. In DuckDB only whole latents
are visible: each one is either done (with its ledger row) or ``budget_exceeded`` (never sent, no
score rows). Raising the cap and re-materializing sends exactly the pending latents: no duplicated
rows, no duplicated calls.
"""

from __future__ import annotations

import dagster as dg
import pytest

from autointerp_assets.core.config import load_config
from autointerp_assets.core.storage import Warehouse
from autointerp_assets.defs.assets import ALL, explanations, scores
from autointerp_assets.defs.resources import LLMResource, ProjectResource
from autointerp_assets_tests.conftest import TEST_LLM, write_config
from autointerp_assets_tests.support.synthetic import write_partition

pytestmark = pytest.mark.slow
LAYER, LATENTS = "layers.1", [0, 1, 2, 3]
KEY = dg.MultiPartitionKey({"layer": LAYER, "latents": "00000-00031"})


def _config(root, max_tokens):
    """A project of its own (no explainer registry beside it) with one scorer, no extra scorers and no baseline
    explainers (they cost no LLM call: nothing to budget)."""
    return write_config(root / "project.yaml", {
        "database": str(root / "budget.duckdb"), "explainer": {"llm": TEST_LLM, "max_tokens": 32},
        "scorer": {"scorers": ["detection"], "examples_per_prompt": 4}, "baseline_explainers": [],
        "scoring": {"scorers": [], "control": False}, "budget": {"max_tokens": max_tokens}})


def _materialize(instance, config_path, selection):
    return dg.materialize(ALL, selection=selection, partition_key=KEY, instance=instance, raise_on_error=False,
                          resources={"project": ProjectResource(config_path=str(config_path)), "llm": LLMResource()})


def _budget_failure(res, step):
    assert not res.success and res.get_failed_step_keys() == {step}
    (event,) = res.get_step_failure_events()
    data = event.step_failure_data.user_failure_data
    assert data is not None, event.step_failure_data.error  # a dg.Failure, not a crash
    return data.description, {k: v.value for k, v in data.metadata.items()}


def _materialized(instance, asset) -> set[str]:
    return set(instance.get_materialized_partitions(dg.AssetKey(asset.key.path)))


def _spent(wh) -> int:
    return wh.scalar("SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) FROM llm_calls")


def test_budget_stop_fails_the_run_cleanly_and_a_raised_budget_completes_it(tmp_root):
    root = tmp_root / "budget-dagster"
    root.mkdir()
    cfg = load_config(_config(root, None))
    wh = Warehouse(cfg.resolve(cfg.database))
    write_partition(wh, LAYER, LATENTS, n_train=4, n_test=4, n_non_activating=4)

    with dg.instance_for_test() as instance:
        # 1. a cap that fits part of the explainer requests: the explanations step fails, scores never runs
        res = _materialize(instance, _config(root, 1500), [explanations, scores])
        msg, md = _budget_failure(res, "explanations")
        assert msg.startswith("budget reached: ") and "re-run to continue" in msg and "budget.max_tokens" in msg
        logs = [e for e in instance.all_logs(res.run_id) if e.step_key == "scores"]
        assert not any(e.dagster_event and e.dagster_event.event_type_value == "STEP_START" for e in logs)
        assert any("Dependencies for step scores failed" in e.user_message for e in logs), logs
        assert not res.is_node_success("scores") and not res.asset_materializations_for_node("scores")
        assert not _materialized(instance, explanations) and not _materialized(instance, scores)
        expl = wh.query("SELECT latent, status, explanation, raw_text, created_at FROM explanations ORDER BY latent")
        done = expl.filter(expl["status"] != "budget_exceeded")
        assert expl["latent"].to_list() == LATENTS and 0 < done.height < len(LATENTS), expl
        assert done["latent"].to_list() == LATENTS[:done.height] and done["raw_text"].null_count() == 0
        assert expl[done.height:]["explanation"].null_count() == len(LATENTS) - done.height
        assert md["llm_calls"] == done.height and md["latents"] == len(LATENTS)
        calls = wh.query("SELECT latent, stage FROM llm_calls ORDER BY latent")
        assert calls.rows() == [(lat, "explanations") for lat in done["latent"]]  # a ledger row per done latent only
        assert 0 < _spent(wh) <= 1500
        assert wh.scalar("SELECT count(*) FROM scores") == wh.scalar("SELECT count(*) FROM score_items") == 0
        assert wh.scalar("SELECT count(*) FROM latent_scores WHERE detection_bacc IS NOT NULL") == 0

        # 2. cap raised for the explainer only (scores gets what is left: about one latent's prompts):
        #    explanations completes with only the pending latents sent; the scores step fails the run
        res = _materialize(instance, _config(root, None), [explanations])
        assert res.success and _materialized(instance, explanations) == {str(KEY)}
        (mat,) = res.get_asset_materialization_events()
        assert mat.materialization.metadata["resumed"].value is True
        assert mat.materialization.metadata["llm_calls"].value == len(LATENTS) - done.height
        again = wh.query("SELECT latent, status, explanation, raw_text, created_at FROM explanations ORDER BY latent")
        assert again.height == len(LATENTS) and "budget_exceeded" not in set(again["status"])
        assert again.head(done.height).equals(done)  # the first run's results untouched
        ok = again.filter(again["status"] == "ok").height
        assert ok >= 2, again

        cap = _spent(wh) + 1500
        res = _materialize(instance, _config(root, cap), [scores])
        msg, md = _budget_failure(res, "scores")
        assert msg.startswith("budget reached: ") and "re-run to continue" in msg
        assert not _materialized(instance, scores) and _spent(wh) <= cap
        sc = wh.query("SELECT latent, status, n, created_at FROM scores ORDER BY latent")
        scored = sc.filter(sc["status"] != "budget_exceeded")
        assert sc.height == ok and 0 < scored.height < ok, sc
        assert wh.scalar("SELECT count(DISTINCT latent) FROM score_items") == scored.height  # items of whole latents

        # 3. no cap: the scores step sends only the pending latents; every key once, every call once
        res = _materialize(instance, _config(root, None), [scores])
        assert res.success and _materialized(instance, scores) == {str(KEY)}
        final = wh.query("SELECT latent, status, n, created_at FROM scores ORDER BY latent")
        assert final.height == ok and set(final["status"]) == {"ok"} and set(final["n"]) == {8}
        assert final.filter(final["latent"].is_in(scored["latent"].to_list())).equals(scored)  # untouched
    for table, key in (("explanations", "layer, latent, explainer_fp"), ("scores", "layer, latent, explainer_fp, scorer"),
                       ("score_items", "layer, latent, explainer_fp, scorer, example_id")):
        assert wh.scalar(f"SELECT max(c) FROM (SELECT count(*) AS c FROM {table} GROUP BY {key})") == 1, table
    # the ledger: one call per latent for the explainer, one per scorer batch, across all runs
    assert wh.scalar("SELECT count(*) FROM llm_calls WHERE stage = 'explanations'") == len(LATENTS)
    assert wh.scalar("SELECT count(DISTINCT latent) FROM llm_calls WHERE stage = 'explanations'") == len(LATENTS)
    assert wh.scalar("SELECT count(*) FROM llm_calls WHERE stage = 'scores'") == wh.scalar("SELECT sum(n_batches) FROM scores")
    assert wh.scalar("SELECT count(*) FROM (SELECT latent, batch_index FROM llm_calls WHERE stage = 'scores' "
                     "GROUP BY ALL HAVING count(*) > 1)") == 0
