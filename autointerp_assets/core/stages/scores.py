"""Stage scores: detection and fuzzing of every ok explanation; per-latent metrics."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import polars as pl

from .. import metrics, scorers
from ..fingerprint import fingerprint
from .context import Context, explainer_spec, rate, scorer_spec
from .examples import load_examples


def run_scores(ctx: Context, client, layer: str, first: int, last: int) -> dict:
    cfg = ctx.cfg
    efp = fingerprint("explainer", explainer_spec(cfg, ctx.workdir))
    expl = ctx.wh.query("SELECT latent, explanation FROM explanations WHERE layer = ? AND latent BETWEEN ? AND ? "
                        "AND explainer_fp = ? AND status = 'ok' ORDER BY latent", [layer, first, last, efp])
    samp = ctx.wh.scalar("SELECT any_value(sampler_fp) FROM examples WHERE layer = ? AND latent BETWEEN ? AND ?",
                         [layer, first, last]) or ""
    exs = load_examples(ctx, layer, first, last, ["test", "non_activating"])
    jobs = [scorers.ScoreJob(f"{layer}/{lat}", text, exs.get(lat, {}).get("test", []),
                             exs.get(lat, {}).get("non_activating", []))
            for lat, text in expl.iter_rows()]
    item_rows, score_rows, fps = [], [], {}
    t0 = time.perf_counter()
    for kind in cfg.scorer.scorers:
        sfp = fingerprint("scorer", scorer_spec(cfg, ctx.workdir, kind))
        fps[sfp] = ("scorer", scorer_spec(cfg, ctx.workdir, kind))
        results = asyncio.run(scorers.score_latents(client, kind, jobs, cfg.scorer)) if jobs else []
        for res in results:
            lat = int(res.key.rsplit("/", 1)[1])
            m = metrics.classification_metrics([i.truth for i in res.items], [i.prediction for i in res.items],
                                               [i.probability for i in res.items])
            for i in res.items:
                item_rows.append({"layer": layer, "latent": lat, "explainer_fp": efp, "scorer": kind, "scorer_fp": sfp,
                                  "example_id": i.example_id, "batch_index": i.batch_index, "quantile": i.quantile,
                                  "activating": i.activating, "truth": i.truth, "prediction": i.prediction,
                                  "probability": i.probability})
            ok = m["n"] - m["n_failed"] > 0 and m["balanced_accuracy"] is not None
            score_rows.append({"layer": layer, "latent": lat, "explainer_fp": efp, "scorer": kind, "scorer_fp": sfp,
                               "sampler_fp": samp, "status": "ok" if ok else "failed", "n": m["n"], "n_failed": m["n_failed"],
                               "balanced_accuracy": m["balanced_accuracy"], "accuracy": m["accuracy"],
                               "precision": m["precision"], "recall": m["recall"], "f1": m["f1"], "auroc": m["auroc"],
                               "n_batches": res.n_batches, "n_failed_batches": res.n_failed_batches,
                               "failure_reasons": list(res.failure_reasons), "prompt_tokens": res.prompt_tokens,
                               "completion_tokens": res.completion_tokens, "latency_s": res.latency_s})
    secs = time.perf_counter() - t0
    f64 = {k: pl.Float64 for k in ("balanced_accuracy", "accuracy", "precision", "recall", "f1", "auroc", "probability")}
    frames = {
        "score_items": pl.DataFrame(item_rows, schema_overrides={k: v for k, v in f64.items() if k == "probability"}
                                    | {"prediction": pl.Boolean}) if item_rows else pl.DataFrame(),
        "scores": pl.DataFrame(score_rows, schema_overrides={k: v for k, v in f64.items() if k != "probability"}
                               | {"failure_reasons": pl.List(pl.Utf8)}) if score_rows else pl.DataFrame(),
    }
    ctx.wh.replace_partition(layer, first, last, frames,
                             where={t: {"explainer_fp": efp} for t in frames}, fingerprints=fps)
    summary = {}
    for kind in cfg.scorer.scorers:
        vals = [r["balanced_accuracy"] for r in score_rows if r["scorer"] == kind and r["status"] == "ok"]
        aucs = [r["auroc"] for r in score_rows if r["scorer"] == kind and r["auroc"] is not None]
        summary[kind] = {"latents_scored": len(vals),
                         "median_balanced_accuracy": float(np.median(vals)) if vals else None,
                         "median_auroc": float(np.median(aucs)) if aucs else None,
                         "failed_batches": sum(r["n_failed_batches"] for r in score_rows if r["scorer"] == kind)}
    return {"explainer_fp": efp, "latents": len(jobs), "seconds": round(secs, 2),
            "latents_per_s": rate(len(jobs), secs), "scorers": summary,
            "balanced_accuracies": {k: [r["balanced_accuracy"] for r in score_rows if r["scorer"] == k and r["status"] == "ok"]
                                    for k in cfg.scorer.scorers},
            "prompt_tokens": int(sum(r["prompt_tokens"] or 0 for r in score_rows))}
