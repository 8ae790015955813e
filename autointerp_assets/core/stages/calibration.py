"""Stage calibration: planted latents of known meaning (core.calibration), sampled and scored by the real stages.

The planted latents live in a warehouse of their own beside the project's (``<database stem>.calibration.duckdb``:
the corpus rows, the planted activations as layer ``planted``, their examples, explanations and scores), so
no summary, leaderboard or check of the real latents ever mixes them in, and a researcher can still open it.
There the real stages run unchanged: ``examples`` (the configured sampler; negatives drawn at random),
``scores`` (without the intervention scorer) on the gold explanations (the control is then a deranged gold), and the
configured explainer's ``explanations`` + scores (no control: the gold's serves). The results land in the
project's warehouse -- tables ``calibration_latents``, ``calibration_scores``, ``calibration_recovery`` keyed by
calibration and explainer fingerprint, views ``calibration_power`` and ``calibration_recovery_rate`` -- with
the LLM calls appended to its ``llm_calls`` ledger (stage ``calibration/...``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import polars as pl

from .. import calibration as planted_mod
from .. import identity
from ..config import BudgetConfig, LatentsConfig
from ..scoring import embedding
from ..separators import data_mask
from ..storage import Warehouse, queries
from ..vocabulary import token_strings
from .activations import fp16_bits, separators_of
from .baseline_explanations import baseline_contexts
from .context import Context
from .corpus import load_rows
from .examples import run_examples
from .explanations import run_explanations
from .latent_stats import run_latent_stats
from .scores import run_scores

LAYER = "planted"


def calibration_spec(ctx: Context) -> dict:
    return identity.calibration_spec(ctx.cfg, ctx.workdir, planted_mod.PLANTED_VERSION, separators_of(ctx),
                                     _sampler(ctx))


def _sampler(ctx: Context):
    # random negatives: hard negatives would measure the sampler's difficulty, not whether a scorer reads
    return ctx.cfg.sampler.model_copy(update={"non_activating_source": "random"})


def calibration_fp(ctx: Context) -> str:
    return identity.calibration_fp(calibration_spec(ctx))


def calibration_context(ctx: Context) -> Context:
    """The project config aimed at the calibration warehouse: one partition of the planted latents, no budget
    (its calls are appended to the project's ledger), no baselines, no intruder (it never reads explanations), no
    output-centric explainers and no intervention scorer (a planted latent has no decoder direction to steer by)."""
    cfg = ctx.cfg
    db = cfg.resolve(cfg.database)
    n = cfg.calibration.max_latents
    x = cfg.scoring
    cal = cfg.model_copy(update={
        "database": str(db.with_name(db.stem + ".calibration.duckdb")),
        "latents": LatentsConfig(start=0, stop=n, range_size=n, max_per_range=None),
        "sampler": _sampler(ctx), "budget": BudgetConfig(), "baseline_explainers": (), "output_explainers": (),
        "scoring": x.model_copy(update={"scorers": tuple(s for s in x.scorers
                                                                if s not in ("intruder", "intervention"))})})
    return Context(cal, Warehouse(cal.resolve(cal.database)), ctx.log)


def _variant_ctx(cal: Context, **scoring) -> Context:
    return Context(cal.cfg.model_copy(update={"scoring": cal.cfg.scoring.model_copy(update=scoring)}),
                   cal.wh, cal.log)


def planted_latents(ctx: Context, rows: np.ndarray | None = None) -> list[planted_mod.Planted]:
    """The planted latents of this corpus and tokenizer (core.calibration.plant over the data tokens' counts)."""
    rows = load_rows(ctx) if rows is None else rows
    vocab = token_strings(ctx.model_dir())
    counts = np.bincount(rows[data_mask(rows, separators_of(ctx))].ravel(), minlength=len(vocab))
    return planted_mod.plant(vocab, counts, ctx.cfg.calibration.max_latents)


def _plant(ctx: Context, cal: Context, cfp: str) -> list[planted_mod.Planted]:
    """The planted latents' activations in the calibration warehouse (once per calibration fingerprint)."""
    rows = load_rows(ctx)
    data = data_mask(rows, separators_of(ctx))
    planted = planted_latents(ctx, rows)
    corpus_fp, ctx_len = ctx.corpus_fp(), rows.shape[1]
    with cal.wh.read() as con:
        done = con.execute(queries.CACHE_COMPLETE_COUNT, [cfp]).fetchone()[0]
        have = con.execute(queries.CORPUS_ROW_COUNT, [corpus_fp]).fetchone()[0]
    if done and have == len(rows):
        return planted
    lat, row, pos, val = planted_mod.planted_activations(rows, data, planted, ctx.cfg.calibration.seed)
    order = np.lexsort((row * ctx_len + pos, lat))
    with cal.wh.write() as con:
        for table in ("tokens", "activation_cache", "cache_progress", "cache_complete", "activation_partitions",
                      "example_windows", "latent_selection", "explanations", "scores", "score_items",
                      "scorer_sensitivity"):
            cal.wh.delete(con, table)
        cal.wh.insert(con, "tokens", pl.DataFrame({"corpus_fp": corpus_fp, "row_id": np.arange(len(rows), dtype=np.int32),
                                                   "token_ids": rows.tolist()},
                                                  schema_overrides={"token_ids": pl.List(pl.Int32)}))
        cal.wh.insert(con, "activation_cache", pl.DataFrame({
            "cache_fp": cfp, "layer": LAYER, "latent": lat[order], "token": (row * ctx_len + pos)[order].astype(np.int32),
            "value_bits": fp16_bits(val[order])}))
        con.execute(queries.INSERT_CACHE_COMPLETE_PLANTED, [cfp, len(rows), rows.size, len(lat)])
        con.execute(queries.INSERT_ACTIVATION_PARTITION_PLANTED, [LAYER, cal.cfg.latents.stop - 1, cfp, cfp, ctx_len, len(lat)])
    return planted


def run_calibration(ctx: Context, explainer_client, scorer_client) -> dict:
    """Plant, sample, score gold / deranged gold / the configured explainer's explanations; power and recovery."""
    t0 = time.perf_counter()
    cal = calibration_context(ctx)
    cfp = calibration_fp(ctx)
    planted = _plant(ctx, cal, cfp)
    last = cal.cfg.latents.stop - 1
    calls_before = cal.wh.scalar(queries.LEDGER_NEXT_ROWID)  # append-only: new rows after it
    run_latent_stats(cal, LAYER, 0, last)  # the explainer prompt reads each latent's max activation
    run_examples(cal, LAYER, 0, last)
    selection = dict(cal.wh.query(queries.LAYER_SELECTION_STATUS, [LAYER]).iter_rows())
    windows = dict(cal.wh.query(queries.LAYER_SELECTION_WINDOWS, [LAYER]).iter_rows())
    selected = [i for i in range(len(planted)) if selection.get(i) == "selected"]
    if len(selected) < 2:
        raise RuntimeError(f"calibration: only {len(selected)} planted latents have sampler.min_examples "
                           f"({ctx.cfg.sampler.min_examples}) activating windows in this corpus: lower min_examples "
                           "or use a larger corpus")
    # (a) gold and (b) the deranged gold: the control of stage scores on the gold explanations
    gold_fp = identity.gold_explainer_fp(cfp)
    sfp = cal.wh.scalar(queries.LAYER_SELECTION_SAMPLER_FP, [LAYER]) or ""
    with cal.wh.write() as con:
        con.execute(queries.DELETE_EXPLAINER_EXPLANATIONS, [gold_fp])
        cal.wh.insert(con, "explanations", pl.DataFrame([
            {"layer": LAYER, "latent": i, "explainer_fp": gold_fp, "status": "ok", "explanation": planted[i].gold,
             "sampler_fp": sfp} for i in selected]))
    gold_ctx = _variant_ctx(cal, control=True)
    run_scores(gold_ctx, scorer_client, LAYER, 0, last, explainer_fp=gold_fp, intervention=False)
    # (c) the configured explainer, scored the same way (its control would repeat (b): not run)
    efp = identity.explainer_fp(cal.cfg, cal.workdir)
    run_explanations(cal, explainer_client, LAYER, 0, last)
    mine = _variant_ctx(cal, control=False)
    run_scores(mine, scorer_client, LAYER, 0, last, intervention=False)
    recovery = _recovery(ctx, cal, planted, selected, efp, cfp)
    _publish(ctx, cal, planted, selection, windows, cfp, gold_fp, efp, recovery, calls_before)
    return calibration_summary(ctx.wh, cfp, efp) | {"calibration_fp": cfp, "explainer_fp": efp,
                                                   "seconds": round(time.perf_counter() - t0, 1)}


def _recovery(ctx: Context, cal: Context, planted, selected, efp: str, cfp: str) -> list[dict]:
    """Per explainer (the configured one and the top_tokens baseline): is its explanation of a planted latent
    nearest, by sentence embedding, to that latent's own gold among all golds?"""
    explainers = {efp: ctx.cfg.explainer.kind}
    for b in baseline_contexts(Context(cal.cfg.model_copy(update={"baseline_explainers": ("top_tokens",)}),
                                       cal.wh, cal.log)):
        run_explanations(b, None, LAYER, 0, cal.cfg.latents.stop - 1)
        explainers[identity.explainer_fp(b.cfg, b.workdir)] = "baseline top_tokens"
    golds = [planted[i].gold for i in selected]
    encode = embedding.encoder(ctx.cfg.scoring.embedding_model)
    g = encode(golds)
    out = []
    for fp, name in explainers.items():
        text = dict(cal.wh.query(queries.LAYER_EXPLANATIONS_OF, [LAYER, fp]).iter_rows())
        have = [i for i in selected if text.get(i)]
        if not have:
            continue
        sims = encode([text[i] for i in have]) @ g.T
        for row, i in zip(sims, have):
            j = int(np.argmax(row))
            out.append({"calibration_fp": cfp, "explainer_fp": efp, "recovered_by": fp, "explainer": name,
                        "latent": i, "planted": planted[i].name, "explanation": text[i],
                        "nearest": planted[selected[j]].name, "similarity": float(row[j]),
                        "own_similarity": float(row[selected.index(i)]), "recovered": selected[j] == i})
    return out


def _publish(ctx: Context, cal: Context, planted, selection, windows, cfp, gold_fp, efp, recovery, calls_before) -> None:
    """The calibration's results into the project's warehouse, in one transaction, replacing this explainer's."""
    scores = cal.wh.query(queries.CALIBRATION_SCORES_OF, [LAYER, gold_fp, efp])
    gold = {i: planted[i].gold for i in range(len(planted))}
    rows = []
    for r in scores.iter_rows(named=True):
        variant = "explainer" if r["explainer_fp"] == efp else ("control" if r["control"] else "gold")
        rows.append({"calibration_fp": cfp, "explainer_fp": efp, "latent": r["latent"],
                     "planted": planted[r["latent"]].name, "scorer": r["scorer"].removesuffix("_control"),
                     "scorer_fp": r["scorer_fp"], "metric": r["metric"], "variant": variant,
                     "explanation": r["explanation"] if variant != "control" else None, "value": r["value"],
                     "status": r["status"]})
    latents = [{"calibration_fp": cfp, "latent": i, "planted": p.name, "gold": gold[i], "n_token_ids": len(p.token_ids),
                "n_windows": int(windows.get(i, 0)), "status": selection.get(i, "dead")} for i, p in enumerate(planted)]
    ledger = cal.wh.query(queries.LEDGER_ROWS_FROM, [calls_before])
    for attempt in ctx.wh.attempts():
        with attempt as con:
            ctx.wh.record_fingerprint(con, cfp, "calibration", calibration_spec(ctx))
            con.execute(queries.DELETE_CALIBRATION_LATENTS, [cfp])
            for table in ("calibration_scores", "calibration_recovery"):
                ctx.wh.delete(con, table, {"calibration_fp": cfp, "explainer_fp": efp})
            ctx.wh.insert(con, "calibration_latents", pl.DataFrame(latents))
            if rows:
                ctx.wh.insert(con, "calibration_scores", pl.DataFrame(rows, schema_overrides={
                    "value": pl.Float64, "explanation": pl.Utf8, "metric": pl.Utf8}))
            if recovery:
                ctx.wh.insert(con, "calibration_recovery", pl.DataFrame(recovery))
            if ledger.height:
                ctx.wh.insert(con, "llm_calls", ledger.with_columns(stage=pl.lit("calibration/") + pl.col("stage")))


def calibration_summary(wh: Warehouse, cfp: str, efp: str) -> dict:
    """Per scorer its power, per explainer its recovery (views calibration_power / calibration_recovery_rate)."""
    power = wh.query(queries.CALIBRATION_POWER_ROWS, [cfp, efp])
    rec = wh.query(queries.CALIBRATION_RECOVERY_ROWS, [cfp, efp])
    planted = wh.query(queries.CALIBRATION_LATENT_ROWS, [cfp])
    return {"power": power.to_dicts(), "recovery": rec.to_dicts(), "planted": planted.to_dicts()}


def calibration_path(ctx: Context) -> Path:
    return calibration_context(ctx).wh.path
