"""The LLM stages through the OpenAI engine against a fault-injecting local server (>= 20 % of attempts
hang, get 429 + Retry-After, 500 or garbage): the partition completes, every latent has a result or a
recorded failure with its reason, every call is in the ledger, and a re-run sends only what failed and
neither loses nor duplicates anything. Also: the budget stops a run cleanly and a re-run continues.
(Every fault at 100 %, through Dagster and the CLI: test_fault_matrix.py.)"""

from __future__ import annotations

import pytest

from autointerp_assets.core.config import load_config
from autointerp_assets.core.explainers import display_token
from autointerp_assets.core.llm import make_client
from autointerp_assets.core.llm.accounting import BudgetExceeded
from autointerp_assets.core.stages.context import Context
from autointerp_assets.core.stages.examples import load_examples
from autointerp_assets.core.stages.explanations import run_explanations
from autointerp_assets.core.stages.classifier_scores import run_classifier_scores
from autointerp_assets_tests.conftest import write_config
from autointerp_assets_tests.support.fake_openai import FakeOpenAIServer
from autointerp_assets_tests.support.synthetic import write_partition

LAYER, LATENTS = "layers.1", list(range(0, 12))


def _context(tmp_root, name, url, **over) -> Context:
    llm = {"engine": "openai", "model": "smollm2", "base_url": url, "max_concurrency": 8, "timeout_s": 0.5,
           "max_retries": 10, "backoff_base_s": 0.01, "backoff_max_s": 0.05,
           "price": {"prompt": 2.0, "cached": 0.5, "completion": 8.0}, "api_key_env": "AUTOINTERP_FAKE_KEY"}
    cfg = {"database": str(tmp_root / f"{name}.duckdb"), "explainer": {"llm": llm, "max_tokens": 32},
           "scorer": {"examples_per_prompt": 4, "scorers": ["detection", "fuzzing", "fuzzing_active"]}}
    for k, v in over.items():
        cfg[k] = {**cfg.get(k, {}), **v}
    ctx = Context.of(load_config(write_config(tmp_root / f"{name}.yaml", cfg)))
    write_partition(ctx.wh, LAYER, LATENTS)
    return ctx


def _keys(ctx, table, cols):
    return ctx.wh.query(f"SELECT {cols}, count(*) AS n FROM {table} GROUP BY ALL ORDER BY ALL")


def test_partition_completes_under_faults_and_rerun_is_exact(tmp_root, monkeypatch):
    monkeypatch.setenv("AUTOINTERP_FAKE_KEY", "sk-fault-test-secret")
    with FakeOpenAIServer(fault_rate=0.3, hang_s=1.5, seed=3) as srv:
        ctx = _context(tmp_root, "faults", srv.url)
        # one latent's explainer prompt is always rejected (400): a recorded failure, not a crash
        bad = LATENTS[-1]
        ex = load_examples(ctx, LAYER, 0, 11, ["train"])[bad]["train"][0]
        srv.reject = "".join(display_token(t) for t in ex.str_tokens[:6])  # text unique to its prompt
        client = make_client(ctx.cfg.explainer.llm, str(ctx.workdir))
        e1 = run_explanations(ctx, client, LAYER, 0, 11)
        s1 = run_classifier_scores(ctx, client, LAYER, 0, 11)
        attempts = sum(srv.outcomes.values())
        assert srv.faults / attempts >= 0.2, srv.outcomes
        assert {"hang", "429", "500", "garbage"} <= set(srv.outcomes)

        expl = ctx.wh.query("SELECT latent, status, error, explanation FROM explanations ORDER BY latent")
        assert expl["latent"].to_list() == LATENTS  # every latent: a row
        for r in expl.iter_rows(named=True):
            if r["latent"] == bad:
                assert r["status"] == "llm_error" and "BadRequestError" in r["error"] and "rejected" in r["error"]
            else:  # the retries got through every fault
                assert r["status"] == "ok" and r["explanation"] == "Words about code and its documentation.", r
        scores = ctx.wh.query("SELECT latent, scorer, status, n, n_failed, n_failed_batches, failure_reasons "
                              "FROM scores ORDER BY latent, scorer")
        assert scores.height == 11 * 3 and bad not in scores["latent"].to_list()
        for r in scores.iter_rows(named=True):  # a result, or a failure with its reasons
            assert r["status"] == "ok" or (r["status"] == "failed" and r["failure_reasons"]), r
            assert len(r["failure_reasons"]) == r["n_failed_batches"]
        # the ledger: one row per request, with the attempts the retries took and the configured price
        calls = ctx.wh.query("SELECT * FROM llm_calls")
        n_batches = ctx.wh.scalar("SELECT sum(n_batches) FROM scores")
        assert calls.height == 12 + n_batches
        assert calls.filter(calls["stage"] == "scores")["fingerprint"].n_unique() == 3
        assert calls["attempts"].max() > 1 and calls["attempts"].sum() == attempts
        assert set(calls["model"]) == {"smollm2"} and set(calls["engine"]) == {"openai"}
        for r in calls.filter(calls["status"] == "ok").head(5).iter_rows(named=True):
            want = ((r["prompt_tokens"] - r["cached_tokens"]) * 2.0 + r["cached_tokens"] * 0.5
                    + r["completion_tokens"] * 8.0) / 1e6
            assert r["cost_usd"] == pytest.approx(want) and r["cost_usd"] > 0
        assert e1["cost_usd"] + s1["cost_usd"] == pytest.approx(calls["cost_usd"].sum(), abs=2e-6)
        assert e1["llm_calls"] == 12 and s1["llm_calls"] == n_batches
        # the key never lands in DuckDB
        with ctx.wh.read() as con:
            dump = str(con.execute("SELECT * FROM llm_calls").fetchall()) + \
                str(con.execute("SELECT * FROM fingerprints").fetchall())
        assert "sk-fault-test-secret" not in dump

        before = {t: _keys(ctx, t, c) for t, c in (("explanations", "layer, latent, explainer_fp"),
                                                    ("scores", "layer, latent, explainer_fp, scorer"),
                                                    ("score_items", "layer, latent, explainer_fp, scorer, example_id"))}
        failed_scores = ctx.wh.scalar("SELECT count(*) FROM scores WHERE status <> 'ok'")
        received = srv.received
        e2 = run_explanations(ctx, client, LAYER, 0, 11)  # only the rejected latent is sent again (and fails again)
        s2 = run_classifier_scores(ctx, client, LAYER, 0, 11)  # only failed scores are sent again
        assert e2["latents_sent"] == 1 and e2["latents_already_done"] == 11 and e2["llm_calls"] == 1
        assert s2["latents_sent"] == failed_scores
        assert srv.received - received == e2["llm_attempts"] + s2["llm_attempts"]  # nothing else went out
    for t, frame in before.items():  # same keys, each once: nothing lost, nothing duplicated
        after = _keys(ctx, t, ", ".join(frame.columns[:-1]))
        assert after.equals(frame), t
        # each key once (fuzzing_active shows each activating example twice: right and wrong highlights)
        want = {1} if t != "score_items" else {1, 2}
        assert set(after["n"]) == want, t
        if t == "score_items":
            assert set(after.filter(after["n"] == 2)["scorer"]) == {"fuzzing_active"}
    assert ctx.wh.scalar("SELECT max(n) FROM (SELECT count(*) n FROM score_items GROUP BY layer, latent, "
                         "explainer_fp, scorer, example_id, truth)") == 1
    # the ledger is append-only: both runs' calls are there, told apart by run id; none is left 'sent'
    runs = ctx.wh.query("SELECT stage, count(DISTINCT run_id) AS runs FROM llm_calls GROUP BY stage ORDER BY stage")
    assert runs.rows() == [("explanations", 2), ("scores", 2 if failed_scores else 1)]
    assert ctx.wh.scalar("SELECT count(*) FROM llm_calls WHERE status = 'sent'") == 0
    assert ctx.wh.query("SELECT latent, attempts, failed_attempts FROM explanations WHERE latent = 11").rows() == \
        [(11, 2, 2)]


