"""Stage explanations for the baseline explainers (core.explainer_baselines): no LLM, no ledger rows.

``run_baseline_explanations`` writes one explanation per latent with train examples -- the latents the LLM
explainer explains -- keyed by the baseline's own fingerprint. ``baseline_contexts`` gives, per configured
companion explainer -- the baselines (``baseline_explainers``) and the output-centric LLM explainers
(``output_explainers``) -- the project config with that explainer swapped in (the intruder scorer, which never
reads an explanation, left out), so the scores stages score it exactly like the active explainer, and
``run_baselines`` explains and scores them beside it.
"""

from __future__ import annotations

import time
from typing import Callable

import polars as pl

from .. import explainer_baselines
from ..explainer_baselines import is_baseline
from ..identity import explainer_fp, explainer_spec, explainer_spec_fp, scorer_fp, scorer_spec
from ..llm import accounting
from ..storage import queries
from .context import Context
from .examples import load_examples


def run_baseline_explanations(ctx: Context, layer: str, first: int, last: int) -> dict:
    from .explanations import logit_tokens  # (that module dispatches baseline kinds here)

    cfg, e = ctx.cfg, ctx.cfg.explainer
    spec = explainer_spec(cfg, ctx.workdir)
    efp = explainer_spec_fp(spec)
    t0 = time.perf_counter()
    exs = load_examples(ctx, layer, first, last, ["train"])
    sfp = ctx.wh.scalar(queries.RANGE_SELECTION_SAMPLER_FP, [layer, first, last]) or ""
    latents = sorted(lat for lat in exs if exs[lat].get("train"))
    promoted, unavailable = {}, None
    if e.kind == "logit_lens" and latents:
        try:
            promoted = logit_tokens(ctx, layer, first, last, e.n_baseline_tokens)
        except RuntimeError as err:  # no decoder weights / unembedding: recorded per latent, never scored
            unavailable = str(err)
            ctx.log(f"baseline logit_lens unavailable for {layer} {first}-{last}: {err}")
    rows = []
    for lat in latents:
        if e.kind == "top_tokens":
            text = explainer_baselines.top_tokens_explanation(exs[lat]["train"], e.n_baseline_tokens, e.baseline_mass)
        else:
            text = explainer_baselines.logit_lens_explanation(promoted.get(lat, ()), e.n_baseline_tokens)
        status = "ok" if text else ("unavailable" if unavailable else "parse_error")
        rows.append({"layer": layer, "latent": lat, "explainer_fp": efp, "status": status,
                     "explanation": text, "raw_text": text or "(no token to name)", "error": unavailable,
                     "prompt_tokens": 0,
                     "cached_tokens": 0, "completion_tokens": 0, "latency_s": 0.0, "cost_usd": 0.0, "sampler_fp": sfp})
    frame = pl.DataFrame(rows, schema_overrides={"explanation": pl.Utf8, "error": pl.Utf8, "raw_text": pl.Utf8,
                                                 "cost_usd": pl.Float64, "latency_s": pl.Float64}) \
        if rows else pl.DataFrame()
    for attempt in ctx.wh.attempts():  # deterministic and free: the partition's rows of this baseline, replaced whole
        with attempt as con:
            ctx.wh.record_fingerprint(con, efp, "explainer", spec)
            ctx.wh.delete_partition(con, "explanations", layer, first, last, {"explainer_fp": efp})
            if rows:
                ctx.wh.insert(con, "explanations", frame)
    secs = time.perf_counter() - t0
    st = frame["status"].value_counts().rows() if rows else []
    return {"explainer_fp": efp, "explainer_kind": e.kind, "status": dict(st), "latents": len(rows), "resumed": False,
            "seconds": round(secs, 2), "latents_per_s": round(len(rows) / secs, 3) if secs > 0 else 0.0,
            **accounting.totals([]), "sample": [(r["latent"], r["explanation"]) for r in rows[:5]]}


def baseline_contexts(ctx: Context) -> list[Context]:
    """One Context per companion explainer (:meth:`..config.ProjectConfig.companions`), explained and scored beside
    the active one on the same latents."""
    return [Context(c, ctx.wh, ctx.log) for _, c in ctx.cfg.companions()]


def explained_and_scored(ctx: Context, layer: str, first: int, last: int, scored: bool = True) -> bool:
    """Whether ctx's explainer already explained this partition's current examples (its selected latents, up to
    ``explainer.max_latents``) and, with ``scored``, every one of its ok explanations carries the current scores
    (same scorer fingerprints): a re-run would only repeat it."""
    efp = explainer_fp(ctx.cfg, ctx.workdir)
    sfps = [scorer_fp(scorer_spec(ctx.cfg, ctx.workdir, k)) for k in ctx.cfg.scorer.scorers] \
        if scored else []
    with ctx.wh.read() as con:
        current = con.execute(queries.RANGE_SELECTION_SAMPLER_FP, [layer, first, last]).fetchone()[0]
        stale, n = con.execute(queries.RANGE_STALE_OR_UNSCORED_EXPLANATIONS, [current, sfps, len(sfps), layer, first, last, efp]).fetchone()
        selected = con.execute(queries.RANGE_SELECTED_COUNT, [layer, first, last]).fetchone()[0]
    cap = ctx.cfg.explainer.max_latents
    return current is not None and n == (min(selected, cap) if cap else selected) > 0 and stale == 0


def run_baselines(ctx: Context, client, layer: str, first: int, last: int, score: bool,
                  explainer_client: Callable[[], object] | None = None) -> dict[str, str]:
    """Explain (and with ``score``, score like the active explainer) the partition with every companion explainer
    (``baseline_contexts``) whose rows are not already current; {kind: explainer_fp}. Baseline explanations cost
    no LLM call; an output-centric explainer gets its LLM from ``explainer_client()``."""
    from .explanations import run_explanations
    from .intervention_scores import intervention_current, run_intervention_scores
    from .scores import run_scores

    out = {}
    for b in baseline_contexts(ctx):
        if not explained_and_scored(b, layer, first, last, scored=score):
            if not explained_and_scored(b, layer, first, last, scored=False):
                llm = None if is_baseline(b.cfg.explainer.kind) or explainer_client is None else explainer_client()
                run_explanations(b, llm, layer, first, last)
            if score:
                run_scores(b, client, layer, first, last, intervention=False)  # below, where not current
        if score and "intervention" in b.cfg.scoring.scorers and not intervention_current(b, layer, first, last):
            run_intervention_scores(b, client, layer, first, last)
        out[b.cfg.explainer.kind] = explainer_fp(b.cfg, b.workdir)
    return out
