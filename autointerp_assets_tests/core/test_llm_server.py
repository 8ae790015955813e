"""The OpenAI-compatible engine against a real vLLM OpenAI server of the offline model on 127.0.0.1
(started once for this module, stopped at its end): answers, logprobs, prefill, regex-constrained
lists, concurrent requests; and the LLM stages with the explainer on the in-process vLLM engine and the
scorer on the server (different engines, sampling and fingerprints), two explainers side by side."""

from __future__ import annotations

import asyncio
import re

import pytest

from autointerp_assets.core.config import load_config
from autointerp_assets.core.llm import make_client
from autointerp_assets.core.llm.base import ChatRequest, Sampling
from autointerp_assets.core.llm.openai_engine import OpenAIClient
from autointerp_assets.core.stages.context import Context
from autointerp_assets.core.stages.explanations import run_explanations
from autointerp_assets.core.stages.classifier_scores import run_classifier_scores
from autointerp_assets_tests.conftest import TEST_LLM, write_config
from autointerp_assets_tests.support.llm_server import vllm_server
from autointerp_assets_tests.support.synthetic import write_partition

pytestmark = pytest.mark.slow
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module", params=["bfloat16", "float32"])
def server_url(request):
    """One server per dtype: the answer tests run on both, the rest on bf16 (tests choose with indirect
    parametrization)."""
    with vllm_server(request.param) as url:
        yield url


def _client(url, **kw) -> OpenAIClient:
    return OpenAIClient("smollm2", url, api_key_env="AUTOINTERP_TEST_UNSET_KEY", timeout_s=120, **kw)


BF16_ONLY = pytest.mark.parametrize("server_url", ["bfloat16"], indirect=True)


def test_answer_tokens_and_logprobs(server_url):
    # NO-FREE-TEXT (see test_llm.py): determinism, counts and logprob sanity, never the words of the answer
    plain = ChatRequest.of(FRANCE, Sampling(max_tokens=24))
    lp = ChatRequest.of(FRANCE, Sampling(max_tokens=5, top_logprobs=5))
    a, b = asyncio.run(_client(server_url).generate([plain, lp]))
    (again,) = asyncio.run(_client(server_url).generate([plain]))
    assert a.ok and b.ok and again.ok, (a.error, b.error, again.error)
    assert a.text and a.text == again.text and a.logprobs is None
    assert a.prompt_tokens > 10 and 0 < a.completion_tokens <= 24 and a.attempts == 1
    assert len(b.logprobs) == b.completion_tokens == 5
    for t in b.logprobs:
        values = [v for _, v in t.top]
        assert len(t.top) == 5 and values == sorted(values, reverse=True) and t.logprob <= values[0] + 1e-6
    assert "".join(t.token for t in b.logprobs) == b.text


@BF16_ONLY
def test_prefill_and_regex_list(server_url):
    list_re = r"\[[01](, [01]){4}\]"
    msgs = [{"role": "user", "content": "Answer with a list of five 0/1 values, e.g. [1, 0, 0, 1, 0]."}]
    reqs = [ChatRequest.of(msgs, Sampling(max_tokens=20, regex=list_re, top_logprobs=2)),
            ChatRequest.of([{"role": "user", "content": "Describe a feature for cat tokens."}],
                           Sampling(max_tokens=12), prefill="[EXPLANATION]:")]
    lst, pre = asyncio.run(_client(server_url).generate(reqs))
    assert lst.ok and re.fullmatch(list_re, lst.text), (lst.error, lst.text)
    assert pre.ok and pre.text and not pre.text.startswith("[EXPLANATION]:")


@BF16_ONLY
def test_concurrent_requests_each_with_own_sampling(server_url):
    client = _client(server_url, max_concurrency=8)
    reqs = [ChatRequest.of([{"role": "user", "content": f"Count from 1 to {n + 3}."}],
                           Sampling(max_tokens=4 + n % 5, top_logprobs=(n % 3) or None)) for n in range(24)]
    out = asyncio.run(client.generate(reqs))
    assert all(r.ok for r in out), [r.error for r in out if not r.ok]
    assert client.peak_in_flight == 8  # the semaphore's bound, reached: requests really overlapped
    for n, r in enumerate(out):  # per-request sampling, nothing leaked between requests
        assert 0 < r.completion_tokens <= 4 + n % 5
        assert (r.logprobs is None) == (n % 3 == 0)
        if r.logprobs:
            assert all(len(t.top) == n % 3 for t in r.logprobs)


@BF16_ONLY
def test_stages_with_different_explainer_and_scorer_engines(server_url, tmp_root):
    scorer_llm = {"engine": "openai", "model": "smollm2", "base_url": server_url, "max_concurrency": 16,
                  "api_key_env": "AUTOINTERP_TEST_UNSET_KEY"}
    base = {"database": str(tmp_root / "two-engines.duckdb"), "latents": {"start": 0, "stop": 64, "range_size": 32},
            "explainer": {"llm": TEST_LLM, "max_tokens": 32},
            "scorer": {"llm": scorer_llm, "temperature": 0.2, "scorers": ["detection", "fuzzing_active"],
                       "examples_per_prompt": 4}}
    fps = []
    for kind in ("default", "contrastive"):
        cfg = load_config(write_config(tmp_root / f"two-engines-{kind}.yaml",
                                       {**base, "explainer": {**base["explainer"], "kind": kind}}))
        ctx = Context.of(cfg)
        write_partition(ctx.wh, "layers.1", [0, 1], n_train=4, n_test=4, n_non_activating=4)
        explainer = make_client(cfg.explainer.llm, str(ctx.workdir))
        scorer = make_client(cfg.scorer_llm, str(ctx.workdir))
        assert explainer.engine == "vllm" and scorer.engine == "openai"
        e = run_explanations(ctx, explainer, "layers.1", 0, 31)
        run_classifier_scores(ctx, scorer, "layers.1", 0, 31)
        fps.append(e["explainer_fp"])
    wh = ctx.wh
    assert len(set(fps)) == 2
    expl = wh.query("SELECT explainer_fp, count(*) AS n FROM explanations GROUP BY ALL ORDER BY ALL")
    assert expl.rows() == sorted([(fps[0], 2), (fps[1], 2)])  # both explainers' rows side by side
    ok = wh.query("SELECT explainer_fp, latent FROM explanations WHERE status = 'ok'")
    scored = wh.query("SELECT DISTINCT explainer_fp, latent FROM scores")
    assert sorted(scored.rows()) == sorted(ok.rows()) and ok.height > 0
    calls = wh.query("SELECT role, engine, model, count(*) AS n, bool_and(status = 'ok') AS ok FROM llm_calls "
                     "GROUP BY ALL ORDER BY ALL")
    assert [(r[0], r[1]) for r in calls.rows()] == [("explainer", "vllm"), ("scorer", "openai")]
    assert all(calls["ok"])
    specs = wh.query("SELECT spec FROM fingerprints WHERE kind = 'scorer'")["spec"].to_list()
    assert all('"engine":"openai"' in s.replace(" ", "") and '"temperature":0.2' in s.replace(" ", "") for s in specs)
    # the counterexamples reached the contrastive explainer's prompts only (the raw answers differ in kind)
    assert wh.scalar("SELECT count(DISTINCT prompt_tokens > 0) FROM explanations") == 1
    tokens = dict(wh.query("SELECT explainer_fp, sum(prompt_tokens) AS t FROM explanations GROUP BY ALL").rows())
    assert tokens[fps[1]] > tokens[fps[0]]
