"""What the LLM stages share: prompt token counting, the budget against the ledger, resumable writes."""

from __future__ import annotations

import uuid
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping, Sequence

import polars as pl

from ..config import LLMConfig
from ..llm.accounting import Spend
from ..llm.base import render_chat
from ..subject_model import resolve_model
from .context import Context

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


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def spent(ctx: Context) -> Spend:
    """The whole ledger's spend (what the budget is checked against)."""
    with ctx.wh.read() as con:
        tokens, cost = con.execute("SELECT coalesce(sum(prompt_tokens + completion_tokens), 0), "
                                   "coalesce(sum(cost_usd), 0) FROM llm_calls").fetchone()
    return Spend(int(tokens), float(cost))


def pending(ctx: Context, table: str, layer: str, first: int, last: int, efp: str) -> list[int]:
    """Latents a budget stop left undone in this partition (a re-run continues with exactly these)."""
    return ctx.wh.query(f"SELECT DISTINCT latent FROM {table} WHERE layer = ? AND latent BETWEEN ? AND ? "
                        "AND explainer_fp = ? AND status = ? ORDER BY latent",
                        [layer, first, last, efp, BUDGET_EXCEEDED])["latent"].to_list()


def commit(ctx: Context, layer: str, first: int, last: int, efp: str, frames: Mapping[str, pl.DataFrame],
           ledger: Sequence[dict], fingerprints: Mapping[str, tuple[str, Mapping]],
           only_latents: Sequence[int] | None) -> None:
    """One transaction: this explainer's rows of the partition (or only of ``only_latents`` when
    resuming) are replaced by ``frames``, and the ledger rows are appended."""
    wh = ctx.wh
    with wh.write() as con:
        for fp, (kind, spec) in fingerprints.items():
            wh.record_fingerprint(con, fp, kind, spec)
        for table, frame in frames.items():
            if only_latents is None:
                wh.delete_partition(con, table, layer, first, last, {"explainer_fp": efp})
            else:
                con.execute(f"DELETE FROM {table} WHERE layer = ? AND latent IN (SELECT unnest(?)) AND explainer_fp = ?",
                            [layer, list(only_latents), efp])
            wh.insert(con, table, frame)
        if ledger:
            wh.insert(con, "llm_calls", pl.DataFrame(list(ledger), schema_overrides={
                "error": pl.Utf8, "scorer": pl.Utf8, "batch_index": pl.Int32, "cost_usd": pl.Float64,
                "latency_s": pl.Float64}))
