"""The write-ahead LLM ledger: a request is recorded (table ``llm_calls``, status ``sent``) before it is sent
and completed after, so a killed run's spend is counted and the budget is a hard cap.

- **Reserve** (one short transaction, before anything is sent): each request gets a row ``status = 'sent'``
  holding its worst case — its prompt tokens (counted, or estimated at ~4 characters per token) plus its
  ``max_tokens``, and the cost of that. With a budget, the spend already in the ledger (completed rows at
  their real cost, ``sent`` rows of unfinished or killed runs at their worst case) plus the new rows must fit,
  checked and written in the same transaction under the warehouse's writer lock, so two runs cannot both
  spend the last of a budget.
- **Complete** (inside the stage's results transaction): the run's ``sent`` rows are replaced by one row per
  request with its real tokens, attempts, latency and cost (status ``ok`` / ``error``; ``unsent`` for a
  request a fatal error stopped before it went out).

A run killed between the two leaves its ``sent`` rows: they keep counting at their worst case (what the
server may have billed). Requests carry their row's ``call_id`` (HTTP engines send it as the header
``X-Autointerp-Call``), so a server's log can be matched against the ledger.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Callable, Sequence

import polars as pl

from ..config import BudgetConfig, LLMConfig
from ..storage import queries
from .accounting import BudgetExceeded, Spend, admit, limited, worst_case
from .base import ChatRequest, Sampling

SENT = "sent"
UNSENT = "unsent"

SCHEMA = {"error": pl.Utf8, "scorer": pl.Utf8, "batch_index": pl.Int32, "cost_usd": pl.Float64,
          "latency_s": pl.Float64, "call_id": pl.Utf8}


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def rough_count(req: ChatRequest) -> int:
    """A prompt-length estimate without a tokenizer (~4 characters per token, plus the chat template)."""
    return sum(len(m["content"]) for m in req.messages) // 4 + len(req.prefill) // 4 + 16


def spent(con) -> Spend:
    """The whole ledger's spend: completed calls at their cost, ``sent`` ones at their worst case."""
    tokens, cost = con.execute(queries.LEDGER_TOTALS).fetchone()
    return Spend(int(tokens), float(cost))


