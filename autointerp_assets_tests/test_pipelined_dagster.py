"""Explanations and scores pipelined through Dagster against a local OpenAI-compatible server: a run that
materializes both assets scores each latent (detection) inside the explanations step as its explanation lands,
the scores step finds those pairs done and sends nothing again; a run of explanations alone scores nothing."""

from __future__ import annotations

import dagster as dg

from autointerp_assets.core.storage import Warehouse
from autointerp_assets.defs.assets import ALL, explanations, scores
from autointerp_assets.defs.resources import LLMResource, ProjectResource
from autointerp_assets_tests.conftest import write_config
from autointerp_assets_tests.support.fake_openai import FakeOpenAIServer
from autointerp_assets_tests.support.synthetic import write_partition

LAYER, LATENTS = "layers.1", list(range(6))
KEY = dg.MultiPartitionKey({"layer": LAYER, "latents": "00000-00031"})


def _project(root, url: str):
    llm = {"engine": "openai", "model": "smollm2", "base_url": url, "api_key_env": "AUTOINTERP_UNSET_KEY"}
    path = write_config(root / "project.yaml", {
        "database": str(root / "pipelined.duckdb"), "explainer": {"llm": llm, "max_tokens": 32},
        "scorer": {"scorers": ["detection"], "examples_per_prompt": 4}, "baseline_explainers": [],
        "scoring": {"scorers": [], "control": False}})
    wh = Warehouse(root / "pipelined.duckdb")
    write_partition(wh, LAYER, LATENTS)
    return path, wh


def _run(path, selection):
    with dg.instance_for_test() as inst:
        res = dg.materialize(ALL, selection=selection, partition_key=KEY, instance=inst,
                             resources={"project": ProjectResource(config_path=str(path)), "llm": LLMResource()})
        return {e.asset_key.path[-1]: {k: v.value for k, v in e.step_materialization_data.materialization.metadata
                                       .items()} for e in res.get_asset_materialization_events()}


def test_a_run_of_both_assets_scores_each_latent_as_its_explanation_lands(tmp_root):
    root = tmp_root / "pipelined-dagster"
    root.mkdir()
    with FakeOpenAIServer(latency_s=0.02) as srv:
        path, wh = _project(root, srv.url)
        md = _run(path, [explanations, scores])
        received = srv.received
    batches = wh.scalar("SELECT sum(n_batches) FROM scores WHERE scorer = 'detection'")
    assert md["explanations"]["scored_here_latents_sent"] == len(LATENTS)
    assert md["scores"]["latents_sent"] == 0  # pass 1 found every pair done
    assert wh.scalar("SELECT count(*) FROM scores WHERE scorer = 'detection' AND status = 'ok'") == len(LATENTS)
    assert received == len(LATENTS) + batches  # every request once: nothing sent twice
    assert wh.scalar("SELECT count(*) FROM llm_calls") == received


def test_a_run_of_explanations_alone_scores_nothing(tmp_root):
    root = tmp_root / "pipelined-dagster-alone"
    root.mkdir()
    with FakeOpenAIServer() as srv:
        path, wh = _project(root, srv.url)
        md = _run(path, [explanations])
        assert srv.received == len(LATENTS)
    assert "scored_here_latents_sent" not in md["explanations"]
    assert wh.scalar("SELECT count(*) FROM scores") == 0
