"""Stage scores, first pass: the yes/no scorers (``scorer.scorers``: detection, fuzzing) of every ok
explanation; per-latent metrics (their intervals and the other scorers: :mod:`.scorers`).

Incremental and monotone (:mod:`.incremental`): only (latent, scorer) pairs without an ok score at least
as new as their ok explanation are sent (all of them with ``force``); a failure never replaces an ok score.
Every kind x latent x batch goes to the engine in ONE ``generate`` call. A malformed answer fails only its
batch; a latent whose batches all fail gets status 'failed', one with no answered example of one class
(balanced accuracy needs both) 'undefined', each with status_reason saying why. Requests go through the write-ahead ledger; the budget
works as in the explanations stage; too many failures or a fatal server error fail the step after the commit.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import polars as pl

from ..identity import engine_label, scorer_fp, scorer_spec
from ..llm import accounting
from ..scoring import classifier
from ..storage import queries
from .context import Context, rate
from .examples import load_examples
from .explanations import partition_label
from .incremental import done_scores, failed_units, verdict
from .llm_runs import BUDGET_EXCEEDED, budget_stop
from .score_rows import start_scoring


def run_classifier_scores(ctx: Context, client, layer: str, first: int, last: int,
                          explainer_fp: str | None = None, force: bool = False) -> dict:
    """``explainer_fp``: score another explainer's stored explanations (default: the configured explainer's).
    ``force``: re-send every pair, not only those without a current ok score."""
    cfg, scfg = ctx.cfg, ctx.cfg.scorer
    setup = start_scoring(ctx, client, layer, first, last, explainer_fp)  # its client unused: sent after admit
    efp, ledger, expl = setup.efp, setup.ledger, setup.explanations
    exs = load_examples(ctx, layer, first, last, ["test", "non_activating"])
    kinds = list(scfg.scorers)
    specs = {k: scorer_spec(cfg, ctx.workdir, k) for k in kinds}
    sfps = {k: scorer_fp(specs[k]) for k in kinds}
    done = set() if force else done_scores(ctx.wh, layer, first, last, efp, {k: sfps[k] for k in kinds})
    jobs = {lat: classifier.ScoreJob(f"{layer}/{lat}", text, exs.get(lat, {}).get("test", []),
                                  exs.get(lat, {}).get("non_activating", [])) for lat, text in expl.iter_rows()}
    todo = {k: [lat for lat in jobs if (lat, k) not in done] for k in kinds}
    latents = sorted({lat for k in kinds for lat in todo[k]})  # the units admitted by the budget, in order
    per = classifier.build_all({k: [jobs[lat] for lat in todo[k]] for k in kinds}, scfg)
    unit: dict[int, list] = {lat: [] for lat in latents}
    for k in kinds:
        for lat, batches in zip(todo[k], per[k]):
            unit[lat] += [(b, {"latent": lat, "scorer": k, "fingerprint": sfps[k], "batch_index": i})
                          for i, b in enumerate(batches)]
    n_sent, admitted = ledger.admit([[(b.request, keys) for b, keys in unit[lat]] for lat in latents])
    for lat, reqs in zip(latents, admitted):
        for (batch, _), req in zip(unit[lat], reqs):
            batch.request = req  # now carrying its ledger row's call id
    sending = set(latents[:n_sent])
    send_jobs = {k: [jobs[lat] for lat in todo[k] if lat in sending] for k in kinds}
    send_per = {k: [b for lat, b in zip(todo[k], per[k]) if lat in sending] for k in kinds}
    t0 = time.perf_counter()
    results = asyncio.run(classifier.send_all(client, send_jobs, send_per)) if n_sent else {k: [] for k in kinds}
    secs = time.perf_counter() - t0
    rows = setup.rows(ctx, layer, labelled=False)  # stage scores' next pass sets latent_range
    for k in kinds:
        rows.fp(specs[k])
    for kind in kinds:
        got = dict(zip([lat for lat in todo[kind] if lat in sending], zip(results[kind], send_per[kind])))
        for lat in todo[kind]:
            if lat not in got:
                rows.not_sent(kind, sfps[kind], lat, BUDGET_EXCEEDED)
                continue
            res, batches = got[lat]
            for b, resp in enumerate(res.responses):
                resp.call_id = batches[b].request.call_id
            rows.add_classifier(kind, sfps[kind], res, cfg.scoring, control=False, intervals=False)
    with ctx.wh.write() as con:
        kept = rows.merge(con)
        ledger.complete(con, rows.ledger)
        failures = failed_units(con, "scores", layer, efp, list(jobs), kinds)
    # the partition as it now stands (this run's rows merged with earlier ones), for the metadata
    now = ctx.wh.query(queries.RANGE_CLASSIFIER_SCORES, [layer, first, last, efp, kinds])
    summary, baccs = {}, {}
    for kind in kinds:
        mine = now.filter(pl.col("scorer") == kind)
        ok = mine.filter(pl.col("status") == "ok")
        vals, aucs = ok["balanced_accuracy"].drop_nulls().to_list(), mine["auroc"].drop_nulls().to_list()
        baccs[kind] = vals
        summary[kind] = {"latents_scored": len(vals), "latents_failed": mine.filter(pl.col("status") == "failed").height,
                         "median_balanced_accuracy": float(np.median(vals)) if vals else None,
                         "median_auroc": float(np.median(aucs)) if aucs else None,
                         "failed_batches": int(mine["n_failed_batches"].sum() or 0)}
    sent_rows = [r for r in rows.scores if r["status"] != BUDGET_EXCEEDED]
    out = {"explainer_fp": efp, "scorer_engine": engine_label(specs[kinds[0]]["llm"]), "latents": len(jobs),
           "latents_sent": n_sent, "resumed": bool(done), "forced": force,
           "scores_already_done": len(done), "failures_kept_beside_ok": kept, "seconds": round(secs, 2),
           "latents_per_s": rate(n_sent, secs), "scorers": summary,
           "balanced_accuracies": baccs,
           **accounting.totals(rows.ledger)}
    fatal = next((r.error for k in kinds for res in results[k] for r in res.responses if r.fatal), None)
    verdict("scores", partition_label(layer, first, last), sent=len(sent_rows),
            server_failures=rows.server_failures(),
            units=len(jobs) * len(kinds), failures=failures, max_share=cfg.failures.max_share, fatal=fatal,
            unit="latent x scorer scores", summary=out)
    if n_sent < len(latents):
        raise budget_stop(len(latents) - n_sent, len(latents), "scored", layer, first, last, out)
    return out
