"""Stage scores: every configured scorer of every ok explanation; per-latent metrics.

Every kind x latent x batch goes to the engine in ONE ``generate`` call. A malformed answer fails only
its batch; a latent whose batches all fail gets status 'failed' with its reasons; neither fails the
partition. Calls land in the ``llm_calls`` ledger; the budget works as in the explanations stage.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import polars as pl

from .. import metrics, scorers
from ..fingerprint import fingerprint
from ..llm import accounting
from ..llm.accounting import BudgetExceeded
from .context import Context, engine_label, explainer_spec, rate, scorer_spec
from .examples import current_explanations, load_examples
from .llm_runs import BUDGET_EXCEEDED, commit, new_run_id, pending, prompt_counter, spent

F64 = ("balanced_accuracy", "accuracy", "precision", "recall", "f1", "auroc", "latency_s", "cost_usd")


def _score_row(base: dict, res: scorers.ScoreResult | None, m: dict | None, cost: float) -> dict:
    if res is None:  # not sent (budget)
        return {**base, "status": BUDGET_EXCEEDED, "status_reason": "not sent: the budget would have been exceeded",
                "n": 0, "n_failed": 0, "balanced_accuracy": None,
                "accuracy": None, "precision": None, "recall": None, "f1": None, "auroc": None, "n_batches": 0,
                "n_failed_batches": 0, "failure_reasons": ["not sent: the budget would have been exceeded"],
                "prompt_tokens": 0, "completion_tokens": 0, "latency_s": 0.0, "cost_usd": 0.0}
    status, reason = metrics.score_status(m, "balanced_accuracy")  # ok / failed / undefined (+ why)
    return {**base, "status": status, "status_reason": reason, "n": m["n"], "n_failed": m["n_failed"],
            **{k: m[k] for k in ("balanced_accuracy", "accuracy", "precision", "recall", "f1", "auroc")},
            "n_batches": res.n_batches, "n_failed_batches": res.n_failed_batches,
            "failure_reasons": list(res.failure_reasons), "prompt_tokens": res.prompt_tokens,
            "completion_tokens": res.completion_tokens, "latency_s": res.latency_s, "cost_usd": cost}


def run_scores(ctx: Context, client, layer: str, first: int, last: int, explainer_fp: str | None = None) -> dict:
    """``explainer_fp``: score another explainer's stored explanations (default: the configured explainer's)."""
    cfg, scfg, llm = ctx.cfg, ctx.cfg.scorer, ctx.cfg.scorer_llm
    efp = explainer_fp or fingerprint("explainer", explainer_spec(cfg, ctx.workdir))
    resume = pending(ctx, "scores", layer, first, last, efp)
    expl, samp = current_explanations(ctx, layer, first, last, efp)  # made from these examples only
    exs = load_examples(ctx, layer, first, last, ["test", "non_activating"])
    # resuming after a budget stop: score what is not finished (pending, or explained since then)
    done = set() if not resume else set(ctx.wh.query(
        "SELECT DISTINCT latent FROM scores WHERE layer = ? AND latent BETWEEN ? AND ? AND explainer_fp = ? "
        "AND status <> ?", [layer, first, last, efp, BUDGET_EXCEEDED])["latent"].to_list())
    jobs = [scorers.ScoreJob(f"{layer}/{lat}", text, exs.get(lat, {}).get("test", []),
                             exs.get(lat, {}).get("non_activating", []))
            for lat, text in expl.iter_rows() if lat not in done]
    kinds = list(scfg.scorers)
    specs = {k: scorer_spec(cfg, ctx.workdir, k) for k in kinds}
    sfps = {k: fingerprint("scorer", specs[k]) for k in kinds}
    n_sent = len(jobs)
    if accounting.limited(cfg.budget) and jobs:
        count = prompt_counter(llm, ctx.workdir)
        estimates = []
        for job in jobs:
            reqs = scorers.scorer_requests(kinds, job, scfg)
            estimates.append(accounting.worst_case(llm, reqs, [count(r) for r in reqs]))
        n_sent = accounting.admit(cfg.budget, spent(ctx), estimates)
    t0 = time.perf_counter()
    results = asyncio.run(scorers.score_all(client, kinds, jobs[:n_sent], scfg)) if n_sent else {k: [] for k in kinds}
    secs = time.perf_counter() - t0
    run_id = new_run_id()
    item_rows, score_rows, ledger = [], [], []
    for kind in kinds:
        for j, job in enumerate(jobs):
            lat = int(job.key.rsplit("/", 1)[1])
            base = {"layer": layer, "latent": lat, "explainer_fp": efp, "scorer": kind, "scorer_fp": sfps[kind],
                    "sampler_fp": samp}
            if j >= n_sent:
                score_rows.append(_score_row(base, None, None, 0.0))
                continue
            res = results[kind][j]
            calls = [accounting.call_row(llm, resp, run_id=run_id, layer=layer, latent=lat, stage="scores",
                                         role="scorer", explainer_fp=efp, fingerprint=sfps[kind], scorer=kind,
                                         batch_index=b) for b, resp in enumerate(res.responses)]
            ledger += calls
            m = metrics.classification_metrics([i.truth for i in res.items], [i.prediction for i in res.items],
                                               [i.probability for i in res.items])
            for i in res.items:
                item_rows.append({"layer": layer, "latent": lat, "explainer_fp": efp, "scorer": kind,
                                  "scorer_fp": sfps[kind], "example_id": i.example_id, "batch_index": i.batch_index,
                                  "quantile": i.quantile, "activating": i.activating, "truth": i.truth,
                                  "prediction": i.prediction, "probability": i.probability})
            score_rows.append(_score_row(base, res, m, sum(c["cost_usd"] for c in calls)))
    frames = {
        "score_items": pl.DataFrame(item_rows, schema_overrides={"probability": pl.Float64, "prediction": pl.Boolean})
        if item_rows else pl.DataFrame(),
        "scores": pl.DataFrame(score_rows, schema_overrides={k: pl.Float64 for k in F64}
                               | {"failure_reasons": pl.List(pl.Utf8), "status_reason": pl.Utf8})
        if score_rows else pl.DataFrame(),
    }
    latents = [int(j.key.rsplit("/", 1)[1]) for j in jobs]
    commit(ctx, layer, first, last, efp, frames, ledger, {sfps[k]: ("scorer", specs[k]) for k in kinds},
           only_latents=latents if resume else None)
    summary = {}
    for kind in kinds:
        mine = [r for r in score_rows if r["scorer"] == kind]
        vals = [r["balanced_accuracy"] for r in mine if r["status"] == "ok"]
        aucs = [r["auroc"] for r in mine if r["auroc"] is not None]
        summary[kind] = {"latents_scored": len(vals), "latents_failed": sum(r["status"] == "failed" for r in mine),
                         "median_balanced_accuracy": float(np.median(vals)) if vals else None,
                         "median_auroc": float(np.median(aucs)) if aucs else None,
                         "failed_batches": sum(r["n_failed_batches"] for r in mine)}
    out = {"explainer_fp": efp, "scorer_engine": engine_label(specs[kinds[0]]["llm"]), "latents": len(jobs), "resumed": bool(resume), "seconds": round(secs, 2),
           "latents_per_s": rate(n_sent, secs), "scorers": summary,
           "balanced_accuracies": {k: [r["balanced_accuracy"] for r in score_rows if r["scorer"] == k and r["status"] == "ok"]
                                   for k in kinds},
           **accounting.totals(ledger)}
    if n_sent < len(jobs):
        err = BudgetExceeded(f"budget reached: {len(jobs) - n_sent} of {len(jobs)} latents of {layer} {first}-{last} "
                             "not scored (status budget_exceeded); raise budget.max_cost_usd / budget.max_tokens "
                             "and re-run to continue")
        err.summary = out
        raise err
    return out