def test_budget_stops_cleanly_and_a_rerun_continues(tmp_root):
    with FakeOpenAIServer() as srv:
        ctx = _context(tmp_root, "budget", srv.url, budget={"max_tokens": 5000})
        client = make_client(ctx.cfg.explainer.llm, str(ctx.workdir))
        with pytest.raises(BudgetExceeded, match=r"budget reached: \d+ of 12 latents .* re-run to continue"):
            run_explanations(ctx, client, LAYER, 0, 11)
        expl = ctx.wh.query("SELECT latent, status, raw_text, created_at FROM explanations ORDER BY latent")
        done = expl.filter(expl["status"] == "ok")
        assert expl.height == 12 and 0 < done.height < 12
        # admitted in latent order; the rest are visibly not done, never sent
        assert done["latent"].to_list() == LATENTS[:done.height]
        assert set(expl["status"][done.height:]) == {"budget_exceeded"}
        assert srv.outcomes["ok"] == done.height
        spent = ctx.wh.scalar("SELECT sum(prompt_tokens + completion_tokens) FROM llm_calls")
        assert 0 < spent <= 5000
        # scores of what was explained: the ledger already holds the spend, so nothing fits; stops again
        with pytest.raises(BudgetExceeded):
            run_classifier_scores(ctx, client, LAYER, 0, 11)
        assert set(ctx.wh.query("SELECT status FROM scores")["status"]) == {"budget_exceeded"}

        ctx2 = _context(tmp_root, "budget", srv.url, budget={"max_tokens": 10**9})
        sent_before = srv.outcomes["ok"]
        out = run_explanations(ctx2, client, LAYER, 0, 11)
        assert out["resumed"] and srv.outcomes["ok"] - sent_before == 12 - done.height  # only the pending ones
        again = ctx2.wh.query("SELECT latent, status, raw_text, created_at FROM explanations ORDER BY latent")
        assert set(again["status"]) == {"ok"} and again.height == 12
        assert again.head(done.height).equals(done)  # the first run's results untouched
        s = run_classifier_scores(ctx2, client, LAYER, 0, 11)
        assert s["latents_sent"] == 12 and ctx2.wh.query("SELECT DISTINCT status FROM scores")["status"].to_list() == ["ok"]
        assert ctx2.wh.scalar("SELECT count(*) FROM scores") == 12 * 3


def test_budget_in_dollars_admits_nothing_when_spent(tmp_root):
    with FakeOpenAIServer() as srv:
        ctx = _context(tmp_root, "dollars", srv.url, budget={"max_cost_usd": 1e-9})
        client = make_client(ctx.cfg.explainer.llm, str(ctx.workdir))
        with pytest.raises(BudgetExceeded, match="12 of 12"):
            run_explanations(ctx, client, LAYER, 0, 11)
        assert srv.outcomes["ok"] == 0
        assert ctx.wh.scalar("SELECT count(*) FROM llm_calls") == 0
