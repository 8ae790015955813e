"""Stage explanations: one explainer request per selected latent; failures kept with the raw answer."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Callable

import polars as pl

from .. import explainers
from ..config import LLMConfig
from ..fingerprint import fingerprint
from ..subject_model import resolve_model
from .context import Context, explainer_spec, rate
from .examples import load_examples


def _prompt_counter(llm: LLMConfig, workdir: Path) -> Callable:
    """Prompt length in tokens with the LLM's own chat template when it is local, else ~4 chars/token."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(resolve_model(llm.model, workdir))
    except Exception:  # remote-only model names: estimate
        return lambda req: sum(len(m["content"]) for m in req.messages) // 4 + len(req.prefill) // 4 + 16

    def count(req) -> int:
        text = tok.apply_chat_template(list(req.messages), add_generation_prompt=True, tokenize=False)
        return len(tok(text + req.prefill, add_special_tokens=False)["input_ids"])

    return count


def run_explanations(ctx: Context, client, layer: str, first: int, last: int) -> dict:
    cfg = ctx.cfg
    efp = fingerprint("explainer", explainer_spec(cfg, ctx.workdir))
    exs = load_examples(ctx, layer, first, last, ["train"])
    sfp = ctx.wh.scalar("SELECT any_value(sampler_fp) FROM latent_selection WHERE layer = ? AND latent BETWEEN ? AND ?",
                        [layer, first, last]) or ""
    maxes = dict(ctx.wh.query("SELECT latent, max_activation FROM latent_stats WHERE layer = ? AND latent BETWEEN ? AND ?",
                              [layer, first, last]).iter_rows())
    latents = sorted(exs)
    count = _prompt_counter(cfg.explainer.llm, ctx.workdir)
    budget = cfg.explainer.llm.max_model_len - cfg.explainer.max_tokens - 8
    reqs = [explainers.fit_explainer_request(cfg.explainer, exs[lat]["train"], float(maxes.get(lat) or 0.0),
                                             count, budget)[0] for lat in latents]
    t0 = time.perf_counter()
    responses = asyncio.run(client.generate(reqs)) if reqs else []
    secs = time.perf_counter() - t0
    rows = []
    for lat, req, resp in zip(latents, reqs, responses):
        text = explainers.parse_explanation(resp.text, req.prefill) if resp.ok else None
        status = "llm_error" if not resp.ok else ("ok" if text else "parse_error")
        rows.append({"layer": layer, "latent": lat, "explainer_fp": efp, "status": status, "explanation": text,
                     "raw_text": req.prefill + resp.text, "error": resp.error, "prompt_tokens": resp.prompt_tokens,
                     "cached_tokens": resp.cached_tokens, "completion_tokens": resp.completion_tokens,
                     "latency_s": resp.latency_s, "sampler_fp": sfp})
    frame = pl.DataFrame(rows, schema_overrides={"explanation": pl.Utf8, "error": pl.Utf8}) if rows else pl.DataFrame()
    ctx.wh.replace_partition(layer, first, last, {"explanations": frame}, where={"explanations": {"explainer_fp": efp}},
                             fingerprints={efp: ("explainer", explainer_spec(cfg, ctx.workdir))})
    st = frame["status"].value_counts().rows() if rows else []
    return {"explainer_fp": efp, "status": dict(st), "latents": len(rows), "seconds": round(secs, 2),
            "latents_per_s": rate(len(rows), secs),
            "prompt_tokens": int(sum(r["prompt_tokens"] for r in rows)),
            "completion_tokens": int(sum(r["completion_tokens"] for r in rows)),
            "sample": [(r["latent"], r["explanation"]) for r in rows[:5]]}
