"""What the LLM stages share: prompt token counting (the ledger and the budget: core.llm.ledger; planning
and monotone writes: .incremental)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable

from ..config import LLMConfig
from ..llm.accounting import BudgetExceeded
from ..llm.base import render_chat
from ..subject_model import resolve_model

BUDGET_EXCEEDED = "budget_exceeded"


@lru_cache(maxsize=8)
def _tokenizer(model: str, workdir: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve_model(model, Path(workdir)))
    except Exception:  # a remote-only model name: estimate instead
        return None


def prompt_counter(llm: LLMConfig, workdir: Path) -> Callable:
    """Prompt length in tokens with the LLM's own chat template when it is local, else ~4 chars/token."""
    tok = _tokenizer(llm.model, str(workdir))
    if tok is None:
        return lambda req: sum(len(m["content"]) for m in req.messages) // 4 + len(req.prefill) // 4 + 16

    def count(req) -> int:
        return len(tok(render_chat(tok, req.messages, req.prefill), add_special_tokens=False)["input_ids"])

    return count


def budget_stop(not_sent: int, of: int, what: str, layer: str, first: int, last: int, summary: dict) -> BudgetExceeded:
    """The error a stage raises after its commit when the budget kept ``not_sent`` of ``of`` latents from being
    sent (``what``: 'explained', 'scored'); ``summary``: the stage's result so far (its metadata)."""
    err = BudgetExceeded(f"budget reached: {not_sent} of {of} latents of {layer} {first}-{last} not {what} (status "
                         f"{BUDGET_EXCEEDED}); raise budget.max_cost_usd / budget.max_tokens and re-run to continue")
    err.summary = summary
    return err
