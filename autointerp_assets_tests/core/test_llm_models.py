"""Explainer and scorer as genuinely different models, both on the real in-process vLLM engine:
SmolLM2-135M-Instruct (chat template) explains, Gemma 3 270M *base* (no chat template: the engine's
fallback transcript, with BOS) scores. Also Gemma as a second explainer, whose rows coexist with
SmolLM2's. Gemma is converted from its PyPI GGUF on first use (~1 min, then cached under data/models/)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from autointerp_assets.core.config import load_config
from autointerp_assets.core.llm import make_client
from autointerp_assets.core.llm.base import ChatRequest, Sampling, render_chat
from autointerp_assets.core.stages.context import Context
from autointerp_assets.core.stages.explanations import run_explanations
from autointerp_assets.core.stages.classifier_scores import run_classifier_scores
from autointerp_assets.core.subject_model import resolve_model
from autointerp_assets_tests.conftest import TEST_LLM, write_config
from autointerp_assets_tests.support.synthetic import write_partition

pytestmark = pytest.mark.slow
DATA = Path(__file__).resolve().parents[2] / "data"
GEMMA_LLM = {"engine": "vllm", "model": "gemma3-270m", "max_model_len": 2048, "max_num_seqs": 32, "kv_cache_gib": 1.0}
LAYER, LATENTS = "layers.1", [0, 1]


def test_gemma_converts_with_bos_and_renders_the_fallback_transcript():
    from transformers import AutoConfig, AutoTokenizer

    model_dir = resolve_model("gemma3-270m", DATA)
    assert Path(model_dir).name == "gemma-3-270m" and resolve_model("gemma3-270m", DATA) == model_dir  # once
    assert AutoConfig.from_pretrained(model_dir).architectures == ["Gemma3ForCausalLM"]
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert not tok.chat_template  # a base model: no template of its own
    assert tok("The cat")["input_ids"][0] == tok.bos_token_id  # the GGUF's add_bos_token survived conversion
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Capital of France?"}]
    text = render_chat(tok, msgs, prefill="[A]:")
    assert text == "<bos>Be brief.\n\nUser: Hi?\n\nAssistant: Hello.\n\nUser: Capital of France?\n\nAssistant: [A]:"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id


def test_smollm2_explains_and_gemma_scores(tmp_root):
    base = {"database": str(tmp_root / "two-models.duckdb"),
            "latents": {"start": 0, "stop": 32, "range_size": 32},
            "scorer": {"llm": GEMMA_LLM, "scorers": ["detection", "fuzzing"], "examples_per_prompt": 4}}
    cfg = load_config(write_config(tmp_root / "two-models.yaml", {**base, "explainer": {"llm": TEST_LLM,
                                                                                       "max_tokens": 32}}))
    ctx = Context.of(cfg)
    write_partition(ctx.wh, LAYER, LATENTS, n_train=4, n_test=4, n_non_activating=4)
    explainer = make_client(cfg.explainer.llm, str(ctx.workdir))
    scorer = make_client(cfg.scorer_llm, str(ctx.workdir))
    assert explainer is not scorer
    assert explainer.identity()["model"] == "SmolLM2-135M-Instruct" and explainer.identity()["chat_template"] == "model"
    assert scorer.identity()["model"] == "gemma-3-270m" and scorer.identity()["chat_template"] == "fallback"

    # the engine's own answer path on Gemma: a base model stops at the next turn it would invent
    (r,) = asyncio.run(scorer.generate([ChatRequest.of([{"role": "user", "content": "Name a colour."}],
                                                       Sampling(max_tokens=40))]))
    assert r.ok and "User:" not in r.text and r.completion_tokens <= 40

    e = run_explanations(ctx, explainer, LAYER, 0, 31)
    s = run_classifier_scores(ctx, scorer, LAYER, 0, 31)
    efp = e["explainer_fp"]
    wh = ctx.wh
    expl = wh.query("SELECT latent, explainer_fp, status FROM explanations ORDER BY latent")
    assert expl["latent"].to_list() == LATENTS and set(expl["explainer_fp"]) == {efp}
    espec = json.loads(wh.scalar("SELECT spec FROM fingerprints WHERE fingerprint = ?", [efp]))
    assert espec["llm"]["model"] == "smollm2" and espec["llm"]["engine"] == "vllm"

    ok = wh.query("SELECT latent FROM explanations WHERE status = 'ok' ORDER BY latent")["latent"].to_list()
    assert ok, "SmolLM2 explained no latent"
    scores = wh.query("SELECT latent, scorer, scorer_fp, status, n FROM scores ORDER BY latent, scorer")
    assert scores.height == 2 * len(ok) and sorted(set(scores["latent"])) == ok
    assert set(scores["status"]) == {"ok"} and min(scores["n"]) == 8  # 4 test + 4 non-activating per latent
    for sfp in set(scores["scorer_fp"]):
        sspec = json.loads(wh.scalar("SELECT spec FROM fingerprints WHERE fingerprint = ?", [sfp]))
        assert sspec["llm"]["model"] == "gemma3-270m" and sspec["llm"]["engine"] == "vllm"
        assert sspec["llm"]["revision"] != espec["llm"]["revision"]
    items = wh.query("SELECT prediction, probability FROM score_items")
    assert items["prediction"].null_count() == 0 and items["probability"].null_count() == 0  # logprobs from Gemma
    assert all(0.0 <= p <= 1.0 for p in items["probability"])

    calls = wh.query("SELECT role, model, stage, count(*) AS n, bool_and(status = 'ok') AS ok, "
                     "min(prompt_tokens) AS min_prompt FROM llm_calls GROUP BY ALL ORDER BY ALL")
    assert calls.select("role", "model", "stage").rows() == [("explainer", "smollm2", "explanations"),
                                                              ("scorer", "gemma3-270m", "scores")]
    assert calls["n"].to_list() == [2, wh.scalar("SELECT sum(n_batches) FROM scores")]
    assert all(calls["ok"]) and min(calls["min_prompt"]) > 0
    assert e["llm_calls"] == 2 and s["llm_calls"] == calls["n"][1]

    # a second explainer, another model: Gemma's explanations sit beside SmolLM2's (rows keyed by fingerprint)
    cfg2 = load_config(write_config(tmp_root / "two-models-gemma.yaml", {**base, "explainer": {"llm": GEMMA_LLM,
                                                                                              "max_tokens": 32}}))
    e2 = run_explanations(Context.of(cfg2), scorer, LAYER, 0, 31)
    assert e2["explainer_fp"] != efp
    both = wh.query("SELECT explainer_fp, count(*) AS n FROM explanations GROUP BY ALL ORDER BY ALL")
    assert both.rows() == sorted([(efp, 2), (e2["explainer_fp"], 2)])
    assert wh.scalar("SELECT count(*) FROM scores WHERE explainer_fp = ?", [efp]) == scores.height  # untouched
    assert wh.scalar("SELECT count(*) FROM llm_calls WHERE role = 'explainer' AND model = 'gemma3-270m'") == 2
