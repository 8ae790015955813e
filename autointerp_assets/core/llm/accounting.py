"""LLM call accounting: one ledger row per request (tokens, latency, cost) and budget admission.

Pure code. Requests are recorded before they are sent and completed with their results
(:mod:`.ledger`, the write-ahead ledger); these are the rows and the admission rule. Cost comes from the
engine config's price table ($ per 1M prompt / cached / completion tokens; 0 for local engines).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..config import BudgetConfig, LLMConfig
from .base import ChatRequest, ChatResponse


class BudgetExceeded(RuntimeError):
    """Some latents were not sent because the budget would have been exceeded (they stay not done)."""


def call_row(cfg: LLMConfig, resp: ChatResponse, **keys) -> dict:
    """One ledger row: ``keys`` (run_id, layer, latent, stage, role, explainer_fp, fingerprint, scorer,
    batch_index) plus call_id, engine, model, status, error, attempts, tokens, latency and cost."""
    return {**keys, "call_id": resp.call_id, "engine": cfg.engine, "model": cfg.model, "status": "ok" if resp.ok else "error",
            "error": resp.error, "attempts": resp.attempts, "prompt_tokens": resp.prompt_tokens,
            "cached_tokens": resp.cached_tokens, "completion_tokens": resp.completion_tokens,
            "latency_s": resp.latency_s,
            "cost_usd": cfg.price.cost(resp.prompt_tokens, resp.cached_tokens, resp.completion_tokens)}


def totals(rows: Sequence[dict]) -> dict:
    """Totals of ledger rows, for asset metadata."""
    return {"llm_calls": len(rows),
            "llm_failed_calls": sum(r["status"] != "ok" for r in rows),
            "llm_attempts": sum(r["attempts"] for r in rows),
            "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
            "cached_tokens": sum(r["cached_tokens"] for r in rows),
            "completion_tokens": sum(r["completion_tokens"] for r in rows),
            "cost_usd": round(sum(r["cost_usd"] for r in rows), 6)}


@dataclass(frozen=True)
class Spend:
    tokens: int = 0
    cost_usd: float = 0.0


def worst_case(cfg: LLMConfig, requests: Sequence[ChatRequest], prompt_tokens: Sequence[int]) -> Spend:
    """What ``requests`` can cost at most: their counted prompts (none cached) + every max_tokens."""
    completion = sum(r.sampling.max_tokens for r in requests)
    prompt = sum(prompt_tokens)
    return Spend(prompt + completion, cfg.price.cost(prompt, 0, completion))


def admit(budget: BudgetConfig, spent: Spend, estimates: Sequence[Spend]) -> int:
    """How many leading units (latents, in order) fit: spent + their worst cases stays within the budget."""
    tokens, cost = spent.tokens, spent.cost_usd
    for n, e in enumerate(estimates):
        tokens += e.tokens
        cost += e.cost_usd
        if (budget.max_tokens is not None and tokens > budget.max_tokens) or \
                (budget.max_cost_usd is not None and cost > budget.max_cost_usd + 1e-12):
            return n
    return len(estimates)


def limited(budget: BudgetConfig) -> bool:
    return budget.max_tokens is not None or budget.max_cost_usd is not None