class Ledger:
    """One stage run's ledger: reserves before sending, completes with the results.

    ``count``: prompt tokens of a request (the LLM's own tokenizer) — used when a budget is set; without
    one the cheap estimate :func:`rough_count` is recorded instead.
    """

    def __init__(self, wh, llm: LLMConfig, budget: BudgetConfig, *, layer: str, stage: str, role: str,
                 explainer_fp: str, fingerprint: str | None = None, count: Callable[[ChatRequest], int] | None = None):
        self.wh, self.llm, self.budget = wh, llm, budget
        self.layer, self.stage, self.role, self.explainer_fp = layer, stage, role, explainer_fp
        self.fingerprint = fingerprint or explainer_fp
        self.run_id = new_run_id()
        self._count = count
        self.reserved = 0

    # --- estimates -------------------------------------------------------------------------------
    def count(self, req: ChatRequest) -> int:
        return self._count(req) if (self._count is not None and limited(self.budget)) else rough_count(req)

    def estimate(self, requests: Sequence[ChatRequest]) -> Spend:
        return worst_case(self.llm, requests, [self.count(r) for r in requests])

    # --- reserve ---------------------------------------------------------------------------------
    def _row(self, req: ChatRequest, keys: dict, prompt: int) -> dict:
        return {"run_id": self.run_id, "call_id": req.call_id, "layer": self.layer, "latent": keys.get("latent", -1),
                "stage": self.stage, "role": self.role, "explainer_fp": self.explainer_fp,
                "fingerprint": keys.get("fingerprint", self.fingerprint), "scorer": keys.get("scorer"),
                "batch_index": keys.get("batch_index"), "engine": self.llm.engine, "model": self.llm.model,
                "status": SENT, "error": None, "attempts": 0, "prompt_tokens": prompt, "cached_tokens": 0,
                "completion_tokens": req.sampling.max_tokens, "latency_s": 0.0,
                "cost_usd": self.llm.price.cost(prompt, 0, req.sampling.max_tokens)}

    def _admit(self, units: list[list[tuple[ChatRequest, dict, int]]]) -> int:
        if not any(units):
            return len(units)  # nothing to send: no transaction
        for attempt in self.wh.attempts():
            with attempt as con:
                n = len(units)
                if limited(self.budget) and units:
                    n = admit(self.budget, spent(con), [worst_case(self.llm, [r for r, _, _ in u], [c for _, _, c in u])
                                                        for u in units])
                rows = [self._row(r, k, c) for u in units[:n] for r, k, c in u]
                if rows:
                    self.wh.insert(con, "llm_calls", pl.DataFrame(rows, schema_overrides=SCHEMA))
        self.reserved += len(rows)
        return n

    def admit(self, units: Sequence[Sequence[tuple[ChatRequest, dict]]]) -> tuple[int, list[list[ChatRequest]]]:
        """The leading units (e.g. latents, each a list of (request, ledger keys)) that fit the budget, recorded
        as ``sent`` in one transaction; returns how many were admitted and their requests with call ids."""
        tagged = [[(dataclasses.replace(r, call_id=uuid.uuid4().hex), k, self.count(r)) for r, k in unit]
                  for unit in units]  # counted before the transaction: tokenizing is not done under the lock
        n = self._admit(tagged)
        return n, [[r for r, _, _ in unit] for unit in tagged[:n]]

    def _stop(self, n: int) -> BudgetExceeded:
        return BudgetExceeded(f"budget reached: {n} {self.stage} requests of {self.layer} not sent (their worst case "
                              "does not fit); raise budget.max_cost_usd / budget.max_tokens and re-run to continue")

    def reserve(self, requests: Sequence[ChatRequest], keys: Sequence[dict] | None = None) -> list[ChatRequest]:
        """All of ``requests`` recorded as ``sent``, or :class:`BudgetExceeded` before any is sent."""
        n, admitted = self.admit([[(r, (keys[i] if keys else {})) for i, r in enumerate(requests)]])
        if requests and n == 0:
            raise self._stop(len(requests))
        return admitted[0] if admitted else []

    def reserve_counts(self, prompt_tokens: Sequence[int], completion_tokens: int = 1) -> None:
        """Requests that bypass ``generate`` (vLLM prompt logprobs), by their exact prompt lengths."""
        req = ChatRequest((), Sampling(max_tokens=completion_tokens))
        unit = [(dataclasses.replace(req, call_id=uuid.uuid4().hex), {}, int(n)) for n in prompt_tokens]
        if unit and self._admit([unit]) == 0:
            raise self._stop(len(unit))

    def client(self, inner) -> "WriteAheadClient":
        return WriteAheadClient(inner, self)

    # --- complete --------------------------------------------------------------------------------
    def complete(self, con, rows: Sequence[dict]) -> None:
        """Inside the results transaction: this run's ``sent`` rows become ``rows`` (one per request)."""
        con.execute(queries.DELETE_LEDGER_RUN_STATUS, [self.run_id, SENT])
        if rows:
            fixed = [{**r, "run_id": self.run_id, "status": UNSENT if r["attempts"] == 0 and r["status"] != "ok"
                      else r["status"]} for r in rows]
            self.wh.insert(con, "llm_calls", pl.DataFrame(fixed, schema_overrides=SCHEMA))


class WriteAheadClient:
    """An LLM client whose ``generate`` reserves every request in the ledger before the engine sends it; every
    other attribute is the engine's own."""

    def __init__(self, inner, ledger: Ledger):
        self._inner, self._ledger = inner, ledger

    async def generate(self, requests: Sequence[ChatRequest]):
        if not requests:
            return []
        sent = self._ledger.reserve(requests)
        responses = await self._inner.generate(sent)
        for req, resp in zip(sent, responses):
            resp.call_id = req.call_id
        return responses

    def reserve_counts(self, prompt_tokens: Sequence[int], completion_tokens: int = 1) -> None:
        """For requests that bypass ``generate`` (vLLM prompt logprobs): their worst case, recorded first."""
        self._ledger.reserve_counts(prompt_tokens, completion_tokens)

    def __getattr__(self, name):
        return getattr(self._inner, name)
