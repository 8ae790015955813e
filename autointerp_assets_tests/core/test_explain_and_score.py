"""Explanations and the yes/no scorers pipelined (core.stages.explain_and_score) against a local OpenAI-compatible
server: the same rows as the two stages one after the other, with scoring requests at the server before the last
explanation is answered (the server's own record of when what arrived and was answered)."""

from __future__ import annotations

import polars as pl
import pytest

from autointerp_assets.core.config import parse_config
from autointerp_assets.core.errors import StageFailed
from autointerp_assets.core.llm import make_client
from autointerp_assets.core.stages.classifier_scores import run_classifier_scores
from autointerp_assets.core.stages.context import Context
from autointerp_assets.core.stages.explain_and_score import pipelined, run_explain_and_score
from autointerp_assets.core.stages.explanations import run_explanations
from autointerp_assets_tests.conftest import ROOT
from autointerp_assets_tests.support.fake_openai import FakeOpenAIServer
from autointerp_assets_tests.support.synthetic import write_partition

LAYER, N = "layers.1", 24
TABLES = {
    "explanations": "SELECT latent, status, explanation, raw_text, error, prompt_tokens FROM explanations",
    "scores": "SELECT latent, scorer, scorer_fp, status, n, n_failed, balanced_accuracy, auroc, n_batches, "
              "prompt_tokens, completion_tokens FROM scores",
    "score_items": "SELECT latent, scorer, example_id, batch_index, truth, prediction, probability FROM score_items",
    "llm_calls": "SELECT stage, role, latent, scorer, batch_index, status, attempts, prompt_tokens, "
                 "completion_tokens FROM llm_calls",
}


def _ctx(root, name: str, url: str) -> Context:
    llm = {"engine": "openai", "model": "smollm2", "base_url": url, "max_concurrency": 64,
           "api_key_env": "AUTOINTERP_UNSET_KEY"}
    cfg = parse_config({"database": str(root / f"{name}.duckdb"), "workdir": str(ROOT / "data"),
                        "hookpoints": [LAYER], "latents": {"start": 0, "stop": 1024, "range_size": 1024},
                        "sampler": {"example_ctx_len": 16, "min_examples": 11, "n_train": 6, "n_test": 5,
                                    "n_quantiles": 5, "n_non_activating": 5},
                        "explainer": {"llm": llm}, "scorer": {"scorers": ["detection", "fuzzing"]}})
    ctx = Context.of(cfg)
    write_partition(ctx.wh, LAYER, list(range(N)), n_train=6, n_test=5, n_non_activating=5)
    return ctx


def _rows(ctx: Context) -> dict[str, pl.DataFrame]:
    return {t: ctx.wh.query(q).sort(pl.all()) for t, q in TABLES.items()}


def test_pipelined_rows_equal_the_stages_one_after_the_other(tmp_root):
    root = tmp_root / "pipelined"
    root.mkdir()
    with FakeOpenAIServer(latency_s=0.1, capacity=4) as srv:
        seq = _ctx(root, "sequential", srv.url)
        client = make_client(seq.cfg.explainer.llm, str(seq.workdir))
        assert pipelined(client, client) and client.concurrent
        e1 = run_explanations(seq, client, LAYER, 0, 1023)
        s1 = run_classifier_scores(seq, client, LAYER, 0, 1023)
        apart = srv.arrived, srv.answered
        srv.arrived, srv.answered = [], []
        pipe = _ctx(root, "pipe", srv.url)
        e2, s2 = run_explain_and_score(pipe, client, client, LAYER, 0, 1023)
        together = srv.arrived, srv.answered
        # a second run finds everything done: nothing is sent
        before = srv.received
        e3, s3 = run_explain_and_score(pipe, client, client, LAYER, 0, 1023)
        assert srv.received == before and e3["latents_sent"] == 0 and s3["latents_sent"] == 0
    assert e1["status"] == e2["status"] == {"ok": N} and s1["latents_sent"] == s2["latents_sent"] == N
    assert s1["scorers"] == s2["scorers"]
    a, b = _rows(seq), _rows(pipe)
    for table in TABLES:
        assert a[table].height > 0 and a[table].equals(b[table]), table
    assert b["llm_calls"].height == N + b["scores"]["n_batches"].sum()

    def overlap(events):  # scoring requests that arrived before the last explanation was answered
        arrived, answered = events
        last_explanation = max(t for t, kind in answered if kind == "explainer")
        return sum(t < last_explanation for t, kind in arrived if kind == "scorer")
    assert overlap(apart) == 0 and len(apart[0]) == len(together[0]) == len(together[1])
    assert overlap(together) > 0, "the scoring requests waited for every explanation"


def test_a_fatal_server_error_stops_both_stages_after_their_commit(tmp_root):
    root = tmp_root / "pipelined-fatal"
    root.mkdir()
    with FakeOpenAIServer(mode="401") as srv:
        ctx = _ctx(root, "fatal", srv.url)
        client = make_client(ctx.cfg.explainer.llm, str(ctx.workdir))
        with pytest.raises(StageFailed, match="401|API key"):
            run_explain_and_score(ctx, client, client, LAYER, 0, 1023)
    # every explanation request is in the ledger (sent or unsent), none as an explanation row; nothing scored
    calls = ctx.wh.query("SELECT stage, status, count(*) AS n FROM llm_calls GROUP BY ALL ORDER BY ALL")
    assert calls["stage"].to_list() == ["explanations"] * calls.height and calls["n"].sum() == N
    assert ctx.wh.scalar("SELECT count(*) FROM scores") == 0
    assert srv.received < N, "the fatal error did not stop the overlapping calls"
