"""LLM engines: vLLM in-process on the offline SmolLM2 model (real engine), and the OpenAI client's
retry logic against a tiny local fake server (fault injection only)."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from autointerp_assets.core.config import LLMConfig
from autointerp_assets.core.llm import make_client
from autointerp_assets.core.llm.base import ChatRequest, LLMClient, Sampling
from autointerp_assets.core.llm.openai_engine import OpenAIClient
from autointerp_assets_tests.conftest import TEST_LLM

DATA = Path(__file__).resolve().parents[2] / "data"
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
LIST_RE = r"\[[01](, [01]){4}\]"


def run(coro):
    return asyncio.run(coro)


# --- vLLM in-process --------------------------------------------------------------------------------
# Rule for every test of an engine (grep-able: NO-FREE-TEXT): never assert words of free generated text.
# What a tiny model says greedily depends on the numeric path (bf16 vs float32, AMX vs AVX2); assert what
# the engine guarantees instead: a grammar-fixed answer, determinism, token counts, logprob sanity, the
# engine's logprobs against the same model in transformers with the same dtype, a bad request failing alone.
DTYPES = ("float32", "bfloat16")
# |vLLM - transformers| log-probability of each generated token under teacher forcing, same dtype
# (measured: 8e-6 in float32, 0.11 in bf16 on AMX)
LOGPROB_TOL = {"float32": 1e-3, "bfloat16": 0.35}


@pytest.fixture(scope="module", params=DTYPES)
def vllm_client(request):
    """One engine per dtype. The one ``dtype: auto`` resolves to is the session's shared engine (same settings
    as the pipeline tests, closed at session end); the other is closed when its tests are done."""
    from autointerp_assets.core.caching import resolve_dtype

    client = make_client(LLMConfig(**TEST_LLM, dtype=request.param), str(DATA))
    yield client
    if request.param != resolve_dtype("auto"):
        client.close()


def test_vllm_greedy_answer_is_deterministic(vllm_client):
    assert isinstance(vllm_client, LLMClient)
    req = ChatRequest.of(FRANCE, Sampling(max_tokens=24))
    a, b = run(vllm_client.generate([req, req]))
    (c,) = run(vllm_client.generate([req]))  # alone, its prompt now in the prefix cache
    assert a.ok and b.ok and c.ok, (a.error, b.error, c.error)
    assert a.text and a.text == b.text == c.text
    assert a.prompt_tokens == c.prompt_tokens > 0 and 0 < a.completion_tokens <= 24 and a.latency_s > 0
    assert a.logprobs is None


def test_vllm_logprobs_match_transformers(vllm_client):
    """Greedy under teacher forcing: each generated token is the engine's top-1, and its log-probability is
    the one the same weights give in transformers with the same dtype."""
    import torch
    from transformers import AutoModelForCausalLM

    req = ChatRequest.of(FRANCE, Sampling(max_tokens=16, top_logprobs=5))
    (r,) = run(vllm_client.generate([req]))
    assert r.ok, r.error
    assert len(r.logprobs) == r.completion_tokens > 0
    tok = vllm_client.tokenizer
    prompt = tok.encode(vllm_client.render(req), add_special_tokens=False)
    gen = tok.encode(r.text, add_special_tokens=False)
    lps = r.logprobs[:len(gen)]  # beyond the text: at most the end-of-turn token
    assert "".join(lp.token for lp in lps) == r.text and len(r.logprobs) - len(gen) in (0, 1), \
        ("the text re-tokenizes differently", gen, [lp.token for lp in r.logprobs])
    lm = AutoModelForCausalLM.from_pretrained(vllm_client.model_dir, dtype=getattr(torch, vllm_client.dtype))
    with torch.no_grad():
        ref = torch.log_softmax(lm(torch.tensor([prompt + gen])).logits.float(), -1)[0]
    ref_lp = [ref[len(prompt) - 1 + i, t].item() for i, t in enumerate(gen)]
    diffs = [abs(lp.logprob - x) for lp, x in zip(lps, ref_lp)]
    assert max(diffs) < LOGPROB_TOL[vllm_client.dtype], (vllm_client.dtype, diffs)
    for lp in r.logprobs:
        assert lp.logprob <= 0 and lp.logprob >= max(v for _, v in lp.top) - 1e-6  # greedy: the top token


def test_vllm_sampling_does_not_leak(vllm_client):
    a = ChatRequest.of(FRANCE, Sampling(max_tokens=1, top_logprobs=3))
    b = ChatRequest.of([{"role": "user", "content": "Write two sentences about the sea."}], Sampling(max_tokens=20))
    ra, rb = run(vllm_client.generate([a, b]))
    assert ra.ok and rb.ok, (ra.error, rb.error)
    assert ra.completion_tokens == 1 and len(ra.logprobs) == 1
    assert rb.completion_tokens > 1 and rb.logprobs is None
    (rc,) = run(vllm_client.generate([ChatRequest.of(FRANCE, Sampling(max_tokens=4))]))
    assert rc.ok and rc.logprobs is None
    assert rc.cached_tokens > 0  # same chat prefix as request a, 32-token blocks


def test_vllm_logprobs(vllm_client):
    (r,) = run(vllm_client.generate([ChatRequest.of(FRANCE, Sampling(max_tokens=5, top_logprobs=5))]))
    assert r.ok, r.error
    assert len(r.logprobs) == r.completion_tokens == 5
    for lp in r.logprobs:
        assert lp.token and lp.logprob <= 0
        assert len(lp.top) == 5
        values = [v for _, v in lp.top]
        assert values == sorted(values, reverse=True) and all(v <= 0 for v in values)
        assert lp.logprob <= values[0] + 1e-6  # greedy: the chosen token is the best one
    assert "".join(lp.token for lp in r.logprobs) == r.text


def test_vllm_prefill(vllm_client):
    msgs = [{"role": "user", "content": "Name a feature that fires on cat and dog tokens."}]
    (r,) = run(vllm_client.generate([ChatRequest.of(msgs, Sampling(max_tokens=16), prefill="[EXPLANATION]:")]))
    assert r.ok, r.error
    assert r.text and not r.text.startswith("[EXPLANATION]:")


def test_vllm_regex(vllm_client):
    msgs = [{"role": "user", "content": "Answer with a list of five 0/1 values, e.g. [1, 0, 0, 1, 0]."}]
    city = ChatRequest.of(FRANCE, Sampling(max_tokens=8, regex="(Paris|Lyon|Marseille)"))
    lst, one = run(vllm_client.generate([ChatRequest.of(msgs, Sampling(max_tokens=20, regex=LIST_RE)), city]))
    assert lst.ok and one.ok, (lst.error, one.error)
    assert re.fullmatch(LIST_RE, lst.text), lst.text
    assert one.text in ("Paris", "Lyon", "Marseille")  # the grammar fixes the answer's form, not the model


def test_vllm_bad_request_is_isolated(vllm_client):
    too_long = ChatRequest.of([{"role": "user", "content": "word " * 3000}], Sampling(max_tokens=4))
    good = ChatRequest.of(FRANCE, Sampling(max_tokens=8))
    bad, ok = run(vllm_client.generate([too_long, good]))
    (alone,) = run(vllm_client.generate([good]))
    assert not bad.ok and "length" in bad.error and bad.text == ""
    assert ok.ok and ok.completion_tokens > 0 and ok.text == alone.text  # unaffected by its failed neighbour


def test_vllm_identity_and_cache(vllm_client):
    from autointerp_assets.core.caching import resolve_dtype
    from autointerp_assets.core.llm.vllm_engine import get_vllm_client, model_revision

    ident = vllm_client.identity()
    # the dtype changes greedy outputs, so it is named in the identity (and the fingerprints: test_registry)
    assert ident == {"engine": "vllm", "model": "SmolLM2-135M-Instruct", "revision": model_revision(vllm_client.model_dir),
                     "chat_template": "model",  # the tokenizer's own ChatML template, not the base-model fallback
                     "dtype": vllm_client.dtype}
    assert ident == vllm_client.identity() and json.dumps(ident)
    same = get_vllm_client(vllm_client.model_dir, max_model_len=2048, max_num_seqs=64, kv_cache_gib=1.0,
                           dtype=vllm_client.dtype)
    assert same is vllm_client
    if vllm_client.dtype == resolve_dtype("auto"):  # auto shares the engine of the dtype it resolves to
        assert make_client(LLMConfig(**{**TEST_LLM, "dtype": "auto"}), str(DATA)) is vllm_client


# --- make_client ------------------------------------------------------------------------------------
def test_make_client_errors_and_openai(monkeypatch):
    with pytest.raises(ValueError, match="base_url"):
        make_client(LLMConfig(engine="openai"), str(DATA))
    with pytest.raises(ValueError, match="engine: openai"):
        make_client(LLMConfig(engine="vllm", base_url="http://127.0.0.1:1/v1"), str(DATA))
    monkeypatch.setenv("AUTOINTERP_TEST_KEY", "sk-secret-value")
    c = make_client(LLMConfig(engine="openai", base_url="http://127.0.0.1:1/v1", api_key_env="AUTOINTERP_TEST_KEY"),
                    str(DATA))
    assert isinstance(c, OpenAIClient) and isinstance(c, LLMClient)
    assert c.identity() == {"engine": "openai", "model": "smollm2", "base_url": "http://127.0.0.1:1/v1"}
    assert "sk-secret" not in repr(c) + json.dumps(c.identity()) + json.dumps(vars(c), default=str)


# --- OpenAI client against a fault-injecting fake server ---------------------------------------------
COMPLETION = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "[1, 0, 0, 1, 0]"},
                 "logprobs": {"content": [{"token": "[", "logprob": -0.1, "bytes": None,
                                           "top_logprobs": [{"token": "(", "logprob": -3.0, "bytes": None},
                                                            {"token": "[", "logprob": -0.1, "bytes": None}]}]}}],
    "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
              "prompt_tokens_details": {"cached_tokens": 4}},
}


class FakeServer:
    """Answers POST /v1/chat/completions from a script of (status, headers, body); the last one repeats."""

    def __init__(self, script):
        self.script = list(script)
        self.requests: list[tuple[dict, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.requests.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                status, headers, payload = outer.script[min(len(outer.requests), len(outer.script)) - 1]
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _client(url, **kw):
    kw = {"max_retries": 3, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 10,
          "api_key_env": "AUTOINTERP_TEST_UNSET_KEY", **kw}
    return OpenAIClient("m", url, **kw)


def test_openai_retries_429_then_500_then_ok(monkeypatch):
    monkeypatch.delenv("AUTOINTERP_TEST_UNSET_KEY", raising=False)
    err = {"error": {"message": "busy", "type": "x", "code": None}}
    script = [(429, {"Retry-After": "0"}, err), (500, {}, err), (200, {}, COMPLETION)]
    req = ChatRequest.of(FRANCE, Sampling(max_tokens=7, top_logprobs=2, regex=LIST_RE, stop=("\n",)), prefill="[A]:")
    with FakeServer(script) as srv:
        (r,) = run(_client(srv.url).generate([req]))
    assert r.ok, r.error
    assert r.text == "[1, 0, 0, 1, 0]"
    assert (r.prompt_tokens, r.completion_tokens, r.cached_tokens) == (11, 7, 4)
    assert r.logprobs[0].token == "[" and r.logprobs[0].top == (("[", -0.1), ("(", -3.0))
    assert len(srv.requests) == 3
    headers, body = srv.requests[-1]
    assert headers.get("authorization") == "Bearer EMPTY"
    assert body["messages"][-1] == {"role": "assistant", "content": "[A]:"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["structured_outputs"] == {"regex": LIST_RE}
    assert body["logprobs"] is True and body["top_logprobs"] == 2 and body["stop"] == ["\n"]
    assert body["max_tokens"] == 7 and body["temperature"] == 0.0


def test_openai_400_not_retried():
    err = {"error": {"message": "bad request: max_tokens too large", "type": "BadRequestError", "code": 400}}
    with FakeServer([(400, {}, err), (200, {}, COMPLETION)]) as srv:
        (r,) = run(_client(srv.url).generate([ChatRequest.of(FRANCE)]))
    assert not r.ok and r.error.startswith("BadRequestError:") and r.text == ""
    assert len(srv.requests) == 1


def test_openai_garbage_json_retried_then_error():
    with FakeServer([(200, {}, b"this is {not json")]) as srv:
        reqs = [ChatRequest.of(FRANCE), ChatRequest.of(FRANCE, Sampling(max_tokens=3))]
        out = run(_client(srv.url, max_retries=2).generate(reqs))
    assert all(not r.ok and r.error.startswith("JSONDecodeError") for r in out), out
    assert len(srv.requests) == 2 * 3  # each request: 1 attempt + 2 retries
