"""The write-ahead ledger and the budget as a hard cap (OpenAI engine -> the local fake server, real DuckDB).

- Two consecutive runs of one capped config: the second admits nothing more and changes none of the first
  run's ok rows (before, a re-run turned ok scores into budget_exceeded).
- A run SIGKILLed mid-stage: every request the server received is in the ledger (recorded before it was
  sent, status 'sent', counted at its worst case), so the next capped run cannot spend that budget again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from autointerp_assets.core.llm import make_client
from autointerp_assets.core.llm.accounting import BudgetExceeded
from autointerp_assets.core.stages.explanations import run_explanations
from autointerp_assets.core.stages.classifier_scores import run_classifier_scores
from autointerp_assets_tests.conftest import ROOT
from autointerp_assets_tests.core.test_faults import LATENTS, LAYER, _context
from autointerp_assets_tests.support.fake_openai import FakeOpenAIServer

RESULTS = {"explanations": "SELECT * FROM explanations ORDER BY latent",
           "ok scores": "SELECT * FROM scores WHERE status = 'ok' ORDER BY latent, scorer",
           "score_items": "SELECT * FROM score_items ORDER BY ALL",
           "not sent": "SELECT latent, scorer, status FROM scores WHERE status <> 'ok' ORDER BY ALL"}


def _spent(ctx) -> int:
    return ctx.wh.scalar("SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) FROM llm_calls")


def test_two_capped_runs_leave_the_first_runs_ok_rows_untouched(tmp_root):
    with FakeOpenAIServer() as srv:
        ctx = _context(tmp_root, "capped-twice", srv.url)
        client = make_client(ctx.cfg.explainer.llm, str(ctx.workdir))
        run_explanations(ctx, client, LAYER, 0, 11)
        # a cap that admits some latents' scores: the rest are budget_exceeded and the stage stops
        cap = _spent(ctx) + 6000
        capped = _context(tmp_root, "capped-twice", srv.url, budget={"max_tokens": cap})
        with pytest.raises(BudgetExceeded, match="not scored"):
            run_classifier_scores(capped, client, LAYER, 0, 11)
        first = {k: capped.wh.query(q) for k, q in RESULTS.items()}
        ok = first["ok scores"]
        assert 0 < ok["latent"].n_unique() < len(LATENTS) and set(first["not sent"]["status"]) == {"budget_exceeded"}
        received = srv.received
        # the same config again: nothing more fits; nothing is sent; every row stays as it was
        with pytest.raises(BudgetExceeded, match="not scored"):
            run_classifier_scores(capped, client, LAYER, 0, 11)
        assert srv.received == received
        for k, q in RESULTS.items():
            assert capped.wh.query(q).equals(first[k]), k
        assert _spent(capped) <= cap


CHILD = """
import sys
from autointerp_assets.core.config import load_config
from autointerp_assets.core.stages.context import Context
from autointerp_assets.core.llm import make_client
from autointerp_assets.core.stages.explanations import run_explanations
ctx = Context.of(load_config(sys.argv[1]))
run_explanations(ctx, make_client(ctx.cfg.explainer.llm, str(ctx.workdir)), "layers.1", 0, 11)
"""


def test_a_killed_run_has_every_sent_request_in_the_ledger_and_the_cap_holds(tmp_root):
    # slow answers, two at a time: the child is killed while requests are in flight
    with FakeOpenAIServer(latency_s=3.0, capacity=2) as srv:
        cap = 6 * 700  # about half the latents' worst case (counted prompt ~600 + max_tokens 32)
        capped = _context(tmp_root, "killed", srv.url, budget={"max_tokens": cap})
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_root / "killed.yaml")], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 180
            while srv.received < 2 and time.monotonic() < deadline and child.poll() is None:
                time.sleep(0.05)
            assert srv.received >= 2, child.communicate(timeout=5)[0][-2000:]
            os.killpg(child.pid, signal.SIGKILL)  # mid-stage: requests in flight, nothing committed
            child.wait(10)
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
        received = set(srv.call_ids)
        ledger = capped.wh.query("SELECT call_id, latent, status, prompt_tokens + completion_tokens AS worst "
                                 "FROM llm_calls")
        assert len(received) == srv.received and received <= set(ledger["call_id"])  # each one recorded first
        assert set(ledger["status"]) == {"sent"}  # none completed: killed before its commit
        first = ledger.height
        assert 2 <= srv.received <= first < len(LATENTS)  # the cap admitted part of the latents
        assert ledger["worst"].sum() == _spent(capped) <= cap  # they count, at their worst case
        assert capped.wh.scalar("SELECT count(*) FROM explanations") == 0  # no partial results

        # the next run of the capped config: the killed run's requests still count against the cap
        n = srv.received
        client = make_client(capped.cfg.explainer.llm, str(capped.workdir))
        with pytest.raises(BudgetExceeded):
            run_explanations(capped, client, LAYER, 0, 11)
        again = capped.wh.query("SELECT latent FROM llm_calls WHERE status <> 'sent'")
        assert srv.received - n == again.height < first  # only what was left of the cap was spent
        assert _spent(capped) <= cap
